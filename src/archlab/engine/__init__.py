"""The training engine shared by every paper."""

from archlab.engine.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)
from archlab.engine.seed import isolated_rng, rng_state, seed_everything, set_rng_state
from archlab.engine.trainer import (
    FitResult,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
)

__all__ = [
    "CheckpointError",
    "FitResult",
    "isolated_rng",
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_checkpoint",
    "load_weights",
    "rng_state",
    "save_checkpoint",
    "save_weights",
    "seed_everything",
    "set_rng_state",
]
