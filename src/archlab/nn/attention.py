"""Multi-head attention on ``F.scaled_dot_product_attention``, with masks, GQA, RoPE and a KV cache.

Vaswani et al., "Attention Is All You Need", 2017, arXiv 1706.03762 (scaled dot-product and
multi-head attention); Ainslie et al., "GQA", 2023, arXiv 2305.13245 (grouped-query heads: query
head ``h`` reads key/value head ``h // (nh / nkv)``, as transformers' ``repeat_kv``).

Mask conventions (every mask here uses True / 1 = "may attend", as transformers'
``attention_mask`` and SDPA's boolean ``attn_mask`` do, which is the OPPOSITE of
``torch.nn.MultiheadAttention``'s ``key_padding_mask``):

- ``padding_mask`` (B, S): 1 for a real key, 0 for padding. With a cache, S counts the cached
  keys too (the full length so far, like transformers' ``attention_mask`` during generation).
- ``attn_mask``: bool (T, S), (B, T, S) or (B, nh, T, S), True = attend; or a float mask that is
  added to the scores.
- ``is_causal``: query ``i`` sits at absolute position ``S - T + i`` and attends to keys
  ``<= S - T + i`` (bottom-right aligned), which is what incremental decoding with a cache needs
  (a single query at position t sees every key up to t). SDPA's own ``is_causal`` is top-left
  aligned, so it is used only when T == S.

A query whose keys are all masked (a left-padding position under a causal mask, for example)
gets an all-zero output and all-zero weights, as SDPA returns; it never produces NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.nn.posenc import RotaryEmbedding


class KVCache:
    """Keys and values of one attention module, kept between decoding steps.

    Self-attention appends the new step's keys/values (``update``); cross-attention fills the
    cache once from the encoder memory and then reuses it. ``reorder`` selects batch rows (beam
    search). Tensors are concatenated along time, as transformers' ``DynamicCache`` does, which
    keeps the cache safe under autograd.
    """

    def __init__(self):
        self.k: Tensor | None = None  # (B, nkv, S, hd)
        self.v: Tensor | None = None  # (B, nkv, S, hd)

    @property
    def length(self) -> int:
        """Number of cached positions S (0 when empty)."""
        return 0 if self.k is None else self.k.shape[-2]

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append k, v (B, nkv, T, hd) and return all keys and values (B, nkv, S + T, hd)."""
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=-2)
            self.v = torch.cat([self.v, v], dim=-2)
        return self.k, self.v

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (B',) in that order, e.g. the beams chosen at a step."""
        if self.k is not None:
            self.k = self.k.index_select(0, index)
            self.v = self.v.index_select(0, index)

    def __repr__(self) -> str:
        shape = None if self.k is None else tuple(self.k.shape)
        return f"KVCache(k={shape})"


def make_attention_mask(
    q_len: int,
    k_len: int,
    padding_mask: Tensor | None = None,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    device: torch.device | None = None,
) -> tuple[Tensor | None, bool]:
    """Combine padding, explicit and causal masks into one SDPA mask.

    Args:
        q_len: number of queries T.
        k_len: number of keys S (cached ones included).
        padding_mask: (B, S) bool or 0/1 integers, True / 1 = real key.
        attn_mask: bool (T, S), (B, T, S) or (B, nh, T, S), True = attend; or float, added.
        is_causal: bottom-right aligned causal mask (query i attends keys <= S - T + i).
        device: where to build the causal mask when no other mask is given.

    Returns:
        ``(mask, sdpa_is_causal)``: a mask broadcastable to (B, nh, T, S) or None, and whether
        SDPA's own ``is_causal`` flag should be set instead (only when T == S and nothing else
        masks).

    Raises:
        ValueError: if ``padding_mask`` is not (B, S).
    """
    mask = None
    if attn_mask is not None:
        mask = attn_mask if attn_mask.dim() != 3 else attn_mask[:, None]  # (B, 1, T, S)
    if padding_mask is not None:
        if padding_mask.dim() != 2 or padding_mask.shape[-1] != k_len:
            raise ValueError(
                f"padding_mask must have shape (B, S) with S = {k_len} keys (cache included); "
                f"got {tuple(padding_mask.shape)}"
            )
        pad = padding_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
        mask = pad if mask is None else _and(mask, pad)
    if is_causal and q_len > 1:
        if mask is None and q_len == k_len:
            return None, True
        if mask is not None:
            device = mask.device
        causal = torch.ones(q_len, k_len, dtype=torch.bool, device=device)
        causal = causal.tril(diagonal=k_len - q_len)  # (T, S)
        mask = causal if mask is None else _and(mask, causal)
    return mask, False


def _and(a: Tensor, b: Tensor) -> Tensor:
    """Intersect two masks (bool: True = attend; float: additive)."""
    if a.dtype == torch.bool and b.dtype == torch.bool:
        return a & b
    fa = a if a.dtype != torch.bool else _bool_to_additive(a, b.dtype)
    fb = b if b.dtype != torch.bool else _bool_to_additive(b, a.dtype)
    return fa + fb


def _bool_to_additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, -math.inf)


def attention_with_weights(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Explicit ``softmax(q kᵀ * scale + mask) v`` that also returns the attention weights.

    Same arguments and result as ``F.scaled_dot_product_attention`` (bool masks True = attend;
    ``is_causal`` top-left aligned; key/value heads may divide the query heads), for analyses
    that need the attention map, which SDPA does not return.

    Args:
        q: queries (B, nh, T, hd).
        k: keys (B, nkv, S, hd).
        v: values (B, nkv, S, hd).
        attn_mask: broadcastable to (B, nh, T, S); bool (True = attend) or float (added).
        dropout_p: dropout on the weights used for the output.
        is_causal: top-left aligned causal mask (query i attends keys <= i).
        scale: score scale, default ``1 / sqrt(hd)``.

    Returns:
        ``(out, weights)``: out (B, nh, T, hd) and the softmax weights (B, nh, T, S) before
        dropout; rows with no allowed key are all zero.
    """
    n_rep = q.shape[1] // k.shape[1]
    if n_rep > 1:
        k = k.repeat_interleave(n_rep, dim=1)  # (B, nh, S, hd)
        v = v.repeat_interleave(n_rep, dim=1)  # (B, nh, S, hd)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, nh, T, S)
    if is_causal:
        causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).tril()
        attn_mask = causal if attn_mask is None else _and(attn_mask, causal)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, -math.inf)
        else:
            scores = scores + attn_mask
    weights = torch.softmax(scores, dim=-1)
    weights = weights.masked_fill(weights.isnan(), 0.0)  # fully masked rows -> 0, as SDPA
    out = F.dropout(weights, dropout_p) @ v if dropout_p > 0 else weights @ v  # (B, nh, T, hd)
    return out, weights


class MultiHeadAttention(nn.Module):
    """Multi-head self- or cross-attention with grouped-query heads, RoPE and a KV cache.

    Projections are ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj`` (``nn.Linear``), so that
    BART, BERT and GPT-2 weights map one to one (GPT-2's fused ``c_attn`` is split in three).

    Args:
        d_model: width D of the queries' input and of the output.
        n_heads: number of query heads nh.
        n_kv_heads: number of key/value heads nkv (grouped-query attention); must divide
            ``n_heads``. Default ``n_heads`` (plain multi-head attention); 1 is multi-query.
        d_head: head width hd. Default ``d_model // n_heads``; may be set so that the attention
            width ``nh * hd`` differs from D.
        d_kv_input: width of the keys' and values' input for cross-attention from another width
            (an encoder of a different size). Default D.
        bias: whether the four projections have biases.
        dropout: dropout on the attention weights during training.
        scale: score scale; default ``1 / sqrt(hd)``.
        rotary: a ``RotaryEmbedding`` applied to q and k in self-attention (None: no RoPE).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        d_head: int | None = None,
        d_kv_input: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        scale: float | None = None,
        rotary: RotaryEmbedding | None = None,
    ):
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if n_heads < 1 or n_kv_heads < 1 or n_heads % n_kv_heads:
            raise ValueError(
                f"n_kv_heads must be a positive divisor of n_heads={n_heads}; got {n_kv_heads}"
            )
        if d_head is None:
            if d_model % n_heads:
                raise ValueError(
                    f"d_model={d_model} must be divisible by n_heads={n_heads} (or pass d_head)"
                )
            d_head = d_model // n_heads
        if rotary is not None and rotary.d_head != d_head:
            raise ValueError(f"rotary.d_head={rotary.d_head} must equal the head width {d_head}")
        d_kv_input = d_model if d_kv_input is None else d_kv_input
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.d_head = d_head
        self.dropout = dropout
        self.scale = scale
        self.q_proj = nn.Linear(d_model, n_heads * d_head, bias=bias)
        self.k_proj = nn.Linear(d_kv_input, n_kv_heads * d_head, bias=bias)
        self.v_proj = nn.Linear(d_kv_input, n_kv_heads * d_head, bias=bias)
        self.out_proj = nn.Linear(n_heads * d_head, d_model, bias=bias)
        self.rotary = rotary

    def _heads(self, x: Tensor, n: int) -> Tensor:  # (B, T, n * hd) -> (B, n, T, hd)
        return x.view(x.shape[0], x.shape[1], n, self.d_head).transpose(1, 2)

    @property
    def _qkv_sizes(self) -> list[int]:
        return [self.n_heads * self.d_head] + [self.n_kv_heads * self.d_head] * 2

    def _fused_qkv(self) -> tuple[Tensor, Tensor | None]:
        """Concatenated q/k/v weight and bias, rebuilt whenever a parameter changes."""
        projs = (self.q_proj, self.k_proj, self.v_proj)
        tensors = [p.weight for p in projs] + [p.bias for p in projs if p.bias is not None]
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)
        if getattr(self, "_qkv_key", None) != key:
            weight = torch.cat([p.weight for p in projs])  # (nh*hd + 2*nkv*hd, D)
            bias = torch.cat([p.bias for p in projs]) if projs[0].bias is not None else None
            self._qkv_cache, self._qkv_key = (weight, bias), key
        return self._qkv_cache

    def forward(
        self,
        x: Tensor,
        kv: Tensor | None = None,
        *,
        padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
        need_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend from x to itself (``kv=None``) or to ``kv`` (cross-attention).

        Args:
            x: queries' input (B, T, D).
            kv: keys' and values' input (B, S, d_kv_input) for cross-attention, else None.
            padding_mask: (B, S) True / 1 = real key; with a self-attention cache S includes
                the cached positions.
            attn_mask: bool (T, S), (B, T, S) or (B, nh, T, S), True = attend; or float, added.
            is_causal: causal self-attention, bottom-right aligned when a cache holds the past.
            positions: rotary positions of the queries, (T,) or (B, T); default
                ``cache.length + arange(T)``. Ignored without rotary.
            cache: a ``KVCache``. Self-attention appends this step's keys and values;
                cross-attention computes them from ``kv`` on the first call and reuses them.
            need_weights: also return the attention weights (B, nh, T, S), computed by the
                explicit ``attention_with_weights`` path instead of SDPA.

        Returns:
            The output (B, T, D), or ``(output, weights)`` when ``need_weights``.
        """
        B, T, _ = x.shape
        if kv is None and not torch.is_grad_enabled():
            # inference: one fused GEMM for q, k and v (weights concatenated once, cached)
            w, b = self._fused_qkv()
            q, k, v = F.linear(x, w, b).split(self._qkv_sizes, dim=-1)  # (B, T, *)
            q = self._heads(q, self.n_heads)  # (B, nh, T, hd)
            k = self._heads(k, self.n_kv_heads)  # (B, nkv, T, hd)
            v = self._heads(v, self.n_kv_heads)  # (B, nkv, T, hd)
        elif kv is None:
            q = self._heads(self.q_proj(x), self.n_heads)  # (B, nh, T, hd)
            k = self._heads(self.k_proj(x), self.n_kv_heads)  # (B, nkv, T, hd)
            v = self._heads(self.v_proj(x), self.n_kv_heads)  # (B, nkv, T, hd)
        else:
            q = self._heads(self.q_proj(x), self.n_heads)  # (B, nh, T, hd)
        if kv is None:
            if self.rotary is not None:
                if positions is None:
                    past = 0 if cache is None else cache.length
                    positions = torch.arange(past, past + T, device=x.device)
                q, k = self.rotary(q, k, positions)
            if cache is not None:
                k, v = cache.update(k, v)  # (B, nkv, S, hd)
        else:
            if is_causal:
                raise ValueError("is_causal applies to self-attention only (kv must be None)")
            if cache is not None and cache.length:
                k, v = cache.k, cache.v  # (B, nkv, S, hd), computed at the first step
            else:
                k = self._heads(self.k_proj(kv), self.n_kv_heads)  # (B, nkv, S, hd)
                v = self._heads(self.v_proj(kv), self.n_kv_heads)  # (B, nkv, S, hd)
                if cache is not None:
                    cache.update(k, v)
        mask, sdpa_causal = make_attention_mask(
            T, k.shape[-2], padding_mask, attn_mask, is_causal, device=x.device
        )
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            out, weights = attention_with_weights(
                q, k, v, mask, dropout_p, is_causal=sdpa_causal, scale=self.scale
            )
        else:
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                dropout_p=dropout_p,
                is_causal=sdpa_causal,
                scale=self.scale,
                enable_gqa=self.n_kv_heads != self.n_heads,
            )  # (B, nh, T, hd)
        out = self.out_proj(out.transpose(1, 2).reshape(B, T, self.n_heads * self.d_head))
        return (out, weights) if need_weights else out  # (B, T, D)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, "
            f"d_head={self.d_head}, dropout={self.dropout}"
        )
