"""ParaTransCNN: Parallelized TransCNN Encoder for Medical Image Segmentation.

Hongkun Sun, Jing Xu, Yuping Duan, 2024, arXiv 2401.15307.
Paper card, deviations and measured results: README.md beside this file.

Two encoders read the image in parallel:

- a CNN branch, ResNet-34 (stem ``conv7x7/2 -> BN -> ReLU`` without the max-pool, then the four
  residual stages), giving features at 1/2, 1/2, 1/4, 1/8 and 1/16 of the input;
- a pyramid transformer branch: a patch embedding (``conv k=s=2p``, p = 2) to 1/4 resolution and
  transformer stages at widths D, 2D, 4D joined by patch-merging convolutions (``conv k=s=p``),
  giving tokens at 1/4, 1/8 and 1/16. Each stage's attention may reduce its keys and values
  spatially (PVT's spatial-reduction attention, ratio ``sr_ratios``; 1 = full attention as in the
  official code).

At 1/16, 1/8 and 1/4 the two branches' features are concatenated and re-weighted per channel by
squeeze-and-excitation channel attention (r = 16); a U-Net-like decoder (two 3x3 conv-BN-ReLU
per scale, 2x transposed-convolution upsampling, concatenation with the next scale's fused
features) ends with a 4x transposed convolution to full resolution and a 1x1 head.
The layout follows the official code (HongkunSun/ParaTransCNN, ``model/ParaTransCNN.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from archlab.nn.attention import MultiHeadAttention
from archlab.nn.conv import ConvNormAct, DoubleConv, ResidualBlock, SqueezeExcite, check_dense_input
from archlab.nn.mlp import FeedForward
from archlab.registry import PaperSpec


@dataclass(frozen=True)
class ParaTransCNNConfig:
    """Hyper-parameters of ParaTransCNN (official defaults: the Synapse model).

    Attributes:
        n_channels: input channels C (3: the CT slice repeated, as the official trainer).
        n_classes: classes K including background (9 on Synapse).
        dim: width D of the first transformer stage; stages are D, 2D, 4D.
        heads: attention heads of every transformer stage.
        depth: transformer layers per stage.
        patch_size: p; the patch embedding has kernel = stride = 2p, the merges p. Only p = 2
            aligns the transformer's scales (1/4, 1/8, 1/16) with the CNN's.
        mlp_ratio: feed-forward width / stage width (2: the official ``mlp_dim = 2 x width``).
        sr_ratios: spatial-reduction ratio of the keys/values per stage (1 = full attention).
        dropout: dropout after attention and in the feed-forward (official 0.1).
        attn_dropout: dropout on attention weights (official 0.1).
        cnn_widths: channels of the four ResNet stages (ResNet-34: 64, 128, 256, 512).
        cnn_depths: residual blocks per stage (ResNet-34: 3, 4, 6, 3).
        se_reduction: r of the squeeze-and-excitation channel attention.
        use_transformer: the transformer branch; False is the CNN-only ablation (the fusions
            see the CNN features alone, so the decoder is narrower by the transformer widths).
    """

    n_channels: int = 3
    n_classes: int = 9
    dim: int = 320
    heads: int = 8
    depth: tuple[int, int, int] = (3, 3, 3)
    patch_size: int = 2
    mlp_ratio: float = 2.0
    sr_ratios: tuple[int, int, int] = (1, 1, 1)
    dropout: float = 0.1
    attn_dropout: float = 0.1
    cnn_widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    cnn_depths: tuple[int, int, int, int] = (3, 4, 6, 3)
    se_reduction: int = 16
    use_transformer: bool = True

    def __post_init__(self) -> None:
        if self.n_channels < 1 or self.n_classes < 1:
            raise ValueError("n_channels and n_classes must be >= 1")
        if self.patch_size != 2:
            raise ValueError(
                f"patch_size must be 2 (the transformer scales 1/(2p), 1/(2p^2), 1/(2p^3) must "
                f"equal the CNN's 1/4, 1/8, 1/16), got {self.patch_size}"
            )
        if self.dim < 1 or self.heads < 1 or self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be a positive multiple of heads={self.heads}")
        for name in ("depth", "sr_ratios"):
            value = getattr(self, name)
            if len(value) != 3 or min(value) < 1:
                raise ValueError(f"{name} needs 3 entries >= 1 (one per stage), got {value}")
        if len(self.cnn_widths) != 4 or len(self.cnn_depths) != 4:
            raise ValueError("cnn_widths and cnn_depths need 4 entries (ResNet stages)")
        if min(self.cnn_widths) < 1 or min(self.cnn_depths) < 1:
            raise ValueError("cnn_widths and cnn_depths must be >= 1")
        if self.mlp_ratio <= 0 or self.se_reduction < 1:
            raise ValueError("mlp_ratio must be > 0 and se_reduction >= 1")
        if not (0 <= self.dropout < 1 and 0 <= self.attn_dropout < 1):
            raise ValueError("dropout and attn_dropout must be in [0, 1)")

    @property
    def multiple(self) -> int:
        """Total stride of both encoders: input sizes must be divisible by it (16)."""
        return 2 * self.patch_size**3


class PyramidTransformerLayer(nn.Module):
    """Pre-norm transformer layer over a token grid, with optional spatial-reduction attention.

    ``x = x + drop(attn(norm1(x), kv=reduce(norm1(x)))); x = x + mlp(norm2(x))``; ``reduce`` is
    PVT's ``conv k=s=sr -> LayerNorm`` on the token grid (identity for sr = 1).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        d_hidden: int,
        sr_ratio: int,
        dropout: float,
        attn_dropout: float,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, dropout=attn_dropout)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.sr_norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, d_hidden, "gelu", dropout=dropout)
        self.mlp_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:  # (B, N, D) -> (B, N, D), N = h*w
        y = self.norm1(x)
        kv = None
        if self.sr_ratio > 1:
            grid = rearrange(y, "B (H W) D -> B D H W", H=h, W=w)
            kv = self.sr_norm(rearrange(self.sr(grid), "B D H W -> B (H W) D"))  # (B, N/sr^2, D)
        x = x + self.drop(self.attn(y, kv))
        return x + self.mlp_drop(self.mlp(self.norm2(x)))


class TransformerStage(nn.Module):
    """Patch embedding/merging convolution then ``depth`` transformer layers:
    ``(B, C_in, H, W) -> (B, D, H / stride, W / stride)``."""

    def __init__(
        self, d_in: int, dim: int, stride: int, depth: int, heads: int, cfg: ParaTransCNNConfig,
        sr_ratio: int,
    ):  # fmt: skip
        super().__init__()
        self.embed = nn.Conv2d(d_in, dim, stride, stride=stride)
        d_hidden = int(round(cfg.mlp_ratio * dim))
        self.layers = nn.ModuleList(
            PyramidTransformerLayer(dim, heads, d_hidden, sr_ratio, cfg.dropout, cfg.attn_dropout)
            for _ in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x)  # (B, D, h, w)
        h, w = x.shape[-2:]
        tokens = rearrange(x, "B D H W -> B (H W) D")  # (B, N, D)
        for layer in self.layers:
            tokens = layer(tokens, h, w)
        return rearrange(tokens, "B (H W) D -> B D H W", H=h, W=w)


class ResNetEncoder(nn.Module):
    """ResNet (basic blocks) without the stem's max-pool, as the official CNN branch:
    returns the features of the four stages at 1/2, 1/4, 1/8, 1/16."""

    def __init__(self, n_channels: int, widths: tuple[int, ...], depths: tuple[int, ...]):
        super().__init__()
        self.stem = ConvNormAct(n_channels, widths[0], 7, 2)  # (B, w0, H/2, W/2)
        stages = []
        d_in = widths[0]
        for i, (width, n_blocks) in enumerate(zip(widths, depths)):
            blocks = [ResidualBlock(d_in, width, 1 if i == 0 else 2)]
            blocks += [ResidualBlock(width, width) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            d_in = width
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        h = self.stem(x)
        feats = []
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats  # [(B, w0, H/2), (B, w1, H/4), (B, w2, H/8), (B, w3, H/16)]


class ParaTransCNN(nn.Module):
    """ParaTransCNN: ``(B, C, H, W) -> (B, K, H, W)`` logits; H, W divisible by 16."""

    def __init__(self, cfg: ParaTransCNNConfig):
        super().__init__()
        self.cfg = cfg
        D, p = cfg.dim, cfg.patch_size
        w = cfg.cnn_widths
        self.cnn = ResNetEncoder(cfg.n_channels, w, cfg.cnn_depths)
        dims = (D, 2 * D, 4 * D) if cfg.use_transformer else (0, 0, 0)
        self.vit = nn.ModuleList(
            [
                TransformerStage(
                    cfg.n_channels if i == 0 else dims[i - 1],
                    dims[i],
                    2 * p if i == 0 else p,
                    cfg.depth[i],
                    cfg.heads,
                    cfg,
                    cfg.sr_ratios[i],
                )  # fmt: skip
                for i in range(3)
                if cfg.use_transformer
            ]
        )
        c16, c8, c4 = dims[2] + w[3], dims[1] + w[2], dims[0] + w[1]  # fused channels per scale
        self.se = nn.ModuleList(SqueezeExcite(c, cfg.se_reduction) for c in (c16, c8, c4))
        self.decoder1 = DoubleConv(c16, c16)
        self.up1 = nn.ConvTranspose2d(c16, c8, 2, stride=2)
        self.decoder2 = DoubleConv(2 * c8, 2 * c8)
        self.up2 = nn.ConvTranspose2d(2 * c8, c8, 2, stride=2)
        self.decoder3 = DoubleConv(c4 + c8, c4 + c8)
        self.up3 = nn.ConvTranspose2d(c4 + c8, D, 4, stride=4)
        self.head = nn.Conv2d(D, cfg.n_classes, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K, H, W)
        cfg = self.cfg
        check_dense_input(
            x, like=self, n_channels=cfg.n_channels, multiple=cfg.multiple, name="ParaTransCNN"
        )
        _, e2, e3, e4 = self.cnn(x)  # (B, w1, H/4), (B, w2, H/8), (B, w3, H/16)
        if cfg.use_transformer:
            v1 = self.vit[0](x)  # (B, D, H/4, W/4)
            v2 = self.vit[1](v1)  # (B, 2D, H/8, W/8)
            v3 = self.vit[2](v2)  # (B, 4D, H/16, W/16)
            e4, e3, e2 = torch.cat([v3, e4], 1), torch.cat([v2, e3], 1), torch.cat([v1, e2], 1)
        h = self.se[0](e4)  # (B, 4D + w3, H/16, W/16)
        h = self.up1(self.decoder1(h))  # (B, 2D + w2, H/8, W/8)
        f8 = self.se[1](e3)  # (B, 2D + w2, H/8, W/8)
        h = self.up2(self.decoder2(torch.cat([f8, h], dim=1)))  # (B, 2D + w2, H/4, W/4)
        f4 = self.se[2](e2)  # (B, D + w1, H/4, W/4)
        h = self.up3(self.decoder3(torch.cat([f4, h], dim=1)))  # (B, D, H, W)
        return self.head(h)  # (B, K, H, W)


VARIANTS = {
    "tiny": ParaTransCNNConfig(
        n_channels=1, n_classes=4, dim=16, heads=2, depth=(1, 1, 1), dropout=0.0,
        attn_dropout=0.0, cnn_widths=(8, 16, 32, 64), cnn_depths=(1, 1, 1, 1), se_reduction=4,
    ),
    "small": ParaTransCNNConfig(
        n_channels=1, n_classes=7, dim=32, heads=4, depth=(1, 1, 1), sr_ratios=(2, 1, 1),
        dropout=0.0, attn_dropout=0.0, cnn_widths=(16, 32, 64, 128), cnn_depths=(1, 1, 1, 1),
        se_reduction=8,
    ),
    "base": ParaTransCNNConfig(),
}  # fmt: skip


def _example_input(model: ParaTransCNN, batch_size: int) -> tuple[Tensor]:
    return (torch.rand(batch_size, model.cfg.n_channels, 32, 32),)


SPEC = PaperSpec(
    slug="paratranscnn",
    family="dense",
    title="ParaTransCNN: Parallelized TransCNN Encoder for Medical Image Segmentation",
    arxiv="2401.15307",
    claim=(
        "Parallel CNN and pyramid-transformer encoders fused by channel attention segment "
        "abdominal organs better than a U-Net of similar size (mean Dice), and small organs at "
        "least as well; removing the transformer branch lowers Dice."
    ),
    config=ParaTransCNNConfig,
    build=ParaTransCNN,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"dense", "segmentation"}),
    fidelity="faithful",
    experiment="archlab.papers.dense.paratranscnn.experiment",
)
