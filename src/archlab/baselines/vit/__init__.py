"""ViT and DeiT (distillation token) baseline: see ``model.py``; timm weights: ``convert.py``."""

from archlab.baselines.vit.convert import config_from_timm, from_timm, state_dict_from_timm
from archlab.baselines.vit.model import (
    SPEC,
    VARIANTS,
    ViT,
    ViTConfig,
    drop_bias,
    init_vit_weights,
    vit_block,
)

__all__ = [
    "SPEC",
    "VARIANTS",
    "ViT",
    "ViTConfig",
    "config_from_timm",
    "drop_bias",
    "from_timm",
    "init_vit_weights",
    "state_dict_from_timm",
    "vit_block",
]
