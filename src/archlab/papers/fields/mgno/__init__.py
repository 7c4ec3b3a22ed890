"""MgNO (mgno): multigrid-parameterised neural operators; public names."""

from archlab.papers.fields.mgno.model import (
    SPEC,
    MgConv,
    MgNO,
    MgNOConfig,
    ResolutionError,
    Restriction,
    Smoothing,
    check_resolution,
    coarsest_grid,
)

__all__ = [
    "SPEC",
    "MgConv",
    "MgNO",
    "MgNOConfig",
    "ResolutionError",
    "Restriction",
    "Smoothing",
    "check_resolution",
    "coarsest_grid",
]
