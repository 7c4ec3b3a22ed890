"""The NeRV decoder pieces shared by NeRV, HNeRV and NeRV++.

A NeRV-family decoder maps a small feature map (a positional encoding of the frame index, 1x1,
for NeRV; a content-adaptive embedding for HNeRV) to a frame:

- ``Stem``: a 1x1 convolution to ``fc_dim * fh * fw`` channels, GELU, and the reshape
  ``B (C fh fw) h w -> B C (h fh) (w fw)`` (NeRV's "MLP" when the input is 1x1);
- ``UpBlock`` (NeRV's and HNeRV's block): ``k x k`` convolution to ``d_out * s^2`` channels,
  ``PixelShuffle(s)``, GELU;
- ``RGBHead``: a 3x3 convolution to RGB, then ``(tanh + 1) / 2``.

Widths shrink by ``reduce`` per block down to ``lower_width`` (``decoder_widths``), kernel
sizes grow from ``ks[0]`` by 2 per block up to ``ks[1]`` (``kernel_sizes``), as in the official
HNeRV code (``model_all.py``). ``solve_fc_dim`` picks the stem width that puts a model at a
parameter budget (the official ``train_nerv_all.py`` solves a quadratic approximation; we count
the real modules).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from archlab.errors import ArchlabError

BlockFactory = Callable[[int, int, int, int], nn.Module]
"""``(d_in, d_out, kernel, stride) -> module`` mapping ``(B, d_in, h, w)`` to
``(B, d_out, h * stride, w * stride)``."""


class PositionalEncoding(nn.Module):
    """NeRV's frame-index encoding ``[sin(b^l pi t), cos(b^l pi t)]_{l < L}`` as a 1x1 map.

    Args:
        base: ``b`` (NeRV: 1.25).
        levels: ``L`` (NeRV: 80); the output has ``2 L`` channels.
    """

    def __init__(self, base: float = 1.25, levels: int = 80):
        super().__init__()
        self.register_buffer(
            "freqs", base ** torch.arange(levels, dtype=torch.float64) * math.pi, persistent=False
        )

    @property
    def d_out(self) -> int:
        return 2 * self.freqs.numel()

    def forward(self, t: Tensor) -> Tensor:  # (B,) in [0, 1) -> (B, 2L, 1, 1)
        angles = t.double()[:, None] * self.freqs  # (B, L), in float64: b^l reaches 1e7
        return torch.cat([angles.sin(), angles.cos()], dim=1).to(torch.float32)[..., None, None]


class Stem(nn.Module):
    """1x1 convolution to ``fc_dim * fh * fw`` channels, GELU, reshape to ``fh x fw`` cells."""

    def __init__(self, d_in: int, fc_dim: int, fc_hw: tuple[int, int]):
        super().__init__()
        self.fc_hw = tuple(fc_hw)
        self.proj = nn.Conv2d(d_in, fc_dim * fc_hw[0] * fc_hw[1], 1)

    def forward(self, z: Tensor) -> Tensor:  # (B, d_in, h, w) -> (B, fc_dim, h fh, w fw)
        fh, fw = self.fc_hw
        x = F.gelu(self.proj(z))
        return rearrange(x, "B (C fh fw) h w -> B C (h fh) (w fw)", fh=fh, fw=fw)


class UpBlock(nn.Module):
    """NeRV's upsampling block: ``k x k`` conv to ``d_out s^2`` channels, PixelShuffle(s), GELU."""

    def __init__(self, d_in: int, d_out: int, kernel: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(d_in, d_out * stride * stride, kernel, padding=(kernel - 1) // 2)
        self.shuffle = nn.PixelShuffle(stride)

    def forward(self, x: Tensor) -> Tensor:  # (B, d_in, h, w) -> (B, d_out, h s, w s)
        return F.gelu(self.shuffle(self.conv(x)))


class RGBHead(nn.Module):
    """3x3 convolution to RGB and ``(tanh + 1) / 2`` (the official ``out_bias='tanh'``)."""

    def __init__(self, d_in: int):
        super().__init__()
        self.conv = nn.Conv2d(d_in, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:  # (B, D, H, W) -> (B, 3, H, W) in [0, 1]
        return (torch.tanh(self.conv(x)) + 1) / 2


def decoder_widths(fc_dim: int, n_blocks: int, reduce: float, lower_width: int) -> list[int]:
    """Channel widths ``[fc_dim, w_1, ..., w_n]``: ``w_i = max(round(w_{i-1} / reduce),
    lower_width)``."""
    widths = [fc_dim]
    for _ in range(n_blocks):
        widths.append(int(max(round(widths[-1] / reduce), lower_width)))
    return widths


def kernel_sizes(ks: tuple[int, int], n_blocks: int) -> list[int]:
    """Block ``i``'s kernel ``min(ks[0] + 2 i, ks[1])`` (HNeRV ``0_1_5``: 1, 3, 5, 5, 5)."""
    return [min(ks[0] + 2 * i, ks[1]) for i in range(n_blocks)]


class NeRVDecoder(nn.Module):
    """Stem, one block per stride, RGB head.

    Args:
        d_in: channels of the input map (``2 L`` for NeRV, the embedding's for HNeRV).
        fc_dim: stem width.
        fc_hw: ``(fh, fw)``: each input cell becomes ``fh x fw`` stem cells.
        strides: upsampling factor of each block.
        ks: ``(first, last)`` kernel sizes (``kernel_sizes``).
        reduce: width reduction per block.
        lower_width: smallest block width.
        block: the block factory (``UpBlock`` for NeRV/HNeRV; NeRV++ passes its own).
    """

    def __init__(
        self,
        d_in: int,
        fc_dim: int,
        fc_hw: tuple[int, int],
        strides: Sequence[int],
        ks: tuple[int, int],
        reduce: float,
        lower_width: int,
        block: BlockFactory = UpBlock,
    ):
        super().__init__()
        self.stem = Stem(d_in, fc_dim, fc_hw)
        widths = decoder_widths(fc_dim, len(strides), reduce, lower_width)
        kernels = kernel_sizes(ks, len(strides))
        self.blocks = nn.ModuleList(
            block(widths[i], widths[i + 1], kernels[i], s) for i, s in enumerate(strides)
        )
        self.head = RGBHead(widths[-1])
        self.widths = widths

    def forward(self, z: Tensor) -> Tensor:  # (B, d_in, h, w) -> (B, 3, H, W)
        x = self.stem(z)
        for blk in self.blocks:
            x = blk(x)
        return self.head(x)


def check_decoder_geometry(
    frame_size: tuple[int, int], grid: tuple[int, int], strides: Sequence[int], what: str
) -> None:
    """A decoder starting from a ``grid`` map and upsampling by ``strides`` must end at the
    frame size (raises ``ArchlabError`` naming the sizes)."""
    total = math.prod(strides)
    out = (grid[0] * total, grid[1] * total)
    if tuple(out) != tuple(frame_size):
        raise ArchlabError(
            f"{what}: a {grid[0]}x{grid[1]} map upsampled by strides {tuple(strides)} "
            f"(x{total}) gives {out[0]}x{out[1]} frames, expected {frame_size[0]}x{frame_size[1]}"
        )


def count_params(make: Callable[[], nn.Module]) -> int:
    """Parameters of ``make()`` built on the meta device (no memory, no initialisation cost)."""
    with torch.device("meta"):
        module = make()
    return sum(p.numel() for p in module.parameters())


def solve_fc_dim(
    size_at: Callable[[int], int], target: int, max_dim: int = 1 << 14, closest: bool = False
) -> int:
    """The largest stem width ``fc_dim`` whose model size ``size_at(fc_dim)`` is at most
    ``target`` (sizes grow with ``fc_dim``); the size then sits within one width step of the
    target. With ``closest``, the next width instead when its size is nearer the target (for
    matching two models whose width steps differ). Raises ``ArchlabError`` when even
    ``fc_dim = 1`` is over the budget."""
    if size_at(1) > target:
        raise ArchlabError(f"a parameter budget of {target:,} is below the smallest model "
                           f"({size_at(1):,} at fc_dim=1)")  # fmt: skip
    lo, hi = 1, max_dim
    while lo < hi:  # invariant: size_at(lo) <= target
        mid = (lo + hi + 1) // 2
        if size_at(mid) <= target:
            lo = mid
        else:
            hi = mid - 1
    if closest and lo < max_dim and size_at(lo + 1) - target < target - size_at(lo):
        return lo + 1
    return lo


__all__ = [
    "BlockFactory",
    "NeRVDecoder",
    "PositionalEncoding",
    "RGBHead",
    "Stem",
    "UpBlock",
    "check_decoder_geometry",
    "count_params",
    "decoder_widths",
    "kernel_sizes",
    "solve_fc_dim",
]
