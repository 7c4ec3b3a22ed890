"""PLS-Net: a lightweight 3-D multi-scale network, as used for meningioma segmentation in
"Fast meningioma segmentation in T1-weighted MRI volumes using a lightweight 3D deep learning
architecture".

Bouget, Pedersen, Hosainey, Vanel, Solheim, Reinertsen, 2020, arXiv 2010.07002; the architecture
is Lee, Matin, Gleeson, Grau, "Efficient 3D fully convolutional networks for pulmonary lobe
segmentation in CT images" (PLS-Net), 2019, arXiv 1909.07474.
Paper card, deviations and measured results: README.md beside this file.

Three encoder levels at 1/2, 1/4 and 1/8 resolution. Each starts with a strided depthwise-separable
convolution (``DSConv``: depthwise 3x3x3 -> pointwise 1x1x1 -> ReLU), concatenates the input
volume trilinearly downsampled to that level ("input reinforcement"), then applies 1, 2 and 4
dilated residual dense blocks (``DRDB``: four DSConvs with dilations 1, 2, 3, 4 and growth rate
``growth_rate``, densely concatenated, fused by a 1x1x1 convolution, plus the block input). The
decoder is light: from level 3, a DSConv to ``2 K`` channels and a 2x trilinear upsampling;
concatenated with a DSConv "bridge" (``2 K`` channels) of the level-2 features, again DSConv +
upsampling; the same with level 1; a last DSConv + upsampling to full resolution and a 1x1x1
convolution to ``K`` logits. Layer layout and defaults follow the PyTorch code of co-author
A. Pedersen used in the study (andreped/PLS-Net, ``PLS_pytorch.py`` / ``PLS_buildingblocks.py``):
widths 16/64/128 (+1 input channel), growth rate 12, no normalisation (the reference creates a
BatchNorm layer in each DSConv but never calls it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.lab import profiling
from archlab.nn.conv import check_dense_input
from archlab.registry import PaperSpec


@dataclass(frozen=True)
class PlsNetConfig:
    """Hyper-parameters of PLS-Net (names of the reference code where it has them).

    Attributes:
        n_channels: input channels C (1 for a T1 volume).
        n_classes: output classes K (2: background and tumour).
        widths: output channels of the strided DSConv of encoder levels 1, 2, 3 (the reference's
            ``nb_channels[1:]``); each level then carries ``width + n_channels`` channels.
        growth_rate: channels added by each DSConv inside a DRDB.
        n_drdb: DRDBs at levels 1, 2, 3.
        dilations: dilation of the successive DSConvs inside a DRDB.
        bridge_width: channels of the decoder and of the skip bridges (default ``2 K``).
        batch_norm: apply BatchNorm after each pointwise convolution (off in the reference code,
            which creates but never uses it).
    """

    n_channels: int = 1
    n_classes: int = 2
    widths: tuple[int, int, int] = (16, 64, 128)
    growth_rate: int = 12
    n_drdb: tuple[int, int, int] = (1, 2, 4)
    dilations: tuple[int, ...] = (1, 2, 3, 4)
    bridge_width: int | None = None
    batch_norm: bool = False

    def __post_init__(self) -> None:
        if self.n_channels < 1 or self.n_classes < 1:
            raise ValueError("n_channels and n_classes must be >= 1")
        if len(self.widths) != 3 or min(self.widths) < 1:
            raise ValueError(f"widths must be three positive channel counts, got {self.widths}")
        if len(self.n_drdb) != 3 or min(self.n_drdb) < 0:
            raise ValueError(f"n_drdb must be three counts >= 0, got {self.n_drdb}")
        if self.growth_rate < 1:
            raise ValueError(f"growth_rate must be >= 1, got {self.growth_rate}")
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError(f"dilations must be non-empty and >= 1, got {self.dilations}")
        if self.bridge_width is not None and self.bridge_width < 1:
            raise ValueError(f"bridge_width must be >= 1 or None, got {self.bridge_width}")

    @property
    def d_bridge(self) -> int:
        """Channels of the decoder path (``bridge_width`` or ``2 K``)."""
        return self.bridge_width if self.bridge_width is not None else 2 * self.n_classes

    multiple = 8
    """The total stride: every spatial size must be divisible by 8."""


class DSConv(nn.Module):
    """Depthwise-separable 3-D convolution: depthwise 3x3x3 (stride, dilation) -> pointwise
    1x1x1 -> (BatchNorm) -> ReLU; no biases, as the reference ``DSConv3D``.

    Args:
        d_in: input channels.
        d_out: output channels.
        stride: stride of the depthwise convolution (2 halves every spatial size).
        dilation: dilation of the depthwise convolution ("same" padding).
        batch_norm: BatchNorm3d after the pointwise convolution.
    """

    def __init__(
        self, d_in: int, d_out: int, stride: int = 1, dilation: int = 1, batch_norm: bool = False
    ):
        super().__init__()
        self.depthwise = nn.Conv3d(
            d_in, d_in, 3, stride=stride, padding=dilation, dilation=dilation, groups=d_in,
            bias=False,
        )  # fmt: skip
        self.pointwise = nn.Conv3d(d_in, d_out, 1, bias=False)
        self.norm = nn.BatchNorm3d(d_out) if batch_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:  # (B, d_in, D, H, W) -> (B, d_out, D/s, H/s, W/s)
        return torch.relu(self.norm(self.pointwise(self.depthwise(x))))


class DRDB(nn.Module):
    """Dilated residual dense block: densely connected DSConvs with growing dilation, a 1x1x1
    fusion convolution back to ``channels`` and a residual connection.

    Args:
        channels: input = output channels.
        growth_rate: output channels of each inner DSConv.
        dilations: dilation of each inner DSConv (1, 2, 3, 4 in the paper).
        batch_norm: BatchNorm in the inner DSConvs.
    """

    def __init__(
        self,
        channels: int,
        growth_rate: int,
        dilations: tuple[int, ...] = (1, 2, 3, 4),
        batch_norm: bool = False,
    ):
        super().__init__()
        self.convs = nn.ModuleList(
            [
                DSConv(channels + i * growth_rate, growth_rate, dilation=d, batch_norm=batch_norm)
                for i, d in enumerate(dilations)
            ]
        )
        self.fuse = nn.Conv3d(channels + len(dilations) * growth_rate, channels, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, D, H, W) -> (B, C, D, H, W)
        cat = x
        for conv in self.convs:
            cat = torch.cat([conv(cat), cat], dim=1)  # (B, C + i g, D, H, W), newest first
        return self.fuse(cat) + x


class DecoderBlock(nn.Module):
    """DSConv (stride 1) then 2x trilinear upsampling."""

    def __init__(self, d_in: int, d_out: int, batch_norm: bool = False):
        super().__init__()
        self.conv = DSConv(d_in, d_out, batch_norm=batch_norm)

    def forward(self, x: Tensor) -> Tensor:  # (B, d_in, D, H, W) -> (B, d_out, 2D, 2H, 2W)
        return F.interpolate(self.conv(x), scale_factor=2, mode="trilinear", align_corners=False)


class PlsNet(nn.Module):
    """PLS-Net: ``(B, C, D, H, W)`` volumes -> ``(B, K, D, H, W)`` logits.

    ``D, H, W`` must be divisible by 8. The reference ends with a softmax; here ``forward``
    returns the logits and ``predict_proba`` the softmax.
    """

    def __init__(self, cfg: PlsNetConfig):
        super().__init__()
        self.cfg = cfg
        c, bn, g, dil = cfg.n_channels, cfg.batch_norm, cfg.growth_rate, cfg.dilations
        w1, w2, w3 = (w + c for w in cfg.widths)  # level widths after input reinforcement
        self.ds_conv_1 = DSConv(c, cfg.widths[0], stride=2, batch_norm=bn)
        self.drdb_1 = nn.Sequential(*[DRDB(w1, g, dil, bn) for _ in range(cfg.n_drdb[0])])
        self.ds_conv_2 = DSConv(w1, cfg.widths[1], stride=2, batch_norm=bn)
        self.drdb_2 = nn.Sequential(*[DRDB(w2, g, dil, bn) for _ in range(cfg.n_drdb[1])])
        self.ds_conv_3 = DSConv(w2, cfg.widths[2], stride=2, batch_norm=bn)
        self.drdb_3 = nn.Sequential(*[DRDB(w3, g, dil, bn) for _ in range(cfg.n_drdb[2])])
        d = cfg.d_bridge
        self.ds_bridge_l2 = DSConv(w2, d, batch_norm=bn)
        self.ds_bridge_l1 = DSConv(w1, d, batch_norm=bn)
        self.decoder_l3 = DecoderBlock(w3, d, bn)
        self.decoder_l2 = DecoderBlock(2 * d, d, bn)
        self.decoder_l1 = DecoderBlock(2 * d, d, bn)
        self.decoder_l0 = nn.Conv3d(d, cfg.n_classes, 1)

    def encode(self, x: Tensor) -> list[Tensor]:
        """Encoder features of levels 1, 2, 3: ``[(B, w_l + C, *S / 2**l)]``."""
        cfg = self.cfg
        check_dense_input(
            x, like=self, n_channels=cfg.n_channels, n_dims=3, multiple=8, name="PLS-Net"
        )
        feats, h = [], x
        stages = (
            (self.ds_conv_1, self.drdb_1),
            (self.ds_conv_2, self.drdb_2),
            (self.ds_conv_3, self.drdb_3),
        )
        for level, (down, blocks) in enumerate(stages, start=1):
            h = down(h)  # (B, w_l, *S / 2**l)
            small = F.interpolate(
                x, scale_factor=0.5**level, mode="trilinear", align_corners=False
            )  # (B, C, *S / 2**l): input reinforcement
            h = blocks(torch.cat([h, small], dim=1))  # (B, w_l + C, *S / 2**l)
            feats.append(h)
        return feats

    def forward(self, x: Tensor) -> Tensor:  # (B, C, D, H, W) -> (B, K, D, H, W)
        f1, f2, f3 = self.encode(x)
        h = self.decoder_l3(f3)  # (B, 2K, S/4)
        h = self.decoder_l2(torch.cat([h, self.ds_bridge_l2(f2)], dim=1))  # (B, 2K, S/2)
        h = self.decoder_l1(torch.cat([h, self.ds_bridge_l1(f1)], dim=1))  # (B, 2K, S)
        return self.decoder_l0(h)  # (B, K, D, H, W)

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:  # (B, C, D, H, W) -> (B, K, D, H, W)
        """Class probabilities (the reference's softmax output)."""
        return self.forward(x).softmax(dim=1)


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters (``archlab.lab.profiling.n_params``)."""
    return profiling.n_params(model, trainable_only=True)


VARIANTS = {
    "tiny": PlsNetConfig(widths=(4, 8, 8), growth_rate=4, n_drdb=(1, 1, 1)),
    # the quick reproduction's network (BatchNorm on: see README.md, Deviations)
    "mini": PlsNetConfig(widths=(8, 24, 48), growth_rate=6, batch_norm=True),
    "base": PlsNetConfig(),  # the reference code's network (Bouget et al. / Lee et al.)
}


def _example_input(model: PlsNet, batch_size: int) -> tuple[Tensor]:
    return (torch.rand(batch_size, model.cfg.n_channels, 16, 16, 16),)


SPEC = PaperSpec(
    slug="pls_net",
    family="dense",
    title=(
        "Fast meningioma segmentation in T1-weighted MRI volumes using a lightweight 3D deep "
        "learning architecture"
    ),
    arxiv="2010.07002",
    claim=(
        "PLS-Net, a lightweight 3-D multi-scale network (depthwise-separable dilated convolutions, "
        "input reinforcement, light decoder), segments tumours with at most 1/5 of a 3-D U-Net's "
        "parameters at comparable Dice and detection F1, and its Dice grows with tumour size."
    ),
    config=PlsNetConfig,
    build=PlsNet,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"dense", "segmentation", "3d"}),
    fidelity="faithful",
    experiment="archlab.papers.dense.pls_net.experiment",
)
