"""HybridGNet (Gaggion et al., 2022): see ``model.py`` and README.md."""

from archlab.papers.dense.hybridgnet.model import (
    SPEC,
    VARIANTS,
    ChebConv,
    HybridGNet,
    HybridGNetConfig,
    HybridGNetOutput,
    pooling_matrices,
    sample_windows,
    scaled_laplacian,
)

__all__ = [
    "SPEC",
    "VARIANTS",
    "ChebConv",
    "HybridGNet",
    "HybridGNetConfig",
    "HybridGNetOutput",
    "pooling_matrices",
    "sample_windows",
    "scaled_laplacian",
]
