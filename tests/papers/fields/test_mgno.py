"""MgNO: the Darcy solver against known solutions, the V-cycle's mechanics by hand, boundaries,
resolutions, and the neuraloperator FNO baseline the experiment trains. Each mechanism the card
names has a test that fails when it is removed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab.papers.fields.mgno import (
    MgConv,
    MgNO,
    MgNOConfig,
    ResolutionError,
    Restriction,
    Smoothing,
    coarsest_grid,
)
from archlab.papers.fields.mgno.data import HIGH, LOW, darcy_samples, grf, grf_modes, solve_darcy
from archlab.papers.fields.mgno.experiment import BUDGETS, Normalized, arms, relative_l2


# ---------------------------------------------------------------- the Darcy solver
def manufactured_error(n: int, smooth: bool) -> float:
    """Max-norm error of the solver on ``u = sin(pi x) sin(pi y)`` with ``a = 2.5`` or
    ``a = 1 + x + y^2`` and the matching ``f = -div(a grad u)``."""
    x = np.arange(n + 2) / (n + 1)
    X, Y = np.meshgrid(x, x, indexing="ij")
    a = 1 + X + Y**2 if smooth else np.full_like(X, 2.5)
    a_x, a_y = (np.ones_like(X), 2 * Y) if smooth else (0 * X, 0 * X)
    p = np.pi
    u = np.sin(p * X) * np.sin(p * Y)
    u_x, u_y = p * np.cos(p * X) * np.sin(p * Y), p * np.sin(p * X) * np.cos(p * Y)
    f = -(a_x * u_x + a_y * u_y - 2 * p**2 * a * u)
    return float(np.abs(solve_darcy(a, f[1:-1, 1:-1]) - u[1:-1, 1:-1]).max())


@pytest.mark.parametrize("smooth", [False, True])
def test_the_solver_converges_at_second_order_to_a_known_solution(smooth):
    errors = [manufactured_error(n, smooth) for n in (15, 31, 63)]  # h halves each time
    assert errors[-1] < 3e-4
    for coarse, fine in zip(errors, errors[1:]):
        assert 3.6 < coarse / fine < 4.4  # O(h^2)


def test_the_solver_uses_harmonic_face_means_and_conserves_flux():
    # 1-D in x (a depends on x only, u on a strip): the discrete flux a_face (u_i+1 - u_i)/h is
    # what a harmonic mean makes exact for a two-valued coefficient; check the matrix entries.
    from archlab.papers.fields.mgno.data import darcy_matrix

    a = np.full((4, 4), 3.0)
    a[2:, :] = 12.0  # rows 2, 3 (of the 4 nodes incl. boundary) are 12
    m = darcy_matrix(a).toarray() / 9.0  # h = 1/3: entries times h^2
    harmonic = 2 * 3 * 12 / 15
    assert m[0, 2] == pytest.approx(-harmonic)  # interior (1,1) to (2,1): across the jump
    assert m[0, 1] == pytest.approx(-3.0)  # (1,1) to (1,2): both 3
    assert m[0, 0] == pytest.approx(3 + harmonic + 3 + 3)
    np.testing.assert_allclose(m, m.T)  # symmetric (flux conservation)


def test_darcy_samples_are_the_thresholded_field_and_its_positive_solution():
    a, u = darcy_samples(4, 16, torch.Generator().manual_seed(0))
    assert a.shape == u.shape == (4, 1, 16, 16)
    assert set(a.unique().tolist()) <= {LOW, HIGH} and len(a.unique()) == 2
    assert (u > 0).all()  # f = 1 > 0 with zero boundary values: u > 0 inside
    again = darcy_samples(4, 16, torch.Generator().manual_seed(0))
    assert torch.equal(a, again[0]) and torch.equal(u, again[1])


def test_the_field_is_one_function_at_any_resolution():
    xi = grf_modes(2, 8, torch.Generator().manual_seed(1))
    coarse = grf(xi, torch.tensor([0.0, 0.25, 0.5]))
    fine = grf(xi, torch.linspace(0, 1, 9))
    torch.testing.assert_close(coarse, fine[:, :5:2, :5:2])  # the same points: same values
    assert grf(xi, torch.tensor([0.3])).abs().max() > 0


# ---------------------------------------------------------------- the V-cycle by hand
def conv(layer: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution of ``layer``'s weights on the explicitly zero-padded input."""
    return F.conv2d(F.pad(x, (1, 1, 1, 1)), layer.weight, stride=layer.stride)


def cfg(**kw) -> MgNOConfig:
    return MgNOConfig(**{"n_in": 2, "n_u": 3, "n_layers": 1, "smoothing": ((1, 0), (2, 0)), **kw})


def test_one_level_is_the_smoothing_steps_u_plus_S_of_f_minus_A_u():
    torch.manual_seed(0)
    op = MgConv(3, 2, cfg(smoothing=((3, 1),)))
    f = torch.randn(2, 2, 8, 8)
    first, second, third = op.pre[0]
    assert first.A is None  # the cycle starts from u = S f
    u = conv(first.S, f)
    for step in (second, third, op.post[0][0]):
        u = u + conv(step.S, f - conv(step.A, u))
    torch.testing.assert_close(op(f), u)


def test_two_levels_by_hand_restrict_smooth_prolong_post_smooth():
    torch.manual_seed(1)
    op = MgConv(3, 2, cfg(smoothing=((1, 1), (2, 0))))
    f = torch.randn(2, 2, 8, 8)
    u0 = conv(op.pre[0][0].S, f)
    r = op.restrict[0]
    u1, f1 = conv(r.Pi, u0), conv(r.R, f)  # (B, C, 4, 4)
    for step in op.pre[1]:
        u1 = u1 + conv(step.S, f1 - conv(step.A, u1))
    u = u0 + F.conv_transpose2d(u1, op.prolong[0].weight, stride=2, padding=1)
    post = op.post[0][0]
    u = u + conv(post.S, f - conv(post.A, u))  # post-smoothing on the finest f
    torch.testing.assert_close(op(f), u)


def test_restriction_and_prolongation_halve_and_double_the_grid():
    torch.manual_seed(0)
    r = Restriction(3, 2, "zeros")
    u, f = r(torch.randn(2, 3, 16, 8), torch.randn(2, 2, 16, 8))
    assert u.shape == (2, 3, 8, 4) and f.shape == (2, 2, 8, 4)
    op = MgConv(3, 2, cfg())
    assert op.prolong[0](u).shape == (2, 3, 16, 8)
    assert (op.prolong[0].kernel_size, op.prolong[0].stride) == ((4, 4), (2, 2))


def test_the_residual_restriction_restricts_f_minus_A_u():
    torch.manual_seed(0)
    r = Restriction(3, 2, "zeros", residual=True)
    u, f = torch.randn(1, 3, 8, 8), torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(r(u, f)[1], conv(r.R, f - conv(r.A, u)))
    torch.testing.assert_close(r(u, f)[0], conv(r.Pi, u))


def test_the_coarse_levels_change_the_output():
    torch.manual_seed(0)
    op = MgConv(3, 2, cfg(smoothing=((1, 0), (1, 0), (2, 0))))
    f = torch.randn(2, 2, 16, 16)
    with_coarse = op(f)
    with torch.no_grad():
        for p in op.prolong:
            p.weight.zero_()
    without = op(f)  # no coarse correction: just u = S f on the finest grid
    torch.testing.assert_close(without, conv(op.pre[0][0].S, f))
    assert (with_coarse - without).abs().max() > 1e-3
    # the coarsest level alone matters too: zero only the deepest prolongation
    torch.manual_seed(0)
    op = MgConv(3, 2, cfg(smoothing=((1, 0), (1, 0), (2, 0))))
    with torch.no_grad():
        op.prolong[1].weight.zero_()
    assert (with_coarse - op(f)).abs().max() > 1e-4


def test_the_layer_norm_after_prolongation():
    torch.manual_seed(0)
    op = MgConv(3, 2, cfg(layer_norm=True))
    f = torch.randn(2, 2, 16, 16) * 5
    out = op(f)  # one level's u after the norm, then no post-smoothing: normalised
    torch.testing.assert_close(out.mean((1, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std((1, 2, 3), unbiased=False), torch.ones(2), atol=1e-3,
                               rtol=0)  # fmt: skip
    assert all(isinstance(n, torch.nn.Identity) for n in MgConv(3, 2, cfg()).norm)


def test_a_layer_is_sigma_of_W_u_plus_b_and_the_output_is_linear():
    torch.manual_seed(0)
    model = MgNO(cfg(n_layers=2, smoothing=((1, 0), (1, 0))))
    a = torch.randn(2, 2, 8, 8)
    u = a
    for W, b in zip(model.W, model.b):
        u = F.gelu(W(u) + F.conv2d(u, b.weight, b.bias))
    torch.testing.assert_close(model(a), F.conv2d(u, model.out.weight))
    assert model.out.bias is None and len(model.W) == 2  # no lifting, no projection MLP


# ---------------------------------------------------------------- boundaries and resolutions
def test_zero_padding_is_a_zero_dirichlet_boundary():
    torch.manual_seed(0)
    step = Smoothing(3, 2, "zeros", first=True)
    f = torch.ones(1, 2, 6, 6)
    torch.testing.assert_close(step(None, f), conv(step.S, f))  # zeros outside the grid
    edge = F.conv2d(torch.ones(1, 2, 3, 2), step.S.weight[:, :, :, 1:])  # a missing column
    torch.testing.assert_close(step(None, f)[..., 1:-1, 0], edge[..., 0].expand(-1, -1, 4))
    # every 3x3 convolution of the Darcy model pads with zeros; the periodic variant wraps
    zeros = MgNO(MgNOConfig(n_u=4, n_layers=1, smoothing=((1, 0), (1, 0), (1, 0))))
    periodic = MgNO(MgNOConfig(n_u=4, n_layers=1, smoothing=((1, 0), (1, 0), (1, 0)),
                               padding="circular"))  # fmt: skip
    for model, mode in ((zeros, "zeros"), (periodic, "circular")):
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        assert {m.padding_mode for m in convs if m.kernel_size == (3, 3)} == {mode}


@pytest.mark.parametrize("shape", [(30, 32), (32, 36), (4, 4)])
def test_a_grid_the_cycle_cannot_coarsen_is_refused_in_one_line(shape):
    model = MgNO(MgNOConfig(n_u=4, n_layers=1, smoothing=((1, 0),) * 4))  # 4 levels: 8 | side
    with pytest.raises(ResolutionError, match=r"4 levels needs a grid whose sides are multiples "
                       r"of 8 and at least 16") as e:  # fmt: skip
        model(torch.randn(1, 1, *shape))
    assert "\n" not in str(e.value) and f"{shape[0]}x{shape[1]}" in str(e.value)
    assert model(torch.randn(1, 1, 16, 24)).shape == (1, 1, 16, 24)
    with pytest.raises(ResolutionError, match=r"expects input \(B, 1, H, W\)"):
        model(torch.randn(1, 2, 16, 16))


def test_the_coarsest_level_at_both_resolutions_of_the_experiment():
    s = BUDGETS["quick"]
    assert coarsest_grid(s.mgno, s.resolution, s.resolution) == (4, 4)
    assert coarsest_grid(s.mgno, s.fine_resolution, s.fine_resolution) == (8, 8)
    model = archlab.build("mgno/mini")
    for n in (s.resolution, s.fine_resolution):
        assert model(torch.randn(1, 1, n, n)).shape == (1, 1, n, n)


# ---------------------------------------------------------------- the experiment's arms
def test_the_baseline_is_neuraloperators_fno_as_is_at_a_similar_size():
    from neuralop.models import FNO

    s = BUDGETS["quick"]
    a, u = darcy_samples(4, 32, torch.Generator().manual_seed(0))
    makes = arms(s, a, u)
    fno, mgno = makes["fno"](), makes["mgno"]()
    assert type(fno.net) is FNO and type(mgno.net) is MgNO
    assert tuple(fno.net.n_modes) == (12, 12) and fno.net.hidden_channels == s.fno_width
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert abs(count(mgno) - count(fno)) <= s.param_tolerance * count(fno)
    for n in (32, 64):  # FNO takes any grid
        assert fno(torch.rand(2, 1, n, n)).shape == (2, 1, n, n)


def test_normalisation_and_relative_l2():
    a, u = torch.rand(8, 1, 4, 4) * 9 + 3, torch.rand(8, 1, 4, 4)
    wrapped = Normalized(torch.nn.Identity(), a, u)
    expect = (a - a.mean()) / a.std() * u.std() + u.mean()
    torch.testing.assert_close(wrapped(a), expect)
    torch.testing.assert_close(relative_l2(u, u), torch.zeros(8))
    torch.testing.assert_close(relative_l2(torch.zeros_like(u), u), torch.ones(8))
    torch.testing.assert_close(relative_l2(2 * u, u), torch.ones(8))


def test_the_variants_build_and_the_tiny_one_is_fast():
    import time

    for name in ("tiny", "mini", "darcy"):
        assert isinstance(archlab.build(f"mgno/{name}"), MgNO)
    model = archlab.build("mgno/tiny")
    t0 = time.perf_counter()
    with torch.no_grad():
        model(torch.rand(4, 1, 32, 32))
    assert time.perf_counter() - t0 < 0.5
    darcy = archlab.build("mgno/darcy")  # the README's Darcy run: 24 channels, 4 layers, 6 levels
    assert (darcy.cfg.n_u, darcy.cfg.n_layers, darcy.cfg.n_levels) == (24, 4, 6)
    assert coarsest_grid(darcy.cfg, 256, 256) == (8, 8)
