"""PLS-Net (Lee et al. 2019; Bouget et al. 2020): see ``model.py`` and README.md."""

from archlab.papers.dense.pls_net.model import (
    DRDB,
    SPEC,
    VARIANTS,
    DecoderBlock,
    DSConv,
    PlsNet,
    PlsNetConfig,
    n_params,
)

__all__ = [
    "DRDB",
    "SPEC",
    "VARIANTS",
    "DSConv",
    "DecoderBlock",
    "PlsNet",
    "PlsNetConfig",
    "n_params",
]
