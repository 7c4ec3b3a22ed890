"""Multi-scale self-guided attention (Sinha and Dolz, 2019): see ``model.py`` and README.md."""

from archlab.papers.dense.guided_attention_seg.model import (
    SPEC,
    VARIANTS,
    AttentionBranch,
    Backbone,
    ChannelAttention,
    DANet,
    DualAttentionHead,
    GuidedAttentionConfig,
    GuidedAttentionNet,
    GuidedOutputs,
    PositionAttention,
    ResNeXtBottleneck,
    SemanticModule,
    guided_loss,
)

__all__ = [
    "SPEC",
    "VARIANTS",
    "AttentionBranch",
    "Backbone",
    "ChannelAttention",
    "DANet",
    "DualAttentionHead",
    "GuidedAttentionConfig",
    "GuidedAttentionNet",
    "GuidedOutputs",
    "PositionAttention",
    "ResNeXtBottleneck",
    "SemanticModule",
    "guided_loss",
]
