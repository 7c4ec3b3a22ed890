"""Generic building blocks shared by the papers (explicit scalar arguments, no config objects).

Shape glossary: B batch, T time/sequence, D width, nh heads, hd head width, N tokens/patches,
S key/memory length. Every mask uses True / 1 = "may attend" (transformers' ``attention_mask``).
"""

from archlab.nn.attention import (
    KVCache,
    MultiHeadAttention,
    attention_with_weights,
    make_attention_mask,
)
from archlab.nn.conv import (
    ASPP,
    ConvNormAct,
    DoubleConv,
    ResidualBlock,
    SqueezeExcite,
    check_dense_input,
)
from archlab.nn.mlp import ACTIVATIONS, FeedForward, GLUFeedForward, get_activation
from archlab.nn.norm import LayerNorm, RMSNorm, make_norm
from archlab.nn.posenc import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEmbedding,
    apply_rotary,
    sinusoidal_positions,
)
from archlab.nn.transformer import Decoder, DecoderCache, DecoderLayer, Encoder, EncoderLayer

__all__ = [
    "ACTIVATIONS",
    "ASPP",
    "ConvNormAct",
    "DoubleConv",
    "ResidualBlock",
    "SqueezeExcite",
    "check_dense_input",
    "Decoder",
    "DecoderCache",
    "DecoderLayer",
    "Encoder",
    "EncoderLayer",
    "FeedForward",
    "GLUFeedForward",
    "KVCache",
    "LayerNorm",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "RMSNorm",
    "RotaryEmbedding",
    "SinusoidalPositionalEmbedding",
    "apply_rotary",
    "attention_with_weights",
    "get_activation",
    "make_attention_mask",
    "make_norm",
    "sinusoidal_positions",
]
