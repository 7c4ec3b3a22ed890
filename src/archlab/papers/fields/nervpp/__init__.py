"""NeRV++: An Enhanced Implicit Neural Video Representation (nervpp): public names."""

from archlab.papers.fields.nervpp.model import (
    SCRB,
    SPEC,
    VARIANTS,
    BilinearSkip,
    NeRVPP,
    NeRVPPBlock,
    NeRVPPConfig,
)

__all__ = ["SCRB", "SPEC", "VARIANTS", "BilinearSkip", "NeRVPP", "NeRVPPBlock", "NeRVPPConfig"]
