"""A small ResNet family with basic blocks (baseline).

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", 2015, arXiv 1512.03385.

Stages of ``BasicBlock`` s (two 3x3 conv-BN layers and an identity shortcut; a 1x1 conv-BN
projection shortcut where the shape changes, the paper's option B), each stage after the first
halving the resolution in its first block, then global average pooling and a linear head.
Two stems: ``cifar`` (a 3x3 conv at full resolution, the paper's CIFAR-10 networks
ResNet-20/32/56 with widths 16/32/64) and ``imagenet`` (7x7 stride-2 conv and 3x3 stride-2 max
pool, as ResNet-18/34 with widths 64..512). Parameter names follow torchvision
(``conv1``/``bn1``, ``layer1..``, ``downsample``, ``fc``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from archlab.nn.patch import check_images
from archlab.registry import PaperSpec


@dataclass(frozen=True)
class ResNetConfig:
    """Hyper-parameters of a basic-block ResNet.

    Attributes:
        n_channels: input channels C.
        n_classes: outputs K.
        widths: channels of each stage.
        depths: basic blocks in each stage (same length as ``widths``).
        stem: ``cifar`` (3x3 conv, stride 1) or ``imagenet`` (7x7 conv stride 2 + max pool).
        zero_init_residual: start each block's last BN scale at 0 (each block is the identity).
    """

    n_channels: int = 3
    n_classes: int = 10
    widths: tuple[int, ...] = (16, 32, 64)
    depths: tuple[int, ...] = (3, 3, 3)
    stem: Literal["cifar", "imagenet"] = "cifar"
    zero_init_residual: bool = False

    def __post_init__(self) -> None:
        if self.n_channels < 1 or self.n_classes < 1:
            raise ValueError("n_channels and n_classes must be >= 1")
        if not self.widths or len(self.widths) != len(self.depths):
            raise ValueError(
                f"widths {self.widths} and depths {self.depths} must be non-empty and of equal "
                "length (one entry per stage)"
            )
        if min(self.widths) < 1 or min(self.depths) < 1:
            raise ValueError("every width and depth must be >= 1")
        if self.stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {self.stem!r}")


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with 3x3 convolutions.

    Args:
        d_in: input channels.
        d_out: output channels.
        stride: stride of the first convolution (2 halves the resolution).
    """

    def __init__(self, d_in: int, d_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(d_in, d_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(d_out)
        self.conv2 = nn.Conv2d(d_out, d_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(d_out)
        self.downsample = None
        if stride != 1 or d_in != d_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(d_in, d_out, 1, stride=stride, bias=False), nn.BatchNorm2d(d_out)
            )

    def forward(self, x: Tensor) -> Tensor:  # (B, d_in, H, W) -> (B, d_out, H/s, W/s)
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(h + shortcut)


class ResNet(nn.Module):
    """Basic-block ResNet classifier: (B, C, H, W) images -> (B, K) logits."""

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        w0 = cfg.widths[0]
        if cfg.stem == "cifar":
            self.conv1 = nn.Conv2d(cfg.n_channels, w0, 3, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(cfg.n_channels, w0, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(w0)
        stages, d_in = [], w0
        for i, (width, depth) in enumerate(zip(cfg.widths, cfg.depths)):
            blocks = [BasicBlock(d_in, width, stride=1 if i == 0 else 2)]
            blocks += [BasicBlock(width, width) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            d_in = width
        self.layers = nn.ModuleList(stages)
        self.fc = nn.Linear(d_in, cfg.n_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan-out) convolutions, unit BN, as torchvision."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.cfg.zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, widths[-1])
        check_images(x, self.cfg.n_channels, None, self.conv1.weight.dtype)
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))  # (B, w0, H', W')
        for stage in self.layers:
            x = stage(x)
        return x.mean(dim=(2, 3))  # (B, widths[-1])

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K)
        return self.fc(self.forward_features(x))


VARIANTS = {
    "tiny": ResNetConfig(widths=(8, 16, 32), depths=(1, 1, 1)),
    "resnet8": ResNetConfig(widths=(16, 32, 64), depths=(1, 1, 1)),
    "resnet20": ResNetConfig(),  # the paper's CIFAR-10 ResNet-20 (0.27M parameters)
    "resnet56": ResNetConfig(depths=(9, 9, 9)),
    "resnet18": ResNetConfig(
        n_classes=1000, widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), stem="imagenet"
    ),
}


def _example_input(model: ResNet, batch_size: int) -> tuple[Tensor]:
    return (torch.randn(batch_size, model.cfg.n_channels, 32, 32),)


def _task(cfg: ResNetConfig, seed: int):
    """``archlab train``: textured shapes (``archlab.lab.tasks.textured_shapes_task``)."""
    from archlab.lab.tasks import textured_shapes_task

    return textured_shapes_task(32, cfg.n_channels, cfg.n_classes, seed)


SPEC = PaperSpec(
    slug="resnet",
    family="vision",
    title="Deep Residual Learning for Image Recognition",
    arxiv="1512.03385",
    claim="Baseline: a convolutional network of residual basic blocks.",
    config=ResNetConfig,
    build=ResNet,
    variants=VARIANTS,
    example_input=_example_input,
    task=_task,
    train_defaults={
        "steps": 2000,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 0.05,
        "schedule": "cosine",
        "warmup_steps": 100,
    },
    capabilities=frozenset({"image-classifier"}),
    fidelity="faithful",
    experiment=None,
)
