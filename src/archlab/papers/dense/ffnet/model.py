"""FFNet: Simple and Efficient Architectures for Semantic Segmentation.

Mehta, Skliar, Ben Yahia, Borse, Porikli, Habibian, Blankevoort, 2022 (CVPR-W 2022 ECV),
arXiv 2206.08236. Paper card, deviations and measured results: README.md beside this file.

"Fuss-Free Networks": a plain ResNet backbone (BasicBlock stages, no dilations, no attention,
no multi-branch context modules) feeding a small FPN-like up-head. Following the official code
(Qualcomm-AI-research/FFNet, ``models/ffnet_blocks.py``):

- backbone: a ResNet stem (``"A"``: 7x7/2 conv-BN-ReLU + 3x3/2 max-pool; ``"B"``: two 3x3/2
  conv-BN-ReLU) and four stages of BasicBlocks (or, for the paper's comparison, bottleneck
  blocks) at strides 4, 8, 16, 32; module names follow torchvision's ResNet (``conv1``,
  ``bn1``, ``layer1`` .. ``layer4``), so torchvision ResNet weights load unchanged.
- up-head (``FFNetUpHead``, from FANet): a 1x1 ConvBNReLU adapter per scale to
  ``adapter_widths``, then top-down: ``fam_32_sm`` (3x3) on the stride-32 map and
  ``fam_32_up`` (1x1) to the next width, bilinearly upsampled and added to the stride-16 map,
  and so on down to stride 4; per scale a 3x3 ConvBNReLU to ``branch_widths``. Head "A":
  adapters (64, 128, 256, 512), branches (128, 128, 128, 128); "B": (64, 128, 128, 256) and
  (96, 96, 64, 32); "C": (128, 128, 128, 128) and (128, 16, 16, 16).
- segmentation head: every branch upsampled to stride 4 and concatenated, a 3x3 conv-BN-ReLU
  to ``d_seg_head`` channels (512 for "A", 256 for "B", 128 for "C") and a conv to the classes
  (1x1 for "A"/"C", 3x3 for "B").

The model returns logits at the input resolution (stride-4 logits bilinearly upsampled, as the
official training code does before the loss); ``forward_stride4`` returns them before that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.nn.conv import ConvNormAct, check_dense_input
from archlab.registry import PaperSpec

BLOCKS = ("basic", "bottleneck")
STEMS = ("A", "B")
UPSAMPLE = ("bilinear", "nearest")

HEADS = {
    # head type: (adapter widths, branch widths, d_seg_head, final kernel)
    "A": ((64, 128, 256, 512), (128, 128, 128, 128), 512, 1),
    "B": ((64, 128, 128, 256), (96, 96, 64, 32), 256, 3),
    "C": ((128, 128, 128, 128), (128, 16, 16, 16), 128, 1),
}
"""The official up-head presets ``FFNetUpHead(head_type=...)`` with its matching seg head."""


@dataclass(frozen=True)
class FFNetConfig:
    """Hyper-parameters of an FFNet (defaults: FFNet-ResNet-34 with the "A" up-head).

    Attributes:
        n_channels: input channels C.
        n_classes: classes K (19 for Cityscapes).
        block: ``"basic"`` (FFNet) or ``"bottleneck"`` (the bottleneck-ResNet comparison).
        depths: blocks per stage (ResNet-34/-50: 3, 4, 6, 3).
        widths: stage widths (block "planes"; a bottleneck stage outputs 4x this).
        stem: ``"A"`` (7x7/2 + max-pool) or ``"B"`` (two 3x3/2 convs).
        d_stem: stem output width.
        adapter_widths: 1x1 adapter widths per scale (strides 4, 8, 16, 32).
        branch_widths: up-head output widths per scale.
        d_seg_head: width of the segmentation head's hidden conv.
        seg_head_kernel: kernel of the segmentation head's last conv (1 or 3).
        upsample: ``"bilinear"`` (GPU models, ``align_corners=True``) or ``"nearest"`` (mobile).
    """

    n_channels: int = 3
    n_classes: int = 19
    block: str = "basic"
    depths: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: str = "A"
    d_stem: int = 64
    adapter_widths: tuple[int, ...] = HEADS["A"][0]
    branch_widths: tuple[int, ...] = HEADS["A"][1]
    d_seg_head: int = HEADS["A"][2]
    seg_head_kernel: int = HEADS["A"][3]
    upsample: str = "bilinear"

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {self.block!r}")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        if self.upsample not in UPSAMPLE:
            raise ValueError(f"upsample must be one of {UPSAMPLE}, got {self.upsample!r}")
        for name in ("depths", "widths", "adapter_widths", "branch_widths"):
            v = getattr(self, name)
            if len(v) != 4 or min(v) < 1:
                raise ValueError(f"{name} must be 4 positive integers (one per stage), got {v}")
        if min(self.n_channels, self.n_classes, self.d_stem, self.d_seg_head) < 1:
            raise ValueError("n_channels, n_classes, d_stem and d_seg_head must be >= 1")
        if self.seg_head_kernel not in (1, 3):
            raise ValueError(f"seg_head_kernel must be 1 or 3, got {self.seg_head_kernel}")

    @property
    def stride(self) -> int:
        """Total stride of the backbone (inputs must be divisible by it)."""
        return 32

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """Output channels of the four stages."""
        e = 4 if self.block == "bottleneck" else 1
        return tuple(w * e for w in self.widths)


def with_head(cfg_kwargs: dict, head: str) -> dict:
    """``cfg_kwargs`` plus the up-head preset ``head`` ("A", "B", "C")."""
    a, b, d, k = HEADS[head]
    return {
        **cfg_kwargs,
        "adapter_widths": a,
        "branch_widths": b,
        "d_seg_head": d,
        "seg_head_kernel": k,
    }


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs), torchvision's layout and names."""

    expansion = 1

    def __init__(self, d_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(d_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or d_in != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(d_in, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:  # (B, d_in, H, W) -> (B, planes, H/s, W/s)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet bottleneck block (1x1, 3x3 with the stride, 1x1 x4), torchvision's layout."""

    expansion = 4

    def __init__(self, d_in: int, planes: int, stride: int = 1):
        super().__init__()
        d_out = planes * self.expansion
        self.conv1 = nn.Conv2d(d_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, d_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(d_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or d_in != d_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(d_in, d_out, 1, stride, bias=False), nn.BatchNorm2d(d_out)
            )

    def forward(self, x: Tensor) -> Tensor:  # (B, d_in, H, W) -> (B, 4 planes, H/s, W/s)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNetBackbone(nn.Module):
    """Stem + four stages; returns the stage outputs at strides 4, 8, 16, 32."""

    def __init__(self, cfg: FFNetConfig):
        super().__init__()
        self.stem_type = cfg.stem
        if cfg.stem == "A":
            self.conv1 = nn.Conv2d(cfg.n_channels, cfg.d_stem, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(cfg.d_stem)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.stem = nn.Sequential(
                ConvNormAct(cfg.n_channels, cfg.d_stem // 2, 3, 2),
                ConvNormAct(cfg.d_stem // 2, cfg.d_stem, 3, 2),
            )
        block = BasicBlock if cfg.block == "basic" else Bottleneck
        d_in = cfg.d_stem
        for i, (depth, planes) in enumerate(zip(cfg.depths, cfg.widths, strict=True)):
            layers = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(block(d_in, planes, stride))
                d_in = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))

    def forward(self, x: Tensor) -> list[Tensor]:  # (B, C, H, W) -> 4 maps, strides 4..32
        if self.stem_type == "A":
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, d_stem, H/4, W/4)
        else:
            x = self.stem(x)  # (B, d_stem, H/4, W/4)
        feats = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)  # (B, c_i, H / 2^(i+1), W / 2^(i+1))
            feats.append(x)
        return feats


def conv_bn_relu(d_in: int, d_out: int, kernel: int) -> ConvNormAct:
    """The official ``ConvBNReLU`` (no bias, BN momentum 0.1, ReLU)."""
    return ConvNormAct(d_in, d_out, kernel)


class UpBranch(nn.Module):
    """FANet-style top-down fusion (official ``UpBranch``): (f4, f8, f16, f32) with widths
    ``d_in`` -> smoothed maps with widths ``d_out`` at the same strides."""

    def __init__(self, d_in: tuple[int, ...], d_out: tuple[int, ...], mode: str = "bilinear"):
        super().__init__()
        self.mode = mode
        self.fam_32_sm = conv_bn_relu(d_in[3], d_out[3], 3)
        self.fam_32_up = conv_bn_relu(d_in[3], d_in[2], 1)
        self.fam_16_sm = conv_bn_relu(d_in[2], d_out[2], 3)
        self.fam_16_up = conv_bn_relu(d_in[2], d_in[1], 1)
        self.fam_8_sm = conv_bn_relu(d_in[1], d_out[1], 3)
        self.fam_8_up = conv_bn_relu(d_in[1], d_in[0], 1)
        self.fam_4 = conv_bn_relu(d_in[0], d_out[0], 3)

    def _up(self, x: Tensor, like: Tensor) -> Tensor:
        kw = {"align_corners": True} if self.mode == "bilinear" else {}
        return F.interpolate(x, size=like.shape[-2:], mode=self.mode, **kw)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        f4, f8, f16, f32 = feats
        sm32, up32 = self.fam_32_sm(f32), self.fam_32_up(f32)
        x = self._up(up32, f16) + f16  # (B, d_in[2], H/16, W/16)
        sm16, up16 = self.fam_16_sm(x), self.fam_16_up(x)
        x = self._up(up16, f8) + f8  # (B, d_in[1], H/8, W/8)
        sm8, up8 = self.fam_8_sm(x), self.fam_8_up(x)
        sm4 = self.fam_4(self._up(up8, f4) + f4)  # (B, d_out[0], H/4, W/4)
        return [sm4, sm8, sm16, sm32]


class FFNetUpHead(nn.Module):
    """Adapters + ``UpBranch`` + upsample-concatenate + segmentation head -> stride-4 logits."""

    def __init__(self, cfg: FFNetConfig):
        super().__init__()
        self.mode = cfg.upsample
        self.adapter_conv = nn.ModuleList(
            conv_bn_relu(c, a, 1)
            for c, a in zip(cfg.stage_channels, cfg.adapter_widths, strict=True)
        )
        self.up_branch = UpBranch(cfg.adapter_widths, cfg.branch_widths, cfg.upsample)
        k = cfg.seg_head_kernel
        self.seg_head = nn.Sequential(
            nn.Conv2d(sum(cfg.branch_widths), cfg.d_seg_head, 3, padding=1),
            nn.BatchNorm2d(cfg.d_seg_head),
            nn.ReLU(inplace=True),
            nn.Conv2d(cfg.d_seg_head, cfg.n_classes, k, padding=k // 2),
        )

    def forward(self, feats: list[Tensor]) -> Tensor:  # 4 maps -> (B, K, H/4, W/4)
        x = self.up_branch([a(f) for a, f in zip(self.adapter_conv, feats, strict=True)])
        kw = {"align_corners": True} if self.mode == "bilinear" else {}
        size = x[0].shape[-2:]
        cat = torch.cat(
            [x[0]] + [F.interpolate(f, size=size, mode=self.mode, **kw) for f in x[1:]], 1
        )  # (B, sum(branch_widths), H/4, W/4)
        return self.seg_head(cat)


class FFNet(nn.Module):
    """FFNet: (B, C, H, W) -> logits (B, K, H, W); H and W divisible by 32.

    Attributes:
        backbone: ``ResNetBackbone`` (torchvision module names).
        head: ``FFNetUpHead``.
    """

    def __init__(self, cfg: FFNetConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNetBackbone(cfg)
        self.head = FFNetUpHead(cfg)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan-out, ReLU) convolutions, BN scale 1 / shift 0 (as torchvision's
        ResNet and the official ``model_weight_initializer``)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_stride4(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K, H/4, W/4)
        """Logits at stride 4 (the official model's output)."""
        cfg = self.cfg
        check_dense_input(
            x, like=self, n_channels=cfg.n_channels, multiple=cfg.stride, name="ffnet"
        )
        return self.head(self.backbone(x))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K, H, W)
        logits = self.forward_stride4(x)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def mini(block: str, depths=(2, 2, 3, 2), k: int = 4, head: str = "B") -> FFNetConfig:
    """A narrow FFNet: stage widths (64..512) / k, up-head preset ``head`` with its widths / k."""
    a, b, d, kern = HEADS[head]
    return FFNetConfig(
        n_classes=4,
        block=block,
        depths=depths,
        widths=tuple(w // k for w in (64, 128, 256, 512)),
        d_stem=64 // k,
        adapter_widths=tuple(max(1, w // k) for w in a),
        branch_widths=tuple(max(1, w // k) for w in b),
        d_seg_head=d // k,
        seg_head_kernel=kern,
    )


VARIANTS = {
    "base": FFNetConfig(),  # FFNet-ResNet-34 "AAA" (up-head A, seg head A)
    "resnet34_AAC": FFNetConfig(**with_head({}, "A") | {"d_seg_head": 128}),
    "resnet18_BBB": FFNetConfig(**with_head({"depths": (2, 2, 2, 2), "stem": "B"}, "B")),
    "resnet50_AAA": FFNetConfig(block="bottleneck"),  # the bottleneck comparison
    "mini": mini("basic"),
    "mini_bottleneck": mini("bottleneck"),
    "tiny": mini("basic", depths=(1, 1, 1, 1), k=8),
}


def _example_input(model: FFNet, batch_size: int) -> tuple[Tensor]:
    return (torch.rand(batch_size, model.cfg.n_channels, 64, 64),)


SPEC = PaperSpec(
    slug="ffnet",
    family="dense",
    title="Simple and Efficient Architectures for Semantic Segmentation",
    arxiv="2206.08236",
    claim=(
        "A plain ResNet of BasicBlocks with a simple FPN-like up-head (FFNet) has a larger "
        "effective receptive field than the bottleneck-ResNet variant and, on a task whose "
        "labels need distant context, a higher mIoU."
    ),
    config=FFNetConfig,
    build=FFNet,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"segmentation", "dense"}),
    fidelity="faithful",
    experiment="archlab.papers.dense.ffnet.experiment",
)
