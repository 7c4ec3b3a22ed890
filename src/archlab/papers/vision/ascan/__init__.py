"""AsCAN (arXiv 2411.04967): asymmetric distribution of convolution and attention blocks."""

from archlab.papers.vision.ascan.model import (
    SPEC,
    VARIANTS,
    AsCAN,
    AsCANConfig,
    FusedMBConv,
    TransformerBlock,
    format_layout,
    is_asymmetric,
    parse_layout,
    reversed_layout,
    symmetric_layout,
)

__all__ = [
    "SPEC",
    "VARIANTS",
    "AsCAN",
    "AsCANConfig",
    "FusedMBConv",
    "TransformerBlock",
    "format_layout",
    "is_asymmetric",
    "parse_layout",
    "reversed_layout",
    "symmetric_layout",
]
