"""MLP-Mixer (baseline).

Tolstikhin, Houlsby, Kolesnikov, Beyer, Zhai, Unterthiner, Yung, Steiner, Keysers, Uszkoreit,
Lucic, Dosovitskiy, "MLP-Mixer: An all-MLP Architecture for Vision", 2021, arXiv 2105.01601.

The image is cut into patches (``archlab.nn.patch.PatchEmbed``), then each Mixer layer applies a
token-mixing MLP across the N patches (the same MLP for every channel) and a channel-mixing MLP
across the D channels (the same MLP for every patch), each pre-LayerNorm with a residual::

    U = X + W2 GELU(W1 LN(X)^T))^T        token mixing,   hidden width D_S
    Y = U + W4 GELU(W3 LN(U))             channel mixing, hidden width D_C

followed by a LayerNorm, global average pooling over the patches and a linear head. There is no
position embedding: the token-mixing MLP is position-specific, so the number of patches is fixed.
Parameter names follow timm's ``MlpMixer`` (``stem.proj``, ``blocks.i.norm1``,
``blocks.i.mlp_tokens.fc1``, ``blocks.i.norm2``, ``blocks.i.mlp_channels.fc1``, ``norm``,
``head``), so a timm state dict loads one to one (``from_timm``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.nn import FeedForward, LayerNorm
from archlab.nn.patch import PatchEmbed
from archlab.registry import PaperSpec


@dataclass(frozen=True)
class MlpMixerConfig:
    """Hyper-parameters of an MLP-Mixer classifier (the paper's symbols in brackets).

    Attributes:
        image_size: input height = width.
        patch_size: patch side P (must divide ``image_size``); N = (image_size / P) ** 2.
        n_channels: input channels.
        n_classes: outputs K.
        d_model: hidden width D (the paper's C).
        n_layers: Mixer layers L.
        d_token_hidden: token-mixing MLP hidden width (D_S).
        d_channel_hidden: channel-mixing MLP hidden width (D_C).
        norm_eps: LayerNorm epsilon (1e-6 as in the reference code and timm).
        dropout: dropout on the MLP hidden layers and outputs.
    """

    image_size: int = 224
    patch_size: int = 16
    n_channels: int = 3
    n_classes: int = 1000
    d_model: int = 512
    n_layers: int = 8
    d_token_hidden: int = 256
    d_channel_hidden: int = 2048
    norm_eps: float = 1e-6
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "image_size",
            "patch_size",
            "n_channels",
            "n_classes",
            "d_model",
            "d_token_hidden",
            "d_channel_hidden",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {self.n_layers}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size={self.patch_size} must divide image_size={self.image_size}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class _Mlp(FeedForward):
    """``archlab.nn.FeedForward`` with dropout on its output too (timm's ``Mlp``)."""

    def __init__(self, d_in: int, d_hidden: int, dropout: float):
        super().__init__(d_in, d_hidden, "gelu", dropout=dropout)
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (..., d_in) -> (..., d_in)
        return self.out_dropout(super().forward(x))


class MixerBlock(nn.Module):
    """One Mixer layer: token-mixing MLP then channel-mixing MLP, each pre-norm residual.

    Args:
        d_model: width D.
        n_tokens: number of patches N (the token MLP's input width: fixed).
        d_token_hidden: token-mixing hidden width D_S.
        d_channel_hidden: channel-mixing hidden width D_C.
        norm_eps: LayerNorm epsilon.
        dropout: dropout in both MLPs.
    """

    def __init__(
        self,
        d_model: int,
        n_tokens: int,
        d_token_hidden: int,
        d_channel_hidden: int,
        norm_eps: float = 1e-6,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.n_tokens = n_tokens
        self.norm1 = LayerNorm(d_model, eps=norm_eps)
        self.mlp_tokens = _Mlp(n_tokens, d_token_hidden, dropout)
        self.norm2 = LayerNorm(d_model, eps=norm_eps)
        self.mlp_channels = _Mlp(d_model, d_channel_hidden, dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) -> (B, N, D)
        if x.dim() != 3 or x.shape[1] != self.n_tokens:
            raise ValueError(
                f"the token-mixing MLP is built for N={self.n_tokens} tokens: expected "
                f"(B, {self.n_tokens}, D); got shape {tuple(x.shape)}"
            )
        h = self.mlp_tokens(self.norm1(x).transpose(1, 2))  # (B, D, N)
        x = x + h.transpose(1, 2)  # (B, N, D)
        return x + self.mlp_channels(self.norm2(x))


class MlpMixer(nn.Module):
    """MLP-Mixer classifier: (B, C, H, W) images -> (B, K) logits."""

    def __init__(self, cfg: MlpMixerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.stem = PatchEmbed(cfg.image_size, cfg.patch_size, cfg.n_channels, d)
        n = self.stem.n_patches
        self.blocks = nn.ModuleList(
            MixerBlock(d, n, cfg.d_token_hidden, cfg.d_channel_hidden, cfg.norm_eps, cfg.dropout)
            for _ in range(cfg.n_layers)
        )
        self.norm = LayerNorm(d, eps=cfg.norm_eps)
        self.head = nn.Linear(d, cfg.n_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm's (non-JAX) init: Xavier-uniform MLP weights with N(0, 1e-6) biases, LeCun-normal
        patch projection, zero head (so the first steps train the head alone)."""
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)
        std = (1.0 / self.stem.proj.weight[0].numel()) ** 0.5 / 0.8796  # truncated at 2 std
        nn.init.trunc_normal_(self.stem.proj.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(self.stem.proj.bias)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, N, D)
        """Normalised patch features after the last layer."""
        x = self.stem(x)  # (B, N, D)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K)
        return self.head(self.forward_features(x).mean(1))  # (B, K)


def from_timm(model: nn.Module) -> MlpMixer:
    """archlab's ``MlpMixer`` with the config and weights of a timm ``MlpMixer`` (outputs equal).

    Raises:
        TypeError: if ``model`` is not a ``timm.models.mlp_mixer.MlpMixer``.
        ValueError: for timm settings this Mixer does not have (gated MLPs, stem norm, ...).
    """
    from timm.models.mlp_mixer import MixerBlock as TimmMixerBlock
    from timm.models.mlp_mixer import MlpMixer as TimmMlpMixer

    if not isinstance(model, TimmMlpMixer):
        raise TypeError(f"from_timm expects a timm MlpMixer; got {type(model).__name__}")
    blocks = list(model.blocks)
    if not blocks or any(type(b) is not TimmMixerBlock for b in blocks):
        raise ValueError("from_timm: only timm's plain MixerBlock layers are supported")
    if not isinstance(model.stem.norm, nn.Identity) or model.global_pool != "avg":
        raise ValueError("from_timm: stem_norm and global_pool != 'avg' are not supported")
    first = blocks[0]
    img = model.stem.img_size
    patch = model.stem.patch_size
    cfg = MlpMixerConfig(
        image_size=img[0] if isinstance(img, tuple) else img,
        patch_size=patch[0] if isinstance(patch, tuple) else patch,
        n_channels=model.stem.proj.in_channels,
        n_classes=model.num_classes,
        d_model=model.embed_dim,
        n_layers=len(blocks),
        d_token_hidden=first.mlp_tokens.fc1.out_features,
        d_channel_hidden=first.mlp_channels.fc1.out_features,
        norm_eps=first.norm1.eps,
    )
    ours = MlpMixer(cfg)
    ours.load_state_dict(model.state_dict(), strict=True)
    return ours.train(model.training)


VARIANTS = {
    "tiny": MlpMixerConfig(
        image_size=32,
        patch_size=4,
        n_classes=10,
        d_model=64,
        n_layers=2,
        d_token_hidden=32,
        d_channel_hidden=256,
    ),
    "s32": MlpMixerConfig(patch_size=32),  # Mixer-S/32
    "s16": MlpMixerConfig(),  # Mixer-S/16: C 512, L 8, D_S 256, D_C 2048
    "b16": MlpMixerConfig(d_model=768, n_layers=12, d_token_hidden=384, d_channel_hidden=3072),
    "l16": MlpMixerConfig(d_model=1024, n_layers=24, d_token_hidden=512, d_channel_hidden=4096),
}


def _example_input(model: MlpMixer, batch_size: int) -> tuple[Tensor]:
    c = model.cfg
    return (torch.randn(batch_size, c.n_channels, c.image_size, c.image_size),)


SPEC = PaperSpec(
    slug="mlp_mixer",
    family="vision",
    title="MLP-Mixer: An all-MLP Architecture for Vision",
    arxiv="2105.01601",
    claim="Baseline: patches mixed by MLPs alone, alternately across tokens and channels.",
    config=MlpMixerConfig,
    build=MlpMixer,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"image-classifier", "timm-parity"}),
    fidelity="faithful",
    experiment=None,
)
