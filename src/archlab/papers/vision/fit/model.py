"""FIT: Far-reaching Interleaved Transformers.

Ting Chen and Lala Li, 2023, arXiv 2305.12689.
Paper card, deviations and measured results: README.md beside this file.

The L data tokens are split into G groups of n contiguous tokens (L = G * n) and every group gets
m latent tokens. A FIT stack is a sequence of blocks, written as a layout string such as
``"(2)4(2)"``: a number in parentheses is a run of *local* layers and the number after it a run
of *global* layers. Block ``(a)b`` with b > 0 is, in the order of the official code
(google-research/pix2seq ``architectures/transformers.py``, class ``FIT``)::

    x       = a local layers        # transformer layers on each group's n tokens: (B*G, n, D)
    latents = read(latents, x)      # each group's m latents cross-attend to its n tokens
    latents = b global layers       # self-attention over all G*m latents: (B, G*m, D_l)
    x       = write(x, latents)     # each group's tokens cross-attend to its m latents
                                    # (skipped after the last block)

and ``(a)`` / ``(a)0`` is just the a local layers. Read and write are pre-norm cross-attention
with a LayerNorm on the keys/values side too, a residual connection and no MLP; their attention
width is ``min(D, D_l)`` with ``min(nh, nh_l)`` heads. Local and global layers are ordinary
pre-norm transformer layers (``archlab.nn.EncoderLayer``). Attention costs O(G n^2) locally
and O((G m)^2) globally instead of O(L^2). Token positions are learned within a group (shared
by all groups, as the official ``x_pos_emb``); the latents start from a learned table of G*m
vectors, which tells the groups apart.

With ``n_groups=1`` and a layout without global layers, ``(k)``, the model is a plain pre-norm
transformer with full attention over all L tokens; with G > 1 and ``(k)`` it is a local-only
transformer. The experiment uses both as baselines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from archlab.nn import EncoderLayer, LayerNorm, MultiHeadAttention
from archlab.registry import PaperSpec

_LAYOUT = re.compile(r"^(\(\d+\)\d*)+$")
_BLOCK = re.compile(r"\((\d+)\)(\d*)")


def parse_layout(layout: str) -> tuple[tuple[int, int], ...]:
    """Parse a FIT layout string into ``((local, global), ...)`` blocks.

    ``"(2)4(2)"`` -> ``((2, 4), (2, 0))``; ``"(2)4(2)4"`` -> ``((2, 4), (2, 4))``; a trailing
    ``(a)`` means a final block of local layers only (the official ``get_layer_config``).

    Raises:
        ValueError: if the string is not of the form ``(a)b(a)b...``, if a block other than the
            last has no global layers (its latents would never be written back), or if there
            are no layers at all.
    """
    text = layout.replace(" ", "")
    if not _LAYOUT.match(text):
        raise ValueError(
            f"layout {layout!r} must look like '(2)4(2)': '(a)' = a local layers, the number "
            "after it = global layers"
        )
    blocks = tuple((int(a), int(b or 0)) for a, b in _BLOCK.findall(text))
    for i, (_, n_global) in enumerate(blocks[:-1]):
        if n_global == 0:
            raise ValueError(
                f"layout {layout!r}: block {i} has no global layers; only the last block may "
                "omit them (merge consecutive local runs instead)"
            )
    if sum(a + b for a, b in blocks) == 0:
        raise ValueError(f"layout {layout!r} has no layers")
    return blocks


@dataclass(frozen=True)
class FITConfig:
    """Hyper-parameters of a FIT sequence classifier (official argument names in brackets).

    Attributes:
        layout: interleaving of local and global layers, e.g. ``"(2)4(2)"`` [layers].
        n_groups: G, groups of data tokens [num_groups].
        group_size: n, data tokens per group; the sequence length is L = G * n
            [x_size / num_groups].
        n_latents: m, latent tokens per group [latents_per_group].
        d_input: C, width of the input tokens (e.g. a flattened patch), projected by the stem.
        d_model: D, width of the data tokens [x_dim].
        d_latent: D_l, width of the latent tokens [latent_dim].
        n_heads: heads of the local layers [x_num_heads].
        n_latent_heads: heads of the global layers [latent_num_heads].
        mlp_ratio: feed-forward hidden width / layer width [mlp_ratio].
        n_classes: K, outputs of the classification head.
        pool: what the head reads: ``first`` (the first data token), ``mean`` (the mean of the
            data tokens) or ``latents`` (the mean of the latents).
        cross_mlp: give read/write an MLP after the cross-attention (the FIT encoder has none;
            the official ``FITDenoiser`` has it as ``xattn_with_mlp``).
        norm_eps: LayerNorm epsilon (1e-6 in the official code).
        dropout: dropout on sublayer outputs and MLP hidden units [drop_units].
        attn_dropout: dropout on attention weights [drop_att].
    """

    layout: str = "(2)4(2)4(2)4(2)"
    n_groups: int = 64
    group_size: int = 256
    n_latents: int = 32
    d_input: int = 768
    d_model: int = 768
    d_latent: int = 768
    n_heads: int = 12
    n_latent_heads: int = 12
    mlp_ratio: float = 4.0
    n_classes: int = 1000
    pool: Literal["first", "mean", "latents"] = "mean"
    cross_mlp: bool = False
    norm_eps: float = 1e-6
    dropout: float = 0.0
    attn_dropout: float = 0.0

    def __post_init__(self) -> None:
        blocks = parse_layout(self.layout)
        for name in (
            "n_groups",
            "group_size",
            "n_latents",
            "d_input",
            "d_model",
            "d_latent",
            "n_heads",
            "n_latent_heads",
            "n_classes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads or self.d_latent % self.n_latent_heads:
            raise ValueError(
                f"d_model={self.d_model} must be divisible by n_heads={self.n_heads} and "
                f"d_latent={self.d_latent} by n_latent_heads={self.n_latent_heads}"
            )
        if min(self.d_model, self.d_latent) % min(self.n_heads, self.n_latent_heads):
            raise ValueError(
                "min(d_model, d_latent) must be divisible by min(n_heads, n_latent_heads) "
                "(the read/write attention width and heads)"
            )
        if self.pool not in ("first", "mean", "latents"):
            raise ValueError(f"pool must be 'first', 'mean' or 'latents', got {self.pool!r}")
        if self.pool == "latents" and not any(b for _, b in blocks):
            raise ValueError(f"pool='latents' needs global layers; layout {self.layout!r} has none")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.attn_dropout < 1.0:
            raise ValueError("dropout and attn_dropout must be in [0, 1)")

    @property
    def seq_len(self) -> int:
        """L = G * n, the number of data tokens the model takes."""
        return self.n_groups * self.group_size

    @property
    def blocks(self) -> tuple[tuple[int, int], ...]:
        """The parsed layout: ``((local, global), ...)``."""
        return parse_layout(self.layout)

    @property
    def has_latents(self) -> bool:
        """Whether any block has global layers (otherwise there are no latents at all)."""
        return any(b for _, b in self.blocks)


class CrossAttention(nn.Module):
    """FIT's read / write unit: ``q = q + attn(LN(q), LN(kv))`` (+ an optional pre-norm MLP).

    Args:
        d_query: width of the attending tokens (and of the output).
        d_kv: width of the attended tokens.
        n_heads: heads.
        d_attention: total attention width (the official ``dim_x_att``); head width is
            ``d_attention // n_heads``.
        mlp_ratio: hidden width / d_query of the optional MLP.
        use_mlp: add ``q = q + mlp(LN(q))`` after the attention.
        norm_eps: LayerNorm epsilon.
        dropout: dropout on the residual branches.
        attn_dropout: dropout on the attention weights.
    """

    def __init__(
        self,
        d_query: int,
        d_kv: int,
        n_heads: int,
        d_attention: int,
        mlp_ratio: float = 4.0,
        use_mlp: bool = False,
        norm_eps: float = 1e-6,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
    ):
        super().__init__()
        self.query_norm = LayerNorm(d_query, eps=norm_eps)
        self.kv_norm = LayerNorm(d_kv, eps=norm_eps)
        self.attn = MultiHeadAttention(
            d_query,
            n_heads,
            d_head=d_attention // n_heads,
            d_kv_input=d_kv,
            dropout=attn_dropout,
        )
        self.dropout = nn.Dropout(dropout)
        self.mlp: nn.Module | None = None
        if use_mlp:
            from archlab.nn import FeedForward

            self.mlp_norm = LayerNorm(d_query, eps=norm_eps)
            self.mlp = FeedForward(d_query, int(d_query * mlp_ratio), "gelu", dropout=dropout)

    def forward(self, q: Tensor, kv: Tensor) -> Tensor:  # (B', T, Dq), (B', S, Dkv) -> (B', T, Dq)
        q = q + self.dropout(self.attn(self.query_norm(q), self.kv_norm(kv)))
        if self.mlp is not None:
            q = q + self.dropout(self.mlp(self.mlp_norm(q)))
        return q


class FIT(nn.Module):
    """FIT encoder with a classification head: tokens (B, L, C) -> logits (B, K).

    ``encode`` returns the data tokens (B, L, D) and latents (B, G*m, D_l) (None when the
    layout has no global layers) before the final LayerNorm; ``forward`` normalises what the head
    reads (the official code's ``x_output_ln`` / ``l_output_ln``) and pools it.
    """

    def __init__(self, cfg: FITConfig):
        super().__init__()
        self.cfg = cfg
        D, Dl = cfg.d_model, cfg.d_latent
        self.stem = nn.Linear(cfg.d_input, D)
        self.stem_norm = LayerNorm(D, eps=cfg.norm_eps)
        self.x_pos_emb = nn.Parameter(torch.zeros(cfg.group_size, D))  # (n, D), shared by groups
        blocks = cfg.blocks
        self.local_layers = nn.ModuleList()
        self.global_layers = nn.ModuleList()
        self.read = nn.ModuleList()
        self.write = nn.ModuleList()
        rw_heads = min(cfg.n_heads, cfg.n_latent_heads)
        rw_width = min(D, Dl)

        def cross(d_query: int, d_kv: int) -> CrossAttention:
            return CrossAttention(
                d_query,
                d_kv,
                rw_heads,
                rw_width,
                cfg.mlp_ratio,
                cfg.cross_mlp,
                cfg.norm_eps,
                cfg.dropout,
                cfg.attn_dropout,
            )

        for i, (n_local, n_global) in enumerate(blocks):
            self.local_layers.append(
                nn.ModuleList(self._layer(D, cfg.n_heads) for _ in range(n_local))
            )
            self.global_layers.append(
                nn.ModuleList(self._layer(Dl, cfg.n_latent_heads) for _ in range(n_global))
            )
            has_global = n_global > 0
            self.read.append(cross(Dl, D) if has_global else nn.Identity())
            self.write.append(cross(D, Dl) if has_global and i < len(blocks) - 1 else nn.Identity())
        self.latent_pos_emb: nn.Parameter | None = None
        if cfg.has_latents:
            self.latent_pos_emb = nn.Parameter(torch.zeros(cfg.n_groups * cfg.n_latents, Dl))
        d_out = Dl if cfg.pool == "latents" else D
        self.norm = LayerNorm(d_out, eps=cfg.norm_eps)  # x_output_ln or l_output_ln
        self.head = nn.Linear(d_out, cfg.n_classes)
        self.reset_parameters()

    def _layer(self, width: int, n_heads: int) -> EncoderLayer:
        cfg = self.cfg
        return EncoderLayer(
            width,
            n_heads,
            int(width * cfg.mlp_ratio),
            activation="gelu",
            norm_eps=cfg.norm_eps,
            norm_first=True,
            dropout=cfg.dropout,
            attn_dropout=cfg.attn_dropout,
            activation_dropout=cfg.dropout,
        )

    def reset_parameters(self) -> None:
        """Positional tables trunc-normal(0.02) (the official initializer); linear weights
        Xavier-uniform with zero biases (Keras' Dense default)."""
        nn.init.trunc_normal_(self.x_pos_emb, std=0.02)
        if self.latent_pos_emb is not None:
            nn.init.trunc_normal_(self.latent_pos_emb, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def check_input(self, x: Tensor) -> None:
        """Raise one clear error unless x is a float (B, L, C) batch with L = G * n."""
        cfg = self.cfg
        L, n = cfg.seq_len, cfg.group_size
        expected = f"tokens (B, L={L}, C={cfg.d_input})"
        if not isinstance(x, Tensor):
            raise TypeError(f"expected {expected} as a torch.Tensor; got {type(x).__name__}")
        if x.dim() != 3:
            raise ValueError(f"expected {expected}; got a tensor of shape {tuple(x.shape)}")
        if x.shape[2] != cfg.d_input:
            raise ValueError(f"expected {expected} with C={cfg.d_input}; got {tuple(x.shape)}")
        if x.shape[1] % n:
            raise ValueError(
                f"sequence length {x.shape[1]} is not divisible by group_size n={n}; expected "
                f"{expected} (L = n_groups {cfg.n_groups} x group_size {n})"
            )
        if x.shape[1] != L:
            raise ValueError(
                f"expected {expected} (n_groups {cfg.n_groups} x group_size {n}); got "
                f"{x.shape[1] // n} groups ({tuple(x.shape)}); build a model with "
                f"n_groups={x.shape[1] // n}"
            )
        dtype = self.stem.weight.dtype
        if not x.is_floating_point() or (
            x.dtype != dtype and not torch.is_autocast_enabled(x.device.type)
        ):
            raise TypeError(f"expected {expected} of dtype {dtype}; got {x.dtype}")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Run the FIT stack.

        Args:
            x: input tokens (B, L, C), group g = tokens ``g*n .. (g+1)*n - 1``.

        Returns:
            ``(tokens, latents)``: data tokens (B, L, D) and latents (B, G*m, D_l) after the
            last layer (before the final norm); latents are None when the layout has no global
            layers.
        """
        self.check_input(x)
        cfg = self.cfg
        B, G = x.shape[0], cfg.n_groups
        x = self.stem_norm(self.stem(x))  # (B, L, D)
        x = rearrange(x, "B (G n) D -> (B G) n D", G=G) + self.x_pos_emb  # (B*G, n, D)
        latents = None
        if self.latent_pos_emb is not None:
            latents = self.latent_pos_emb.expand(B, -1, -1)  # (B, G*m, D_l)
            latents = rearrange(latents, "B (G m) D -> (B G) m D", G=G)  # (B*G, m, D_l)
        blocks = cfg.blocks
        for i, (_, n_global) in enumerate(blocks):
            for layer in self.local_layers[i]:
                x = layer(x)  # (B*G, n, D): attention within each group
            if n_global == 0:
                continue
            latents = self.read[i](latents, x)  # (B*G, m, D_l): latents read their group
            latents = rearrange(latents, "(B G) m D -> B (G m) D", G=G)  # (B, G*m, D_l)
            for layer in self.global_layers[i]:
                latents = layer(latents)  # (B, G*m, D_l): attention over all latents
            latents = rearrange(latents, "B (G m) D -> (B G) m D", G=G)  # (B*G, m, D_l)
            if i < len(blocks) - 1:
                x = self.write[i](x, latents)  # (B*G, n, D): tokens read their latents
        x = rearrange(x, "(B G) n D -> B (G n) D", G=G)  # (B, L, D)
        if latents is not None:
            latents = rearrange(latents, "(B G) m D -> B (G m) D", G=G)  # (B, G*m, D_l)
        return x, latents

    def forward(self, x: Tensor) -> Tensor:  # (B, L, C) -> (B, K)
        tokens, latents = self.encode(x)
        if self.cfg.pool == "first":
            pooled = self.norm(tokens[:, 0])  # (B, D)
        elif self.cfg.pool == "mean":
            pooled = self.norm(tokens).mean(dim=1)  # (B, D)
        else:
            pooled = self.norm(latents).mean(dim=1)  # (B, D_l)
        return self.head(pooled)  # (B, K)


VARIANTS = {
    "tiny": FITConfig(
        layout="(1)1(1)", n_groups=4, group_size=16, n_latents=2, d_input=8, d_model=32,
        d_latent=32, n_heads=2, n_latent_heads=2, n_classes=4,
    ),
    "long_range": FITConfig(
        layout="(2)2(2)", n_groups=16, group_size=64, n_latents=4, d_input=16, d_model=64,
        d_latent=64, n_heads=4, n_latent_heads=4, n_classes=2, pool="first",
    ),
    "base": FITConfig(),
}  # fmt: skip


def _example_input(model: FIT, batch_size: int) -> tuple[Tensor]:
    cfg = model.cfg
    return (torch.randn(batch_size, cfg.seq_len, cfg.d_input),)


SPEC = PaperSpec(
    slug="fit",
    family="vision",
    title="FIT: Far-reaching Interleaved Transformers",
    arxiv="2305.12689",
    claim=(
        "Interleaving local layers on groups of tokens with global layers on a few latents per "
        "group solves long-range tasks as well as full attention, which local attention alone "
        "cannot, at a cost that grows far slower than L^2."
    ),
    config=FITConfig,
    build=FIT,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"sequence-classifier", "encoder"}),
    fidelity="simplified",
    experiment="archlab.papers.vision.fit.experiment",
)
