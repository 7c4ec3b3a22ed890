"""Lossless Compression with Probabilistic Circuits (arXiv 2111.11632): a hidden Chow-Liu tree
circuit learned by EM, and a lossless image coder on its exact conditionals."""

from archlab.papers.fields.pc_compression.model import (
    HCLT,
    SPEC,
    CompressionInputError,
    EMSchedule,
    HCLTConfig,
    chow_liu_tree,
    em_fit,
    fit_hclt,
    mutual_information,
)

__all__ = [
    "HCLT",
    "SPEC",
    "CompressionInputError",
    "EMSchedule",
    "HCLTConfig",
    "chow_liu_tree",
    "em_fit",
    "fit_hclt",
    "mutual_information",
]
