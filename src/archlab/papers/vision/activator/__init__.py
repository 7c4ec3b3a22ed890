"""Activator (arXiv 2405.15953): a ViT whose attention is replaced by a GLU MLP."""

from archlab.papers.vision.activator.model import (
    SPEC,
    VARIANTS,
    Activator,
    ActivatorBlock,
    ActivatorConfig,
    TokenGLU,
)

__all__ = ["SPEC", "VARIANTS", "Activator", "ActivatorBlock", "ActivatorConfig", "TokenGLU"]
