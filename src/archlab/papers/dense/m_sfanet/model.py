"""M-SFANet and M-SegNet: encoder-decoder CNNs with multi-scale-aware modules for crowd counting.

Thanasutives, Fukui, Numao, Kijsirikul, 2020 (ICPR 2020), arXiv 2003.05586.
Paper card, deviations and measured results: README.md beside this file.

Three counting networks that map an image (B, C, H, W) to a density map and an attention map,
both (B, 1, H/2, W/2); the count is the density map's sum. They follow the official code
(Pongpisit-Thanasutives/Variations-of-SFANet-for-Crowd-Counting, ``models/M_SFANet.py``,
``models/M_SegNet.py``, ``models/contextual_layer.py``):

- ``sfanet`` (Zhu et al. 2019, the baseline): a VGG-16-BN front end tapped at conv2_2, conv3_3,
  conv4_3 and conv5_3 (strides 2 to 16), then two identical FPN-like back ends, the attention map
  path (AMP) and the density map path (DMP): bilinear x2 upsampling, concatenation with the skip,
  a 1x1 and a 3x3 conv-BN-ReLU per scale, ending in 32 channels at stride 2. The AMP ends in a
  1x1 conv-BN-sigmoid (attention A); the density map is a 1x1 conv of ``A * DMP``.
- ``m_sfanet``: SFANet plus the "scale pyramid module": a context-aware module (CAN, Liu et al.
  2019) on conv4_3 and ASPP (rates 6, 12, 18 and image pooling, DeepLabv3) on conv5_3; the back
  ends also concatenate the ASPP output upsampled x4 at stride 4 (official ``BackEnd``).
- ``m_segnet``: SFANet's dual path without ASPP/CAN, with SegNet's max-unpooling (the encoder's
  pooling indices) in place of bilinear upsampling, and a 10-layer front end (conv1_1..conv4_3,
  four 2x2 max-pools with indices; the skips are the pooled maps).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.nn.conv import ASPP, ConvNormAct, check_dense_input
from archlab.registry import PaperSpec

ARCHS = ("sfanet", "m_sfanet", "m_segnet")
VGG16_LAYERS = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
"""(stage, number of 3x3 convolutions) of VGG-16: conv1_1..conv5_3."""


@dataclass(frozen=True)
class SFANetConfig:
    """Hyper-parameters of SFANet / M-SFANet / M-SegNet (official defaults).

    Attributes:
        arch: ``"sfanet"`` (baseline), ``"m_sfanet"`` (+ CAN + ASPP) or ``"m_segnet"``
            (max-unpooling decoder, no ASPP/CAN).
        n_channels: input channels C.
        widths: VGG-16-BN stage widths (conv1_x .. conv5_x); 64, 128, 256, 512, 512.
        decoder_widths: back-end widths after each fusion: conv2 (stride 8), conv4 (stride 4),
            conv6 (stride 2) and conv7 (the 32-channel map the heads read).
        d_aspp: ASPP output width (256); ``m_sfanet`` only.
        aspp_rates: ASPP atrous rates besides the 1x1 branch (6, 12, 18: output stride 16).
        aspp_dropout: dropout after the ASPP projection (0.5).
        can_sizes: CAN's adaptive average-pool grid sizes (1, 2, 3, 6).
        d_can: CAN output width (512, the width of conv4_3).
    """

    arch: str = "m_sfanet"
    n_channels: int = 3
    widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    decoder_widths: tuple[int, ...] = (256, 128, 64, 32)
    d_aspp: int = 256
    aspp_rates: tuple[int, ...] = (6, 12, 18)
    aspp_dropout: float = 0.5
    can_sizes: tuple[int, ...] = (1, 2, 3, 6)
    d_can: int = 512

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if len(self.widths) != 5 or min(self.widths) < 1:
            raise ValueError(f"widths must be 5 positive stage widths, got {self.widths}")
        if len(self.decoder_widths) != 4 or min(self.decoder_widths) < 1:
            raise ValueError(f"decoder_widths must be 4 positive widths, got {self.decoder_widths}")
        if self.arch == "m_segnet":
            # the unpooling indices of a stage index maps of that stage's width
            w, d = self.widths, self.decoder_widths
            if (d[0], d[1]) != (w[2], w[1]):
                raise ValueError(
                    "m_segnet unpools decoder maps with the encoder's pooling indices, so "
                    f"decoder_widths[:2] must equal (widths[2], widths[1]) = {(w[2], w[1])}, "
                    f"got {d[:2]}"
                )
        if min(self.n_channels, self.d_aspp, self.d_can) < 1 or not self.can_sizes:
            raise ValueError("n_channels, d_aspp, d_can must be >= 1 and can_sizes non-empty")
        if not 0.0 <= self.aspp_dropout < 1.0:
            raise ValueError(f"aspp_dropout must be in [0, 1), got {self.aspp_dropout}")

    @property
    def stride(self) -> int:
        """Total stride of the encoder: inputs must be divisible by it."""
        return 16


def base_conv(d_in: int, d_out: int, kernel: int) -> ConvNormAct:
    """The official ``BaseConv``: conv (with bias) -> BN -> ReLU."""
    return ConvNormAct(d_in, d_out, kernel, bias=True)


class VGGFrontEnd(nn.Module):
    """VGG-16-BN convolutions ``conv1_1`` .. ``conv5_3`` (``n_stages`` stages).

    ``forward`` returns the stage outputs before pooling (SFANet's taps conv2_2, conv3_3,
    conv4_3, conv5_3) or, with ``return_indices``, the SegNet form: per stage 1..4 the pooled map,
    the pooling indices and the pre-pool size.
    """

    def __init__(self, n_channels: int, widths: tuple[int, ...], n_stages: int = 5):
        super().__init__()
        d_in = n_channels
        self.n_stages = n_stages
        for stage, n_convs in VGG16_LAYERS[:n_stages]:
            for j in range(1, n_convs + 1):
                self.add_module(f"conv{stage}_{j}", base_conv(d_in, widths[stage - 1], 3))
                d_in = widths[stage - 1]

    def _stage(self, x: Tensor, stage: int) -> Tensor:
        for j in range(1, VGG16_LAYERS[stage - 1][1] + 1):
            x = getattr(self, f"conv{stage}_{j}")(x)
        return x

    def forward(self, x: Tensor) -> list[Tensor]:  # (B, C, H, W) -> 4 maps, strides 2..16
        x = self._stage(x, 1)  # (B, w1, H, W)
        taps = []
        for stage in range(2, self.n_stages + 1):
            x = self._stage(F.max_pool2d(x, 2, 2), stage)  # (B, w_s, H / 2^(s-1), ...)
            taps.append(x)
        return taps  # conv2_2, conv3_3, conv4_3, conv5_3

    def forward_with_indices(self, x: Tensor) -> list[tuple[Tensor, Tensor, torch.Size]]:
        """SegNet encoder: after each of stages 1..4, a 2x2 max-pool that keeps its indices."""
        out = []
        for stage in range(1, self.n_stages + 1):
            x = self._stage(x, stage)
            size = x.shape
            x, idx = F.max_pool2d(x, 2, 2, return_indices=True)  # (B, w_s, h/2, w/2)
            out.append((x, idx, size))
        return out


class ContextualModule(nn.Module):
    """Context-aware module (CAN, Liu et al. 2019): scale-aware contrast features.

    For each grid size s: adaptive average pool to s x s, 1x1 conv, bilinear upsample -> S_s.
    Weights w_s = sigmoid(conv1x1(f - S_s)); the context is sum_s w_s S_s / sum_s w_s, and the
    output is ReLU(conv1x1([context, f])). ``(B, C, H, W) -> (B, d_out, H, W)``.
    """

    def __init__(self, channels: int, d_out: int, sizes: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        self.scales = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), nn.Conv2d(channels, channels, 1, bias=False))
            for s in sizes
        )
        self.bottleneck = nn.Conv2d(channels * 2, d_out, 1)
        self.weight_net = nn.Conv2d(channels, channels, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, f: Tensor) -> Tensor:  # (B, C, H, W) -> (B, d_out, H, W)
        size = f.shape[-2:]
        scales = [
            F.interpolate(stage(f), size=size, mode="bilinear", align_corners=False)
            for stage in self.scales
        ]  # each (B, C, H, W)
        weights = [torch.sigmoid(self.weight_net(f - s)) for s in scales]
        context = sum(w * s for w, s in zip(weights, scales, strict=True)) / sum(weights)
        return F.relu(self.bottleneck(torch.cat([context, f], dim=1)))


class BackEnd(nn.Module):
    """SFANet's FPN-like path with bilinear x2 upsampling (``align_corners=True``).

    ``extra_skip`` (M-SFANet): the stride-16 map is also upsampled x4 and concatenated at
    stride 4. Taps (c2, c3, c4, c5) at strides 2, 4, 8, 16 -> (B, decoder_widths[3], H/2, W/2).
    """

    def __init__(self, taps: tuple[int, int, int, int], widths, extra_skip: bool = False):
        super().__init__()
        c2, c3, c4, c5 = taps
        w0, w1, w2, w3 = widths
        self.extra_skip = extra_skip
        self.conv1 = base_conv(c5 + c4, w0, 1)
        self.conv2 = base_conv(w0, w0, 3)
        self.conv3 = base_conv(w0 + c3 + (c5 if extra_skip else 0), w1, 1)
        self.conv4 = base_conv(w1, w1, 3)
        self.conv5 = base_conv(w1 + c2, w2, 1)
        self.conv6 = base_conv(w2, w2, 3)
        self.conv7 = base_conv(w2, w3, 3)

    @staticmethod
    def _up(x: Tensor, factor: int = 2) -> Tensor:
        return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=True)

    def forward(self, c2: Tensor, c3: Tensor, c4: Tensor, c5: Tensor) -> Tensor:
        x = torch.cat([self._up(c5), c4], 1)  # (B, c5 + c4, H/8, W/8)
        x = self._up(self.conv2(self.conv1(x)))  # (B, w0, H/4, W/4)
        skips = [x, c3] + ([self._up(c5, 4)] if self.extra_skip else [])
        x = self._up(self.conv4(self.conv3(torch.cat(skips, 1))))  # (B, w1, H/2, W/2)
        x = torch.cat([x, c2], 1)  # (B, w1 + c2, H/2, W/2)
        return self.conv7(self.conv6(self.conv5(x)))  # (B, w3, H/2, W/2)


class UnpoolBackEnd(nn.Module):
    """M-SegNet's path: max-unpooling with the encoder's indices instead of upsampling.

    Input: the SegNet encoder's four (pooled map, indices, pre-pool size) triples with pooled
    widths (w1, w2, w3, w4) at strides 2, 4, 8, 16 -> (B, decoder_widths[3], H/2, W/2).
    """

    def __init__(self, pooled: tuple[int, int, int, int], widths):
        super().__init__()
        p1, p2, p3, p4 = pooled
        w0, w1, w2, w3 = widths
        self.conv1 = base_conv(p4 + p3, w0, 1)
        self.conv2 = base_conv(w0, w0, 3)
        self.conv3 = base_conv(w0 + p2, w1, 1)
        self.conv4 = base_conv(w1, w1, 3)
        self.conv5 = base_conv(w1 + p1, w2, 1)
        self.conv6 = base_conv(w2, w2, 3)
        self.conv7 = base_conv(w2, w3, 3)

    def forward(self, *enc: tuple[Tensor, Tensor, torch.Size]) -> Tensor:
        (x1, i1, s1), (x2, i2, s2), (x3, i3, s3), (x4, i4, s4) = enc
        del i1, s1  # the first pooling's indices would unpool to full resolution: unused
        x = F.max_unpool2d(x4, i4, 2, 2, 0, s4[-2:])  # (B, w4, H/8, W/8)
        x = self.conv2(self.conv1(torch.cat([x, x3], 1)))  # (B, w0, H/8, W/8)
        x = F.max_unpool2d(x, i3, 2, 2, 0, s3[-2:])  # (B, w0, H/4, W/4)
        x = self.conv4(self.conv3(torch.cat([x, x2], 1)))  # (B, w1, H/4, W/4)
        x = F.max_unpool2d(x, i2, 2, 2, 0, s2[-2:])  # (B, w1, H/2, W/2)
        return self.conv7(self.conv6(self.conv5(torch.cat([x, x1], 1))))  # (B, w3, H/2, W/2)


class SFANet(nn.Module):
    """SFANet / M-SFANet / M-SegNet (``cfg.arch``): (B, C, H, W) -> (density, attention).

    Both outputs are (B, 1, H/2, W/2); H and W must be divisible by 16. ``density.sum((1, 2,
    3))`` is the predicted count.

    Attributes:
        vgg: the VGG-16-BN front end (10 layers for ``m_segnet``).
        spm: the scale pyramid module (``m_sfanet``): ``spm.can`` and ``spm.aspp``.
        amp, dmp: attention-map and density-map paths (two back ends, not shared).
        conv_att: 1x1 conv -> BN -> sigmoid (attention map).
        conv_out: 1x1 conv with bias (density map).
    """

    def __init__(self, cfg: SFANetConfig):
        super().__init__()
        self.cfg = cfg
        w, dw = cfg.widths, cfg.decoder_widths
        self.spm: nn.ModuleDict | None = None
        if cfg.arch == "m_segnet":
            self.vgg = VGGFrontEnd(cfg.n_channels, w, n_stages=4)
            pooled = (w[0], w[1], w[2], w[3])
            self.amp: nn.Module = UnpoolBackEnd(pooled, dw)
            self.dmp: nn.Module = UnpoolBackEnd(pooled, dw)
        else:
            self.vgg = VGGFrontEnd(cfg.n_channels, w, n_stages=5)
            taps = (w[1], w[2], w[3], w[4])
            if cfg.arch == "m_sfanet":
                aspp = ASPP(w[4], cfg.d_aspp, cfg.aspp_rates, dropout=cfg.aspp_dropout)
                self.spm = nn.ModuleDict(
                    {"can": ContextualModule(w[3], cfg.d_can, cfg.can_sizes), "aspp": aspp}
                )
                taps = (w[1], w[2], cfg.d_can, cfg.d_aspp)
            extra = cfg.arch == "m_sfanet"
            self.amp = BackEnd(taps, dw, extra_skip=extra)
            self.dmp = BackEnd(taps, dw, extra_skip=extra)
        self.conv_att = nn.Sequential(
            nn.Conv2d(dw[3], 1, 1), nn.BatchNorm2d(1), nn.Sigmoid()
        )  # official BaseConv(32, 1, 1, activation=Sigmoid, use_bn=True)
        self.conv_out = nn.Conv2d(dw[3], 1, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official init: every convolution N(0, 0.01) with zero bias, BN scale 1 / shift 0;
        ASPP convolutions Kaiming-normal, CAN N(0, 0.01) (their own initialisers)."""
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d):
                if ".aspp." in f".{name}.":
                    nn.init.kaiming_normal_(m.weight)
                else:
                    nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # (B, C, H, W) -> 2 x (B, 1, H/2, W/2)
        cfg = self.cfg
        check_dense_input(
            x, like=self, n_channels=cfg.n_channels, multiple=cfg.stride, name=cfg.arch
        )
        if cfg.arch == "m_segnet":
            enc = self.vgg.forward_with_indices(x)
            amp, dmp = self.amp(*enc), self.dmp(*enc)  # (B, 32, H/2, W/2) each
        else:
            c2, c3, c4, c5 = self.vgg(x)
            if self.spm is not None:
                c4 = self.spm["can"](c4)  # (B, d_can, H/8, W/8)
                c5 = self.spm["aspp"](c5)  # (B, d_aspp, H/16, W/16)
            amp, dmp = self.amp(c2, c3, c4, c5), self.dmp(c2, c3, c4, c5)
        attention = self.conv_att(amp)  # (B, 1, H/2, W/2)
        density = self.conv_out(attention * dmp)  # (B, 1, H/2, W/2)
        return density, attention

    def count(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B,)
        """Predicted counts: the density map's sum."""
        return self.forward(x)[0].sum((1, 2, 3))


def _narrow(arch: str, k: int) -> SFANetConfig:
    """The official widths divided by ``k`` (``tiny``: k = 8)."""
    return SFANetConfig(
        arch=arch,
        widths=tuple(c // k for c in (64, 128, 256, 512, 512)),
        decoder_widths=tuple(c // k for c in (256, 128, 64, 32)),
        d_aspp=256 // k,
        d_can=512 // k,
    )


VARIANTS = {
    "base": SFANetConfig(arch="m_sfanet"),
    "m_sfanet": SFANetConfig(arch="m_sfanet"),
    "sfanet": SFANetConfig(arch="sfanet"),
    "m_segnet": SFANetConfig(arch="m_segnet"),
    "tiny": _narrow("m_sfanet", 8),
    "tiny_sfanet": _narrow("sfanet", 8),
    "tiny_m_segnet": _narrow("m_segnet", 8),
}


def _example_input(model: SFANet, batch_size: int) -> tuple[Tensor]:
    return (torch.rand(batch_size, model.cfg.n_channels, 64, 64),)


SPEC = PaperSpec(
    slug="m_sfanet",
    family="dense",
    title=(
        "Encoder-Decoder Based Convolutional Neural Networks with Multi-Scale-Aware Modules "
        "for Crowd Counting"
    ),
    arxiv="2003.05586",
    claim=(
        "Adding ASPP and a context-aware module to SFANet's dual-path encoder-decoder (M-SFANet) "
        "lowers the count MAE, and M-SegNet (max-unpooling, no ASPP/CAN) is faster than "
        "M-SFANet at a small MAE cost."
    ),
    config=SFANetConfig,
    build=SFANet,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"density-map", "crowd-counting", "dense"}),
    fidelity="faithful",
    experiment="archlab.papers.dense.m_sfanet.experiment",
)
