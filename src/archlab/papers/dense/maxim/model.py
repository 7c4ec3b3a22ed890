"""MAXIM: Multi-Axis MLP for Image Processing.

Zhengzhong Tu, Hossein Talebi, Han Zhang, Feng Yang, Peyman Milanfar, Alan Bovik, Yinxiao Li,
CVPR 2022, arXiv 2201.02973. Paper card, deviations and measured results: README.md beside this
file.

A U-Net of MLP-based blocks for image restoration, after the official Flax code
(google-research/maxim, ``maxim/models/maxim.py``), one stage:

- **Multi-axis gated MLP block** (``MultiAxisGmlpBlock``, the paper's MAB, Fig. 3): LayerNorm,
  a dense layer to ``input_proj_factor x C`` channels, GELU, then two heads on half the channels
  each. The *local* head splits the map into non-overlapping ``b x b`` blocks and the *global*
  head into a ``d x d`` grid of dilated windows (``block_partition`` / ``grid_partition``, equal
  to timm's ``window_partition`` / ``grid_partition``); each head is a gMLP layer whose spatial
  gating unit mixes tokens along its axis (``u * (Dense_spatial(LN(v)) + 1)``). Heads are
  concatenated, projected back to ``C`` and added to the input.
- **Residual channel attention block** (``RCAB``) after each MAB: LN, conv3x3, leaky ReLU,
  conv3x3, squeeze-excitation, residual.
- **Cross-gating block** (``CrossGatingBlock``, Fig. 4): two streams X, Y each produce multi-axis
  spatial gating weights (``SpatialGatingWeights``); ``X' = X * G(Y)``, ``Y' = Y * G(X)``, with
  residuals. It fuses the multi-scale encoder skips with the bottleneck's global features.
- Bottleneck blocks (MAB + ``RDCAB``), encoder blocks with 4x4 stride-2 down-convolutions,
  decoder blocks with 2x2 transposed convolutions, multi-scale inputs/outputs (``n_supervision_
  scales``) and a residual output (the network predicts a correction of its input).

The model is fully convolutional in the sense of the paper: it runs at any size whose every
scale is divisible by the block and grid sizes (``MaximConfig.multiple``); other sizes raise a
``ValueError`` naming the multiple.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.nn.conv import SqueezeExcite, check_dense_input
from archlab.registry import PaperSpec

Size2 = tuple[int, int]


# ---------------------------------------------------------------------------------------------
# Partitions (NHWC), equal to timm.models.maxxvit's window_partition / grid_partition.


def _check_divisible(h: int, w: int, size: Size2, what: str) -> None:
    if h % size[0] or w % size[1]:
        raise ValueError(
            f"{what} partition: feature map {h}x{w} is not divisible by {size[0]}x{size[1]}"
        )


def block_partition(x: Tensor, block_size: Size2) -> Tensor:
    """Non-overlapping ``b x b`` blocks: ``(B, H, W, C) -> (B * H/b0 * W/b1, b0, b1, C)``."""
    B, H, W, C = x.shape
    b0, b1 = block_size
    _check_divisible(H, W, block_size, "block")
    x = x.view(B, H // b0, b0, W // b1, b1, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, b0, b1, C)


def block_reverse(windows: Tensor, block_size: Size2, image_size: Size2) -> Tensor:
    """Inverse of ``block_partition``: ``(B * n, b0, b1, C) -> (B, H, W, C)``."""
    H, W = image_size
    b0, b1 = block_size
    C = windows.shape[-1]
    x = windows.view(-1, H // b0, W // b1, b0, b1, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


def grid_partition(x: Tensor, grid_size: Size2) -> Tensor:
    """A ``d x d`` grid of dilated windows: window ``(i, j)`` holds the pixels at offset
    ``(i, j)`` of every one of the ``d0 x d1`` grid cells.
    ``(B, H, W, C) -> (B * H/d0 * W/d1, d0, d1, C)``."""
    B, H, W, C = x.shape
    d0, d1 = grid_size
    _check_divisible(H, W, grid_size, "grid")
    x = x.view(B, d0, H // d0, d1, W // d1, C)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(-1, d0, d1, C)


def grid_reverse(windows: Tensor, grid_size: Size2, image_size: Size2) -> Tensor:
    """Inverse of ``grid_partition``: ``(B * n, d0, d1, C) -> (B, H, W, C)``."""
    H, W = image_size
    d0, d1 = grid_size
    C = windows.shape[-1]
    x = windows.view(-1, H // d0, W // d1, d0, d1, C)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(-1, H, W, C)


def partition(x: Tensor, size: Size2, axis: str) -> Tensor:
    """``(B, H, W, C) -> (B * n, T, C)`` tokens of each block (``axis="block"``) or grid window
    (``axis="grid"``), ``T = size[0] * size[1]``."""
    windows = block_partition(x, size) if axis == "block" else grid_partition(x, size)
    return windows.flatten(1, 2)


def unpartition(tokens: Tensor, size: Size2, axis: str, image_size: Size2) -> Tensor:
    """Inverse of ``partition``: ``(B * n, T, C) -> (B, H, W, C)``."""
    windows = tokens.unflatten(1, size)
    if axis == "block":
        return block_reverse(windows, size, image_size)
    return grid_reverse(windows, size, image_size)


# ---------------------------------------------------------------------------------------------
# Blocks.


def _dense(d_in: int, d_out: int, bias: bool = True, std: float | None = 0.02) -> nn.Linear:
    """A dense layer; ``std`` -> the official normal(0.02) kernel init (None: torch default)."""
    layer = nn.Linear(d_in, d_out, bias=bias)
    if std is not None:
        nn.init.normal_(layer.weight, std=std)
        if bias:
            nn.init.zeros_(layer.bias)
    return layer


def _layer_norm(d: int) -> nn.LayerNorm:
    return nn.LayerNorm(d, eps=1e-6)  # Flax's default epsilon


def _gelu(x: Tensor) -> Tensor:
    return F.gelu(x, approximate="tanh")  # jax.nn.gelu's default (tanh approximation)


class SpatialGatingUnit(nn.Module):
    """gMLP spatial gating along the token axis: ``u * (Dense_T(LN(v)) + 1)``.

    ``(N, T, D) -> (N, T, D / 2)``; the dense layer mixes the ``T`` tokens of each window.
    """

    def __init__(self, d: int, n_tokens: int, bias: bool = True):
        super().__init__()
        self.norm = _layer_norm(d // 2)
        self.spatial = _dense(n_tokens, n_tokens, bias)

    def forward(self, x: Tensor) -> Tensor:  # (N, T, D) -> (N, T, D/2)
        u, v = x.chunk(2, dim=-1)
        v = self.norm(v)
        v = self.spatial(v.transpose(-1, -2)).transpose(-1, -2)  # mix along T
        return u * (v + 1.0)


class AxisGmlpLayer(nn.Module):
    """A gMLP layer on one axis (the official ``BlockGmlpLayer`` / ``GridGmlpLayer``):
    partition, LN, dense to ``factor x C``, GELU, spatial gating along the axis, dense back to
    ``C``, residual, un-partition. ``(B, H, W, C) -> (B, H, W, C)``."""

    def __init__(
        self, d: int, size: Size2, axis: str, factor: int = 2, bias: bool = True, dropout=0.0
    ):
        super().__init__()
        if axis not in ("block", "grid"):
            raise ValueError(f"axis must be 'block' or 'grid', got {axis!r}")
        self.size, self.axis = tuple(size), axis
        self.norm = _layer_norm(d)
        self.in_project = _dense(d, d * factor, bias)
        self.gating = SpatialGatingUnit(d * factor, size[0] * size[1], bias)
        self.out_project = _dense(d * factor // 2, d, bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C) -> (B, H, W, C)
        H, W = x.shape[1:3]
        t = partition(x, self.size, self.axis)  # (B * n, T, C)
        y = _gelu(self.in_project(self.norm(t)))  # (B * n, T, factor * C)
        y = self.dropout(self.out_project(self.gating(y)))  # (B * n, T, C)
        return unpartition(t + y, self.size, self.axis, (H, W))


class MultiAxisGmlpBlock(nn.Module):
    """The multi-axis gated MLP block (official ``ResidualSplitHeadMultiAxisGmlpLayer``).

    ``use_grid=False`` is the local-only ablation: the global head is replaced by a second block
    (local) head of the same size, so the parameter count is unchanged.
    ``(B, H, W, C) -> (B, H, W, C)``.
    """

    def __init__(
        self,
        d: int,
        block_size: Size2,
        grid_size: Size2,
        *,
        block_gmlp_factor: int = 2,
        grid_gmlp_factor: int = 2,
        input_proj_factor: int = 2,
        bias: bool = True,
        dropout: float = 0.0,
        use_grid: bool = True,
    ):
        super().__init__()
        d_head = d * input_proj_factor // 2
        self.norm = _layer_norm(d)
        self.in_project = _dense(d, d * input_proj_factor, bias)
        if use_grid:
            self.grid = AxisGmlpLayer(d_head, grid_size, "grid", grid_gmlp_factor, bias, dropout)
        else:
            self.grid = AxisGmlpLayer(d_head, block_size, "block", grid_gmlp_factor, bias, dropout)
        self.block = AxisGmlpLayer(d_head, block_size, "block", block_gmlp_factor, bias, dropout)
        self.out_project = _dense(d * input_proj_factor, d, bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C) -> (B, H, W, C)
        y = _gelu(self.in_project(self.norm(x)))  # (B, H, W, 2C)
        u, v = y.chunk(2, dim=-1)
        y = torch.cat([self.grid(u), self.block(v)], dim=-1)  # global head, local head
        return x + self.dropout(self.out_project(y))


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class RCAB(nn.Module):
    """Residual channel attention block: LN, conv3x3, leaky ReLU, conv3x3, SE, residual.
    ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, d: int, reduction: int = 4, lrelu_slope: float = 0.2, bias: bool = True):
        super().__init__()
        self.norm = ChannelLayerNorm(d, eps=1e-6)
        self.conv1 = nn.Conv2d(d, d, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(d, d, 3, padding=1, bias=bias)
        self.channel_attention = SqueezeExcite(d, reduction)
        self.lrelu_slope = lrelu_slope

    def forward(self, x: Tensor) -> Tensor:
        y = F.leaky_relu(self.conv1(self.norm(x)), self.lrelu_slope)
        return x + self.channel_attention(self.conv2(y))


class RDCAB(nn.Module):
    """Residual dense channel attention block of the bottleneck: LN, channel MLP, SE, residual.
    ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, d: int, reduction: int = 4, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.norm = ChannelLayerNorm(d, eps=1e-6)
        self.fc1 = _dense(d, d, bias)
        self.fc2 = _dense(d, d, bias)
        self.dropout = nn.Dropout(dropout)
        self.channel_attention = SqueezeExcite(d, reduction)

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.fc2(self.dropout(_gelu(self.fc1(y)))).permute(0, 3, 1, 2)
        return x + self.channel_attention(y)


def _nhwc(module: nn.Module, x: Tensor) -> Tensor:
    """Apply an NHWC module to an NCHW map."""
    return module(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SpatialGatingWeights(nn.Module):
    """Multi-axis gating weights of the cross-gating block (official
    ``GetSpatialGatingWeights``): LN, dense to ``2C``, GELU; half the channels are mixed along
    the grid axis, half along the block axis (token-mixing dense layers with bias 1, so the
    gates start near 1); concatenated and projected to ``C``. ``(B, H, W, C) -> (B, H, W, C)``.
    """

    def __init__(
        self,
        d: int,
        block_size: Size2,
        grid_size: Size2,
        input_proj_factor: int = 2,
        bias: bool = True,
        dropout: float = 0.0,
        use_grid: bool = True,
    ):
        super().__init__()
        self.block_size, self.grid_size = tuple(block_size), tuple(grid_size)
        self.grid_axis = "grid" if use_grid else "block"
        head = grid_size if use_grid else block_size
        grid_tokens = head[0] * head[1]
        self.norm = _layer_norm(d)
        self.in_project = _dense(d, d * input_proj_factor, bias, std=None)
        self.grid_mix = _dense(grid_tokens, grid_tokens, bias)
        self.block_mix = _dense(block_size[0] * block_size[1], block_size[0] * block_size[1], bias)
        if bias:
            nn.init.ones_(self.grid_mix.bias)
            nn.init.ones_(self.block_mix.bias)
        self.out_project = _dense(d * input_proj_factor, d, bias, std=None)
        self.dropout = nn.Dropout(dropout)

    def _mix(self, x: Tensor, layer: nn.Linear, size: Size2, axis: str) -> Tensor:
        H, W = x.shape[1:3]
        t = partition(x, size, axis)  # (B * n, T, D)
        t = layer(t.transpose(-1, -2)).transpose(-1, -2)
        return unpartition(t, size, axis, (H, W))

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C) -> (B, H, W, C)
        x = _gelu(self.in_project(self.norm(x)))
        u, v = x.chunk(2, dim=-1)
        grid_size = self.grid_size if self.grid_axis == "grid" else self.block_size
        u = self._mix(u, self.grid_mix, grid_size, self.grid_axis)
        v = self._mix(v, self.block_mix, self.block_size, "block")
        return self.dropout(self.out_project(torch.cat([u, v], dim=-1)))


class CrossGatingBlock(nn.Module):
    """Cross-gating MLP block: ``X' = X * G(Y)``, ``Y' = Y * G(X)`` (Fig. 4).

    ``x`` (B, C_x, H, W) and ``y`` (B, C_y, H, W) (or (H/2, W/2) with ``upsample_y``) ->
    ``(x_out, y_out)``, both (B, d, H, W); ``x_out = x' + y' + x`` aggregates every signal.
    """

    def __init__(
        self,
        d_x: int,
        d_y: int,
        d: int,
        block_size: Size2,
        grid_size: Size2,
        *,
        input_proj_factor: int = 2,
        upsample_y: bool = True,
        bias: bool = True,
        dropout: float = 0.0,
        use_grid: bool = True,
    ):
        super().__init__()
        self.up_y = nn.ConvTranspose2d(d_y, d, 2, stride=2, bias=bias) if upsample_y else None
        self.conv_x = nn.Conv2d(d_x, d, 1, bias=bias)
        self.conv_y = nn.Conv2d(d if upsample_y else d_y, d, 1, bias=bias)
        self.norm_x, self.norm_y = _layer_norm(d), _layer_norm(d)
        self.in_project_x = _dense(d, d, bias, std=None)
        self.in_project_y = _dense(d, d, bias, std=None)
        kw = dict(input_proj_factor=input_proj_factor, bias=bias, dropout=dropout)
        self.gating_x = SpatialGatingWeights(d, block_size, grid_size, use_grid=use_grid, **kw)
        self.gating_y = SpatialGatingWeights(d, block_size, grid_size, use_grid=use_grid, **kw)
        self.out_project_x = _dense(d, d, bias, std=None)
        self.out_project_y = _dense(d, d, bias, std=None)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.up_y is not None:
            y = self.up_y(y)  # (B, d, H, W)
        x = self.conv_x(x).permute(0, 2, 3, 1)  # (B, H, W, d)
        y = self.conv_y(y).permute(0, 2, 3, 1)
        if x.shape != y.shape:
            raise ValueError(f"cross-gating streams differ: {tuple(x.shape)} vs {tuple(y.shape)}")
        shortcut_x, shortcut_y = x, y
        x = _gelu(self.in_project_x(self.norm_x(x)))
        gx = self.gating_x(x)
        y = _gelu(self.in_project_y(self.norm_y(y)))
        gy = self.gating_y(y)
        y = shortcut_y + self.dropout(self.out_project_y(y * gx))
        x = x * gy  # gate x with weights computed from y
        x = shortcut_x + y + self.dropout(self.out_project_x(x))
        return x.permute(0, 3, 1, 2), y.permute(0, 3, 1, 2)


class EncoderBlock(nn.Module):
    """MAXIM encoder block (official ``UNetEncoderBlock``, one stage): optional concatenated
    skip, conv1x1, ``n_groups`` x (MAB + RCAB), long residual, optional 4x4 stride-2
    down-convolution. ``(B, C_in, H, W) -> (down (B, d, H/2, W/2), bridge (B, d, H, W))``."""

    def __init__(
        self, d_in: int, d: int, block_size: Size2, grid_size: Size2, cfg: MaximConfig,
        downsample: bool = True,
    ):  # fmt: skip
        super().__init__()
        self.conv_in = nn.Conv2d(d_in, d, 1, bias=cfg.use_bias)
        self.mabs = nn.ModuleList()
        self.rcabs = nn.ModuleList()
        for _ in range(cfg.n_groups):
            if cfg.use_global_mlp:
                self.mabs.append(_mab(d, block_size, grid_size, cfg))
            self.rcabs.append(RCAB(d, cfg.channels_reduction, cfg.lrelu_slope, cfg.use_bias))
        self.down = nn.Conv2d(d, d, 4, 2, 1, bias=cfg.use_bias) if downsample else None

    def forward(self, x: Tensor, skip: Tensor | None = None):
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        x = self.conv_in(x)
        shortcut = x
        for i, rcab in enumerate(self.rcabs):
            if self.mabs:
                x = _nhwc(self.mabs[i], x)
            x = rcab(x)
        x = x + shortcut
        if self.down is None:
            return x
        return self.down(x), x


class DecoderBlock(nn.Module):
    """MAXIM decoder block: 2x2 transposed conv up, then an encoder block (no downsampling)
    on the concatenation with the bridge. ``(B, C_in, H/2, W/2), bridge -> (B, d, H, W)``."""

    def __init__(
        self, d_in: int, d_bridge: int, d: int, block_size: Size2, grid_size: Size2,
        cfg: MaximConfig,
    ):  # fmt: skip
        super().__init__()
        self.up = nn.ConvTranspose2d(d_in, d, 2, stride=2, bias=cfg.use_bias)
        self.block = EncoderBlock(d + d_bridge, d, block_size, grid_size, cfg, downsample=False)

    def forward(self, x: Tensor, bridge: Tensor) -> Tensor:
        return self.block(self.up(x), skip=bridge)


class BottleneckBlock(nn.Module):
    """Global bottleneck: conv1x1, ``n_groups`` x (MAB + RDCAB), long residual."""

    def __init__(self, d: int, block_size: Size2, grid_size: Size2, cfg: MaximConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(d, d, 1, bias=cfg.use_bias)
        self.mabs = nn.ModuleList(
            [_mab(d, block_size, grid_size, cfg) for _ in range(cfg.n_groups)]
        )
        self.rdcabs = nn.ModuleList(
            [
                RDCAB(d, cfg.channels_reduction, cfg.use_bias, cfg.dropout)
                for _ in range(cfg.n_groups)
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        shortcut = x
        for mab, rdcab in zip(self.mabs, self.rdcabs):
            x = rdcab(_nhwc(mab, x))
        return x + shortcut


class UpSampleRatio(nn.Module):
    """Resize by ``2 ** log2_ratio`` (bilinear, antialiased when shrinking, as
    ``jax.image.resize``) then conv1x1 to ``d`` channels."""

    def __init__(self, d_in: int, d: int, log2_ratio: int, bias: bool = True):
        super().__init__()
        self.log2_ratio = log2_ratio
        self.conv = nn.Conv2d(d_in, d, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.log2_ratio != 0:
            h, w = x.shape[-2:]
            r = 2.0**self.log2_ratio
            size = (int(h * r), int(w * r))
            x = F.interpolate(
                x, size=size, mode="bilinear", align_corners=False, antialias=self.log2_ratio < 0
            )
        return self.conv(x)


def _mab(d: int, block_size: Size2, grid_size: Size2, cfg: MaximConfig) -> MultiAxisGmlpBlock:
    return MultiAxisGmlpBlock(
        d, block_size, grid_size,
        block_gmlp_factor=cfg.block_gmlp_factor, grid_gmlp_factor=cfg.grid_gmlp_factor,
        input_proj_factor=cfg.input_proj_factor, bias=cfg.use_bias, dropout=cfg.dropout,
        use_grid=cfg.use_grid,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The model.


@dataclass(frozen=True)
class MaximConfig:
    """Hyper-parameters of a one-stage MAXIM (names after the official ``MAXIM`` arguments).

    Attributes:
        n_channels: input (and output) channels.
        d_features: ``features``, the width C at full resolution (2**i C at scale i).
        depth: number of down-samplings of the U-Net.
        n_groups: ``num_groups``, (MAB + RCAB) pairs per encoder/decoder/bottleneck block.
        n_bottleneck_blocks: ``num_bottleneck_blocks``.
        n_supervision_scales: multi-scale inputs and outputs (3 in the paper's models).
        n_high_res_stages: ``high_res_stages``: scales ``< n_high_res_stages`` use the ``_hr``
            block/grid sizes, the others (and the bottleneck) the ``_lr`` sizes.
        block_size_hr: b (local block side) at high resolution.
        grid_size_hr: d (global grid side) at high resolution.
        block_size_lr: b at low resolution.
        grid_size_lr: d at low resolution.
        block_gmlp_factor: width factor of the block gMLP layers.
        grid_gmlp_factor: width factor of the grid gMLP layers.
        input_proj_factor: width factor of the MAB / gating input projection.
        channels_reduction: squeeze-excitation reduction.
        lrelu_slope: leaky ReLU slope of the RCABs.
        use_bias: biases in every dense/conv layer.
        use_global_mlp: MABs in the encoder/decoder blocks (else only RCABs).
        use_cross_gating: cross-gating blocks on the skips (else conv1x1 + conv3x3).
        use_grid: the global (grid) head of every MAB and gating block; False is the local-only
            ablation (a second block head of the same size instead).
        dropout: dropout rate.
    """

    n_channels: int = 3
    d_features: int = 32
    depth: int = 3
    n_groups: int = 2
    n_bottleneck_blocks: int = 2
    n_supervision_scales: int = 3
    n_high_res_stages: int = 2
    block_size_hr: tuple[int, int] = (16, 16)
    grid_size_hr: tuple[int, int] = (16, 16)
    block_size_lr: tuple[int, int] = (8, 8)
    grid_size_lr: tuple[int, int] = (8, 8)
    block_gmlp_factor: int = 2
    grid_gmlp_factor: int = 2
    input_proj_factor: int = 2
    channels_reduction: int = 4
    lrelu_slope: float = 0.2
    use_bias: bool = True
    use_global_mlp: bool = True
    use_cross_gating: bool = True
    use_grid: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_channels", "d_features", "depth", "n_groups", "n_supervision_scales"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_bottleneck_blocks < 0 or self.n_high_res_stages < 0:
            raise ValueError("n_bottleneck_blocks and n_high_res_stages must be >= 0")
        if self.n_supervision_scales > self.depth:
            raise ValueError(
                f"n_supervision_scales={self.n_supervision_scales} must be <= depth={self.depth}"
            )
        for name in ("block_size_hr", "grid_size_hr", "block_size_lr", "grid_size_lr"):
            v = getattr(self, name)
            if len(v) != 2 or min(v) < 1:
                raise ValueError(f"{name} must be two positive ints, got {v}")
        for name in ("block_gmlp_factor", "grid_gmlp_factor", "input_proj_factor"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if (self.d_features * self.input_proj_factor) % 2:
            raise ValueError("d_features * input_proj_factor must be even (two heads)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def sizes(self, scale: int) -> tuple[Size2, Size2]:
        """(block size, grid size) used at ``scale`` (0 = full resolution)."""
        if scale < self.n_high_res_stages:
            return tuple(self.block_size_hr), tuple(self.grid_size_hr)
        return tuple(self.block_size_lr), tuple(self.grid_size_lr)

    @property
    def multiple(self) -> tuple[int, int]:
        """(H, W) multiples: every input size must be divisible by them (each scale's map by its
        block and grid sizes, the bottleneck by the low-resolution block size)."""
        out = []
        for axis in (0, 1):
            m = 1
            for i in range(self.depth):
                b, g = self.sizes(i)
                m = math.lcm(m, 2**i * b[axis], 2**i * g[axis])
            m = math.lcm(m, 2**self.depth * self.block_size_lr[axis])
            out.append(m)
        return out[0], out[1]


class Maxim(nn.Module):
    """One-stage MAXIM: ``(B, C, H, W)`` degraded image -> ``(B, C, H, W)`` restored image.

    ``forward_scales`` returns every supervised scale's output, coarsest first (the official
    output list of one stage); ``forward`` the last (full resolution).
    """

    def __init__(self, cfg: MaximConfig):
        super().__init__()
        self.cfg = cfg
        C, F_, depth, S = cfg.n_channels, cfg.d_features, cfg.depth, cfg.n_supervision_scales
        bias = cfg.use_bias
        width = [2**i * F_ for i in range(depth)]
        self.input_convs = nn.ModuleList(
            [nn.Conv2d(C, width[i], 3, padding=1, bias=bias) for i in range(S)]
        )
        self.encoders = nn.ModuleList()
        for i in range(depth):
            d_in = width[0] if i == 0 else width[i - 1]
            d_in += width[i] if i < S else 0  # multi-scale input feature concatenated
            self.encoders.append(EncoderBlock(d_in, width[i], *cfg.sizes(i), cfg))
        d_bottom = width[-1]
        b_lr = tuple(cfg.block_size_lr)
        self.bottleneck = nn.ModuleList(
            [
                BottleneckBlock(d_bottom, b_lr, b_lr, cfg)  # official: grid size = block size
                for _ in range(cfg.n_bottleneck_blocks)
            ]
        )
        # cross-gating of the multi-scale encoder skips with the global features
        self.skip_resizers = nn.ModuleList()
        self.skip_fusers = nn.ModuleList()
        d_global = d_bottom
        for i in reversed(range(depth)):
            self.skip_resizers.append(
                nn.ModuleList(
                    [UpSampleRatio(width[j], width[i], j - i, bias) for j in range(depth)]
                )
            )
            if cfg.use_cross_gating:
                block, grid = cfg.sizes(i)
                self.skip_fusers.append(
                    CrossGatingBlock(
                        depth * width[i],
                        d_global,
                        width[i],
                        block,
                        grid,
                        input_proj_factor=cfg.input_proj_factor,
                        upsample_y=True,
                        bias=bias,
                        dropout=cfg.dropout,
                        use_grid=cfg.use_grid,
                    )  # fmt: skip
                )
                d_global = width[i]
            else:
                self.skip_fusers.append(
                    nn.Sequential(
                        nn.Conv2d(depth * width[i], width[i], 1, bias=bias),
                        nn.Conv2d(width[i], width[i], 3, padding=1, bias=bias),
                    )
                )
        # decoder on the multi-scale fused skips
        self.bridge_resizers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.output_convs = nn.ModuleDict()
        d_x = d_bottom
        for i in reversed(range(depth)):
            # skip_features[j] lives at scale depth - 1 - j with width[depth - 1 - j]
            self.bridge_resizers.append(
                nn.ModuleList(
                    [
                        UpSampleRatio(width[depth - 1 - j], width[i], depth - 1 - j - i, bias)
                        for j in range(depth)
                    ]
                )
            )
            block, grid = cfg.sizes(i)
            self.decoders.append(DecoderBlock(d_x, depth * width[i], width[i], block, grid, cfg))
            d_x = width[i]
            if i < S:
                self.output_convs[str(i)] = nn.Conv2d(width[i], C, 3, padding=1, bias=bias)

    def check_input(self, x: Tensor) -> None:
        """One clear ``ValueError`` for a bad input (rank, channels, size, dtype, NaN)."""
        check_dense_input(x, like=self, n_channels=self.cfg.n_channels, name="MAXIM")
        mh, mw = self.cfg.multiple
        h, w = x.shape[-2:]
        if h % mh or w % mw:
            raise ValueError(
                f"MAXIM: spatial size {(h, w)} must be divisible by {(mh, mw)} (every scale must "
                f"split into the block/grid sizes); pad to e.g. "
                f"{(math.ceil(h / mh) * mh, math.ceil(w / mw) * mw)}"
            )

    def forward_scales(self, x: Tensor) -> list[Tensor]:
        """Outputs at every supervised scale, coarsest first: ``[(B, C, H/2**i, W/2**i)]``."""
        self.check_input(x)
        cfg = self.cfg
        depth, S = cfg.depth, cfg.n_supervision_scales
        H, W = x.shape[-2:]
        shortcuts = [x] + [
            F.interpolate(x, size=(H // 2**i, W // 2**i), mode="nearest") for i in range(1, S)
        ]
        x_scales = [conv(s) for conv, s in zip(self.input_convs, shortcuts)]
        h = x_scales[0]
        encs = []
        for i, enc in enumerate(self.encoders):
            h, bridge = enc(h, skip=x_scales[i] if i < S else None)  # (B, w_i, H/2^(i+1), ...)
            encs.append(bridge)  # (B, w_i, H/2^i, W/2^i)
        for block in self.bottleneck:
            h = block(h)
        global_feature = h
        skip_features = []
        for resizers, fuser in zip(self.skip_resizers, self.skip_fusers):  # scales depth-1 .. 0
            signal = torch.cat([r(e) for r, e in zip(resizers, encs)], dim=1)
            if self.cfg.use_cross_gating:
                skips, global_feature = fuser(signal, global_feature)
            else:
                skips = fuser(signal)
            skip_features.append(skips)
        outputs = []
        for k, (resizers, dec) in enumerate(zip(self.bridge_resizers, self.decoders)):
            i = depth - 1 - k
            bridge = torch.cat([r(s) for r, s in zip(resizers, skip_features)], dim=1)
            h = dec(h, bridge)  # (B, w_i, H/2^i, W/2^i)
            if i < S:
                outputs.append(self.output_convs[str(i)](h) + shortcuts[i])
        return outputs

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return self.forward_scales(x)[-1]


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


S1 = MaximConfig()
"""MAXIM-S-1 (official ``Model(variant="S-1")`` with the evaluation's 3 supervision scales)."""

MINI = MaximConfig(
    d_features=16, depth=3, n_groups=1, n_bottleneck_blocks=1, n_supervision_scales=1,
    block_size_hr=(4, 4), grid_size_hr=(4, 4), block_size_lr=(4, 4), grid_size_lr=(4, 4),
)  # fmt: skip
"""The miniature of the quick reproduction: channels 16/32/64, b = d = 4 (32x32 crops)."""

VARIANTS = {
    "tiny": MaximConfig(
        d_features=8,
        depth=2,
        n_groups=1,
        n_bottleneck_blocks=1,
        n_supervision_scales=1,
        block_size_hr=(2, 2),
        grid_size_hr=(2, 2),
        block_size_lr=(2, 2),
        grid_size_lr=(2, 2),
    ),  # fmt: skip
    "mini": MINI,
    "mini-local": MaximConfig(**{**MINI.__dict__, "use_grid": False}),
    "s1": S1,
    "m1": MaximConfig(d_features=64),
}


def _example_input(model: Maxim, batch_size: int) -> tuple[Tensor]:
    mh, mw = model.cfg.multiple
    return (torch.rand(batch_size, model.cfg.n_channels, 2 * mh, mw),)


SPEC = PaperSpec(
    slug="maxim",
    family="dense",
    title="MAXIM: Multi-Axis MLP for Image Processing",
    arxiv="2201.02973",
    claim=(
        "A U-Net of multi-axis gated MLP blocks (local block + global grid gating) and "
        "cross-gating blocks denoises better than a convolutional U-Net of similar size, and "
        "its global (grid) branch matters: removing it lowers PSNR."
    ),
    config=MaximConfig,
    build=Maxim,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"dense", "restoration"}),
    fidelity="faithful",
    experiment="archlab.papers.dense.maxim.experiment",
)
