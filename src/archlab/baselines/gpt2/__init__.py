"""GPT-2 causal language model (baseline): see ``model.py``; Hugging Face format: ``hf.py``."""

from archlab.baselines.gpt2.hf import (
    config_from_hf,
    config_to_hf,
    from_pretrained,
    save_pretrained,
    state_dict_from_hf,
    state_dict_to_hf,
)
from archlab.baselines.gpt2.model import (
    GPT2,
    SPEC,
    VARIANTS,
    CausalLMOutput,
    GPT2Config,
    gpt2_block,
)

__all__ = [
    "GPT2",
    "SPEC",
    "VARIANTS",
    "CausalLMOutput",
    "GPT2Config",
    "config_from_hf",
    "config_to_hf",
    "from_pretrained",
    "gpt2_block",
    "save_pretrained",
    "state_dict_from_hf",
    "state_dict_to_hf",
]
