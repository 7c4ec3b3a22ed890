"""Interpretability tools that work on any ``torch.nn.Module``: activation access by name
(``hooks``: capture, cache, patch, ablate, TransformerLens's names for ``archlab.nn``
transformers)."""

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

__all__ = [
    "ActivationCache",
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
