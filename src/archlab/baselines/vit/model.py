"""Vision Transformer (ViT) and DeiT's distillation-token variant (baseline).

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
Scale", 2020, arXiv 2010.11929; Touvron et al., "Training data-efficient image transformers &
distillation through attention" (DeiT), 2020, arXiv 2012.12877.

The image is cut into patches (``archlab.nn.patch.PatchEmbed``), a learned class token is
prepended, learned position embeddings are added (class token included), and pre-norm
transformer blocks (``archlab.nn.EncoderLayer`` with ``norm_first=True``: multi-head
self-attention and a GELU MLP) are followed by a final LayerNorm and a linear head on the class
token. DeiT is the same network trained with a better recipe; ``distilled=True`` adds its
distillation token and second head, whose logits are averaged with the class head's at
inference (``forward_heads`` returns both, for a distillation loss). Initialisation follows
timm: truncated normal (std 0.02) linear weights and position embeddings, zero biases, class
token N(0, 1e-6). ``archlab.baselines.vit.from_timm`` copies timm weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from archlab.nn import EncoderLayer, LayerNorm
from archlab.nn.patch import PatchEmbed
from archlab.registry import PaperSpec


@dataclass(frozen=True)
class ViTConfig:
    """Hyper-parameters of a ViT / DeiT classifier.

    Attributes:
        image_size: input height = width.
        patch_size: patch side P (must divide ``image_size``).
        n_channels: input channels C.
        n_classes: outputs K.
        d_model: token width D.
        n_layers: transformer blocks L.
        n_heads: attention heads nh (must divide D).
        mlp_ratio: MLP hidden width / D.
        qkv_bias: biases on the query, key and value projections.
        distilled: DeiT's distillation token and head.
        global_pool: ``token`` (normalised class token) or ``avg`` (mean of the patch tokens,
            then normalised, as timm's ``fc_norm``).
        norm_eps: LayerNorm epsilon (1e-6 as in timm and the reference JAX code).
        dropout: dropout on each sublayer's output and on the MLP hidden layer.
    """

    image_size: int = 224
    patch_size: int = 16
    n_channels: int = 3
    n_classes: int = 1000
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    distilled: bool = False
    global_pool: Literal["token", "avg"] = "token"
    norm_eps: float = 1e-6
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "n_channels", "n_classes", "d_model"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {self.n_layers}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size={self.patch_size} must divide image_size={self.image_size}"
            )
        if self.n_heads < 1 or self.d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={self.d_model}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {self.global_pool!r}")
        if self.distilled and self.global_pool != "token":
            raise ValueError(
                "distilled=True reads the class and distillation tokens: "
                "global_pool must be 'token'"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def drop_bias(linear: nn.Linear) -> nn.Linear:
    """Remove a linear layer's bias in place (for attention with ``qkv_bias=False``)."""
    linear.register_parameter("bias", None)
    return linear


def vit_block(
    d_model: int,
    n_heads: int,
    mlp_ratio: float = 4.0,
    qkv_bias: bool = True,
    norm_eps: float = 1e-6,
    dropout: float = 0.0,
    attn_dropout: float = 0.0,
) -> EncoderLayer:
    """A pre-norm ViT block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``.

    ``archlab.nn.EncoderLayer`` with ``norm_first=True``; the output projection and the MLP keep
    their biases when ``qkv_bias=False`` (as in timm).

    Args:
        d_model: width D.
        n_heads: attention heads nh.
        mlp_ratio: MLP hidden width / D.
        qkv_bias: biases on the query, key and value projections.
        norm_eps: LayerNorm epsilon.
        dropout: dropout on each sublayer's output and on the MLP hidden layer.
        attn_dropout: dropout on the attention weights.
    """
    block = EncoderLayer(
        d_model,
        n_heads,
        int(d_model * mlp_ratio),
        activation="gelu",
        norm_eps=norm_eps,
        norm_first=True,
        dropout=dropout,
        attn_dropout=attn_dropout,
        activation_dropout=dropout,
    )
    if not qkv_bias:
        for proj in (block.self_attn.q_proj, block.self_attn.k_proj, block.self_attn.v_proj):
            drop_bias(proj)
    return block


def init_vit_weights(module: nn.Module) -> None:
    """timm's ViT init for one module: linear weights trunc-normal(0.02), zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class ViT(nn.Module):
    """ViT classifier (DeiT with ``distilled=True``): (B, C, H, W) images -> (B, K) logits."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.patch_embed = PatchEmbed(cfg.image_size, cfg.patch_size, cfg.n_channels, d)
        self.n_prefix = 2 if cfg.distilled else 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.n_patches + self.n_prefix, d))
        self.blocks = nn.ModuleList(
            vit_block(d, cfg.n_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.norm_eps, cfg.dropout)
            for _ in range(cfg.n_layers)
        )
        self.norm = LayerNorm(d, eps=cfg.norm_eps)
        self.head = nn.Linear(d, cfg.n_classes)
        self.head_dist = nn.Linear(d, cfg.n_classes) if cfg.distilled else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.apply(init_vit_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.dist_token is not None:
            nn.init.trunc_normal_(self.dist_token, std=0.02)

    def tokens(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, n_prefix + N, D)
        """Patch embeddings with the class (and distillation) token and positions added."""
        x = self.patch_embed(x)  # (B, N, D)
        prefix = [self.cls_token] + ([self.dist_token] if self.dist_token is not None else [])
        prefix = torch.cat(prefix, dim=1).expand(x.shape[0], -1, -1)  # (B, n_prefix, D)
        return torch.cat([prefix, x], dim=1) + self.pos_embed  # (B, n_prefix + N, D)

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, n_prefix + N, D)
        """Token features after the last block (before the final norm)."""
        x = self.tokens(x)
        for block in self.blocks:
            x = block(x)
        return x

    def forward_heads(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Class-head logits (B, K) and distillation-head logits (B, K) or None.

        ``token`` pooling normalises every token and reads the class token; ``avg`` pooling
        averages the patch tokens and then normalises (timm's ``fc_norm``).
        """
        h = self.forward_features(x)  # (B, n_prefix + N, D)
        if self.cfg.global_pool == "avg":
            return self.head(self.norm(h[:, self.n_prefix :].mean(1))), None  # (B, K)
        h = self.norm(h[:, : self.n_prefix])  # (B, n_prefix, D)
        dist = self.head_dist(h[:, 1]) if self.head_dist is not None else None
        return self.head(h[:, 0]), dist

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K)
        logits, dist = self.forward_heads(x)
        return logits if dist is None else (logits + dist) / 2


VARIANTS = {
    "tiny": ViTConfig(image_size=32, patch_size=4, n_classes=10, d_model=64, n_layers=2, n_heads=4),
    "tiny_distilled": ViTConfig(
        image_size=32,
        patch_size=4,
        n_classes=10,
        d_model=64,
        n_layers=2,
        n_heads=4,
        distilled=True,
    ),
    "ti": ViTConfig(d_model=192, n_heads=3),  # DeiT-Ti
    "s": ViTConfig(d_model=384, n_heads=6),  # DeiT-S
    "b": ViTConfig(),  # ViT-B/16 = DeiT-B
    "ti_distilled": ViTConfig(d_model=192, n_heads=3, distilled=True),  # DeiT-Ti with distillation
}


def _example_input(model: ViT, batch_size: int) -> tuple[Tensor]:
    c = model.cfg
    return (torch.randn(batch_size, c.n_channels, c.image_size, c.image_size),)


def _task(cfg: ViTConfig, seed: int):
    """``archlab train``: textured shapes (``archlab.lab.tasks.textured_shapes_task``)."""
    from archlab.lab.tasks import textured_shapes_task

    return textured_shapes_task(cfg.image_size, cfg.n_channels, cfg.n_classes, seed)


SPEC = PaperSpec(
    slug="vit",
    family="vision",
    title="An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale",
    arxiv="2010.11929",
    claim="Baseline: a plain transformer on image patches (ViT; DeiT with a distillation token).",
    config=ViTConfig,
    build=ViT,
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
    capabilities=frozenset({"image-classifier", "timm-parity"}),
    fidelity="faithful",
    experiment=None,
)
