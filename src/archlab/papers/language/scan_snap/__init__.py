"""Scan and Snap (Tian, Wang, Chen, Du, 2023): see ``model.py`` and README.md."""

from archlab.papers.language.scan_snap.data import SequenceClasses, SequenceClassesConfig
from archlab.papers.language.scan_snap.model import (
    SPEC,
    ScanSnapConfig,
    ScanSnapOutput,
    ScanSnapTransformer,
    ScanSnapYZ,
    build,
    next_token_loss,
    token_mixture,
)

__all__ = [
    "SPEC",
    "ScanSnapConfig",
    "ScanSnapOutput",
    "ScanSnapTransformer",
    "ScanSnapYZ",
    "SequenceClasses",
    "SequenceClassesConfig",
    "build",
    "next_token_loss",
    "token_mixture",
]
