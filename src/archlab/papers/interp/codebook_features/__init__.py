"""Codebook features (arXiv 2310.17230): vector-quantised codebooks inside a transformer."""

from archlab.papers.interp.codebook_features.model import (
    SPEC,
    CodebookConfig,
    CodebookError,
    CodebookLayer,
    CodebookTransformer,
    HeadCodebooks,
    similarity,
    snap,
)

__all__ = [
    "SPEC",
    "CodebookConfig",
    "CodebookError",
    "CodebookLayer",
    "CodebookTransformer",
    "HeadCodebooks",
    "similarity",
    "snap",
]
