"""U-Net in 2-D and 3-D (plain and residual blocks): see ``model.py``."""

from archlab.baselines.unet.model import (
    SPEC,
    VARIANTS,
    MonaiBasicUNet,
    UNet,
    UNetConfig,
    n_params,
)

__all__ = ["SPEC", "VARIANTS", "MonaiBasicUNet", "UNet", "UNetConfig", "n_params"]
