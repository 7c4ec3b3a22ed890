"""MLP-Mixer baseline: see ``model.py``."""

from archlab.baselines.mlp_mixer.model import (
    SPEC,
    VARIANTS,
    MixerBlock,
    MlpMixer,
    MlpMixerConfig,
    from_timm,
)

__all__ = ["SPEC", "VARIANTS", "MixerBlock", "MlpMixer", "MlpMixerConfig", "from_timm"]
