"""TODO title of nervpp (nervpp): public names."""

from archlab.papers.fields.nervpp.model import SPEC, Nervpp, NervppConfig

__all__ = ["SPEC", "Nervpp", "NervppConfig"]
