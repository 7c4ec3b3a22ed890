"""ConViT (d'Ascoli et al., 2021): see ``model.py`` and README.md; timm weights: ``convert.py``."""

from archlab.papers.vision.convit.convert import config_from_timm, from_timm, state_dict_from_timm
from archlab.papers.vision.convit.model import (
    GPSA,
    SPEC,
    VARIANTS,
    ConViT,
    ConViTConfig,
    GPSABlock,
    local_init_offsets,
    mean_attention_distance,
    patch_distances,
    relative_positions,
)

__all__ = [
    "GPSA",
    "SPEC",
    "VARIANTS",
    "ConViT",
    "ConViTConfig",
    "GPSABlock",
    "config_from_timm",
    "from_timm",
    "local_init_offsets",
    "mean_attention_distance",
    "patch_distances",
    "relative_positions",
    "state_dict_from_timm",
]
