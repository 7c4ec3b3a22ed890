"""BERT encoder with MLM head (baseline): see ``model.py``; Hugging Face format: ``hf.py``."""

from archlab.baselines.bert.hf import (
    config_from_hf,
    config_to_hf,
    from_pretrained,
    save_pretrained,
    state_dict_from_hf,
    state_dict_to_hf,
)
from archlab.baselines.bert.model import (
    SPEC,
    VARIANTS,
    Bert,
    BertConfig,
    MaskedLMOutput,
    MLMHead,
)

__all__ = [
    "SPEC",
    "VARIANTS",
    "Bert",
    "BertConfig",
    "MLMHead",
    "MaskedLMOutput",
    "config_from_hf",
    "config_to_hf",
    "from_pretrained",
    "save_pretrained",
    "state_dict_from_hf",
    "state_dict_to_hf",
]
