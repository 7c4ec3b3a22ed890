"""FFNet (Mehta et al. 2022): simple ResNet encoder + FPN-like up-head; public names."""

from archlab.papers.dense.ffnet.erf import erf_map, erf_radius
from archlab.papers.dense.ffnet.model import (
    HEADS,
    SPEC,
    VARIANTS,
    BasicBlock,
    Bottleneck,
    FFNet,
    FFNetConfig,
    FFNetUpHead,
    ResNetBackbone,
    UpBranch,
    mini,
)

__all__ = [
    "HEADS",
    "SPEC",
    "VARIANTS",
    "BasicBlock",
    "Bottleneck",
    "FFNet",
    "FFNetConfig",
    "FFNetUpHead",
    "ResNetBackbone",
    "UpBranch",
    "erf_map",
    "erf_radius",
    "mini",
]
