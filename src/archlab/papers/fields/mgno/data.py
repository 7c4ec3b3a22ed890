"""Darcy flow data from a finite-difference solver of our own (the FNO benchmark's problem).

The steady Darcy problem on the unit square with zero Dirichlet boundary values,

    -div(a(x) grad u(x)) = f(x)  on (0, 1)^2,   u = 0 on the boundary,

with ``f = 1`` and a piecewise-constant coefficient ``a`` that is 12 where a Gaussian random
field ``psi ~ N(0, (-Laplacian + tau^2)^(-alpha))`` is >= 0 and 3 elsewhere (``alpha = 2``,
``tau = 3``: the law of the FNO paper's Darcy data, drawn there by Zongyi Li's ``GRF.m``).

The field is a cosine series ``psi(x, y) = sum_k c_k xi_k cos(pi k1 x) cos(pi k2 y)`` with
``c_k = tau^(alpha-1) (pi^2 |k|^2 + tau^2)^(-alpha/2)``, ``c_0 = 0`` and standard normal
``xi_k`` (as ``GRF.m``, evaluated directly at the grid nodes rather than by an inverse DCT), so
the same coefficients give the same field at any resolution. The solver is the 5-point
finite-volume scheme on the ``(n + 2) x (n + 2)`` node grid ``x_i = i h``, ``h = 1 / (n + 1)``,
with harmonic means of ``a`` on the cell faces (second order for smooth ``a``, the standard
choice for jumping coefficients), assembled with ``scipy.sparse`` and solved with ``spsolve``.
A sample is the ``n x n`` interior: the boundary values are zero, which is what an operator
with zero padding assumes.

neuraloperator 2.0.0 ships no Darcy arrays in its wheel (its ``load_darcy_flow_small``
downloads them), so nothing packaged is used.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
from torch import Tensor

ALPHA, TAU = 2.0, 3.0
"""The FNO data's GRF: covariance ``(-Laplacian + tau^2)^(-alpha)``."""
HIGH, LOW = 12.0, 3.0
"""``a`` where the field is >= 0, and elsewhere."""


def grf_modes(n_samples: int, n_modes: int, g: torch.Generator) -> Tensor:
    """Standard normal coefficients ``xi`` (N, K, K) of the cosine series (seeded by ``g``)."""
    return torch.randn(n_samples, n_modes, n_modes, generator=g, dtype=torch.float64)


def grf(xi: Tensor, points: Tensor, alpha: float = ALPHA, tau: float = TAU) -> Tensor:
    """The Gaussian random field with coefficients ``xi`` (N, K, K) at ``points`` (n,) on
    [0, 1] in each direction: (N, n, n), ``[:, i, j]`` at ``(points[i], points[j])``."""
    k = torch.arange(xi.shape[-1], dtype=torch.float64)
    scale = tau ** (alpha - 1) * (math.pi**2 * (k[:, None] ** 2 + k**2) + tau**2) ** (-alpha / 2)
    scale[0, 0] = 0.0  # zero mean, as GRF.m
    basis = torch.cos(math.pi * points.to(torch.float64)[:, None] * k)  # (n, K)
    return torch.einsum("ik,nkl,jl->nij", basis, xi * scale, basis)


def nodes(n: int) -> Tensor:
    """The ``n + 2`` node coordinates ``i / (n + 1)`` of a grid with ``n`` interior nodes."""
    return torch.arange(n + 2, dtype=torch.float64) / (n + 1)


def darcy_matrix(a: np.ndarray) -> scipy.sparse.csr_matrix:
    """The 5-point matrix of ``-div(a grad .)`` with zero Dirichlet values, from ``a`` at all
    ``(n + 2) x (n + 2)`` nodes (boundary included): (n^2, n^2), row ``i * n + j`` for the
    interior node ``(i + 1, j + 1)``; face coefficients are harmonic means of the two nodes."""
    m = a.shape[0]
    n = m - 2
    h2 = 1.0 / (n + 1) ** 2
    face_x = 2 * a[1:] * a[:-1] / (a[1:] + a[:-1])  # (n + 1, m): between rows i and i + 1
    face_y = 2 * a[:, 1:] * a[:, :-1] / (a[:, 1:] + a[:, :-1])  # (m, n + 1)
    north = face_x[:-1, 1:-1]  # (n, n): face to row i - 1 of interior node (i, j)
    south = face_x[1:, 1:-1]
    west = face_y[1:-1, :-1]
    east = face_y[1:-1, 1:]
    idx = np.arange(n * n).reshape(n, n)
    rows = [idx.ravel()]
    cols = [idx.ravel()]
    vals = [(north + south + west + east).ravel() / h2]
    for coef, src, dst in (
        (north[1:], idx[1:], idx[:-1]),
        (south[:-1], idx[:-1], idx[1:]),
        (west[:, 1:], idx[:, 1:], idx[:, :-1]),
        (east[:, :-1], idx[:, :-1], idx[:, 1:]),
    ):
        rows.append(src.ravel())
        cols.append(dst.ravel())
        vals.append(-coef.ravel() / h2)
    return scipy.sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n * n,) * 2
    )


def solve_darcy(a: np.ndarray, f: np.ndarray | float = 1.0) -> np.ndarray:
    """Solve ``-div(a grad u) = f`` with ``u = 0`` on the boundary.

    Args:
        a: the coefficient at all ``(n + 2) x (n + 2)`` nodes of the grid (boundary included).
        f: the right-hand side at the ``n x n`` interior nodes, or a constant.

    Returns:
        ``u`` at the interior nodes, (n, n).
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 3 or not (a > 0).all():
        raise ValueError(f"a must be a positive square (n + 2, n + 2) array with n >= 1, "
                         f"got shape {a.shape}")  # fmt: skip
    n = a.shape[0] - 2
    rhs = np.broadcast_to(np.asarray(f, dtype=np.float64), (n, n)).ravel()
    return scipy.sparse.linalg.spsolve(darcy_matrix(a).tocsc(), rhs).reshape(n, n)


def darcy_samples(
    n_samples: int, resolution: int, g: torch.Generator, n_modes: int = 32
) -> tuple[Tensor, Tensor]:
    """``n_samples`` Darcy problems at ``resolution`` x ``resolution`` interior nodes.

    Returns:
        ``a`` (N, 1, n, n) and ``u`` (N, 1, n, n), float32, both at the interior nodes.
    """
    psi = grf(grf_modes(n_samples, n_modes, g), nodes(resolution))  # (N, n + 2, n + 2)
    a = torch.where(psi >= 0, HIGH, LOW).numpy()
    u = np.stack([solve_darcy(sample) for sample in a])  # (N, n, n)
    inner = a[:, 1:-1, 1:-1]
    return (torch.from_numpy(inner).float()[:, None], torch.from_numpy(u).float()[:, None])
