"""AsCAN: Asymmetric Convolution-Attention Networks for Efficient Recognition and Generation.

Anil Kag, Huseyin Coskun, Jierun Chen, Junli Cao, Willi Menapace, Aliaksandr Siarohin, Sergey
Tulyakov, Jian Ren, NeurIPS 2024, arXiv 2411.04967. Paper card and deviations: README.md beside
this file.

A hybrid classifier: a convolutional stem, four stages of C and T blocks, global average pooling
and a linear head. The distribution of the blocks is given as data, one string per stage
separated by ``|`` and read left to right, e.g. ``"CC|CC|CT|TT"``:

- ``C``: FusedMBConv, ``x + BN(Conv1x1(GELU(BN(Conv3x3(x)))))`` with the 3x3 convolution
  expanding the width ``expansion`` times (Tan and Le, EfficientNetV2, arXiv 2104.00298).
- ``T``: a pre-LayerNorm transformer block with vanilla multi-head self-attention over every
  position of the feature map and a GELU MLP (``archlab.nn.EncoderLayer``), no efficient-attention
  approximation and no position embedding (the convolutions before it supply position).

Every stage after the first starts by halving the resolution with a 3x3 stride-2 convolution
(+ BN) that also changes the width. AsCAN's principle is the asymmetric distribution: C blocks
only in the early, high-resolution stages, mostly T blocks in the late ones, and C before T
inside a mixed stage (``is_asymmetric``). ``reversed_layout`` and ``symmetric_layout`` give the
distributions the paper compares against.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.nn import EncoderLayer, LayerNorm
from archlab.nn.patch import check_images
from archlab.registry import PaperSpec

BLOCK_TYPES = ("C", "T")


def parse_layout(layout: str) -> tuple[str, ...]:
    """``"CC|CC|CT|TT"`` -> ``("CC", "CC", "CT", "TT")``: one string of block types per stage.

    Spaces are ignored. Raises ``ValueError`` for an empty stage or a letter other than C/T.
    """
    if not isinstance(layout, str):
        raise TypeError(f"layout must be a string like 'CC|CC|CT|TT'; got {type(layout).__name__}")
    stages = tuple(s.replace(" ", "").upper() for s in layout.split("|"))
    for i, stage in enumerate(stages):
        if not stage:
            raise ValueError(f"layout {layout!r}: stage {i} is empty (use e.g. 'CC|CC|CT|TT')")
        bad = sorted(set(stage) - set(BLOCK_TYPES))
        if bad:
            raise ValueError(
                f"layout {layout!r}: unknown block type(s) {bad} in stage {i}; use C "
                "(FusedMBConv) and T (transformer)"
            )
    return stages


def format_layout(stages: tuple[str, ...] | list[str]) -> str:
    """Inverse of ``parse_layout``: ``("CC", "CT")`` -> ``"CC|CT"``."""
    return "|".join(stages)


def reversed_layout(layout: str) -> str:
    """The same blocks in reverse order: ``"CC|CC|CT|TT"`` -> ``"TT|TC|CC|CC"``."""
    return format_layout([stage[::-1] for stage in reversed(parse_layout(layout))])


def symmetric_layout(layout: str) -> str:
    """Every stage gets the same C/T mix, C first, keeping every stage's depth: the share of C
    blocks of the whole layout, rounded to the nearest count per stage (halves up):
    ``"CC|CC|CT|TT"`` (5 C, 3 T) -> ``"CT|CT|CT|CT"``.

    Raises ``ValueError`` when the stages differ in depth.
    """
    stages = parse_layout(layout)
    depth = len(stages[0])
    if any(len(s) != depth for s in stages):
        raise ValueError(f"symmetric_layout needs stages of equal depth; got {layout!r}")
    n_c = sum(s.count("C") for s in stages)
    per = int(n_c / len(stages) + 0.5)
    return format_layout(["C" * per + "T" * (depth - per)] * len(stages))


def is_asymmetric(layout: str) -> bool:
    """AsCAN's rule: the share of C blocks never rises from one stage to the next, the first
    stage has only C blocks, the last stage has at least as many T as C blocks, and inside each
    stage every C block comes before every T block."""
    stages = parse_layout(layout)
    share = [s.count("C") / len(s) for s in stages]
    non_increasing = all(a >= b for a, b in zip(share, share[1:]))
    c_before_t = all("TC" not in s for s in stages)
    last = stages[-1]
    return non_increasing and c_before_t and share[0] == 1.0 and last.count("T") >= last.count("C")


@dataclass(frozen=True)
class AsCANConfig:
    """Hyper-parameters of an AsCAN classifier.

    Attributes:
        image_size: input height = width; must be divisible by the total stride
            ``stem_stride * 2 ** (n_stages - 1)``.
        n_channels: input channels.
        n_classes: outputs K.
        layout: block types per stage, ``|``-separated, e.g. ``"CC|CC|CT|TT"``.
        widths: channels D of each stage (one per stage of ``layout``).
        stem_stride: down-sampling of the stem (1, 2, 4, ...: one stride-2 3x3 conv each).
        expansion: FusedMBConv expansion of the 3x3 convolution (4 in the paper).
        d_head: attention head width hd; every width with a T block must be divisible by it.
        mlp_ratio: MLP hidden width / D of the T blocks.
        norm_eps: LayerNorm epsilon of the T blocks and the head.
        dropout: dropout on the T blocks' sublayer outputs and before the head.
    """

    image_size: int = 224
    n_channels: int = 3
    n_classes: int = 1000
    layout: str = "CC|CCC|CCCTTT|TTT"
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_stride: int = 4
    expansion: float = 4.0
    d_head: int = 32
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-5
    dropout: float = 0.0

    def __post_init__(self) -> None:
        stages = parse_layout(self.layout)
        if len(self.widths) != len(stages):
            raise ValueError(
                f"widths {tuple(self.widths)} must give one width per stage of layout "
                f"{self.layout!r} ({len(stages)} stages)"
            )
        for name in ("image_size", "n_channels", "n_classes", "d_head"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if min(self.widths) < 1:
            raise ValueError(f"every width must be >= 1; got {tuple(self.widths)}")
        s = self.stem_stride
        if s < 1 or s & (s - 1):
            raise ValueError(f"stem_stride must be a power of two (1, 2, 4, ...); got {s}")
        if self.image_size % self.total_stride:
            raise ValueError(
                f"image_size={self.image_size} must be divisible by the total stride "
                f"{self.total_stride} (stem_stride {s} x 2 per stage after the first)"
            )
        for stage, width in zip(stages, self.widths):
            if "T" in stage and width % self.d_head:
                raise ValueError(
                    f"width {width} of a stage with T blocks must be divisible by d_head="
                    f"{self.d_head}"
                )
        if self.expansion <= 0 or self.mlp_ratio <= 0:
            raise ValueError("expansion and mlp_ratio must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def stages(self) -> tuple[str, ...]:
        return parse_layout(self.layout)

    @property
    def total_stride(self) -> int:
        return self.stem_stride * 2 ** (len(self.stages) - 1)

    def resolutions(self) -> tuple[int, ...]:
        """Feature-map side of each stage (T blocks attend over its square)."""
        first = self.image_size // self.stem_stride
        return tuple(first // 2**i for i in range(len(self.stages)))


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    """Conv (no bias, 'same' padding) + BatchNorm (+ GELU)."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act:
        layers.append(nn.GELU())
    return nn.Sequential(*layers)


class FusedMBConv(nn.Module):
    """C block: ``x + BN(Conv1x1(GELU(BN(Conv3x3_expand(x)))))``, (B, D, H, W) -> same.

    Args:
        d_model: width D.
        expansion: the 3x3 convolution maps D to ``expansion * D`` channels.
    """

    def __init__(self, d_model: int, expansion: float = 4.0):
        super().__init__()
        d_hidden = max(1, round(expansion * d_model))
        self.conv_exp = conv_bn(d_model, d_hidden, 3)
        self.conv_pwl = conv_bn(d_hidden, d_model, 1, act=False)
        nn.init.zeros_(self.conv_pwl[1].weight)  # each block starts as the identity

    def forward(self, x: Tensor) -> Tensor:  # (B, D, H, W) -> (B, D, H, W)
        return x + self.conv_pwl(self.conv_exp(x))


class TransformerBlock(nn.Module):
    """T block: a pre-norm ``archlab.nn.EncoderLayer`` over the H*W positions of a feature map.

    Args:
        d_model: width D.
        d_head: head width hd (nh = D / hd heads).
        mlp_ratio: MLP hidden width / D.
        norm_eps: LayerNorm epsilon.
        dropout: dropout on each sublayer output.
    """

    def __init__(
        self,
        d_model: int,
        d_head: int,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-5,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.layer = EncoderLayer(
            d_model,
            d_model // d_head,
            max(1, round(mlp_ratio * d_model)),
            activation="gelu",
            norm_eps=norm_eps,
            norm_first=True,
            dropout=dropout,
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, D, H, W) -> (B, D, H, W)
        B, D, H, W = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, H*W, D)
        tokens = self.layer(tokens)
        return tokens.transpose(1, 2).reshape(B, D, H, W)


class Stage(nn.Module):
    """Optional stride-2 down-sampling, then the stage's C and T blocks in layout order."""

    def __init__(self, kinds: str, c_in: int, cfg: AsCANConfig, width: int, downsample: bool):
        super().__init__()
        self.kinds = kinds
        self.downsample = (
            conv_bn(c_in, width, 3, stride=2, act=False) if downsample else nn.Identity()
        )
        self.blocks = nn.ModuleList(
            FusedMBConv(width, cfg.expansion)
            if kind == "C"
            else TransformerBlock(width, cfg.d_head, cfg.mlp_ratio, cfg.norm_eps, cfg.dropout)
            for kind in kinds
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, c_in, H, W) -> (B, width, H', W')
        x = self.downsample(x)
        for block in self.blocks:
            x = block(x)
        return x

    def extra_repr(self) -> str:
        return f"kinds={self.kinds!r}"


class AsCAN(nn.Module):
    """AsCAN classifier: (B, C, H, W) images -> (B, K) logits."""

    def __init__(self, cfg: AsCANConfig):
        super().__init__()
        self.cfg = cfg
        w0 = cfg.widths[0]
        n_down = int(math.log2(cfg.stem_stride))
        stem: list[nn.Module] = [conv_bn(cfg.n_channels, w0, 3, stride=2 if n_down else 1)]
        stem += [conv_bn(w0, w0, 3, stride=2) for _ in range(n_down - 1)]
        self.stem = nn.Sequential(*stem)
        stages, c_in = [], w0
        for i, (kinds, width) in enumerate(zip(cfg.stages, cfg.widths)):
            stages.append(Stage(kinds, c_in, cfg, width, downsample=i > 0))
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.norm = LayerNorm(cfg.widths[-1], eps=cfg.norm_eps)
        self.head_dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.widths[-1], cfg.n_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, D_last, h, w)
        """Feature map after the last stage."""
        cfg = self.cfg
        check_images(x, cfg.n_channels, cfg.image_size, self.head.weight.dtype)
        x = self.stem(x)  # (B, D_0, H / stem_stride, W / stem_stride)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K)
        h = self.norm(self.forward_features(x).mean((2, 3)))  # (B, D_last)
        return self.head(self.head_dropout(h))


MINI = AsCANConfig(
    image_size=32,
    n_channels=1,
    n_classes=10,
    layout="CC|CC|CT|TT",
    widths=(8, 16, 24, 32),
    stem_stride=2,
    d_head=8,
)
"""The experiment's miniature: 32 x 32 grey images, stages at 16/8/4/2, 8 blocks."""

VARIANTS = {
    "tiny": AsCANConfig(
        image_size=32,
        n_classes=10,
        layout="CC|CC|CT|TT",
        widths=(16, 32, 48, 64),
        stem_stride=2,
        d_head=16,
    ),
    # the miniature of the experiment and the distributions it is compared with
    "mini": MINI,
    "mini_symmetric": dataclasses.replace(MINI, layout=symmetric_layout(MINI.layout)),
    "mini_reversed": dataclasses.replace(MINI, layout=reversed_layout(MINI.layout)),
    "mini_conv": dataclasses.replace(MINI, layout="CC|CC|CC|CC"),
    # ImageNet-sized (224 x 224, stem stride 4, stages at 56/28/14/7): the asymmetric rule with
    # ResNet-like widths and 14 blocks; an illustration, not a configuration from the paper
    "base": AsCANConfig(),
}


def _example_input(model: AsCAN, batch_size: int) -> tuple[Tensor]:
    c = model.cfg
    return (torch.randn(batch_size, c.n_channels, c.image_size, c.image_size),)


def _task(cfg: AsCANConfig, seed: int):
    """``archlab train``: textured shapes for RGB models, the MNIST subset for grey ones."""
    from archlab.lab.tasks import default_image_task

    return default_image_task(cfg.image_size, cfg.n_channels, cfg.n_classes, seed)


SPEC = PaperSpec(
    slug="ascan",
    family="vision",
    title=(
        "AsCAN: Asymmetric Convolution-Attention Networks for Efficient Recognition and Generation"
    ),
    arxiv="2411.04967",
    claim=(
        "An asymmetric distribution of the same convolutional (C) and transformer (T) blocks, "
        "C only in the early high-resolution stages and mostly T in the late ones, "
        "Pareto-dominates the symmetric and reversed distributions: it is faster than the "
        "reversed one (<= 0.8x latency) and at least as accurate as the symmetric one (within "
        "1 point)."
    ),
    config=AsCANConfig,
    build=AsCAN,
    variants=VARIANTS,
    example_input=_example_input,
    task=_task,
    train_defaults={
        "steps": 2000,
        "batch_size": 64,
        "lr": 2e-3,
        "weight_decay": 0.05,
        "schedule": "cosine",
        "warmup_steps": 100,
    },
    capabilities=frozenset({"image-classifier"}),
    fidelity="simplified",
    experiment="archlab.papers.vision.ascan.experiment",
)
