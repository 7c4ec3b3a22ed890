"""BART (Lewis et al., 2019): see ``model.py``; Hugging Face format: ``hf.py``."""

from archlab.papers.language.bart.hf import (
    config_from_hf,
    config_to_hf,
    from_pretrained,
    save_pretrained,
    state_dict_from_hf,
    state_dict_to_hf,
)
from archlab.papers.language.bart.model import (
    SPEC,
    VARIANTS,
    Bart,
    BartConfig,
    Seq2SeqLMOutput,
    shift_tokens_right,
)

__all__ = [
    "SPEC",
    "VARIANTS",
    "Bart",
    "BartConfig",
    "Seq2SeqLMOutput",
    "config_from_hf",
    "config_to_hf",
    "from_pretrained",
    "save_pretrained",
    "shift_tokens_right",
    "state_dict_from_hf",
    "state_dict_to_hf",
]
