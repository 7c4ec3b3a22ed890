"""BART in the Hugging Face format: ``BartForConditionalGeneration`` <-> ``Bart``.

Config: transformers' ``BartConfig`` fields map one to one onto ``BartConfig`` (same names);
settings archlab's BART does not implement are refused with the key named.

Parameter names (transformers -> archlab)::

    model.shared                                -> shared
    model.{encoder,decoder}.embed_positions     -> {encoder,decoder}_positions
    model.{encoder,decoder}.layernorm_embedding -> {encoder,decoder}_embed_norm
    model.{encoder,decoder}.layers.i.
        self_attn.{q,k,v,out}_proj              -> {encoder,decoder}.layers.i.self_attn.*
        self_attn_layer_norm                    -> ...self_attn_norm
        encoder_attn.{q,k,v,out}_proj           -> decoder.layers.i.cross_attn.*
        encoder_attn_layer_norm                 -> decoder.layers.i.cross_attn_norm
        fc1, fc2                                -> ...ffn.fc1, ...ffn.fc2
        final_layer_norm                        -> ...ffn_norm
    final_logits_bias                           -> final_logits_bias (zeros when absent)
    lm_head, model.{encoder,decoder}.embed_tokens: tied to model.shared (not written, as
        transformers 5 does not write them; accepted when present and identical)

A checkpoint of the bare ``BartModel`` (names without ``model.``) loads too.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from archlab.hf import (
    PretrainedFormatError,
    add_prefix_if_bare,
    check_tensors,
    check_tied,
    config_value,
    read_config,
    read_state_dict,
    require_settings,
    single_token_id,
    write_pretrained,
)
from archlab.papers.language.bart.model import Bart, BartConfig

MODEL_TYPE = "bart"
ARCHITECTURE = "BartForConditionalGeneration"
SHARED = "model.shared.weight"
TIED_COPIES = (
    "lm_head.weight",
    "model.encoder.embed_tokens.weight",
    "model.decoder.embed_tokens.weight",
)
UNSUPPORTED = {  # key -> the only value(s) archlab's BART implements
    "encoder_layerdrop": (0, 0.0),
    "decoder_layerdrop": (0, 0.0),
    "is_decoder": False,
    "is_encoder_decoder": True,
    "tie_word_embeddings": True,
    "add_bias_logits": False,  # legacy keys of old BART configs
    "add_final_layer_norm": False,
    "normalize_before": False,
    "normalize_embedding": True,
    "static_position_embeddings": False,
    "extra_pos_embeddings": 2,
}
_INT_FIELDS = (
    "vocab_size",
    "d_model",
    "encoder_layers",
    "decoder_layers",
    "encoder_attention_heads",
    "decoder_attention_heads",
    "encoder_ffn_dim",
    "decoder_ffn_dim",
    "max_position_embeddings",
)
_FLOAT_FIELDS = ("dropout", "attention_dropout", "activation_dropout", "init_std")

_LAYER_NAMES = {  # archlab sublayer -> transformers sublayer
    "self_attn_norm": "self_attn_layer_norm",
    "cross_attn_norm": "encoder_attn_layer_norm",
    "cross_attn": "encoder_attn",
    "ffn_norm": "final_layer_norm",
    "ffn.fc1": "fc1",
    "ffn.fc2": "fc2",
    "self_attn": "self_attn",
}
_LAYER_RE = re.compile(
    r"(encoder|decoder)\.layers\.(\d+)\.(self_attn_norm|cross_attn_norm|cross_attn|ffn_norm|"
    r"ffn\.fc1|ffn\.fc2|self_attn)\.(.+)"
)


def config_from_hf(config: dict[str, Any]) -> BartConfig:
    """The ``BartConfig`` of a transformers BART ``config.json`` (already parsed).

    Raises:
        PretrainedFormatError: for a wrong type, an invalid value (e.g. ``d_model`` not
            divisible by the heads, which transformers rejects too) or an unsupported setting.
    """
    require_settings(config, UNSUPPORTED, "BART")
    defaults = BartConfig()
    values: dict[str, Any] = {}
    for name in _INT_FIELDS:
        values[name] = config_value(config, name, getattr(defaults, name), int)
    for name in _FLOAT_FIELDS:
        values[name] = float(config_value(config, name, getattr(defaults, name), (int, float)))
    values["activation_function"] = config_value(config, "activation_function", "gelu", str)
    values["scale_embedding"] = config_value(config, "scale_embedding", False, bool)
    for name in (
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "decoder_start_token_id",
        "forced_eos_token_id",
    ):
        values[name] = single_token_id(config, name, getattr(defaults, name))
    for name in ("pad_token_id", "decoder_start_token_id"):
        if values[name] is None:
            raise PretrainedFormatError(f"config.json: {name} must be a token id; got null")
    try:
        return BartConfig(**values)
    except ValueError as e:
        raise PretrainedFormatError(f"config.json: {e}") from None


def config_to_hf(cfg: BartConfig) -> dict[str, Any]:
    """transformers' ``config.json`` content for ``cfg`` (loadable by ``BartConfig``)."""
    from archlab.config import to_dict

    out = to_dict(cfg)
    out.update(
        model_type=MODEL_TYPE,
        architectures=[ARCHITECTURE],
        is_encoder_decoder=True,
        tie_word_embeddings=True,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        use_cache=True,
        dtype="float32",
    )
    return out


def hf_name(name: str) -> str:
    """The transformers name of an archlab ``Bart`` state-dict entry."""
    if name == "final_logits_bias":
        return name
    if name == "shared.weight":
        return SHARED
    m = re.fullmatch(r"(encoder|decoder)_(positions|embed_norm)\.(\w+)", name)
    if m:
        part, kind, p = m.groups()
        hf = "embed_positions" if kind == "positions" else "layernorm_embedding"
        return f"model.{part}.{hf}.{p}"
    m = _LAYER_RE.fullmatch(name)
    if m:
        part, i, sub, rest = m.groups()
        return f"model.{part}.layers.{i}.{_LAYER_NAMES[sub]}.{rest}"
    raise KeyError(f"no transformers name for archlab BART parameter {name!r}")


def state_dict_to_hf(model: Bart) -> dict[str, Tensor]:
    """transformers' state dict (tied copies left out, as transformers 5 writes it)."""
    return {hf_name(k): v for k, v in model.state_dict().items()}


def state_dict_from_hf(tensors: dict[str, Tensor], cfg: BartConfig) -> dict[str, Tensor]:
    """archlab ``Bart`` state dict from a transformers checkpoint, checked against ``cfg``.

    Raises:
        PretrainedFormatError: missing or unexpected tensors, wrong shapes, untied copies.
    """
    tensors = add_prefix_if_bare(tensors, "model.", ("shared.", "encoder.", "decoder."))
    if SHARED not in tensors:  # some files keep only a tied copy
        for key in TIED_COPIES:
            if key in tensors:
                tensors = {**tensors, SHARED: tensors[key]}
                break
    check_tied(tensors, SHARED, TIED_COPIES)
    with torch.device("meta"):
        shapes = {hf_name(k): v.shape for k, v in Bart(cfg).state_dict().items()}
    check_tensors(
        tensors,
        shapes,
        optional=("final_logits_bias",),
        ignored_prefixes=TIED_COPIES,
        ignored_suffixes=("encoder.version", "decoder.version"),
    )
    names = {hf_name(k): k for k in _state_names(cfg)}
    out = {names[k]: v for k, v in tensors.items() if k in names}
    out.setdefault("final_logits_bias", torch.zeros(1, cfg.vocab_size))
    return out


def _state_names(cfg: BartConfig) -> list[str]:
    with torch.device("meta"):
        return list(Bart(cfg).state_dict())


def from_pretrained(directory: str) -> Bart:
    """Load a transformers BART directory (``config.json`` + ``model.safetensors``) in fp32.

    Raises:
        PretrainedFormatError: naming the file and what was expected.
    """
    cfg = config_from_hf(read_config(directory, MODEL_TYPE))
    state = state_dict_from_hf(read_state_dict(directory), cfg)
    with torch.device("meta"):
        model = Bart(cfg)
    state = {k: v.to(torch.float32) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def save_pretrained(model: Bart, directory: str) -> None:
    """Write ``config.json`` and ``model.safetensors`` for transformers' BART."""
    write_pretrained(directory, config_to_hf(model.cfg), state_dict_to_hf(model))
