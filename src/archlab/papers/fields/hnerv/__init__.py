"""HNeRV: A Hybrid Neural Representation for Videos (hnerv): public names."""

from archlab.papers.fields.hnerv.model import (
    SPEC,
    VARIANTS,
    ConvNeXtBlock,
    ConvNeXtEncoder,
    HNeRV,
    HNeRVConfig,
    LayerNorm2d,
    interpolate_embeddings,
)

__all__ = [
    "SPEC",
    "VARIANTS",
    "ConvNeXtBlock",
    "ConvNeXtEncoder",
    "HNeRV",
    "HNeRVConfig",
    "LayerNorm2d",
    "interpolate_embeddings",
]
