"""TODO title of mgno (mgno): public names."""

from archlab.papers.fields.mgno.model import SPEC, Mgno, MgnoConfig

__all__ = ["SPEC", "Mgno", "MgnoConfig"]
