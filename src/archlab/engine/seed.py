"""Seeding and capture/restore of every random number generator the engine touches."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """All global RNG states as a nested structure of tensors, arrays and plain values."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``rng_state``."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def isolated_rng(cfg_seed: int | None = None) -> Iterator[None]:
    """Run the block under its own random state: every global generator (Python, NumPy, torch CPU
    and CUDA) is seeded with ``cfg_seed`` (if given) on entry and restored to the caller's state
    on exit, so library code that needs seeded randomness leaves the process as it found it."""
    saved = rng_state()
    try:
        if cfg_seed is not None:
            seed_everything(cfg_seed)
        yield
    finally:
        set_rng_state(saved)
