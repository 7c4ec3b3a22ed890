"""Pointer Networks (Vinyals, Fortunato, Jaitly, 2015): see ``model.py`` and README.md."""

from archlab.papers.language.pointer_net.model import (
    SPEC,
    Decoded,
    PointerAttention,
    PointerNet,
    PointerNetConfig,
    allowed_positions,
    pointer_loss,
)

__all__ = [
    "SPEC",
    "Decoded",
    "PointerAttention",
    "PointerNet",
    "PointerNetConfig",
    "allowed_positions",
    "pointer_loss",
]
