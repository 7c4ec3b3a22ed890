"""MAXIM (Tu et al., 2022): see ``model.py`` and README.md."""

from archlab.papers.dense.maxim.model import (
    MINI,
    S1,
    SPEC,
    VARIANTS,
    CrossGatingBlock,
    Maxim,
    MaximConfig,
    MultiAxisGmlpBlock,
    block_partition,
    block_reverse,
    grid_partition,
    grid_reverse,
)

__all__ = [
    "MINI",
    "S1",
    "SPEC",
    "VARIANTS",
    "CrossGatingBlock",
    "Maxim",
    "MaximConfig",
    "MultiAxisGmlpBlock",
    "block_partition",
    "block_reverse",
    "grid_partition",
    "grid_reverse",
]
