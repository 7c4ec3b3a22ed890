"""M-SFANet / M-SegNet (Thanasutives et al. 2020) with the SFANet baseline: public names."""

from archlab.papers.dense.m_sfanet.model import (
    ARCHS,
    SPEC,
    VARIANTS,
    BackEnd,
    ContextualModule,
    SFANet,
    SFANetConfig,
    UnpoolBackEnd,
    VGGFrontEnd,
)

__all__ = [
    "ARCHS",
    "SPEC",
    "VARIANTS",
    "BackEnd",
    "ContextualModule",
    "SFANet",
    "SFANetConfig",
    "UnpoolBackEnd",
    "VGGFrontEnd",
]
