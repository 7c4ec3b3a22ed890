"""Positional encodings: learned (with an index offset), sinusoidal, and rotary (RoPE).

- Learned: a table of ``n_positions`` vectors indexed by position. BART stores ``offset = 2``
  extra rows in front (a fairseq legacy), so position ``p`` reads row ``p + 2``.
- Sinusoidal: Vaswani et al., "Attention Is All You Need", 2017, arXiv 1706.03762, section 3.5:
  ``PE[p, 2i] = sin(p / base**(2i/D))``, ``PE[p, 2i+1] = cos(p / base**(2i/D))``, base 10000
  (``interleaved=True``). transformers' Marian and the original tensor2tensor code use the same
  frequencies laid out as two halves ``[sin | cos]`` (``interleaved=False``). fairseq (and
  transformers' M2M100 / NLLB / FSMT) use the halves layout with the frequencies
  ``base**(-i / (D/2 - 1))`` instead of ``base**(-2i / D)``; that variant is not provided here.
- Rotary: Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021,
  arXiv 2104.09864. Each pair of features of q and k is rotated by the angle ``p * theta_i`` with
  ``theta_i = base**(-2i / d_rotary)``, so that ``<rot(q, m), rot(k, n)>`` depends on ``m - n``
  only. ``interleaved=False`` pairs feature ``i`` with ``i + d_rotary/2`` (GPT-NeoX, LLaMA and
  transformers' ``rotate_half``); ``interleaved=True`` pairs ``2i`` with ``2i + 1`` (RoFormer,
  GPT-J). ``d_rotary < hd`` rotates only the first ``d_rotary`` features (GPT-NeoX's rotary_pct).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _check_positions(positions: Tensor, n_positions: int) -> None:
    if positions.dtype.is_floating_point or positions.dtype == torch.bool:
        raise ValueError(f"positions must be an integer tensor; got dtype {positions.dtype}")
    if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= n_positions):
        raise ValueError(
            f"positions must lie in [0, {n_positions}) (the model's n_positions); got "
            f"[{int(positions.min())}, {int(positions.max())}]: the input is longer than the "
            "model's position table"
        )


class LearnedPositionalEmbedding(nn.Embedding):
    """A learned vector per position, read at row ``position + offset``.

    Args:
        n_positions: number of usable positions (BART's ``max_position_embeddings``).
        d_model: embedding width D.
        offset: extra leading rows (2 for BART); the table has ``n_positions + offset`` rows.
    """

    def __init__(self, n_positions: int, d_model: int, offset: int = 0):
        super().__init__(n_positions + offset, d_model)
        self.n_positions = n_positions
        self.offset = offset

    def forward(self, positions: Tensor) -> Tensor:  # (T,) or (B, T) -> (T, D) or (B, T, D)
        """Embeddings of ``positions``.

        Raises:
            ValueError: if a position is negative or not below ``n_positions``.
        """
        _check_positions(positions, self.n_positions)
        return super().forward(positions + self.offset)

    def extra_repr(self) -> str:
        return f"{self.n_positions}, {self.embedding_dim}, offset={self.offset}"


def sinusoidal_positions(
    n_positions: int, d_model: int, base: float = 10000.0, interleaved: bool = True
) -> Tensor:  # -> (n_positions, D)
    """The fixed sinusoidal table of "Attention Is All You Need".

    Args:
        n_positions: number of rows (positions 0 .. n_positions - 1).
        d_model: even width D.
        base: the 10000 of the paper.
        interleaved: ``True`` puts sin at even and cos at odd features (the paper);
            ``False`` puts all sines in the first half and cosines in the second (Marian,
            tensor2tensor).

    Raises:
        ValueError: if ``d_model`` is odd.
    """
    if d_model % 2:
        raise ValueError(f"sinusoidal positions need an even d_model; got {d_model}")
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (n_positions, 1)
    freq = torch.exp(-math.log(base) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    angle = pos * freq  # (n_positions, D/2)
    if interleaved:
        table = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2)  # (n_positions, D)
    else:
        table = torch.cat([angle.sin(), angle.cos()], dim=-1)  # (n_positions, D)
    return table.float()


class SinusoidalPositionalEmbedding(nn.Module):
    """Fixed sinusoidal positions (no parameters; the table is a non-persistent buffer).

    Args:
        n_positions: number of positions in the table.
        d_model: even width D.
        base: the 10000 of the paper.
        interleaved: layout, see ``sinusoidal_positions``.
    """

    def __init__(
        self, n_positions: int, d_model: int, base: float = 10000.0, interleaved: bool = True
    ):
        super().__init__()
        self.n_positions = n_positions
        table = sinusoidal_positions(n_positions, d_model, base, interleaved)
        self.register_buffer("table", table, persistent=False)

    def forward(self, positions: Tensor) -> Tensor:  # (T,) or (B, T) -> (T, D) or (B, T, D)
        """Encodings of ``positions``.

        Raises:
            ValueError: if a position is negative or not below ``n_positions``.
        """
        _check_positions(positions, self.n_positions)
        return self.table[positions]


def rotary_inv_freq(d_rotary: int, base: float = 10000.0) -> Tensor:  # -> (d_rotary/2,)
    """The rotary frequencies ``theta_i = base**(-2i / d_rotary)`` in float32."""
    if d_rotary % 2:
        raise ValueError(f"RoPE rotates feature pairs: d_rotary must be even; got {d_rotary}")
    exponent = torch.arange(0, d_rotary, 2, dtype=torch.int64).float() / d_rotary
    return 1.0 / (base**exponent)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor, interleaved: bool) -> Tensor:
    """Rotate the first ``2 * cos.shape[-1]`` features of x. x (B, nh, T, hd)."""
    r = 2 * cos.shape[-1]
    xr, xp = x[..., :r], x[..., r:]
    if interleaved:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]  # (B, nh, T, r/2) each
        out = torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).flatten(-2)
    else:
        x1, x2 = xr[..., : r // 2], xr[..., r // 2 :]  # (B, nh, T, r/2) each
        out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)  # (B, nh, T, r)
    return torch.cat([out, xp], dim=-1) if xp.shape[-1] else out  # (B, nh, T, hd)


def _cos_sin(positions: Tensor, inv_freq: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    angle = positions.to(inv_freq.dtype)[..., None] * inv_freq  # (T, r/2) or (B, T, r/2)
    if angle.dim() == 3:
        angle = angle[:, None]  # (B, 1, T, r/2): broadcast over heads
    return angle.cos().to(dtype), angle.sin().to(dtype)


def apply_rotary(
    q: Tensor,
    k: Tensor,
    positions: Tensor,
    base: float = 10000.0,
    interleaved: bool = False,
    d_rotary: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Rotate queries and keys by their positions (RoPE).

    Args:
        q: queries (B, nh, T, hd).
        k: keys (B, nkv, T, hd); the head counts may differ (grouped-query attention).
        positions: integer positions (T,) shared by the batch, or (B, T) per sequence.
        base: frequency base (10000 in RoFormer and LLaMA).
        interleaved: pair features (2i, 2i+1) instead of (i, i + d_rotary/2).
        d_rotary: number of leading features to rotate (default: all hd).

    Returns:
        The rotated ``(q, k)``, same shapes and dtypes.
    """
    inv_freq = rotary_inv_freq(d_rotary or q.shape[-1], base).to(q.device)
    cos, sin = _cos_sin(positions, inv_freq, q.dtype)
    return _rotate(q, cos, sin, interleaved), _rotate(k, cos, sin, interleaved)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding applied to q and k inside attention (no parameters).

    One instance can be shared by every layer; pass it as ``MultiHeadAttention(rotary=...)``.

    Args:
        d_head: head width hd.
        base: frequency base.
        interleaved: pair features (2i, 2i+1) instead of (i, i + d_rotary/2).
        d_rotary: number of leading features rotated (default hd).
    """

    def __init__(
        self,
        d_head: int,
        base: float = 10000.0,
        interleaved: bool = False,
        d_rotary: int | None = None,
    ):
        super().__init__()
        self.d_head = d_head
        self.d_rotary = d_rotary or d_head
        if self.d_rotary > d_head:
            raise ValueError(f"d_rotary ({self.d_rotary}) must not exceed d_head ({d_head})")
        self.base = base
        self.interleaved = interleaved
        self.register_buffer("inv_freq", rotary_inv_freq(self.d_rotary, base), persistent=False)

    def forward(self, q: Tensor, k: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Rotate q (B, nh, T, hd) and k (B, nkv, T, hd) by positions (T,) or (B, T)."""
        cos, sin = _cos_sin(positions, self.inv_freq, q.dtype)
        return _rotate(q, cos, sin, self.interleaved), _rotate(k, cos, sin, self.interleaved)

    def extra_repr(self) -> str:
        return (
            f"d_head={self.d_head}, d_rotary={self.d_rotary}, base={self.base}, "
            f"interleaved={self.interleaved}"
        )
