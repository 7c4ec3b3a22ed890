"""TODO title of hnerv (hnerv): public names."""

from archlab.papers.fields.hnerv.model import SPEC, Hnerv, HnervConfig

__all__ = ["SPEC", "Hnerv", "HnervConfig"]
