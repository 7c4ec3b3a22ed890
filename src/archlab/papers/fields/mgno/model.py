"""MgNO: Efficient Parameterization of Linear Operators via Multigrid.

Juncai He, Xinliang Liu, Jinchao Xu, 2023 (ICLR 2024), arXiv 2310.19809. Paper card, the
official code's defaults this follows and every deviation: README.md beside this file.

A neural operator whose layers are ``O(u) = sigma(W u + b)``: ``W`` maps ``n_in`` channels of a
function on an ``H x W`` grid to ``n_u`` channels, and each of its blocks ``W_ij`` is a
multi-channel V-cycle (``MgConv``), the multigrid iteration for a linear system ``A u = f`` with
learned bias-free 3x3 convolutions as operators:

- smoothing ``u <- u + S (f - A u)`` (``S`` and ``A`` 3x3 convolutions); the finest level starts
  from ``u = S f``;
- restriction to the next coarser grid: ``u <- Pi u``, ``f <- R f`` (3x3 convolutions of stride
  2; with ``restrict_residual`` the residual ``f - A u`` is restricted instead of ``f``);
- prolongation back up: ``u_l <- u_l + P u_{l+1}`` with ``P`` a ConvTranspose2d (k=4, s=2),
  optionally followed by post-smoothing (and, in the generic ``MgConv``, a layer norm).

As in the official ``MgNO_DC`` (the Darcy model), the bias ``b`` of a layer is a 1x1 convolution
of its input plus a constant, there is no lifting or projection network: the first layer maps the
input channels straight to ``n_u``, and the output is a linear 1x1 combination of the last
layer's channels. Zero padding of every convolution encodes zero Dirichlet boundary values
(the grid holds the interior nodes); circular padding encodes periodic boundaries.

A V-cycle of ``n_levels`` halves the grid ``n_levels - 1`` times, so it takes a grid whose sides
are multiples of ``2 ** (n_levels - 1)`` with a coarsest grid of at least 2x2
(``ResolutionError`` otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.errors import ArchlabError
from archlab.registry import PaperSpec

PADDINGS = ("zeros", "circular")
"""``zeros``: zero Dirichlet boundaries; ``circular``: periodic ones."""

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


class ResolutionError(ArchlabError, ValueError):
    """A grid the V-cycle cannot coarsen (sides not multiples of ``2 ** (n_levels - 1)``)."""


def check_resolution(height: int, width: int, n_levels: int) -> None:
    """Raise ``ResolutionError`` unless an ``height x width`` grid coarsens ``n_levels - 1``
    times by halving to a grid of at least 2x2."""
    factor = 2 ** (n_levels - 1)
    if height % factor or width % factor or min(height, width) < 2 * factor:
        raise ResolutionError(
            f"MgNO with {n_levels} levels needs a grid whose sides are multiples of {factor} "
            f"and at least {2 * factor} (coarsest grid >= 2x2), got {height}x{width}"
        )


@dataclass(frozen=True)
class MgNOConfig:
    """Hyperparameters, named after the paper's symbols and the official code's arguments.

    Attributes:
        n_in: channels of the input function (``num_channel_f`` of the first layer; 1 for the
            Darcy coefficient ``a``).
        n_u: channels of ``u`` in every layer (``num_channel_u``).
        n_layers: layers ``O_1 .. O_L`` (``num_layer``).
        smoothing: ``(pre, post)`` smoothing steps per level, finest first (``num_iteration``);
            its length is the number of levels ``J``. The finest level needs ``pre >= 1`` (its
            first step is ``u = S f``).
        n_out: output channels (1: the solution ``u`` of the PDE).
        padding: ``zeros`` (Dirichlet) or ``circular`` (periodic).
        restrict_residual: restrict ``f - A u`` instead of ``f`` (the code's ``use_res``).
        layer_norm: a layer norm after each prolongation (``MgConv``; the Darcy ``MgConv_DC``
            has none).
        activation: ``sigma`` between layers.
    """

    n_in: int = 1
    n_u: int = 24
    n_layers: int = 4
    smoothing: tuple[tuple[int, int], ...] = ((1, 0), (1, 0), (1, 0), (1, 0), (1, 0), (2, 0))
    n_out: int = 1
    padding: str = "zeros"
    restrict_residual: bool = False
    layer_norm: bool = False
    activation: str = "gelu"

    def __post_init__(self) -> None:
        if min(self.n_in, self.n_u, self.n_layers, self.n_out) < 1:
            raise ValueError("n_in, n_u, n_layers and n_out must be >= 1")
        if not self.smoothing or any(len(s) != 2 or min(s) < 0 for s in self.smoothing):
            raise ValueError(f"smoothing must be (pre, post) pairs >= 0, got {self.smoothing}")
        if self.smoothing[0][0] < 1:
            raise ValueError("the finest level needs at least one pre-smoothing step (u = S f)")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got "
                             f"{self.activation!r}")  # fmt: skip

    @property
    def n_levels(self) -> int:
        return len(self.smoothing)


def conv3x3(c_in: int, c_out: int, padding: str, stride: int = 1) -> nn.Conv2d:
    """A bias-free 3x3 convolution that keeps (stride 1) or halves (stride 2) the grid."""
    return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False, padding_mode=padding)


class Smoothing(nn.Module):
    """One smoothing step ``u <- u + S (f - A u)``; with ``first`` the step ``u = S f`` that
    starts the cycle (no ``A``). The official ``MgIte`` / ``MgIte_init``."""

    def __init__(self, n_u: int, n_f: int, padding: str, first: bool = False):
        super().__init__()
        self.S = conv3x3(n_f, n_u, padding)
        self.A = None if first else conv3x3(n_u, n_f, padding)

    def forward(self, u: Tensor | None, f: Tensor) -> Tensor:  # (B, Cu, H, W), (B, Cf, H, W)
        if self.A is None:
            return self.S(f)
        return u + self.S(f - self.A(u))


class Restriction(nn.Module):
    """To the next coarser grid: ``u <- Pi u``, ``f <- R f`` (or ``R (f - A u)``); stride-2 3x3
    convolutions, (H, W) -> (H/2, W/2). The official ``Restrict``."""

    def __init__(self, n_u: int, n_f: int, padding: str, residual: bool = False):
        super().__init__()
        self.Pi = conv3x3(n_u, n_u, padding, stride=2)
        self.R = conv3x3(n_f, n_f, padding, stride=2)
        self.A = conv3x3(n_u, n_f, padding) if residual else None

    def forward(self, u: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        r = f if self.A is None else f - self.A(u)
        return self.Pi(u), self.R(r)  # (B, Cu, H/2, W/2), (B, Cf, H/2, W/2)


class MgConv(nn.Module):
    """A multi-channel V-cycle: the linear operator ``W`` from ``n_f`` to ``n_u`` channels.

    Down: level 0 runs its pre-smoothing from ``u = S f``; each coarser level restricts
    ``(u, f)`` and runs its pre-smoothing. Up, from the second-coarsest level to the finest:
    ``u_l <- u_l + P_l u_{l+1}`` (ConvTranspose2d k=4, s=2), a layer norm (``layer_norm``), then
    the level's post-smoothing on its own ``f_l``; the coarsest level runs its post-steps right
    after its pre-steps (the official code never runs them; its configurations have none).
    Returns ``u_0``. With one level it is just the smoothing steps on the input grid.

    The layer norm normalises over (C, H, W) with a per-channel affine (``GroupNorm`` with one
    group), so the operator takes any admissible resolution; the official ``MgConv`` uses a
    ``LayerNorm`` with an elementwise affine of a fixed grid size.
    """

    def __init__(self, n_u: int, n_f: int, cfg: MgNOConfig):
        super().__init__()
        self.cfg = cfg
        pad = cfg.padding
        self.pre = nn.ModuleList()
        self.post = nn.ModuleList()
        for level, (n_pre, n_post) in enumerate(cfg.smoothing):
            steps = [Smoothing(n_u, n_f, pad, first=level == 0 and i == 0) for i in range(n_pre)]
            self.pre.append(nn.ModuleList(steps))
            self.post.append(nn.ModuleList(Smoothing(n_u, n_f, pad) for _ in range(n_post)))
        n_coarse = cfg.n_levels - 1
        self.restrict = nn.ModuleList(
            Restriction(n_u, n_f, pad, cfg.restrict_residual) for _ in range(n_coarse)
        )
        self.prolong = nn.ModuleList(
            nn.ConvTranspose2d(n_u, n_u, 4, 2, 1, bias=False) for _ in range(n_coarse)
        )
        self.norm = nn.ModuleList(
            nn.GroupNorm(1, n_u) if cfg.layer_norm else nn.Identity() for _ in range(n_coarse)
        )

    def forward(self, f: Tensor) -> Tensor:  # (B, Cf, H, W) -> (B, Cu, H, W)
        check_resolution(f.shape[-2], f.shape[-1], self.cfg.n_levels)
        u: Tensor | None = None
        levels: list[tuple[Tensor, Tensor]] = []
        for level in range(self.cfg.n_levels):
            if level > 0:
                u, f = self.restrict[level - 1](u, f)  # (B, C, H/2^l, W/2^l)
            for step in self.pre[level]:
                u = step(u, f)
            levels.append((u, f))
        for step in self.post[-1]:  # the coarsest level: its post-steps follow its pre-steps
            u = step(u, f)
        for level in range(self.cfg.n_levels - 2, -1, -1):
            u_l, f_l = levels[level]
            u = self.norm[level](u_l + self.prolong[level](u))  # coarse correction, 2x finer
            for step in self.post[level]:
                u = step(u, f_l)
        return u


class MgNO(nn.Module):
    """The operator: ``n_layers`` layers ``u <- sigma(W u + K u + b)`` (``W`` a V-cycle, ``K u +
    b`` a 1x1 convolution with bias, the official ``linear_list``), then a linear 1x1
    combination of the channels to ``n_out`` outputs (bias-free, the code's ``linear``)."""

    def __init__(self, cfg: MgNOConfig):
        super().__init__()
        self.cfg = cfg
        widths = [cfg.n_in] + [cfg.n_u] * cfg.n_layers
        self.W = nn.ModuleList(MgConv(cfg.n_u, c_in, cfg) for c_in in widths[:-1])
        self.b = nn.ModuleList(nn.Conv2d(c_in, cfg.n_u, 1) for c_in in widths[:-1])
        self.act = ACTIVATIONS[cfg.activation]()
        self.out = nn.Conv2d(cfg.n_u, cfg.n_out, 1, bias=False)

    def forward(self, a: Tensor) -> Tensor:  # (B, n_in, H, W) -> (B, n_out, H, W)
        if a.dim() != 4 or a.shape[1] != self.cfg.n_in:
            raise ResolutionError(f"MgNO expects input (B, {self.cfg.n_in}, H, W), got "
                                  f"{tuple(a.shape)}")  # fmt: skip
        check_resolution(a.shape[-2], a.shape[-1], self.cfg.n_levels)
        u = a
        for W, b in zip(self.W, self.b):
            u = self.act(W(u) + b(u))  # (B, n_u, H, W)
        return self.out(u)


def coarsest_grid(cfg: MgNOConfig, height: int, width: int) -> tuple[int, int]:
    """The grid of the coarsest level of the V-cycle on an ``height x width`` input."""
    check_resolution(height, width, cfg.n_levels)
    factor = 2 ** (cfg.n_levels - 1)
    return height // factor, width // factor


VARIANTS = {
    "tiny": MgNOConfig(n_u=4, n_layers=2, smoothing=((1, 0), (1, 0), (2, 0))),
    # the miniature of experiment.py: 16 channels, 3 layers, 4 levels (2 steps at the coarsest)
    "mini": MgNOConfig(n_u=16, n_layers=3, smoothing=((1, 0), (1, 0), (1, 0), (2, 0))),
    # the Darcy (rough) run of the official README: --num_channel_u 24 --num_layer 4
    # --num_iteration 10 10 10 10 10 20 (6 levels, 1 pre-smoothing, 2 at the coarsest)
    "darcy": MgNOConfig(),
}

SPEC = PaperSpec(
    slug="mgno",
    family="fields",
    title="MgNO: Efficient Parameterization of Linear Operators via Multigrid",
    arxiv="2310.19809",
    claim=(
        "A neural operator whose linear maps are multi-channel multigrid V-cycles learns the "
        "Darcy flow solution operator with a lower test relative L2 error and a smaller "
        "train/test gap than an FNO of similar size."
    ),
    config=MgNOConfig,
    build=MgNO,
    variants=VARIANTS,
    example_input=lambda model, batch_size: (
        torch.rand(batch_size, model.cfg.n_in, 2**model.cfg.n_levels, 2**model.cfg.n_levels),
    ),  # fmt: skip
    fidelity="faithful",
    experiment="archlab.papers.fields.mgno.experiment",
)

__all__ = [
    "MgConv",
    "MgNO",
    "MgNOConfig",
    "ResolutionError",
    "Restriction",
    "SPEC",
    "Smoothing",
    "check_resolution",
    "coarsest_grid",
]
