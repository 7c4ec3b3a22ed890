"""MEDUSA (Aboutalebi et al. 2021): see ``model.py`` and README.md."""

from archlab.papers.dense.medusa_med.model import (
    SPEC,
    VARIANTS,
    AttentionHead,
    Medusa,
    MedusaConfig,
    n_params,
)

__all__ = ["SPEC", "VARIANTS", "AttentionHead", "Medusa", "MedusaConfig", "n_params"]
