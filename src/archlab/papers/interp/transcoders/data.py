"""A model with planted features: an MLP sublayer that computes known sparse output features
from known sparse input features held in superposition.

- ``n_in`` input features, each active with probability ``p`` at a magnitude ``U(0, 1)``,
  written into the ``d``-dimensional residual stream along unit directions ``E_in``:
  ``x = f E_in``.
- ``n_out`` output features, each reading ``n_parents`` input features with weights
  ``U(0.5, 1)`` and firing above a threshold: ``g_j = ReLU(sum_i A_ji f_i - b)``; the MLP
  computes them from ``x`` (``fc1`` has weight ``A E_in``, so superposition interference is
  part of its computation) and writes them along unit directions ``E_out``:
  ``MLP(x) = g(x) E_out``.

The planted edges are the support of ``A`` (input feature ``i`` -> output feature ``j``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class CircuitConfig:
    n_in: int = 256
    n_out: int = 128
    d: int = 64
    p: float = 0.02
    n_parents: int = 2
    threshold: float = 0.35


def _unit_rows(n: int, d: int, g: torch.Generator) -> Tensor:
    e = torch.randn(n, d, generator=g)
    return e / e.norm(dim=1, keepdim=True)


class PlantedCircuit:
    """The feature directions, the edges and the MLP (an ``nn.Sequential`` of ``fc1``, ReLU,
    ``fc2``, addressable by hook names ``"0:input"`` and ``"2"``)."""

    def __init__(self, cfg: CircuitConfig, g: torch.Generator):
        self.cfg = cfg
        self.E_in = _unit_rows(cfg.n_in, cfg.d, g)  # (n_in, d)
        self.E_out = _unit_rows(cfg.n_out, cfg.d, g)  # (n_out, d)
        A = torch.zeros(cfg.n_out, cfg.n_in)
        for j in range(cfg.n_out):
            parents = torch.randperm(cfg.n_in, generator=g)[: cfg.n_parents]
            A[j, parents] = 0.5 + 0.5 * torch.rand(cfg.n_parents, generator=g)
        self.A = A
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d, cfg.n_out), nn.ReLU(), nn.Linear(cfg.n_out, cfg.d)
        )
        with torch.no_grad():
            self.mlp[0].weight.copy_(A @ self.E_in)
            self.mlp[0].bias.fill_(-cfg.threshold)
            self.mlp[2].weight.copy_(self.E_out.T)
            self.mlp[2].bias.zero_()
        self.mlp.requires_grad_(False)

    @property
    def edges(self) -> Tensor:  # (n_out, n_in) bool
        return self.A > 0

    def sample(self, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """Input feature activations ``f`` (n, n_in) and residual inputs ``x`` (n, d)."""
        c = self.cfg
        f = (torch.rand(n, c.n_in, generator=g) < c.p) * torch.rand(n, c.n_in, generator=g)
        return f, f @ self.E_in

    def output_features(self, f: Tensor) -> Tensor:
        """What the output features would be without interference: ``ReLU(f A^T - b)``."""
        return torch.relu(f @ self.A.T - self.cfg.threshold)
