"""S-KAN: Activation Space Selectable Kolmogorov-Arnold Networks.

Zhuoqin Yang, Jiansong Zhang, Xiaoling Luo, Zheng Lu, Linlin Shen, 2024, arXiv 2408.08338.
Paper card, the choices the paper leaves open and measured results: README.md beside this file.

A KAN layer puts a learnable univariate function on every edge, ``y_j = sum_i phi_ij(x_i)``;
a single-space KAN draws every ``phi_ij`` from one function space (B-splines in the original
KAN, Chebyshev polynomials in ChebyKAN, Gaussian RBFs in FastKAN, Fourier series, wavelets).
S-KAN lets each node choose its space: the edges into output node ``j`` are a learned mixture

    phi_ij(x) = w_ij * silu(x) + sum_s alpha_js * sum_m c^s_ijm B^s_m(x),
    alpha_j = softmax over the spaces still allowed at node j of the logits a_j,

trained in three phases (the paper's strategy): (i) full training of every candidate space,
(ii) selective training of the ``top_k`` spaces each node weights most, (iii) pruning to the one
space per node with the largest weight, which is then trained alone (its weight fixed to 1).
``schedule=(select_at, prune_at)`` sets the training steps at which (ii) and (iii) begin; the
model counts its own training forwards, so any trainer runs the strategy.

Every space has ``n_basis`` functions per edge, so the single-space KANs of the comparison have
equal parameter counts, and a pruned S-KAN has that count too (plus its selection logits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.nn.kan import uniform_cubic_basis
from archlab.registry import PaperSpec

SPACES = ("bspline", "chebyshev", "fourier", "rbf", "wavelet")
"""The activation spaces of the pool (``basis`` defines each)."""


def basis(space: str, x: Tensor, n_basis: int) -> Tensor:
    """The ``n_basis`` functions of ``space`` at ``x``: (B, in) -> (B, in, n_basis).

    - ``bspline``: cubic B-splines on the extended uniform grid of ``n_basis - 3`` intervals
      over [-1, 1] (the original KAN's basis; ``archlab.nn.kan.uniform_cubic_basis``, equal to
      the recursion ``bspline_basis`` on that grid);
    - ``chebyshev``: ``T_0 .. T_{n-1}`` of ``tanh(x)`` (ChebyKAN);
    - ``fourier``: ``cos(m x), sin(m x)`` for ``m = 1 .. n/2`` (FourierKAN);
    - ``rbf``: Gaussians ``exp(-((x - c_m) / h)^2)`` at ``n`` centres on [-2, 2], ``h`` their
      spacing (FastKAN);
    - ``wavelet``: Mexican hats ``(1 - u^2) exp(-u^2 / 2)``, ``u = (x - t_m) / h``, at ``n``
      translations on [-1, 1] (Wav-KAN's default mother wavelet, on a fixed translation grid).
    """
    if space == "bspline":
        return uniform_cubic_basis(x, -1.0, 1.0, n_basis - 3)
    if space == "chebyshev":
        t = torch.tanh(x)
        out = [torch.ones_like(t), t]
        for _ in range(2, n_basis):
            out.append(2 * t * out[-1] - out[-2])
        return torch.stack(out[:n_basis], -1)
    if space == "fourier":
        m = torch.arange(1, n_basis // 2 + 1, dtype=x.dtype, device=x.device)
        angle = x[..., None] * m  # (B, in, n/2)
        return torch.cat([torch.cos(angle), torch.sin(angle)], -1)
    if space == "rbf":
        centres = torch.linspace(-2.0, 2.0, n_basis, dtype=x.dtype, device=x.device)
        h = 4.0 / (n_basis - 1)
        return torch.exp(-(((x[..., None] - centres) / h) ** 2))
    if space == "wavelet":
        shifts = torch.linspace(-1.0, 1.0, n_basis, dtype=x.dtype, device=x.device)
        u = (x[..., None] - shifts) / (2.0 / (n_basis - 1))
        return (1 - u**2) * torch.exp(-(u**2) / 2)
    raise ValueError(f"unknown activation space {space!r}; the pool is {SPACES}")


@dataclass(frozen=True)
class SKANConfig:
    """Hyper-parameters.

    Attributes:
        widths: node counts per layer, e.g. ``(2, 5, 1)`` (the KAN paper's toy networks).
        spaces: the candidate pool; one space gives a single-space KAN.
        n_basis: basis functions per edge in every space (even, >= 4).
        top_k: spaces each node keeps for the selective phase.
        schedule: ``(select_at, prune_at)`` training steps at which the selective phase and the
            pruned phase begin, or None (no schedule: call ``select`` / ``prune`` yourself).
        init_std: the basis coefficients start ``N(0, init_std^2 / n_basis)``.
    """

    widths: tuple[int, ...] = (2, 5, 1)
    spaces: tuple[str, ...] = SPACES
    n_basis: int = 8
    top_k: int = 2
    schedule: tuple[int, int] | None = None
    init_std: float = 0.1

    def __post_init__(self) -> None:
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ValueError(f"widths must name >= 2 layers of >= 1 node, got {self.widths}")
        unknown = [s for s in self.spaces if s not in SPACES]
        if unknown or not self.spaces or len(set(self.spaces)) != len(self.spaces):
            raise ValueError(f"spaces must be distinct names from {SPACES}, got {self.spaces}")
        if self.n_basis < 4 or self.n_basis % 2:
            raise ValueError(f"n_basis must be even and >= 4, got {self.n_basis}")
        if not 1 <= self.top_k <= len(self.spaces):
            raise ValueError(f"top_k must be in [1, {len(self.spaces)}], got {self.top_k}")
        if self.schedule is not None and not 0 <= self.schedule[0] <= self.schedule[1]:
            raise ValueError(f"schedule must be (select_at, prune_at), 0 <= select <= prune, "
                             f"got {self.schedule}")  # fmt: skip


class SKANLayer(nn.Module):
    """One selectable-space KAN layer: (B, in) -> (B, out).

    Buffers: ``allowed`` (out, S), the spaces still in play at each output node.
    """

    def __init__(self, in_dim: int, out_dim: int, spaces: tuple[str, ...], n_basis: int,
                 init_std: float = 0.1):  # fmt: skip
        super().__init__()
        self.in_dim, self.out_dim, self.spaces, self.n_basis = in_dim, out_dim, spaces, n_basis
        self.base = nn.Parameter(torch.empty(in_dim, out_dim))  # w_ij of silu(x)
        self.coef = nn.Parameter(torch.randn(len(spaces), in_dim, out_dim, n_basis) * init_std
                                 / math.sqrt(n_basis))  # fmt: skip
        self.logits = nn.Parameter(torch.zeros(out_dim, len(spaces)))  # a_js
        nn.init.uniform_(self.base, -1 / math.sqrt(in_dim), 1 / math.sqrt(in_dim))
        self.register_buffer("allowed", torch.ones(out_dim, len(spaces), dtype=torch.bool))

    def weights(self) -> Tensor:
        """alpha (out, S): softmax of the logits over the spaces allowed at each node."""
        return self.logits.masked_fill(~self.allowed, float("-inf")).softmax(-1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"SKANLayer expects (B, {self.in_dim}) inputs, got {tuple(x.shape)}")
        alpha = self.weights()  # (out, S)
        used = [s for s in range(len(self.spaces)) if bool(self.allowed[:, s].any())]
        phi = torch.cat([basis(self.spaces[s], x, self.n_basis) for s in used], -1)
        coef = self.coef[used] * alpha.T[used][:, None, :, None]  # (S', in, out, M) weighted
        coef = coef.permute(1, 2, 0, 3).reshape(self.in_dim, self.out_dim, -1)  # (in, out, S'M)
        return F.silu(x) @ self.base + torch.einsum("bik,iok->bo", phi, coef)  # (B, out)

    @torch.no_grad()
    def select(self, k: int) -> None:
        """Keep the ``k`` allowed spaces with the largest weight at each node. The kept spaces'
        coefficients absorb the change of their weight (old / new alpha), so each kept term
        ``alpha_js * sum_m c^s_ijm B^s_m`` is unchanged; the dropped terms are lost."""
        old = self.weights()  # (out, S)
        keep = old.topk(min(k, len(self.spaces)), dim=-1).indices
        self.allowed.zero_()
        self.allowed.scatter_(1, keep, True)
        new = self.weights()  # (out, S)
        ratio = torch.where(self.allowed, old / new.clamp_min(1e-12), 0.0)  # (out, S)
        self.coef.mul_(ratio.T[:, None, :, None])  # (S, 1, out, 1)

    def chosen(self) -> list[str]:
        """Each node's space once pruned (the one allowed), else its heaviest."""
        return [self.spaces[int(i)] for i in self.weights().argmax(-1)]


class SKAN(nn.Module):
    """A stack of ``SKANLayer`` (one space: a single-space KAN) with the three-phase strategy.

    ``forward(x)`` (B, widths[0]) -> (B, widths[-1]); in training mode it also advances the
    schedule (one call per training step).
    """

    def __init__(self, cfg: SKANConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(
            SKANLayer(a, b, cfg.spaces, cfg.n_basis, cfg.init_std)
            for a, b in zip(cfg.widths[:-1], cfg.widths[1:])
        )
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @property
    def phase(self) -> str:
        """``full`` | ``selective`` | ``pruned`` (from the layers' allowed spaces)."""
        n = max(int(layer.allowed.sum(-1).max()) for layer in self.layers)
        return "pruned" if n == 1 else ("full" if n == len(self.cfg.spaces) else "selective")

    def select(self, k: int | None = None) -> None:
        """Start the selective phase: each node keeps its ``k`` (default ``top_k``) spaces."""
        for layer in self.layers:
            layer.select(self.cfg.top_k if k is None else k)

    def prune(self) -> None:
        """Prune each node to its one heaviest space (its weight is then 1)."""
        self.select(1)

    def chosen(self) -> list[list[str]]:
        """The space each node uses (or weights most, before pruning), per layer."""
        return [layer.chosen() for layer in self.layers]

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.cfg.schedule is not None and len(self.cfg.spaces) > 1:
            select_at, prune_at = self.cfg.schedule
            step = int(self.step)
            if step == select_at and step < prune_at:
                self.select()
            if step == prune_at:
                self.prune()
            self.step += 1
        for layer in self.layers:
            x = layer(x)
        return x


def active_parameters(model: SKAN) -> int:
    """Parameters a pruned S-KAN uses: per edge its base weight and one space's coefficients
    (the selection logits and the pruned spaces' coefficients are not counted)."""
    return sum(layer.base.numel() + layer.coef[0].numel() for layer in model.layers)


VARIANTS = {
    "tiny": SKANConfig(widths=(2, 3, 1)),
    "base": SKANConfig(),
    **{space: SKANConfig(spaces=(space,), top_k=1) for space in SPACES},
}

SPEC = PaperSpec(
    slug="s_kan",
    family="fields",
    title="Activation Space Selectable Kolmogorov-Arnold Networks",
    arxiv="2408.08338",
    claim=(
        "Letting each KAN node select its activation space from a pool (B-spline, Chebyshev, "
        "Fourier, RBF, wavelet) fits functions better across tasks than any single-space KAN "
        "(best mean rank) and beats an MLP with the same number of parameters."
    ),
    config=SKANConfig,
    build=SKAN,
    variants=VARIANTS,
    example_input=lambda model, batch_size: (torch.rand(batch_size, model.cfg.widths[0]) * 2 - 1,),
    fidelity="simplified",
    experiment="archlab.papers.fields.s_kan.experiment",
)
