"""Convolutional building blocks shared by the dense-prediction papers (2-D and 3-D).

Every block takes explicit scalar arguments and ``n_dims`` (2 for images ``(B, C, H, W)``, 3 for
volumes ``(B, C, D, H, W)``). ``ConvNormAct`` and ``ASPP`` are ``nn.Sequential`` / module lists
laid out as torchvision's, so their state dicts load from torchvision modules unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("batch", "instance", "group", None)
ACTS = ("relu", "leaky_relu", "gelu", "silu", "prelu", None)


def conv_cls(n_dims: int) -> type[nn.Module]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    if n_dims not in (2, 3):
        raise ValueError(f"n_dims must be 2 or 3, got {n_dims}")
    return nn.Conv2d if n_dims == 2 else nn.Conv3d


def conv_transpose_cls(n_dims: int) -> type[nn.Module]:
    """``nn.ConvTranspose2d`` or ``nn.ConvTranspose3d``."""
    conv_cls(n_dims)
    return nn.ConvTranspose2d if n_dims == 2 else nn.ConvTranspose3d


def max_pool_cls(n_dims: int) -> type[nn.Module]:
    """``nn.MaxPool2d`` or ``nn.MaxPool3d``."""
    conv_cls(n_dims)
    return nn.MaxPool2d if n_dims == 2 else nn.MaxPool3d


def make_norm_nd(norm: str | None, channels: int, n_dims: int = 2) -> nn.Module:
    """A normalisation layer over ``channels`` (``None`` -> identity).

    ``group`` uses 8 groups when ``channels`` is divisible by 8, else one group (layer norm over
    channels and space).
    """
    if norm is None:
        return nn.Identity()
    if norm == "batch":
        return (nn.BatchNorm2d if n_dims == 2 else nn.BatchNorm3d)(channels)
    if norm == "instance":
        return (nn.InstanceNorm2d if n_dims == 2 else nn.InstanceNorm3d)(channels, affine=True)
    if norm == "group":
        return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)
    raise ValueError(f"unknown norm {norm!r} (valid: {NORMS})")


def make_act(act: str | None, channels: int | None = None) -> nn.Module:
    """An activation module by name (``None`` -> identity)."""
    if act is None:
        return nn.Identity()
    if act == "relu":
        return nn.ReLU(inplace=True)
    if act == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=True)
    if act == "gelu":
        return nn.GELU()
    if act == "silu":
        return nn.SiLU(inplace=True)
    if act == "prelu":
        return nn.PReLU(channels or 1)
    raise ValueError(f"unknown activation {act!r} (valid: {ACTS})")


class ConvNormAct(nn.Sequential):
    """Convolution -> normalisation -> activation (torchvision's ``Conv2dNormActivation`` layout:
    children ``0`` conv, ``1`` norm, ``2`` act; a missing norm/act is not added).

    Args:
        padding: ``None`` -> "same" padding ``dilation * (kernel_size - 1) // 2``.
        bias: ``None`` -> a bias only when there is no normalisation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        n_dims: int = 2,
        norm: str | None = "batch",
        act: str | None = "relu",
        bias: bool | None = None,
    ):
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            conv_cls(n_dims)(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                bias=(norm is None) if bias is None else bias,
            )
        ]
        if norm is not None:
            layers.append(make_norm_nd(norm, out_channels, n_dims))
        if act is not None:
            layers.append(make_act(act, out_channels))
        super().__init__(*layers)
        self.out_channels = out_channels


class DoubleConv(nn.Sequential):
    """Two 3x3 ``ConvNormAct`` (the U-Net block)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        mid_channels: int | None = None,
        n_dims: int = 2,
        norm: str | None = "batch",
        act: str | None = "relu",
    ):
        mid = mid_channels or out_channels
        super().__init__(
            ConvNormAct(in_channels, mid, 3, n_dims=n_dims, norm=norm, act=act),
            ConvNormAct(mid, out_channels, 3, n_dims=n_dims, norm=norm, act=act),
        )
        self.out_channels = out_channels


class ResidualBlock(nn.Module):
    """Basic residual block (He et al. 2016): two 3x3 conv-norm, identity or 1x1 projection
    shortcut, activation after the sum. ``(B, C_in, *S) -> (B, C_out, *S / stride)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        n_dims: int = 2,
        norm: str | None = "batch",
        act: str | None = "relu",
    ):
        super().__init__()
        self.conv1 = ConvNormAct(
            in_channels, out_channels, 3, stride, n_dims=n_dims, norm=norm, act=act
        )
        self.conv2 = ConvNormAct(out_channels, out_channels, 3, n_dims=n_dims, norm=norm, act=None)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvNormAct(
                in_channels, out_channels, 1, stride, n_dims=n_dims, norm=norm, act=None
            )
        self.act = make_act(act, out_channels)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation channel attention (Hu et al. 2018): global average pool, a
    bottleneck MLP (1x1 convs) and a sigmoid gate per channel. Shape-preserving."""

    def __init__(self, channels: int, reduction: int = 16, n_dims: int = 2):
        super().__init__()
        hidden = max(1, channels // reduction)
        conv = conv_cls(n_dims)
        self.fc1 = conv(channels, hidden, 1)
        self.fc2 = conv(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, *S)
        s = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)  # (B, C, 1, ...)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class ASPPPooling(nn.Sequential):
    """Image-level branch of ASPP: global pool, 1x1 conv-BN-ReLU, upsample back."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, out, H, W)
        size = x.shape[-2:]
        for layer in self:
            x = layer(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (Chen et al. 2017, DeepLabv3).

    Parallel branches: a 1x1 conv, one 3x3 conv per dilation rate, and image pooling; concatenated
    and projected by a 1x1 conv (BN, ReLU, dropout). Module names equal torchvision's
    ``deeplabv3.ASPP`` (``convs``, ``project``), so ``from_torchvision`` is a state-dict copy.
    ``(B, C_in, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: tuple[int, ...] = (12, 24, 36),
        dropout: float = 0.5,
    ):
        super().__init__()
        branches: list[nn.Module] = [ConvNormAct(in_channels, out_channels, 1)]
        branches += [ConvNormAct(in_channels, out_channels, 3, dilation=r) for r in rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.rates = tuple(rates)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, out, H, W)
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))

    @classmethod
    def from_torchvision(cls, module: nn.Module) -> ASPP:
        """An ``ASPP`` with the weights of a torchvision ``deeplabv3.ASPP``."""
        first = module.convs[0][0]
        rates = tuple(int(branch[0].dilation[0]) for branch in module.convs[1:-1])
        out = cls(first.in_channels, first.out_channels, rates, dropout=module.project[3].p)
        out.load_state_dict(module.state_dict())
        return out


def check_dense_input(
    x: Tensor,
    *,
    n_channels: int | None,
    n_dims: int = 2,
    multiple: int = 1,
    name: str = "model",
    like: torch.nn.Module | None = None,
) -> None:
    """Raise one clear ``ValueError`` when ``x`` is not what a dense model takes.

    Checks, in order: a tensor of rank ``n_dims + 2`` (``(B, C, H, W)`` or ``(B, C, D, H, W)``),
    ``n_channels`` channels (``None`` skips), every spatial size divisible by ``multiple`` (the
    network's total stride), floating point of the dtype of ``like``'s parameters (the model;
    under autocast any floating dtype is accepted), and no NaN/Inf values.
    """
    layout = "(B, C, H, W)" if n_dims == 2 else "(B, C, D, H, W)"
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a tensor {layout}, got {type(x).__name__}")
    if x.ndim != n_dims + 2:
        kind = {4: "2-D images", 5: "3-D volumes"}.get(x.ndim, f"rank-{x.ndim} tensors")
        raise ValueError(
            f"{name}: expected {n_dims}-D input {layout}, got shape {tuple(x.shape)} ({kind})"
        )
    if n_channels is not None and x.shape[1] != n_channels:
        raise ValueError(
            f"{name}: expected {n_channels} input channels {layout}, got {x.shape[1]} "
            f"(shape {tuple(x.shape)})"
        )
    spatial = tuple(x.shape[2:])
    if multiple > 1 and any(s % multiple for s in spatial):
        fixed = tuple(max(multiple, math.ceil(s / multiple) * multiple) for s in spatial)
        raise ValueError(
            f"{name}: spatial size {spatial} must be divisible by {multiple} (the network's total "
            f"stride); pad to e.g. {fixed}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point input, got {x.dtype}")
    if like is not None and not torch.is_autocast_enabled(x.device.type):
        expected = next((p.dtype for p in like.parameters() if p.is_floating_point()), None)
        if expected is not None and x.dtype != expected:
            short = str(expected).removeprefix("torch.")
            raise ValueError(
                f"{name}: expected {short} input (the model's dtype), got "
                f"{str(x.dtype).removeprefix('torch.')}; convert with x.to(torch.{short})"
            )
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: input contains NaN or Inf values")
