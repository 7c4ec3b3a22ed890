"""BERT in the Hugging Face format: ``BertForMaskedLM`` <-> ``Bert``.

Config: transformers' ``BertConfig`` fields map one to one onto ``BertConfig`` (same names).

Parameter names (transformers -> archlab)::

    bert.embeddings.{word,position,token_type}_embeddings -> {word,position,token_type}_embeddings
    bert.embeddings.LayerNorm                     -> embed_norm
    bert.encoder.layer.i.attention.self.query/key/value -> encoder.layers.i.self_attn.{q,k,v}_proj
    bert.encoder.layer.i.attention.output.dense   -> encoder.layers.i.self_attn.out_proj
    bert.encoder.layer.i.attention.output.LayerNorm -> encoder.layers.i.self_attn_norm
    bert.encoder.layer.i.intermediate.dense       -> encoder.layers.i.ffn.fc1
    bert.encoder.layer.i.output.dense             -> encoder.layers.i.ffn.fc2
    bert.encoder.layer.i.output.LayerNorm         -> encoder.layers.i.ffn_norm
    cls.predictions.transform.dense / LayerNorm   -> mlm_head.dense / mlm_head.norm
    cls.predictions.bias                          -> mlm_head.bias
    cls.predictions.decoder.{weight,bias}: tied to the word embeddings and to
        cls.predictions.bias (not written, as transformers 5; accepted when identical)

The pooler and next-sentence head of ``BertForPreTraining`` checkpoints are ignored (as
``BertForMaskedLM.from_pretrained`` ignores them); TF-era ``gamma`` / ``beta`` names are read.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from archlab.baselines.bert.model import Bert, BertConfig
from archlab.hf import (
    PretrainedFormatError,
    add_prefix_if_bare,
    check_tensors,
    check_tied,
    config_value,
    read_config,
    read_state_dict,
    rename_legacy_norms,
    require_settings,
    single_token_id,
    write_pretrained,
)

MODEL_TYPE = "bert"
ARCHITECTURE = "BertForMaskedLM"
WORD = "bert.embeddings.word_embeddings.weight"
MLM_BIAS = "cls.predictions.bias"
UNSUPPORTED = {
    "is_decoder": False,
    "add_cross_attention": False,
    "tie_word_embeddings": True,
    "position_embedding_type": "absolute",
}
_INT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
)
_FLOAT_FIELDS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "initializer_range",
    "layer_norm_eps",
)

_RULES = [  # (archlab regex, transformers template), first match wins
    (r"(word|position|token_type)_embeddings\.(\w+)", r"bert.embeddings.\1_embeddings.\2"),
    (r"embed_norm\.(\w+)", r"bert.embeddings.LayerNorm.\1"),
    (
        r"encoder\.layers\.(\d+)\.self_attn\.q_proj\.(\w+)",
        r"bert.encoder.layer.\1.attention.self.query.\2",
    ),
    (
        r"encoder\.layers\.(\d+)\.self_attn\.k_proj\.(\w+)",
        r"bert.encoder.layer.\1.attention.self.key.\2",
    ),
    (
        r"encoder\.layers\.(\d+)\.self_attn\.v_proj\.(\w+)",
        r"bert.encoder.layer.\1.attention.self.value.\2",
    ),
    (
        r"encoder\.layers\.(\d+)\.self_attn\.out_proj\.(\w+)",
        r"bert.encoder.layer.\1.attention.output.dense.\2",
    ),
    (
        r"encoder\.layers\.(\d+)\.self_attn_norm\.(\w+)",
        r"bert.encoder.layer.\1.attention.output.LayerNorm.\2",
    ),
    (r"encoder\.layers\.(\d+)\.ffn\.fc1\.(\w+)", r"bert.encoder.layer.\1.intermediate.dense.\2"),
    (r"encoder\.layers\.(\d+)\.ffn\.fc2\.(\w+)", r"bert.encoder.layer.\1.output.dense.\2"),
    (r"encoder\.layers\.(\d+)\.ffn_norm\.(\w+)", r"bert.encoder.layer.\1.output.LayerNorm.\2"),
    (r"mlm_head\.dense\.(\w+)", r"cls.predictions.transform.dense.\1"),
    (r"mlm_head\.norm\.(\w+)", r"cls.predictions.transform.LayerNorm.\1"),
    (r"mlm_head\.bias", MLM_BIAS),
]


def config_from_hf(config: dict[str, Any]) -> BertConfig:
    """The ``BertConfig`` of a transformers BERT ``config.json`` (already parsed).

    Raises:
        PretrainedFormatError: for a wrong type, an invalid value (e.g. ``hidden_size`` not
            divisible by the heads) or an unsupported setting.
    """
    require_settings(config, UNSUPPORTED, "BERT")
    defaults = BertConfig()
    values: dict[str, Any] = {}
    for name in _INT_FIELDS:
        values[name] = config_value(config, name, getattr(defaults, name), int)
    for name in _FLOAT_FIELDS:
        values[name] = float(config_value(config, name, getattr(defaults, name), (int, float)))
    values["hidden_act"] = config_value(config, "hidden_act", "gelu", str)
    values["pad_token_id"] = single_token_id(config, "pad_token_id", defaults.pad_token_id)
    try:
        return BertConfig(**values)
    except ValueError as e:
        raise PretrainedFormatError(f"config.json: {e}") from None


def config_to_hf(cfg: BertConfig) -> dict[str, Any]:
    """transformers' ``config.json`` content for ``cfg`` (loadable by ``BertConfig``)."""
    from archlab.config import to_dict

    out = to_dict(cfg)
    out.update(
        model_type=MODEL_TYPE,
        architectures=[ARCHITECTURE],
        tie_word_embeddings=True,
        is_decoder=False,
        add_cross_attention=False,
        dtype="float32",
    )
    return out


def hf_name(name: str) -> str:
    """The transformers name of an archlab ``Bert`` state-dict entry."""
    for pattern, template in _RULES:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, template, name)
    raise KeyError(f"no transformers name for archlab BERT parameter {name!r}")


def state_dict_to_hf(model: Bert) -> dict[str, Tensor]:
    """transformers' state dict (the tied decoder left out, as transformers 5 writes it)."""
    return {hf_name(k): v for k, v in model.state_dict().items()}


def state_dict_from_hf(tensors: dict[str, Tensor], cfg: BertConfig) -> dict[str, Tensor]:
    """archlab ``Bert`` state dict from a transformers checkpoint, checked against ``cfg``.

    Raises:
        PretrainedFormatError: missing or unexpected tensors, wrong shapes, untied decoder.
    """
    tensors = rename_legacy_norms(tensors)
    tensors = add_prefix_if_bare(tensors, "bert.", ("embeddings.", "encoder."))
    if MLM_BIAS not in tensors and "cls.predictions.decoder.bias" in tensors:
        tensors = {**tensors, MLM_BIAS: tensors["cls.predictions.decoder.bias"]}
    check_tied(tensors, WORD, ("cls.predictions.decoder.weight",))
    check_tied(tensors, MLM_BIAS, ("cls.predictions.decoder.bias",))
    with torch.device("meta"):
        names = {hf_name(k): k for k in Bert(cfg).state_dict()}
        shapes = {hf_name(k): v.shape for k, v in Bert(cfg).state_dict().items()}
    check_tensors(
        tensors,
        shapes,
        ignored_prefixes=("cls.predictions.decoder.", "bert.pooler.", "cls.seq_relationship."),
        ignored_suffixes=("position_ids", "token_type_ids"),
    )
    return {names[k]: v for k, v in tensors.items() if k in names}


def from_pretrained(directory: str) -> Bert:
    """Load a transformers BERT directory (``config.json`` + ``model.safetensors``) in fp32.

    Raises:
        PretrainedFormatError: naming the file and what was expected.
    """
    cfg = config_from_hf(read_config(directory, MODEL_TYPE))
    state = state_dict_from_hf(read_state_dict(directory), cfg)
    with torch.device("meta"):
        model = Bert(cfg)
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, assign=True)
    return model.eval()


def save_pretrained(model: Bert, directory: str) -> None:
    """Write ``config.json`` and ``model.safetensors`` for transformers' BERT."""
    write_pretrained(directory, config_to_hf(model.cfg), state_dict_to_hf(model))
