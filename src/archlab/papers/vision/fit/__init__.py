"""FIT (Chen and Li, 2023): see ``model.py`` and README.md."""

from archlab.papers.vision.fit.model import (
    FIT,
    SPEC,
    VARIANTS,
    CrossAttention,
    FITConfig,
    parse_layout,
)

__all__ = ["FIT", "SPEC", "VARIANTS", "CrossAttention", "FITConfig", "parse_layout"]
