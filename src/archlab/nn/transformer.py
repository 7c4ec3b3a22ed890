"""Transformer encoder and decoder layers (pre- or post-norm) and their stacks.

Vaswani et al., "Attention Is All You Need", 2017, arXiv 1706.03762. Post-norm (the paper, BERT,
BART): ``x = norm(x + dropout(sublayer(x)))``. Pre-norm (GPT-2, LLaMA; Xiong et al. 2020,
arXiv 2002.04745): ``x = x + dropout(sublayer(norm(x)))``, usually with a final norm after the
stack.

Parameter names are chosen so that transformers checkpoints map one to one:

=================  ===========================  ===========================  ==================
archlab            BART                         BERT                         GPT-2
=================  ===========================  ===========================  ==================
self_attn.q_proj   self_attn.q_proj             attention.self.query         attn.c_attn (split)
self_attn.out_proj self_attn.out_proj           attention.output.dense       attn.c_proj
self_attn_norm     self_attn_layer_norm         attention.output.LayerNorm   ln_1
cross_attn         encoder_attn                 --                           --
cross_attn_norm    encoder_attn_layer_norm      --                           --
ffn.fc1 / ffn.fc2  fc1 / fc2                    intermediate.dense /         mlp.c_fc / mlp.c_proj
                                                output.dense                 (transposed)
ffn_norm           final_layer_norm             output.LayerNorm             ln_2
=================  ===========================  ===========================  ==================

Embeddings (token, position, BART's ``layernorm_embedding``) belong to the model, not to these
blocks; the stacks take embeddings (B, T, D) and add only an optional final norm.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from archlab.nn.attention import KVCache, MultiHeadAttention, make_attention_mask
from archlab.nn.mlp import FeedForward, GLUFeedForward, apply_dropout
from archlab.nn.norm import make_norm
from archlab.nn.posenc import RotaryEmbedding


def _feed_forward(
    d_model: int, d_hidden: int, activation: str, glu: bool, bias: bool, dropout: float
) -> nn.Module:
    if glu:
        return GLUFeedForward(d_model, d_hidden, activation, bias=bias, dropout=dropout)
    return FeedForward(d_model, d_hidden, activation, bias=bias, dropout=dropout)


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each with a residual connection and a norm.

    Args:
        d_model: width D.
        n_heads: attention heads nh.
        d_hidden: feed-forward hidden width.
        n_kv_heads: key/value heads for grouped-query attention (default nh).
        d_head: head width hd (default D / nh).
        activation: feed-forward activation (a key of ``archlab.nn.mlp.ACTIVATIONS``).
        glu: use the gated feed-forward (``GLUFeedForward``; ``activation="silu"`` is SwiGLU).
        norm: ``"layernorm"`` or ``"rmsnorm"``.
        norm_eps: epsilon of the norms.
        norm_first: pre-norm (True) or post-norm (False).
        bias: biases in the attention and feed-forward projections.
        dropout: dropout on each sublayer's output before the residual sum.
        attn_dropout: dropout on the attention weights.
        activation_dropout: dropout on the feed-forward hidden activations.
        rotary: a ``RotaryEmbedding`` for the self-attention (None: no RoPE).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_hidden: int,
        n_kv_heads: int | None = None,
        d_head: int | None = None,
        activation: str = "gelu",
        glu: bool = False,
        norm: str = "layernorm",
        norm_eps: float = 1e-5,
        norm_first: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        rotary: RotaryEmbedding | None = None,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(
            d_model, n_heads, n_kv_heads, d_head, bias=bias, dropout=attn_dropout, rotary=rotary
        )
        self.self_attn_norm = make_norm(norm, d_model, norm_eps)
        self.ffn = _feed_forward(d_model, d_hidden, activation, glu, bias, activation_dropout)
        self.ffn_norm = make_norm(norm, d_model, norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        *,
        padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        positions: Tensor | None = None,
    ) -> Tensor:  # (B, T, D) -> (B, T, D)
        """Apply the layer.

        Args:
            x: input (B, T, D).
            padding_mask: (B, T), 1 = real token, 0 = padding.
            attn_mask: extra mask, bool True = attend, see ``MultiHeadAttention``.
            is_causal: causal self-attention.
            positions: rotary positions (T,) or (B, T).
        """
        h = self.self_attn_norm(x) if self.norm_first else x
        h = self.self_attn(
            h,
            padding_mask=padding_mask,
            attn_mask=attn_mask,
            is_causal=is_causal,
            positions=positions,
        )
        x = x + apply_dropout(self.dropout, h)
        if not self.norm_first:
            x = self.self_attn_norm(x)
        return _ffn_block(self, x)


def _ffn_block(layer: EncoderLayer | DecoderLayer, x: Tensor) -> Tensor:  # (B, T, D)
    if layer.norm_first:
        return x + apply_dropout(layer.dropout, layer.ffn(layer.ffn_norm(x)))
    return layer.ffn_norm(x + apply_dropout(layer.dropout, layer.ffn(x)))


class DecoderLayer(nn.Module):
    """Causal self-attention, optional cross-attention to a memory, then feed-forward.

    With ``cross_attention=False`` this is a GPT block. Arguments as ``EncoderLayer``, plus:

    Args:
        d_model: width D.
        n_heads: attention heads nh (self and cross).
        d_hidden: feed-forward hidden width.
        cross_attention: add a cross-attention sublayer (encoder-decoder models).
        d_memory: width of the memory that cross-attention reads (default D).
        n_kv_heads: key/value heads for grouped-query attention (default nh).
        d_head: head width hd (default D / nh).
        activation: feed-forward activation.
        glu: use the gated feed-forward.
        norm: ``"layernorm"`` or ``"rmsnorm"``.
        norm_eps: epsilon of the norms.
        norm_first: pre-norm (True) or post-norm (False).
        bias: biases in the attention and feed-forward projections.
        dropout: dropout on each sublayer's output before the residual sum.
        attn_dropout: dropout on the attention weights.
        activation_dropout: dropout on the feed-forward hidden activations.
        rotary: a ``RotaryEmbedding`` for the self-attention only (None: no RoPE).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_hidden: int,
        cross_attention: bool = True,
        d_memory: int | None = None,
        n_kv_heads: int | None = None,
        d_head: int | None = None,
        activation: str = "gelu",
        glu: bool = False,
        norm: str = "layernorm",
        norm_eps: float = 1e-5,
        norm_first: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        rotary: RotaryEmbedding | None = None,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(
            d_model, n_heads, n_kv_heads, d_head, bias=bias, dropout=attn_dropout, rotary=rotary
        )
        self.self_attn_norm = make_norm(norm, d_model, norm_eps)
        self.cross_attn: MultiHeadAttention | None = None
        self.cross_attn_norm: nn.Module | None = None
        if cross_attention:
            self.cross_attn = MultiHeadAttention(
                d_model, n_heads, n_kv_heads, d_head, d_memory, bias=bias, dropout=attn_dropout
            )
            self.cross_attn_norm = make_norm(norm, d_model, norm_eps)
        self.ffn = _feed_forward(d_model, d_hidden, activation, glu, bias, activation_dropout)
        self.ffn_norm = make_norm(norm, d_model, norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        padding_mask: Tensor | None = None,
        memory_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = True,
        positions: Tensor | None = None,
        self_cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
    ) -> Tensor:  # (B, T, D) -> (B, T, D)
        """Apply the layer.

        Args:
            x: decoder input (B, T, D).
            memory: encoder output (B, S, d_memory); required when the layer has cross-attention
                (it is not re-projected once ``cross_cache`` is filled).
            padding_mask: (B, S_self) 1 = real token for the self-attention keys, cached ones
                included (transformers' ``attention_mask`` during generation).
            memory_padding_mask: (B, S) 1 = real memory position.
            attn_mask: extra self-attention mask, bool True = attend.
            is_causal: causal self-attention (True for a decoder), bottom-right aligned.
            positions: rotary positions (T,) or (B, T).
            self_cache: ``KVCache`` of the self-attention (grows by T each call).
            cross_cache: ``KVCache`` of the cross-attention (filled on the first call).

        Raises:
            ValueError: if the layer has cross-attention and ``memory`` is None.
        """
        h = self.self_attn_norm(x) if self.norm_first else x
        h = self.self_attn(
            h,
            padding_mask=padding_mask,
            attn_mask=attn_mask,
            is_causal=is_causal,
            positions=positions,
            cache=self_cache,
        )
        x = x + apply_dropout(self.dropout, h)
        if not self.norm_first:
            x = self.self_attn_norm(x)
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("this DecoderLayer has cross-attention: pass memory (B, S, D)")
            h = self.cross_attn_norm(x) if self.norm_first else x
            h = self.cross_attn(h, memory, padding_mask=memory_padding_mask, cache=cross_cache)
            x = x + apply_dropout(self.dropout, h)
            if not self.norm_first:
                x = self.cross_attn_norm(x)
        return _ffn_block(self, x)


class Encoder(nn.Module):
    """A stack of ``EncoderLayer`` with an optional final norm (pre-norm models need one).

    Args:
        layers: the layers, applied in order.
        norm: applied after the last layer, or None.
    """

    def __init__(self, layers: Sequence[EncoderLayer], norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm

    def forward(
        self,
        x: Tensor,
        *,
        padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        positions: Tensor | None = None,
    ) -> Tensor:  # (B, T, D) -> (B, T, D)
        """Apply every layer; masks as ``EncoderLayer.forward`` (combined once for all layers)."""
        T = x.shape[1]
        mask, causal = make_attention_mask(T, T, padding_mask, attn_mask, is_causal, x.device)
        for layer in self.layers:
            x = layer(x, attn_mask=mask, is_causal=causal, positions=positions)
        return x if self.norm is None else self.norm(x)


class DecoderCache:
    """The self- and cross-attention ``KVCache`` of every layer of a ``Decoder``.

    Args:
        n_layers: number of decoder layers.
    """

    def __init__(self, n_layers: int):
        self.self_attn = [KVCache() for _ in range(n_layers)]
        self.cross_attn = [KVCache() for _ in range(n_layers)]

    @property
    def length(self) -> int:
        """Number of decoder positions already cached."""
        return self.self_attn[0].length if self.self_attn else 0

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (B',) of every cache, e.g. the beams chosen at a step."""
        for cache in self.self_attn + self.cross_attn:
            cache.reorder(index)

    def __repr__(self) -> str:
        return f"DecoderCache(n_layers={len(self.self_attn)}, length={self.length})"


class Decoder(nn.Module):
    """A stack of ``DecoderLayer`` with an optional final norm, and its cache.

    Args:
        layers: the layers, applied in order.
        norm: applied after the last layer (GPT-2's ``ln_f``), or None.
    """

    def __init__(self, layers: Sequence[DecoderLayer], norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm

    def new_cache(self) -> DecoderCache:
        """An empty cache for incremental decoding."""
        return DecoderCache(len(self.layers))

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        padding_mask: Tensor | None = None,
        memory_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = True,
        positions: Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> Tensor:  # (B, T, D) -> (B, T, D)
        """Apply every layer, reading and extending ``cache`` when given.

        Args:
            x: decoder input embeddings of the new positions (B, T, D).
            memory: encoder output (B, S, d_memory) for layers with cross-attention.
            padding_mask: (B, past + T), 1 = real token (cached positions included).
            memory_padding_mask: (B, S), 1 = real memory position.
            attn_mask: extra self-attention mask, bool True = attend, (T, past + T) or batched.
            is_causal: causal self-attention, bottom-right aligned.
            positions: rotary positions (T,) or (B, T); default ``past + arange(T)``.
            cache: a ``DecoderCache`` from ``new_cache`` (None: no caching).
        """
        T = x.shape[1]
        S = T + (cache.length if cache is not None else 0)
        mask, causal = make_attention_mask(T, S, padding_mask, attn_mask, is_causal, x.device)
        for i, layer in enumerate(self.layers):
            x = layer(
                x,
                memory,
                attn_mask=mask,
                memory_padding_mask=memory_padding_mask,
                is_causal=causal,
                positions=positions,
                self_cache=None if cache is None else cache.self_attn[i],
                cross_cache=None if cache is None else cache.cross_attn[i],
            )
        return x if self.norm is None else self.norm(x)
