"""MEDFE (Liu et al., 2020): see ``model.py`` and README.md."""

from archlab.papers.dense.medfe.model import (
    MEDFE,
    SPEC,
    VARIANTS,
    BilateralPropagation,
    BranchSupervision,
    FeatureEqualization,
    MEDFEConfig,
    MutualEqualization,
    gaussian_affinity,
)
from archlab.papers.dense.medfe.pconv import (
    PartialConv2d,
    PConvUNet,
    PConvUNetConfig,
    check_inpainting_input,
)

__all__ = [
    "MEDFE",
    "SPEC",
    "VARIANTS",
    "BilateralPropagation",
    "BranchSupervision",
    "FeatureEqualization",
    "MEDFEConfig",
    "MutualEqualization",
    "PConvUNet",
    "PConvUNetConfig",
    "PartialConv2d",
    "check_inpainting_input",
    "gaussian_affinity",
]
