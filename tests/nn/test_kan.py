"""archlab.nn.kan against the reference package pykan (kan.KANLayer, kan.spline) on copied
weights, and the mechanisms the layer names: the B-spline basis, the residual branch, the mask,
grid update and grid extension."""

from __future__ import annotations

import pytest
import torch

from archlab.nn.kan import (
    KANLayer,
    bspline_basis,
    fit_coefficients,
    spline_curves,
    uniform_cubic_basis,
    uniform_grid,
)

kan = pytest.importorskip("kan", reason="pykan (the fields extra) is not installed")
from kan.KANLayer import KANLayer as PykanLayer  # noqa: E402
from kan.spline import B_batch  # noqa: E402


@pytest.mark.parametrize("k", [0, 1, 3])
def test_bspline_basis_equals_pykan(k):
    x = torch.rand(64, 3) * 2.4 - 1.2  # some samples outside the grid range
    grid = uniform_grid(3, 6, k, (-1.0, 1.0))
    expected = B_batch(x, grid, k=k).to(x.dtype)  # pykan returns booleans at k = 0
    torch.testing.assert_close(bspline_basis(x, grid, k), expected, atol=1e-6, rtol=0)


def test_the_closed_form_uniform_cubic_basis_equals_the_recursion_with_gradients():
    x = (torch.rand(300, 3) * 3 - 1.5).requires_grad_()  # inside and outside the grid
    grid = uniform_grid(3, 5, 3, (-1.0, 1.0))
    fast, slow = uniform_cubic_basis(x, -1.0, 1.0, 5), bspline_basis(x, grid, 3)
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)
    w = torch.randn(8)
    (g_fast,) = torch.autograd.grad((fast * w).sum(), x)
    (g_slow,) = torch.autograd.grad((slow * w).sum(), x)
    torch.testing.assert_close(g_fast, g_slow, atol=1e-4, rtol=1e-4)


def test_basis_is_a_partition_of_unity_inside_the_grid():
    x = torch.linspace(-0.99, 0.99, 50)[:, None]
    basis = bspline_basis(x, uniform_grid(1, 5, 3, (-1.0, 1.0)), 3)  # (50, 1, 8)
    torch.testing.assert_close(basis.sum(-1), torch.ones(50, 1))


def pair(seed: int = 0, **kw):
    torch.manual_seed(seed)
    ref = PykanLayer(in_dim=3, out_dim=2, num=5, k=3, **kw)
    torch.manual_seed(seed)
    ours = KANLayer(3, 2, num=5, k=3, **kw)
    return ref, ours


def test_same_seed_gives_pykans_initialisation_and_outputs():
    ref, ours = pair()
    for name in ("grid", "coef", "scale_base", "scale_sp", "mask"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name).detach())
    x = torch.rand(32, 3) * 2 - 1
    y_ref, _, postacts, _ = ref(x)
    torch.testing.assert_close(ours(x), y_ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours.edges(x), postacts.permute(0, 2, 1), atol=1e-6, rtol=1e-5)


def test_copied_weights_give_pykans_outputs_and_the_mask_removes_edges():
    ref, ours = pair(seed=3)
    with torch.no_grad():
        ref.coef.normal_()
        ref.scale_base.normal_()
        ref.scale_sp.normal_()
        ref.mask[1, 0] = 0.0
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if k in ours.state_dict()})
    x = torch.randn(40, 3)
    torch.testing.assert_close(ours(x), ref(x)[0], atol=1e-5, rtol=1e-5)
    assert (ours.edges(x)[:, 1, 0] == 0).all()


def test_output_is_residual_plus_spline_per_edge_by_hand():
    _, ours = pair(seed=1)
    x = torch.rand(8, 3) * 2 - 1
    spline = spline_curves(x, ours.grid, ours.coef, 3)  # (8, 3, 2)
    silu = x * torch.sigmoid(x)
    by_hand = (ours.scale_base * silu[..., None] + ours.scale_sp * spline).sum(1)
    torch.testing.assert_close(ours(x), by_hand)


def test_a_loaded_non_uniform_grid_is_evaluated_by_the_recursion():
    ref, ours = pair(seed=4)
    ref.update_grid_from_samples(torch.randn(100, 3) * 0.5)  # quantile knots
    assert ours._uniform is not None
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if k in ours.state_dict()})
    assert ours._uniform is None
    x = torch.randn(30, 3)
    torch.testing.assert_close(ours(x), ref(x)[0], atol=1e-5, rtol=1e-5)


def test_grid_update_equals_pykans_and_keeps_the_functions_on_the_samples():
    ref, ours = pair(seed=2)
    dense = torch.linspace(-1, 1, 101)[:, None].expand(-1, 3)  # smooth edge functions
    smooth = torch.sin(2 * dense)[..., None].expand(-1, -1, 2) * torch.tensor([1.0, -0.5])
    with torch.no_grad():
        ref.coef.copy_(fit_coefficients(dense, smooth, ref.grid, 3))
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if k in ours.state_dict()})
    x = torch.rand(200, 3) * 1.6 - 0.8  # the samples cover part of the grid: the knots move
    before = ours(x)
    ref.update_grid_from_samples(x)
    ours.update_grid(x)
    torch.testing.assert_close(ours.grid, ref.grid.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.coef, ref.coef.detach(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours(x), before, atol=2e-2, rtol=0)  # a refit, not exact


def test_grid_extension_refits_a_finer_grid_to_the_same_functions():
    torch.manual_seed(0)
    coarse = KANLayer(2, 1, num=3, k=3)
    with torch.no_grad():
        coarse.coef.normal_()
    x = torch.rand(400, 2) * 2 - 1
    fine = coarse.refine(12, x)
    assert fine.coef.shape == (2, 1, 15) and fine.grid.shape == (2, 19)
    torch.testing.assert_close(fine(x), coarse(x), atol=1e-3, rtol=0)


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="num must be an integer >= 1"):
        KANLayer(2, 1, num=0)
    with pytest.raises(ValueError, match="grid_range must be increasing"):
        KANLayer(2, 1, grid_range=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"expects \(B, 2\) inputs"):
        KANLayer(2, 1)(torch.rand(4, 3))
