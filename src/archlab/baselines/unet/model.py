"""U-Net in 2-D and 3-D (baseline of the dense-prediction papers).

Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
2015, arXiv 1505.04597; the 3-D form is Cicek et al. 2016 (arXiv 1606.06650).

An encoder of stages (the first at full resolution, each later one after a 2x max pool), a
decoder that upsamples (2x transposed convolution, or interpolation + 1x1 convolution), concatenates
the encoder feature of the same scale and applies the same block, and a 1x1 head to ``K`` outputs.
Deviations from the 2015 paper, as in every modern implementation (nnU-Net, MONAI): "same"
padding (output size = input size) and a normalisation layer after each convolution. The
``residual`` block gives the ResNet U-Net (ResUNet) baseline: a basic residual block instead of
the double convolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.nn.conv import (
    DoubleConv,
    ResidualBlock,
    check_dense_input,
    conv_cls,
    conv_transpose_cls,
    max_pool_cls,
)
from archlab.registry import PaperSpec


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of a U-Net.

    Attributes:
        n_channels: input channels C.
        n_outputs: output channels K (classes for segmentation, C for restoration).
        widths: channels of each encoder stage, full resolution first; the input size must be
            divisible by ``2 ** (len(widths) - 1)``.
        n_dims: 2 (images) or 3 (volumes).
        block: ``double_conv`` (two 3x3 conv-norm-act, the paper) or ``residual`` (ResUNet).
        norm: ``batch``, ``instance``, ``group`` or ``None``.
        upsample: ``transpose`` (2x2 transposed conv, the paper) or ``interp`` (bilinear /
            trilinear 2x + 1x1 conv).
        residual_output: add the input to the output (restoration: predict a correction);
            needs ``n_outputs == n_channels``.
    """

    n_channels: int = 1
    n_outputs: int = 2
    widths: tuple[int, ...] = (32, 64, 128, 256)
    n_dims: int = 2
    block: Literal["double_conv", "residual"] = "double_conv"
    norm: str | None = "batch"
    upsample: Literal["transpose", "interp"] = "transpose"
    residual_output: bool = False

    def __post_init__(self) -> None:
        if self.n_channels < 1 or self.n_outputs < 1:
            raise ValueError("n_channels and n_outputs must be >= 1")
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ValueError(f"widths {self.widths} needs >= 2 positive entries (one per stage)")
        if self.n_dims not in (2, 3):
            raise ValueError(f"n_dims must be 2 or 3, got {self.n_dims}")
        if self.block not in ("double_conv", "residual"):
            raise ValueError(f"block must be 'double_conv' or 'residual', got {self.block!r}")
        if self.upsample not in ("transpose", "interp"):
            raise ValueError(f"upsample must be 'transpose' or 'interp', got {self.upsample!r}")
        if self.residual_output and self.n_outputs != self.n_channels:
            raise ValueError("residual_output needs n_outputs == n_channels")

    @property
    def multiple(self) -> int:
        """The total stride: every spatial size must be divisible by it."""
        return 2 ** (len(self.widths) - 1)


def _block(cfg: UNetConfig, d_in: int, d_out: int) -> nn.Module:
    if cfg.block == "residual":
        return ResidualBlock(d_in, d_out, n_dims=cfg.n_dims, norm=cfg.norm)
    return DoubleConv(d_in, d_out, n_dims=cfg.n_dims, norm=cfg.norm)


class Up(nn.Module):
    """2x upsampling from ``d_in`` to ``d_out`` channels."""

    def __init__(self, d_in: int, d_out: int, n_dims: int, mode: str):
        super().__init__()
        self.mode = "bilinear" if n_dims == 2 else "trilinear"
        if mode == "transpose":
            self.up = conv_transpose_cls(n_dims)(d_in, d_out, 2, stride=2)
            self.proj = None
        else:
            self.up = None
            self.proj = conv_cls(n_dims)(d_in, d_out, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, d_in, *S) -> (B, d_out, *2S)
        if self.up is not None:
            return self.up(x)
        x = F.interpolate(x, scale_factor=2, mode=self.mode, align_corners=False)
        return self.proj(x)


class UNet(nn.Module):
    """U-Net: ``(B, C, *S) -> (B, K, *S)`` logits (or a restored image)."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.pool = max_pool_cls(cfg.n_dims)(2)
        self.encoder = nn.ModuleList(
            [_block(cfg, cfg.n_channels if i == 0 else w[i - 1], w[i]) for i in range(len(w))]
        )
        self.ups = nn.ModuleList(
            [Up(w[i + 1], w[i], cfg.n_dims, cfg.upsample) for i in reversed(range(len(w) - 1))]
        )
        self.decoder = nn.ModuleList(
            [_block(cfg, 2 * w[i], w[i]) for i in reversed(range(len(w) - 1))]
        )
        self.head = conv_cls(cfg.n_dims)(w[0], cfg.n_outputs, 1)

    def features(self, x: Tensor) -> list[Tensor]:
        """Encoder features, full resolution first: ``[(B, w_i, *S / 2**i)]``."""
        check_dense_input(x, like=self, n_channels=self.cfg.n_channels, n_dims=self.cfg.n_dims,
            multiple=self.cfg.multiple, name="UNet",
        )  # fmt: skip
        feats = []
        for i, stage in enumerate(self.encoder):
            x = stage(x if i == 0 else self.pool(x))  # (B, w_i, *S / 2**i)
            feats.append(x)
        return feats

    def forward(self, x: Tensor) -> Tensor:  # (B, C, *S) -> (B, K, *S)
        feats = self.features(x)
        h = feats[-1]
        for up, block, skip in zip(self.ups, self.decoder, reversed(feats[:-1])):
            h = block(torch.cat([up(h), skip], dim=1))  # (B, w_i, *S / 2**i)
        out = self.head(h)
        return out + x if self.cfg.residual_output else out


class MonaiBasicUNet(nn.Module):
    """MONAI's ``BasicUNet`` used as is (the field's standard medical-segmentation U-Net), with
    archlab's one-line input check. ``(B, C, *S) -> (B, K, *S)`` logits; ``S`` divisible by 16.

    Args:
        n_dims: 2 or 3.
        n_channels: input channels C.
        n_outputs: output channels K.
        features: MONAI's six widths (four encoder levels after the first, the bottleneck and
            the last decoder level), default MONAI's ``(32, 32, 64, 128, 256, 32)``.
        norm: MONAI norm name (``"instance"`` with affine, as MONAI's default, or ``"batch"``).
    """

    multiple = 16

    def __init__(
        self,
        n_dims: int = 2,
        n_channels: int = 1,
        n_outputs: int = 2,
        features: tuple[int, ...] = (32, 32, 64, 128, 256, 32),
        norm: str = "instance",
    ):
        super().__init__()
        try:
            from monai.networks.nets import BasicUNet
        except ImportError as e:  # pragma: no cover - monai is in the dense extra
            raise ImportError("MonaiBasicUNet needs MONAI: pip install 'archlab[dense]'") from e
        if len(features) != 6:
            raise ValueError(f"features needs MONAI's 6 widths, got {features}")
        self.n_dims, self.n_channels = n_dims, n_channels
        norm_arg = ("instance", {"affine": True}) if norm == "instance" else norm
        self.net = BasicUNet(
            spatial_dims=n_dims, in_channels=n_channels, out_channels=n_outputs,
            features=tuple(features), norm=norm_arg,
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:  # (B, C, *S) -> (B, K, *S)
        check_dense_input(x, like=self, n_channels=self.n_channels, n_dims=self.n_dims,
            multiple=self.multiple, name="MonaiBasicUNet",
        )  # fmt: skip
        return self.net(x)


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


VARIANTS = {
    "tiny": UNetConfig(widths=(8, 16, 32)),
    "tiny3d": UNetConfig(widths=(4, 8, 16), n_dims=3),
    "small": UNetConfig(widths=(16, 32, 64, 128)),
    "resunet-small": UNetConfig(widths=(16, 32, 64, 128), block="residual"),
    "base": UNetConfig(),
    "paper": UNetConfig(widths=(64, 128, 256, 512, 1024), norm=None),
}


def _example_input(model: UNet, batch_size: int) -> tuple[Tensor]:
    size = 4 * model.cfg.multiple
    shape = (size,) * model.cfg.n_dims
    return (torch.randn(batch_size, model.cfg.n_channels, *shape),)


SPEC = PaperSpec(
    slug="unet",
    family="dense",
    title="U-Net: Convolutional Networks for Biomedical Image Segmentation",
    arxiv="1505.04597",
    claim="Baseline: an encoder-decoder with skip connections for per-pixel/voxel prediction.",
    config=UNetConfig,
    build=UNet,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"dense", "segmentation"}),
    fidelity="faithful",
    experiment=None,
)
