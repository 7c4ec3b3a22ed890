"""ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases.

d'Ascoli, Touvron, Leavitt, Morcos, Biroli, Sagun, 2021, arXiv 2103.10697 (ICML 2021).
Paper card, deviations and measured results: README.md beside this file.

Gated positional self-attention (GPSA), per head h, for patch tokens i, j on the grid::

    A^h_ij = (1 - sigmoid(lambda_h)) softmax_j(Q_i K_j^T / sqrt(hd))
             + sigmoid(lambda_h) softmax_j(v_pos^h . r_ij),     r_ij = (dx, dy, dx^2 + dy^2)

followed by a renormalisation of each row (a no-op in exact arithmetic: both terms are
distributions). "Local" initialisation: ``W_V = I``, and head h's ``v_pos^h =
-alpha (-2 D^h_x, -2 D^h_y, 1)`` so that its positional attention is ``softmax_j(-alpha |d_ij -
D^h|^2)``, a Gaussian centred at the offset ``D^h`` on a sqrt(nh) x sqrt(nh) grid around the
query; alpha is the locality strength and lambda starts at 1 (so sigmoid(lambda) = 0.73 of the
attention is positional). ConViT = ``local_up_to_layer`` GPSA blocks on the patch tokens, then
the class token is concatenated and the remaining blocks are plain multi-head self-attention
(MHSA) blocks, as in DeiT. Widths follow the paper: ``d_model = n_heads * d_head`` with
``d_head = 48``.

Computation: the content term uses ``F.scaled_dot_product_attention`` and the positional term
a (nh, N, N) matrix shared by the batch: ``out = (1 - g) SDPA(q, k, v) + g (P v)``, which equals
``A v`` (``attention_maps`` returns the explicit maps for analysis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.baselines.vit import init_vit_weights, vit_block
from archlab.nn import FeedForward, LayerNorm
from archlab.nn.patch import PatchEmbed
from archlab.registry import PaperSpec


@dataclass(frozen=True)
class ConViTConfig:
    """Hyper-parameters of ConViT, named after the paper (and timm's ``ConVit`` arguments).

    Attributes:
        image_size: input height = width.
        patch_size: patch side P (must divide ``image_size``).
        n_channels: input channels C.
        n_classes: outputs K.
        n_heads: attention heads nh (the paper's N_h: 4 Ti, 9 S, 16 B).
        d_head: width per head hd (the paper's D_h = 48); D = nh * hd.
        n_layers: blocks L (12 in the paper).
        local_up_to_layer: the first ``local_up_to_layer`` blocks are GPSA (10 in the paper);
            the class token joins after them. Must be < ``n_layers``.
        locality_strength: alpha of the local initialisation (1 in the paper).
        local_init: initialise GPSA locally (W_V = I, v_pos on a grid of offsets); False keeps
            the random init of every other linear layer (the paper's ablation).
        gating_init: initial gating parameter lambda of every head (1 in the paper).
        mlp_ratio: MLP hidden width / D.
        qkv_bias: biases on the query/key/value projections (False in the paper's code).
        use_pos_embed: learned absolute position embedding of the patches.
        global_pool: ``token`` (class token) or ``avg`` (mean of the normalised patch tokens).
        norm_eps: LayerNorm epsilon (1e-6 as in timm).
        dropout: dropout on the attention weights, each sublayer output and the MLP hidden layer.
    """

    image_size: int = 224
    patch_size: int = 16
    n_channels: int = 3
    n_classes: int = 1000
    n_heads: int = 4
    d_head: int = 48
    n_layers: int = 12
    local_up_to_layer: int = 10
    locality_strength: float = 1.0
    local_init: bool = True
    gating_init: float = 1.0
    mlp_ratio: float = 4.0
    qkv_bias: bool = False
    use_pos_embed: bool = True
    global_pool: Literal["token", "avg"] = "token"
    norm_eps: float = 1e-6
    dropout: float = 0.0

    def __post_init__(self) -> None:
        names = ("image_size", "patch_size", "n_channels", "n_classes", "n_heads", "d_head")
        for name in names + ("n_layers",):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size={self.patch_size} must divide image_size={self.image_size}"
            )
        if not 0 <= self.local_up_to_layer < self.n_layers:
            raise ValueError(
                f"local_up_to_layer must be in [0, n_layers={self.n_layers}) so that the class "
                f"token joins before the last block; got {self.local_up_to_layer}"
            )
        if self.locality_strength < 0:
            raise ValueError(f"locality_strength must be >= 0, got {self.locality_strength}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {self.global_pool!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def d_model(self) -> int:
        """Token width D = n_heads * d_head."""
        return self.n_heads * self.d_head

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size


def relative_positions(grid_size: int) -> Tensor:
    """r_ij = (dx, dy, dx^2 + dy^2) between the patches of a square grid: (N, N, 3).

    Patches are numbered row by row; ``dx = col_j - col_i``, ``dy = row_j - row_i``.
    """
    idx = torch.arange(grid_size, dtype=torch.float32)
    row = idx.repeat_interleave(grid_size)  # (N,)
    col = idx.repeat(grid_size)  # (N,)
    dx = col[None, :] - col[:, None]  # (N, N)
    dy = row[None, :] - row[:, None]  # (N, N)
    return torch.stack([dx, dy, dx**2 + dy**2], dim=-1)  # (N, N, 3)


def local_init_offsets(n_heads: int) -> list[tuple[int, float, float]]:
    """The heads that get a local init and their centres: ``[(head, D_x, D_y), ...]``.

    The first ``k * k`` heads (``k = floor(sqrt(nh))``) are centred on a k x k grid of offsets
    around the query (``-(k-1)/2 .. (k-1)/2`` for even k, ``-(k//2) .. k//2`` for odd k); head
    ``h1 + k * h2`` gets ``D_y = h1 - c`` and ``D_x = h2 - c``, as in the reference code. Any
    remaining heads keep their random init.
    """
    k = int(n_heads**0.5)
    c = (k - 1) / 2 if k % 2 == 0 else k // 2
    return [(h1 + k * h2, float(h2 - c), float(h1 - c)) for h1 in range(k) for h2 in range(k)]


class GPSA(nn.Module):
    """Gated positional self-attention over the N patch tokens of a square grid.

    Args:
        d_model: width D.
        n_heads: heads nh; D must be divisible by nh.
        grid_size: patches per side (N = grid_size ** 2); fixes the relative positions.
        qkv_bias: biases on the query/key/value projections.
        locality_strength: alpha of ``local_init``.
        gating_init: initial lambda of every head.
        dropout: dropout on the attention weights.

    Parameters: ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` (D -> D), ``v_pos`` (a linear
    map 3 -> nh: row h is v_pos^h, with a bias per head) and ``gating`` (lambda, (nh,)).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        grid_size: int,
        qkv_bias: bool = False,
        locality_strength: float = 1.0,
        gating_init: float = 1.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.grid_size = grid_size
        self.locality_strength = locality_strength
        self.gating_init = gating_init
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=qkv_bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=qkv_bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=qkv_bias)
        self.out_proj = nn.Linear(d_model, d_model)
        self.v_pos = nn.Linear(3, n_heads)
        self.gating = nn.Parameter(torch.full((n_heads,), float(gating_init)))
        self.register_buffer("rel_pos", relative_positions(grid_size), persistent=False)

    @torch.no_grad()
    def local_init(self) -> None:
        """W_V = I and v_pos^h = -alpha (-2 D^h_x, -2 D^h_y, 1) (see ``local_init_offsets``).

        As in the reference code, rows of heads beyond the k x k grid keep their current
        values, scaled by alpha, and the v_pos bias is left as it is.
        """
        self.v_proj.weight.copy_(torch.eye(self.d_model))
        w = self.v_pos.weight  # (nh, 3)
        for h, dx, dy in local_init_offsets(self.n_heads):
            w[h] = torch.tensor([2 * dx, 2 * dy, -1.0])
        w.mul_(self.locality_strength)

    def positional_attention(self) -> Tensor:  # -> (nh, N, N)
        """softmax_j(v_pos^h . r_ij + b_h), shared by every image."""
        scores = self.v_pos(self.rel_pos.to(self.v_pos.weight.dtype))  # (N, N, nh)
        return scores.permute(2, 0, 1).softmax(dim=-1)  # (nh, N, N)

    def _heads(self, x: Tensor) -> Tensor:  # (B, N, D) -> (B, nh, N, hd)
        return x.view(x.shape[0], x.shape[1], self.n_heads, self.d_head).transpose(1, 2)

    def _check(self, x: Tensor) -> None:
        n = self.grid_size**2
        if x.dim() != 3 or x.shape[1] != n or x.shape[2] != self.d_model:
            raise ValueError(
                f"GPSA expects patch tokens (B, {n}, {self.d_model}) of a {self.grid_size}x"
                f"{self.grid_size} grid (no class token); got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) -> (B, N, D)
        self._check(x)
        B, N, D = x.shape
        q, k, v = (
            self._heads(self.q_proj(x)),
            self._heads(self.k_proj(x)),
            self._heads(self.v_proj(x)),
        )
        p = self.dropout if self.training else 0.0
        content = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, nh, N, hd)
        pos = F.dropout(self.positional_attention(), p, self.training)  # (nh, N, N)
        # P v as one (nh)-batched matmul over all images: far faster than broadcasting P over B
        v_all = v.permute(1, 2, 0, 3).reshape(self.n_heads, N, B * self.d_head)  # (nh, N, B*hd)
        pos_out = (pos @ v_all).view(self.n_heads, N, B, self.d_head).permute(2, 0, 1, 3)
        g = torch.sigmoid(self.gating).view(-1, 1, 1)  # (nh, 1, 1)
        out = (1 - g) * content + g * pos_out  # (B, nh, N, hd)
        return self.out_proj(out.transpose(1, 2).reshape(B, N, D))

    @torch.no_grad()
    def attention_maps(self, x: Tensor) -> dict[str, Tensor]:
        """The explicit attention of the input tokens x (B, N, D) (eval-mode, no dropout).

        Returns:
            ``content`` (B, nh, N, N), ``positional`` (nh, N, N) and ``gated`` (B, nh, N, N),
            the renormalised mixture the layer applies to V.
        """
        self._check(x)
        q, k = self._heads(self.q_proj(x)), self._heads(self.k_proj(x))
        content = (q @ k.transpose(-2, -1) * self.d_head**-0.5).softmax(-1)  # (B, nh, N, N)
        pos = self.positional_attention()  # (nh, N, N)
        g = torch.sigmoid(self.gating).view(-1, 1, 1)
        gated = (1 - g) * content + g * pos  # (B, nh, N, N)
        gated = gated / gated.sum(-1, keepdim=True)
        return {"content": content, "positional": pos, "gated": gated}

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, n_heads={self.n_heads}, grid_size={self.grid_size}, "
            f"locality_strength={self.locality_strength}"
        )


class GPSABlock(nn.Module):
    """Pre-norm block with GPSA: ``x + gpsa(norm(x))`` then ``x + mlp(norm(x))``.

    Submodule names follow ``archlab.nn.EncoderLayer`` (``self_attn_norm``, ``self_attn``,
    ``ffn_norm``, ``ffn``), the layout of ConViT's MHSA blocks.
    """

    def __init__(self, cfg: ConViTConfig):
        super().__init__()
        d = cfg.d_model
        self.self_attn_norm = LayerNorm(d, eps=cfg.norm_eps)
        self.self_attn = GPSA(
            d,
            cfg.n_heads,
            cfg.grid_size,
            qkv_bias=cfg.qkv_bias,
            locality_strength=cfg.locality_strength,
            gating_init=cfg.gating_init,
            dropout=cfg.dropout,
        )
        self.ffn_norm = LayerNorm(d, eps=cfg.norm_eps)
        self.ffn = FeedForward(d, int(d * cfg.mlp_ratio), "gelu", dropout=cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) -> (B, N, D)
        x = x + self.dropout(self.self_attn(self.self_attn_norm(x)))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class ConViT(nn.Module):
    """ConViT classifier: (B, C, H, W) images -> (B, K) logits.

    ``blocks[:local_up_to_layer]`` are ``GPSABlock`` on the N patch tokens; the class token is
    then prepended and ``blocks[local_up_to_layer:]`` are ViT blocks (``vit_block``) on N + 1
    tokens; a final LayerNorm and a linear head read the class token (or the patch mean).
    """

    def __init__(self, cfg: ConViTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.patch_embed = PatchEmbed(cfg.image_size, cfg.patch_size, cfg.n_channels, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        n = self.patch_embed.n_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, n, d)) if cfg.use_pos_embed else None
        gpsa = [GPSABlock(cfg) for _ in range(cfg.local_up_to_layer)]
        mhsa = [
            vit_block(
                d, cfg.n_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.norm_eps, cfg.dropout, cfg.dropout
            )
            for _ in range(cfg.n_layers - cfg.local_up_to_layer)
        ]
        self.blocks = nn.ModuleList(gpsa + mhsa)
        self.norm = LayerNorm(d, eps=cfg.norm_eps)
        self.head = nn.Linear(d, cfg.n_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm/reference init: trunc-normal(0.02) linears, tokens and positions; local GPSA."""
        self.apply(init_vit_weights)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for block in self.gpsa_blocks:
            nn.init.constant_(block.self_attn.gating, self.cfg.gating_init)
            if self.cfg.local_init:
                block.self_attn.local_init()

    @property
    def gpsa_blocks(self) -> list[GPSABlock]:
        return list(self.blocks[: self.cfg.local_up_to_layer])

    def patch_tokens(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, N, D)
        x = self.patch_embed(x)  # (B, N, D)
        return x + self.pos_embed if self.pos_embed is not None else x

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, 1 + N, D)
        """Token features after the last block (class token first), before the final norm."""
        x = self.patch_tokens(x)  # (B, N, D)
        for i, block in enumerate(self.blocks):
            if i == self.cfg.local_up_to_layer:
                x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+N, D)
            x = block(x)
        return x

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K)
        h = self.forward_features(x)  # (B, 1 + N, D)
        if self.cfg.global_pool == "token":
            return self.head(self.norm(h[:, 0]))  # (B, K)
        return self.head(self.norm(h[:, 1:]).mean(1))  # (B, K): mean of normalised patches

    @torch.no_grad()
    def gpsa_attention_maps(self, x: Tensor) -> list[dict[str, Tensor]]:
        """``GPSA.attention_maps`` of every GPSA block for images x (B, C, H, W)."""
        maps = []
        h = self.patch_tokens(x)
        for block in self.gpsa_blocks:
            maps.append(block.self_attn.attention_maps(block.self_attn_norm(h)))
            h = block(h)
        return maps


def patch_distances(grid_size: int) -> Tensor:
    """Euclidean distances between the patches of a square grid, in patches: (N, N)."""
    return relative_positions(grid_size)[..., 2].sqrt()


def mean_attention_distance(attn: Tensor, grid_size: int) -> Tensor:
    """Mean distance, in patches, between a query patch and the patches it attends to.

    ``sum_j A_ij |r_ij|`` averaged over queries (and images): the paper's and timm's
    ``get_attention_map`` measure of locality.

    Args:
        attn: patch-to-patch attention (..., nh, N, N) whose rows sum to 1.
        grid_size: patches per side (N = grid_size ** 2).

    Returns:
        (nh,) one distance per head.
    """
    dist = patch_distances(grid_size).to(attn)  # (N, N)
    per_query = (attn * dist).sum(-1)  # (..., nh, N)
    return per_query.reshape(-1, *per_query.shape[-2:]).mean(dim=(0, 2))  # (nh,)


VARIANTS = {
    "tiny": ConViTConfig(
        image_size=32,
        patch_size=4,
        n_classes=10,
        n_heads=4,
        d_head=16,
        n_layers=3,
        local_up_to_layer=2,
    ),
    "ti": ConViTConfig(n_heads=4),  # ConViT-Ti: 192 wide, 6M parameters
    "s": ConViTConfig(n_heads=9),  # ConViT-S: 432 wide, 27M parameters
    "b": ConViTConfig(n_heads=16),  # ConViT-B: 768 wide, 86M parameters
}


def _example_input(model: ConViT, batch_size: int) -> tuple[Tensor]:
    c = model.cfg
    return (torch.randn(batch_size, c.n_channels, c.image_size, c.image_size),)


def _task(cfg: ConViTConfig, seed: int):
    """``archlab train``: textured shapes (``archlab.lab.tasks.textured_shapes_task``)."""
    from archlab.lab.tasks import textured_shapes_task

    return textured_shapes_task(cfg.image_size, cfg.n_channels, cfg.n_classes, seed)


SPEC = PaperSpec(
    slug="convit",
    family="vision",
    title="ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases",
    arxiv="2103.10697",
    claim=(
        "Gated positional self-attention initialised to be local gives a vision transformer a "
        "soft convolutional bias: at initialisation its attention is local, and with little "
        "training data ConViT is clearly more accurate than a DeiT of the same size and budget."
    ),
    config=ConViTConfig,
    build=ConViT,
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
    experiment="archlab.papers.vision.convit.experiment",
)
