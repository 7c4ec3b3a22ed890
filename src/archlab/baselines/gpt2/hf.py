"""GPT-2 in the Hugging Face format: ``GPT2LMHeadModel`` <-> ``GPT2``.

Config: transformers' ``GPT2Config`` fields map one to one onto ``GPT2Config`` (same names).

Parameter names (transformers -> archlab); transformers' ``Conv1D`` stores ``(in, out)``
weights, so every projection is transposed, and the fused ``c_attn`` is split in three::

    transformer.wte, transformer.wpe   -> wte, wpe
    transformer.h.i.ln_1               -> decoder.layers.i.self_attn_norm
    transformer.h.i.attn.c_attn        -> decoder.layers.i.self_attn.{q,k,v}_proj (split, .T)
    transformer.h.i.attn.c_proj        -> decoder.layers.i.self_attn.out_proj (.T)
    transformer.h.i.ln_2               -> decoder.layers.i.ffn_norm
    transformer.h.i.mlp.c_fc, c_proj   -> decoder.layers.i.ffn.fc1, fc2 (.T)
    transformer.ln_f                   -> decoder.norm
    lm_head                            -> tied to wte (not written, as transformers 5)

A checkpoint of the bare ``GPT2Model`` (names without ``transformer.``, as the original ``gpt2``
files) loads too; the old ``attn.bias`` / ``attn.masked_bias`` buffers are ignored.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from archlab.baselines.gpt2.model import GPT2, GPT2Config
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

MODEL_TYPE = "gpt2"
ARCHITECTURE = "GPT2LMHeadModel"
WTE = "transformer.wte.weight"
TIED_COPIES = ("lm_head.weight",)
UNSUPPORTED = {"add_cross_attention": False, "tie_word_embeddings": True}
_INT_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
_FLOAT_FIELDS = (
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "layer_norm_epsilon",
    "initializer_range",
)


def config_from_hf(config: dict[str, Any]) -> GPT2Config:
    """The ``GPT2Config`` of a transformers GPT-2 ``config.json`` (already parsed).

    Raises:
        PretrainedFormatError: for a wrong type, an invalid value (e.g. ``n_embd`` not
            divisible by ``n_head``) or an unsupported setting.
    """
    require_settings(config, UNSUPPORTED, "GPT-2")
    defaults = GPT2Config()
    values: dict[str, Any] = {}
    for name in _INT_FIELDS:
        values[name] = config_value(config, name, getattr(defaults, name), int)
    values["n_inner"] = config_value(config, "n_inner", None, int)
    for name in _FLOAT_FIELDS:
        values[name] = float(config_value(config, name, getattr(defaults, name), (int, float)))
    values["activation_function"] = config_value(config, "activation_function", "gelu_new", str)
    for name in ("scale_attn_weights", "scale_attn_by_inverse_layer_idx"):
        values[name] = config_value(config, name, getattr(defaults, name), bool)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        values[name] = single_token_id(config, name, getattr(defaults, name))
    try:
        return GPT2Config(**values)
    except ValueError as e:
        raise PretrainedFormatError(f"config.json: {e}") from None


def config_to_hf(cfg: GPT2Config) -> dict[str, Any]:
    """transformers' ``config.json`` content for ``cfg`` (loadable by ``GPT2Config``)."""
    from archlab.config import to_dict

    out = to_dict(cfg)
    out.update(
        model_type=MODEL_TYPE,
        architectures=[ARCHITECTURE],
        tie_word_embeddings=True,
        add_cross_attention=False,
        use_cache=True,
        dtype="float32",
    )
    return out


def state_dict_to_hf(model: GPT2) -> dict[str, Tensor]:
    """transformers' state dict (``lm_head.weight`` left out, as transformers 5 writes it)."""
    sd = model.state_dict()
    out = {WTE: sd["wte.weight"], "transformer.wpe.weight": sd["wpe.weight"]}
    for p in ("weight", "bias"):
        out[f"transformer.ln_f.{p}"] = sd[f"decoder.norm.{p}"]
    for i in range(model.cfg.n_layer):
        ours, hf = f"decoder.layers.{i}.", f"transformer.h.{i}."
        for p in ("weight", "bias"):
            out[f"{hf}ln_1.{p}"] = sd[f"{ours}self_attn_norm.{p}"]
            out[f"{hf}ln_2.{p}"] = sd[f"{ours}ffn_norm.{p}"]
        qkv = [sd[f"{ours}self_attn.{n}_proj.weight"] for n in "qkv"]
        out[f"{hf}attn.c_attn.weight"] = torch.cat(qkv, 0).T  # (D, 3D)
        out[f"{hf}attn.c_attn.bias"] = torch.cat(
            [sd[f"{ours}self_attn.{n}_proj.bias"] for n in "qkv"]
        )
        for hf_sub, our_sub in (
            ("attn.c_proj", "self_attn.out_proj"),
            ("mlp.c_fc", "ffn.fc1"),
            ("mlp.c_proj", "ffn.fc2"),
        ):
            out[f"{hf}{hf_sub}.weight"] = sd[f"{ours}{our_sub}.weight"].T  # Conv1D: (in, out)
            out[f"{hf}{hf_sub}.bias"] = sd[f"{ours}{our_sub}.bias"]
    return out


def state_dict_from_hf(tensors: dict[str, Tensor], cfg: GPT2Config) -> dict[str, Tensor]:
    """archlab ``GPT2`` state dict from a transformers checkpoint, checked against ``cfg``.

    Raises:
        PretrainedFormatError: missing or unexpected tensors, wrong shapes, untied head.
    """
    tensors = add_prefix_if_bare(tensors, "transformer.", ("wte.", "wpe.", "h.", "ln_f."))
    if WTE not in tensors and "lm_head.weight" in tensors:
        tensors = {**tensors, WTE: tensors["lm_head.weight"]}
    check_tied(tensors, WTE, TIED_COPIES)
    with torch.device("meta"):
        expected = {k: v.shape for k, v in state_dict_to_hf(GPT2(cfg)).items()}
    check_tensors(
        tensors,
        expected,
        ignored_prefixes=TIED_COPIES,
        ignored_suffixes=(".attn.bias", ".attn.masked_bias"),
    )
    out = {"wte.weight": tensors[WTE], "wpe.weight": tensors["transformer.wpe.weight"]}
    for p in ("weight", "bias"):
        out[f"decoder.norm.{p}"] = tensors[f"transformer.ln_f.{p}"]
    for i in range(cfg.n_layer):
        ours, hf = f"decoder.layers.{i}.", f"transformer.h.{i}."
        for p in ("weight", "bias"):
            out[f"{ours}self_attn_norm.{p}"] = tensors[f"{hf}ln_1.{p}"]
            out[f"{ours}ffn_norm.{p}"] = tensors[f"{hf}ln_2.{p}"]
        w = tensors[f"{hf}attn.c_attn.weight"].T.chunk(3)  # 3 x (D, D)
        b = tensors[f"{hf}attn.c_attn.bias"].chunk(3)
        for n, wn, bn in zip("qkv", w, b):
            out[f"{ours}self_attn.{n}_proj.weight"] = wn.contiguous()
            out[f"{ours}self_attn.{n}_proj.bias"] = bn.contiguous()
        for hf_sub, our_sub in (
            ("attn.c_proj", "self_attn.out_proj"),
            ("mlp.c_fc", "ffn.fc1"),
            ("mlp.c_proj", "ffn.fc2"),
        ):
            out[f"{ours}{our_sub}.weight"] = tensors[f"{hf}{hf_sub}.weight"].T.contiguous()
            out[f"{ours}{our_sub}.bias"] = tensors[f"{hf}{hf_sub}.bias"]
    return out


def from_pretrained(directory: str) -> GPT2:
    """Load a transformers GPT-2 directory (``config.json`` + ``model.safetensors``) in fp32.

    Raises:
        PretrainedFormatError: naming the file and what was expected.
    """
    cfg = config_from_hf(read_config(directory, MODEL_TYPE))
    state = state_dict_from_hf(read_state_dict(directory), cfg)
    with torch.device("meta"):
        model = GPT2(cfg)
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, assign=True)
    return model.eval()


def save_pretrained(model: GPT2, directory: str) -> None:
    """Write ``config.json`` and ``model.safetensors`` for transformers' GPT-2."""
    write_pretrained(directory, config_to_hf(model.cfg), state_dict_to_hf(model))
