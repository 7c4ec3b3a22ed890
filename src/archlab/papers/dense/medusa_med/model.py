"""MEDUSA: Multi-scale Encoder-Decoder Self-Attention Deep Neural Network Architecture for
Medical Image Analysis.

Aboutalebi, Pavlova, Gunraj, Shafiee, Sabri, Alaref, Wong, 2021, arXiv 2110.06063.
Paper card, deviations and measured results: README.md beside this file.

"Single body, multi-scale heads": instead of many small, isolated attention modules (SE, CBAM) one
high-capacity self-attention *body* looks at the whole image once, and several light *heads* turn
its output into a spatial attention map for each stage of the main network, where it gates the
stage's features (selective attention, ``F'_s = F_s * A_s``). The body is an encoder-decoder
(here the shared ``archlab.baselines.unet.UNet``, features at the body's input resolution) that
sees a downsampled copy of the image (the paper: 256x256 for the body, 480x480 for the main
network); head ``s`` pools the body's output to stage ``s``'s resolution and applies a 3x3
conv-BN-ReLU and a 1x1 conv with a sigmoid, so every head shares the body's global context but has
its own local context at its scale. The main network is a ResNet (``archlab.baselines.resnet``,
composed, not subclassed); without the attention it is exactly the baseline.

The released model (COVIDNet-CXR-3, a TensorFlow checkpoint) ships no source; the body, head and
gating details above are reconstructions from the paper's text and figure (see README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.baselines.resnet import ResNet, ResNetConfig
from archlab.baselines.unet import UNet, UNetConfig
from archlab.lab import profiling
from archlab.nn.conv import ConvNormAct, check_dense_input
from archlab.registry import PaperSpec


@dataclass(frozen=True)
class MedusaConfig:
    """Hyper-parameters of a MEDUSA classifier.

    Attributes:
        n_channels: input channels C.
        n_classes: outputs K.
        widths: channels of the main network's (ResNet) stages.
        depths: basic blocks per stage.
        stem: ResNet stem, ``cifar`` (3x3, full resolution) or ``imagenet`` (7x7/2 + pool).
        body_widths: encoder widths of the attention body (a U-Net).
        d_body: channels of the body's output (its U-Net head).
        body_scale: the body sees the image resized by this factor: 1, 0.5 or 0.25 (the paper
            feeds 256x256 to the body and 480x480 to the main network, about 0.5).
        d_head: hidden channels of each attention head.
        gate: ``multiply`` (``F * A``, the paper's selective attention) or ``residual``
            (``F * (1 + A)``, as the Residual Attention Network).
    """

    n_channels: int = 1
    n_classes: int = 2
    widths: tuple[int, ...] = (64, 128, 256, 512)
    depths: tuple[int, ...] = (2, 2, 2, 2)
    stem: Literal["cifar", "imagenet"] = "imagenet"
    body_widths: tuple[int, ...] = (32, 64, 128, 256)
    d_body: int = 32
    body_scale: float = 0.5
    d_head: int = 16
    gate: Literal["multiply", "residual"] = "multiply"

    def __post_init__(self) -> None:
        if self.gate not in ("multiply", "residual"):
            raise ValueError(f"gate must be 'multiply' or 'residual', got {self.gate!r}")
        if self.body_scale not in (1.0, 0.5, 0.25):
            raise ValueError(f"body_scale must be 1, 0.5 or 0.25, got {self.body_scale}")
        if self.d_body < 1 or self.d_head < 1:
            raise ValueError("d_body and d_head must be >= 1")
        self.backbone_config()  # validates widths/depths/stem
        self.body_config()

    def backbone_config(self) -> ResNetConfig:
        """The main network's config (also the baseline's)."""
        return ResNetConfig(
            n_channels=self.n_channels, n_classes=self.n_classes, widths=self.widths,
            depths=self.depths, stem=self.stem,
        )  # fmt: skip

    def body_config(self) -> UNetConfig:
        """The attention body's config."""
        return UNetConfig(
            n_channels=self.n_channels, n_outputs=self.d_body, widths=self.body_widths,
            n_dims=2, upsample="interp",
        )  # fmt: skip

    @property
    def multiple(self) -> int:
        """Input sides must be divisible by this (the body's stride at its input scale)."""
        body = round(2 ** (len(self.body_widths) - 1) / self.body_scale)
        return max(body, 2 ** (len(self.widths) - 1))


class AttentionHead(nn.Module):
    """Body features -> one spatial attention map in (0, 1) at a stage's resolution."""

    def __init__(self, d_body: int, d_head: int):
        super().__init__()
        self.conv = ConvNormAct(d_body, d_head, 3)
        self.out = nn.Conv2d(d_head, 1, 1)

    def forward(self, body: Tensor, size: tuple[int, int]) -> Tensor:  # -> (B, 1, *size)
        bh, bw = body.shape[-2:]
        if (bh, bw) == size:
            h = body
        elif bh >= size[0] and bw >= size[1]:  # the stage is coarser: average-pool
            h = F.adaptive_avg_pool2d(body, size)
        else:  # the stage is finer than the body: upsample
            h = F.interpolate(body, size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.out(self.conv(h)))  # (B, 1, *size)


class Medusa(nn.Module):
    """MEDUSA classifier: ``(B, C, H, W)`` images -> ``(B, K)`` logits.

    Attributes:
        backbone: the main network (a ``ResNet``; its stem, stages and ``fc`` are used).
        body: the attention body (a ``UNet`` producing ``d_body`` channels).
        heads: one ``AttentionHead`` per backbone stage.
    """

    def __init__(self, cfg: MedusaConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNet(cfg.backbone_config())
        self.body = UNet(cfg.body_config())
        self.heads = nn.ModuleList([AttentionHead(cfg.d_body, cfg.d_head) for _ in cfg.widths])

    def attention_body(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, d_body, h, w)
        """The shared body on the downsampled image (computed once per forward)."""
        if self.cfg.body_scale != 1:
            x = F.interpolate(
                x, scale_factor=self.cfg.body_scale, mode="bilinear", align_corners=False,
                antialias=True,
            )  # fmt: skip
        return self.body(x)

    def forward_with_attention(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits ``(B, K)`` and the attention maps ``[(B, 1, H_s, W_s)]``, one per stage."""
        cfg = self.cfg
        check_dense_input(x, like=self, n_channels=cfg.n_channels, n_dims=2, multiple=cfg.multiple,
                          name="MEDUSA")  # fmt: skip
        body = self.attention_body(x)  # (B, d_body, h, w)
        bb = self.backbone
        h = bb.maxpool(torch.relu(bb.bn1(bb.conv1(x))))  # (B, w0, H', W')
        maps = []
        for stage, head in zip(bb.layers, self.heads):
            h = stage(h)  # (B, w_s, H_s, W_s)
            a = head(body, tuple(h.shape[-2:]))  # (B, 1, H_s, W_s)
            h = h * a if cfg.gate == "multiply" else h * (1 + a)
            maps.append(a)
        return bb.fc(h.mean(dim=(2, 3))), maps  # (B, K)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K)
        return self.forward_with_attention(x)[0]


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters (``archlab.lab.profiling.n_params``)."""
    return profiling.n_params(model, trainable_only=True)


VARIANTS = {
    "tiny": MedusaConfig(
        widths=(8, 16), depths=(1, 1), stem="cifar", body_widths=(8, 16), d_body=8, d_head=4
    ),
    # the quick reproduction's network (its body at full resolution: see README.md)
    "mini": MedusaConfig(
        widths=(16, 32, 64),
        depths=(1, 1, 1),
        stem="cifar",
        body_widths=(16, 32, 64),
        d_body=16,
        body_scale=1.0,
        d_head=8,
    ),
    "base": MedusaConfig(),  # ResNet-18-sized main network, 4 heads
}


def _example_input(model: Medusa, batch_size: int) -> tuple[Tensor]:
    side = 4 * model.cfg.multiple
    return (torch.rand(batch_size, model.cfg.n_channels, side, side),)


SPEC = PaperSpec(
    slug="medusa_med",
    family="dense",
    title=(
        "MEDUSA: Multi-scale Encoder-Decoder Self-Attention Deep Neural Network Architecture for "
        "Medical Image Analysis"
    ),
    arxiv="2110.06063",
    claim=(
        "One high-capacity encoder-decoder self-attention body with multi-scale heads gating "
        "every stage of a CNN classifies at least as well (AUC) as the same CNN without it on a "
        "task where global context decides the label, and its attention lands on the lesions."
    ),
    config=MedusaConfig,
    build=Medusa,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"image-classifier", "attention-maps"}),
    fidelity="simplified",
    experiment="archlab.papers.dense.medusa_med.experiment",
)
