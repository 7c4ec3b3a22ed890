"""Activator: GLU Activations as The Core Functions of a Vision Transformer.

Abdullah Nazhat Abdullah, Tarkan Aydin, 2024, arXiv 2405.15953 (v4 retitled "Activator: GLU
Activation Function as the Core Component of a Vision Transformer"). Paper card, the choice of
mixing axis and the deviations: README.md beside this file.

A ViT whose attention sublayer is replaced by a gated-linear-unit MLP (Shazeer 2020)::

    GLU(x) = W_o (act(x W_g) * (x W_u))    act: sigmoid GLU, gelu GEGLU, silu SwiGLU, relu ReGLU

    x = x + GLU(LN(x))                      every block
    x = x + MLP(LN(x))                      only with ``use_mlp`` (the paper's first model)

after a patch embedding, followed by a final LayerNorm, global average pooling over the patches
and a linear head. The reduced model without the second (non-gated) MLP is "Activator".

``mixing`` picks the axis the GLU's projections act on:

- ``"tokens"`` (default): the GLU maps each channel's N patches (an MLP-Mixer token MLP,
  gated), so it mixes information across the image, the role of the attention it replaces.
  Its weights are (N, hidden), so the number of patches is fixed: any other N raises a
  ``ValueError``.
- ``"channels"`` (the authors' public code): the GLU maps each patch's D channels, like a
  transformer MLP. Patches then interact only through the final average pooling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from archlab.nn import FeedForward, GLUFeedForward, LayerNorm
from archlab.nn.mlp import GLU_VARIANTS
from archlab.nn.patch import PatchEmbed
from archlab.registry import PaperSpec

MIXING = ("tokens", "channels")
PAPER_GLU_VARIANTS = {"sigmoid": "GLU", "gelu": "GEGLU", "silu": "SwiGLU", "relu": "ReGLU"}
"""The gate activations compared in the paper, by ``glu_activation`` value."""


@dataclass(frozen=True)
class ActivatorConfig:
    """Hyper-parameters of Activator (names of the authors' code in brackets).

    Attributes:
        image_size: input height = width.
        patch_size: patch side P (must divide ``image_size``); N = (image_size / P) ** 2.
        n_channels: input channels.
        n_classes: outputs K.
        d_model: token width D (``d_model``).
        n_layers: blocks L (``num_layers``).
        glu_ratio: GLU hidden width / width of the mixed axis (N for token mixing, D for channel
            mixing); the code's ``d_ffn / d_model`` = 2.
        glu_activation: gate activation: ``sigmoid`` GLU, ``gelu`` GEGLU (the code's), ``silu``
            SwiGLU, ``relu`` ReGLU (or ``identity``, bilinear).
        mixing: ``tokens`` or ``channels`` (the code's): the axis the GLU projections act on.
        use_mlp: keep the second, non-gated GELU MLP in every block (the paper's first model);
            False is the reduced "Activator".
        mlp_ratio: hidden width / D of that MLP (the code's ``d_ffn / d_model`` = 2).
        use_pos_embed: add a learned position embedding to the patches (the code has none;
            token mixing does not need one).
        glu_bias: biases on the GLU projections (``nn.Linear`` defaults in the code).
        norm_eps: LayerNorm epsilon.
        dropout: dropout on the MLP hidden layer and each sublayer output (the code: 0.5 in the
            second MLP).
    """

    image_size: int = 32
    patch_size: int = 4
    n_channels: int = 3
    n_classes: int = 10
    d_model: int = 256
    n_layers: int = 4
    glu_ratio: float = 2.0
    glu_activation: str = "gelu"
    mixing: Literal["tokens", "channels"] = "tokens"
    use_mlp: bool = False
    mlp_ratio: float = 2.0
    use_pos_embed: bool = True
    glu_bias: bool = True
    norm_eps: float = 1e-5
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
        if self.mixing not in MIXING:
            raise ValueError(f"mixing must be one of {MIXING}, got {self.mixing!r}")
        if self.glu_activation not in GLU_VARIANTS:
            raise ValueError(
                f"glu_activation must be one of {', '.join(GLU_VARIANTS)}; "
                f"got {self.glu_activation!r}"
            )
        if self.glu_ratio <= 0 or self.mlp_ratio <= 0:
            raise ValueError("glu_ratio and mlp_ratio must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def d_glu(self) -> int:
        """Hidden width of the GLU (the code's ``d_ffn`` for channel mixing)."""
        axis = self.d_model if self.mixing == "channels" else self.n_patches
        return max(1, round(self.glu_ratio * axis))


class TokenGLU(nn.Module):
    """A GLU MLP across the N tokens, shared by the D channels: (B, N, D) -> (B, N, D).

    ``archlab.nn.GLUFeedForward`` applied to the transposed tokens, as MLP-Mixer's token MLP.

    Args:
        n_tokens: number of tokens N (the projections' input width: fixed).
        d_hidden: hidden width of the GLU.
        activation: gate activation (a key of ``archlab.nn.mlp.GLU_VARIANTS``).
        bias: biases on the projections.
    """

    def __init__(self, n_tokens: int, d_hidden: int, activation: str, bias: bool = True):
        super().__init__()
        self.n_tokens = n_tokens
        self.glu = GLUFeedForward(n_tokens, d_hidden, activation, bias=bias)

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) -> (B, N, D)
        if x.dim() != 3 or x.shape[1] != self.n_tokens:
            raise ValueError(
                f"token-mixing GLU is built for N={self.n_tokens} tokens: expected "
                f"(B, {self.n_tokens}, D); got shape {tuple(x.shape)} (the number of patches "
                "is fixed by image_size and patch_size)"
            )
        return self.glu(x.transpose(1, 2)).transpose(1, 2)  # (B, D, N) -> (B, N, D)


class ActivatorBlock(nn.Module):
    """Pre-norm residual block: ``x + GLU(LN(x))``, then ``x + MLP(LN(x))`` if ``use_mlp``.

    Args:
        d_model: width D.
        n_tokens: number of tokens N (used by token mixing).
        d_glu: GLU hidden width.
        glu_activation: gate activation.
        mixing: ``tokens`` or ``channels``.
        use_mlp: add the second (non-gated, GELU) MLP sublayer.
        d_mlp: hidden width of that MLP.
        glu_bias: biases on the GLU projections.
        norm_eps: LayerNorm epsilon.
        dropout: dropout on each sublayer output and the MLP hidden layer.
    """

    def __init__(
        self,
        d_model: int,
        n_tokens: int,
        d_glu: int,
        glu_activation: str = "gelu",
        mixing: str = "tokens",
        use_mlp: bool = False,
        d_mlp: int = 0,
        glu_bias: bool = True,
        norm_eps: float = 1e-5,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.glu_norm = LayerNorm(d_model, eps=norm_eps)
        if mixing == "tokens":
            self.glu: nn.Module = TokenGLU(n_tokens, d_glu, glu_activation, glu_bias)
        else:
            self.glu = GLUFeedForward(d_model, d_glu, glu_activation, bias=glu_bias)
        self.ffn_norm = LayerNorm(d_model, eps=norm_eps) if use_mlp else None
        self.ffn = FeedForward(d_model, d_mlp, "gelu", dropout=dropout) if use_mlp else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) -> (B, N, D)
        x = x + self.dropout(self.glu(self.glu_norm(x)))
        if self.ffn is not None:
            x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return x


class Activator(nn.Module):
    """Activator classifier: (B, C, H, W) images -> (B, K) logits."""

    def __init__(self, cfg: ActivatorConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.patch_embed = PatchEmbed(cfg.image_size, cfg.patch_size, cfg.n_channels, d)
        n = self.patch_embed.n_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, n, d)) if cfg.use_pos_embed else None
        d_mlp = max(1, round(cfg.mlp_ratio * d))
        self.blocks = nn.ModuleList(
            ActivatorBlock(
                d,
                n,
                cfg.d_glu,
                cfg.glu_activation,
                cfg.mixing,
                cfg.use_mlp,
                d_mlp,
                cfg.glu_bias,
                cfg.norm_eps,
                cfg.dropout,
            )
            for _ in range(cfg.n_layers)
        )
        self.norm = LayerNorm(d, eps=cfg.norm_eps)
        self.head = nn.Linear(d, cfg.n_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default init (uniform, scale 1/sqrt(fan_in)) for every layer, as in the
        authors' code; the position embedding is trunc-normal(0.02) as in ViT."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, N, D)
        """Normalised patch features after the last block."""
        x = self.patch_embed(x)  # (B, N, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K)
        return self.head(self.forward_features(x).mean(1))  # (B, K)


_cifar = ActivatorConfig  # its defaults: the authors' CIFAR-10 setting (D 256, d_ffn 512, L 4)

VARIANTS = {
    "tiny": ActivatorConfig(d_model=64, n_layers=2),
    "base": _cifar(),  # Activator (reduced), GEGLU, token mixing
    "glu": _cifar(glu_activation="sigmoid"),
    "swiglu": _cifar(glu_activation="silu"),
    "reglu": _cifar(glu_activation="relu"),
    "with_mlp": _cifar(use_mlp=True, dropout=0.5),  # the paper's first model: GLU + MLP
    "channels": _cifar(mixing="channels"),  # the authors' code: GLU over channels
    "channels_with_mlp": _cifar(mixing="channels", use_mlp=True, dropout=0.5),
    "cifar100": _cifar(n_classes=100),
}


def _example_input(model: Activator, batch_size: int) -> tuple[Tensor]:
    c = model.cfg
    return (torch.randn(batch_size, c.n_channels, c.image_size, c.image_size),)


def _task(cfg: ActivatorConfig, seed: int):
    """``archlab train``: textured shapes for RGB models, the MNIST subset for grey ones."""
    from archlab.lab.tasks import default_image_task

    return default_image_task(cfg.image_size, cfg.n_channels, cfg.n_classes, seed)


SPEC = PaperSpec(
    slug="activator",
    family="vision",
    title="Activator: GLU Activations as The Core Functions of a Vision Transformer",
    arxiv="2405.15953",
    claim=(
        "Replacing a vision transformer's attention (and its second MLP) by one GLU-gated MLP "
        "per block keeps the accuracy of a ViT with the same parameter count (within 1 point, "
        "or better) at no more than 0.7x the FLOPs of a ViT of the same width and depth, and "
        "the GLU variant (GEGLU, SwiGLU, ReGLU) matters little."
    ),
    config=ActivatorConfig,
    build=Activator,
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
    experiment="archlab.papers.vision.activator.experiment",
)
