"""TODO title of snnk (snnk): public names."""

from archlab.papers.fields.snnk.model import SPEC, Snnk, SnnkConfig

__all__ = ["SPEC", "Snnk", "SnnkConfig"]
