"""S-KAN: the activation spaces, the per-node mixture, the three-phase strategy, the experiment's
pieces. Each mechanism the card names has a test that fails when it is removed."""

from __future__ import annotations

import math

import pytest
import torch

from archlab.nn.kan import bspline_basis, uniform_grid
from archlab.papers.fields.s_kan import SKAN, SPACES, SKANConfig, SKANLayer, active_parameters
from archlab.papers.fields.s_kan import basis as space_basis
from archlab.papers.fields.s_kan.experiment import TASKS, matched_mlp_width, mlp, points


def test_each_space_is_the_named_function_family():
    x = torch.linspace(-0.9, 0.9, 7)[:, None]  # (7, 1)
    cheb = space_basis("chebyshev", x, 8)[:, 0]  # T_n(cos t) = cos(n t), t = arccos(tanh x)
    t = torch.arccos(torch.tanh(x[:, 0]))
    torch.testing.assert_close(cheb, torch.stack([torch.cos(n * t) for n in range(8)], -1))
    four = space_basis("fourier", x, 8)[:, 0]
    m = torch.arange(1, 5)
    torch.testing.assert_close(four, torch.cat([torch.cos(x * m), torch.sin(x * m)], -1))
    centres = torch.linspace(-2, 2, 8)
    rbf = space_basis("rbf", centres[:, None], 8)[:, 0]
    torch.testing.assert_close(torch.diagonal(rbf), torch.ones(8))  # 1 at its own centre
    assert rbf[0, 2] == pytest.approx(math.exp(-4))  # two spacings away
    shifts = torch.linspace(-1, 1, 8)
    hats = space_basis("wavelet", shifts[:, None], 8)[:, 0]
    torch.testing.assert_close(torch.diagonal(hats), torch.ones(8))
    assert hats[0, 1] == pytest.approx(0.0, abs=1e-6)  # the Mexican hat's zero at u = 1
    grid = uniform_grid(1, 5, 3, (-1.0, 1.0))  # the closed form equals the recursion
    wide = torch.linspace(-2.5, 2.5, 41)[:, None]  # beyond the extended grid too
    torch.testing.assert_close(space_basis("bspline", wide, 8), bspline_basis(wide, grid, 3),
                               atol=1e-6, rtol=0)  # fmt: skip
    with pytest.raises(ValueError, match="unknown activation space"):
        space_basis("legendre", x, 8)


def layer(seed: int = 0, spaces=SPACES, **kw) -> SKANLayer:
    torch.manual_seed(seed)
    out = SKANLayer(3, 4, spaces, 8, **kw)
    with torch.no_grad():
        out.logits.normal_()
    return out


def by_hand(lay: SKANLayer, x: torch.Tensor) -> torch.Tensor:
    """phi_ij = w_ij silu(x_i) + sum_s alpha_js sum_m c^s_ijm B^s_m(x_i), summed over i."""
    alpha = lay.weights()  # (out, S)
    y = torch.nn.functional.silu(x) @ lay.base
    for s, space in enumerate(lay.spaces):
        phi = space_basis(space, x, 8)  # (B, in, M)
        y = y + torch.einsum("bim,iom->bo", phi, lay.coef[s]) * alpha[:, s]
    return y


def test_the_layer_is_a_per_node_softmax_mixture_of_the_spaces():
    lay = layer()
    x = torch.rand(16, 3) * 2 - 1
    torch.testing.assert_close(lay(x), by_hand(lay, x))
    alpha = lay.weights()
    torch.testing.assert_close(alpha.sum(-1), torch.ones(4))
    torch.testing.assert_close(alpha, lay.logits.softmax(-1))


def test_select_keeps_each_nodes_heaviest_spaces_and_their_terms():
    lay = layer(seed=1)
    x = torch.rand(16, 3) * 2 - 1
    top2 = lay.weights().topk(2, -1).indices
    with torch.no_grad():  # only the two kept spaces contribute at each node
        keep = torch.zeros(4, len(SPACES), dtype=torch.bool).scatter_(1, top2, True)
        lay.coef.mul_(keep.T[:, None, :, None])
    before = lay(x)
    lay.select(2)
    assert (lay.allowed.sum(-1) == 2).all() and (lay.allowed == keep).all()
    torch.testing.assert_close(lay(x), before, atol=1e-6, rtol=1e-5)  # weights renormalised


def test_prune_leaves_one_space_per_node_at_weight_one():
    lay = layer(seed=2)
    heaviest = lay.weights().argmax(-1)
    lay.select(1)
    assert (lay.weights().max(-1).values == 1).all()
    assert lay.chosen() == [SPACES[int(i)] for i in heaviest]
    x = torch.rand(8, 3) * 2 - 1
    torch.testing.assert_close(lay(x), by_hand(lay, x))


def test_the_schedule_runs_full_selective_then_pruned_training_forwards_only():
    torch.manual_seed(0)
    model = SKAN(SKANConfig(widths=(2, 3, 1), schedule=(2, 4)))
    x = torch.rand(4, 2)
    phases = []
    for _ in range(6):
        model.train()
        model(x)
        model.eval()
        model(x)  # evaluation does not advance the schedule
        phases.append(model.phase)
    assert phases == ["full", "full", "selective", "selective", "pruned", "pruned"]
    assert int(model.step) == 6
    single = SKAN(SKANConfig(spaces=("rbf",), top_k=1, schedule=(1, 2)))
    single.train()
    single(torch.rand(2, 2))
    assert single.phase == "pruned"  # one space: nothing to select


def test_parameter_counts_match_across_spaces_and_the_mlp_matches_the_pruned_skan():
    counts = {s: sum(p.numel() for p in SKAN(SKANConfig(spaces=(s,), top_k=1)).parameters())
              for s in SPACES}  # fmt: skip
    assert len(set(counts.values())) == 1
    full = SKAN(SKANConfig())
    active = active_parameters(full)
    assert active == 15 * (1 + 8)  # 15 edges of [2, 5, 1], base weight + 8 coefficients
    width = matched_mlp_width(active)
    n_mlp = sum(p.numel() for p in mlp(width).parameters())
    assert abs(n_mlp - active) <= 0.15 * active


def test_tasks_are_deterministic_per_stream_and_bad_configs_are_refused():
    a = points("exp_sin", 5, torch.Generator().manual_seed(3))
    b = points("exp_sin", 5, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    x, y = a
    torch.testing.assert_close(y[:, 0], TASKS["exp_sin"](x[:, 0], x[:, 1]))
    with pytest.raises(ValueError, match="spaces must be distinct names"):
        SKANConfig(spaces=("bspline", "legendre"))
    with pytest.raises(ValueError, match="n_basis must be even"):
        SKANConfig(n_basis=7)
    with pytest.raises(ValueError, match="schedule must be"):
        SKANConfig(schedule=(5, 2))
    with pytest.raises(ValueError, match=r"expects \(B, 2\) inputs"):
        SKAN(SKANConfig())(torch.rand(3, 4))
