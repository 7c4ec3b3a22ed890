"""ParaTransCNN (Sun, Xu, Duan, 2024): see ``model.py`` and README.md."""

from archlab.papers.dense.paratranscnn.model import (
    SPEC,
    VARIANTS,
    ParaTransCNN,
    ParaTransCNNConfig,
    PyramidTransformerLayer,
    ResNetEncoder,
    TransformerStage,
)

__all__ = [
    "SPEC",
    "VARIANTS",
    "ParaTransCNN",
    "ParaTransCNNConfig",
    "PyramidTransformerLayer",
    "ResNetEncoder",
    "TransformerStage",
]
