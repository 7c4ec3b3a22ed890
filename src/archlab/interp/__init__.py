"""Interpretability tools that work on any ``torch.nn.Module``: activation access by name
(``hooks``: capture, cache, patch, ablate, TransformerLens's names for ``archlab.nn``
transformers) and sparse dictionaries (``dictionary``: SAEs and transcoders, with ``sae_lens``
interoperability in ``saelens``)."""

from archlab.interp.dictionary import (
    ActivationStore,
    DictionaryConfig,
    DictionaryError,
    SparseDictionary,
    ce_loss_recovered,
    dictionary_loss,
    dictionary_metrics,
)
from archlab.interp.hooks import (
    ActivationCache,
    HookError,
    HookPoint,
    ablate,
    capture,
    hook_points,
    hooks,
    patch,
    resolve,
    run_with_cache,
)
from archlab.interp.saelens import from_sae_lens, load_sae_lens, save_sae_lens, to_sae_lens

__all__ = [
    "ActivationCache",
    "ActivationStore",
    "DictionaryConfig",
    "DictionaryError",
    "SparseDictionary",
    "ce_loss_recovered",
    "dictionary_loss",
    "dictionary_metrics",
    "from_sae_lens",
    "load_sae_lens",
    "save_sae_lens",
    "to_sae_lens",
    "HookError",
    "HookPoint",
    "ablate",
    "capture",
    "hook_points",
    "hooks",
    "patch",
    "resolve",
    "run_with_cache",
]
