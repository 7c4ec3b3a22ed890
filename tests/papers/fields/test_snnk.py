"""SNNK: every random-feature map against its exact target, the 1/sqrt(m) rate, orthogonal
features, bundling, the closed form, the adapters and bad input. Each mechanism the card names
has a test that fails when it is removed."""

from __future__ import annotations

import math

import pytest
import torch

import archlab
from archlab.papers.fields.snnk import (
    ACTIVATIONS,
    BottleneckAdapter,
    FeatureMap,
    SNNKAdapter,
    SNNKConfig,
    SNNKError,
    SNNKLayer,
    SNNKStack,
    adapter_parameters,
    arccos_kernel,
    closed_form_weights,
    feature_width,
    gaussian_projection,
)
from archlab.papers.fields.snnk.experiment import (
    BUDGETS,
    TinyEncoder,
    adapted,
    loglog_slope,
    token_task,
    trainable,
)


def _inputs(d: int = 6, n: int = 20, k: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.double) / math.sqrt(2 * d)
    w = torch.randn(k, d, generator=g, dtype=torch.double) / math.sqrt(2 * d)
    b = 0.3 * torch.randn(k, generator=g, dtype=torch.double)
    return x, w, b


def _mean_estimate(act: str, x, w, b, m: int, draws: int, seed: int = 1):
    """Average of ``draws`` independent estimates (fresh Omega each): converges to the exact
    value only if each estimate is unbiased."""
    g = torch.Generator().manual_seed(seed)
    total = 0
    for _ in range(draws):
        total = total + FeatureMap(x.shape[1], m, act, g).double().estimate(x, w, b)
    return total / draws


# ---------------------------------------------------------------- the feature maps
@pytest.mark.parametrize("act", ["exp", "cos", "sin", "gauss"])
def test_every_map_is_unbiased_for_its_activation_with_a_bias(act):
    x, w, b = _inputs()
    exact = FeatureMap(6, 4, act).double().exact(x, w, b)
    assert torch.allclose(exact, ACTIVATIONS[act].exact(x @ w.T + b))
    est = _mean_estimate(act, x, w, b, m=2048, draws=160)
    assert float((est - exact).norm() / exact.norm()) < 0.01


def test_the_relu_map_estimates_the_arc_cosine_kernel():
    x, w, _ = _inputs()
    est = _mean_estimate("relu", x, w, None, m=2048, draws=160)
    exact = arccos_kernel(x, w)
    assert float((est - exact).norm() / exact.norm()) < 0.01


def test_the_arc_cosine_kernel_by_monte_carlo_and_on_the_diagonal():
    x, w, _ = _inputs(k=3)
    g = torch.Generator().manual_seed(3)
    omega = torch.randn(400_000, 6, generator=g, dtype=torch.double)
    mc = torch.relu(x @ omega.T) @ torch.relu(w @ omega.T).T / len(omega)
    assert torch.allclose(mc, arccos_kernel(x, w), rtol=0.02, atol=1e-4)
    # angle 0: |x|^2 / 2
    assert torch.allclose(arccos_kernel(x, x).diagonal(), (x * x).sum(1) / 2)


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_the_error_falls_like_one_over_sqrt_m(act):
    x, w, b = _inputs(d=8, n=32, k=16)
    b = None if act == "relu" else b
    g = torch.Generator().manual_seed(7)
    ms = (64, 256, 1024, 4096)
    slopes = []
    for _ in range(6):
        errs = []
        for m in ms:
            fmap = FeatureMap(8, m, act, g).double()
            exact = fmap.exact(x, w, b)
            errs.append(float((fmap.estimate(x, w, b) - exact).norm() / exact.norm()))
        slopes.append(loglog_slope(ms, errs))
    assert -0.62 < sum(slopes) / len(slopes) < -0.38


def test_loglog_slope_recovers_a_power_law():
    ms = (10, 100, 1000)
    assert loglog_slope(ms, [3 * m**-0.5 for m in ms]) == pytest.approx(-0.5)


def test_the_exp_features_follow_the_positive_random_feature_formula():
    g = torch.Generator().manual_seed(0)
    fmap = FeatureMap(4, 16, "exp", g).double()
    x, w, b = _inputs(d=4)
    om = fmap.omega.double()
    phi = torch.exp(x @ om.T - (x * x).sum(1, keepdim=True) / 2) / 4
    psi = torch.exp(w @ om.T - (w * w).sum(1, keepdim=True) / 2) / 4 * torch.exp(b)[:, None]
    assert torch.allclose(fmap.phi(x), phi)
    assert torch.allclose(fmap.psi(w, b), psi)
    assert (fmap.phi(x) > 0).all()  # positive features


def test_urf_features_are_real_and_twice_as_wide():
    fmap = FeatureMap(5, 12, "cos")
    x = torch.randn(3, 5)
    assert fmap.phi(x).shape == (3, 24) and fmap.phi(x).dtype == torch.float32
    assert feature_width("cos", 12) == 24 and feature_width("exp", 12) == 12


def test_orthogonal_rows_are_orthogonal_within_a_block_and_gaussian_in_norm():
    g = torch.Generator().manual_seed(0)
    om = gaussian_projection(20, 8, g, orthogonal=True).double()
    block = om[:8]
    gram = block @ block.T
    off = gram - torch.diag(gram.diagonal())
    assert float(off.abs().max()) < 1e-5
    many = gaussian_projection(4000, 8, g, orthogonal=True)
    assert float((many**2).sum(1).mean()) == pytest.approx(8, rel=0.05)  # E|omega|^2 = d


def test_orthogonal_features_reduce_the_exp_error():
    x, w, b = _inputs(d=8, n=32, k=16)
    g = torch.Generator().manual_seed(11)

    def err(orth: bool) -> float:
        total = 0.0
        for _ in range(30):
            f = FeatureMap(8, 16, "exp", g, orthogonal=orth).double()
            ex = f.exact(x, w, b)
            total += float((f.estimate(x, w, b) - ex).norm() / ex.norm())
        return total / 30

    assert err(True) < err(False)


# ---------------------------------------------------------------- layers, bundling, closed form
def test_an_snnk_layer_starts_as_the_layer_it_was_built_from():
    g = torch.Generator().manual_seed(0)
    w0, b0 = torch.randn(7, 6, generator=g) / 4, 0.2 * torch.randn(7, generator=g)
    layer = SNNKLayer(6, 7, 8192, "exp", weight=w0, bias=b0, generator=g)
    x = torch.randn(50, 6, generator=g) / 4
    exact = torch.exp(x @ w0.T + b0)
    assert float((layer(x).detach() - exact).norm() / exact.norm()) < 0.05
    assert [n for n, p in layer.named_parameters()] == ["psi"]  # Omega is a buffer


@pytest.mark.parametrize("act", ["exp", "cos"])
def test_bundling_computes_the_same_function_without_hidden_states(act):
    g = torch.Generator().manual_seed(0)
    stack = SNNKStack(SNNKConfig(d_input=5, widths=(9, 7, 6), m=16, activation=act), g).double()
    bundled = stack.bundle().double()
    x = torch.randn(11, 5, generator=g, dtype=torch.double) / 3
    assert torch.allclose(bundled(x), stack(x), rtol=1e-6, atol=1e-6)
    # the bundled net has no per-layer Psi: its matrices are (m, F) and (F, F)
    F_ = feature_width(act, 16)
    assert all(a.shape == (16, F_) for a in bundled.A)
    assert all(gm.shape == (F_, F_) for gm in bundled.G)


def test_the_closed_form_is_least_squares_and_ridge():
    g = torch.Generator().manual_seed(0)
    phi, y = torch.randn(60, 8, generator=g), torch.randn(60, 2, generator=g)
    P = closed_form_weights(phi, y).double()
    ref = torch.linalg.lstsq(phi.double(), y.double()).solution.T
    assert torch.allclose(P, ref, atol=1e-5)
    Pr = closed_form_weights(phi, y, ridge=3.0).double()
    grad = phi.double().T @ (phi.double() @ Pr.T - y.double()) + 3.0 * Pr.T
    assert float(grad.abs().max()) < 1e-4
    assert Pr.norm() < P.norm()  # ridge shrinks


# ---------------------------------------------------------------- adapters
def test_adapters_start_as_the_identity_and_learn():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 16, generator=g)
    for adapter in (SNNKAdapter(16, 8, generator=g), BottleneckAdapter(16, 4)):
        assert torch.equal(adapter(x), x)
        adapter(x).pow(2).sum().backward()
        opt = torch.optim.SGD(adapter.parameters(), lr=0.1)
        opt.step()
        assert not torch.equal(adapter(x), x)


def test_adapter_parameter_counts_match_the_formulas():
    snnk, bott = SNNKAdapter(32, 8), BottleneckAdapter(32, 16)
    count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    assert count(snnk) == adapter_parameters("snnk", 32, 8) == 32 * 8 + 32
    assert count(bott) == adapter_parameters("bottleneck", 32, 16) == 2 * 32 * 16 + 16 + 32
    assert SNNKAdapter(32, 8, "cos").psi.shape == (32, 16)  # URF: F = 2m


def test_adapted_models_train_only_adapters_and_the_head():
    s = BUDGETS["smoke"]
    base = TinyEncoder(s, 4)
    for kind, n_adapters in (("head", 0), ("bottleneck", 2 * s.n_layers), ("snnk", 2 * s.n_layers)):
        model = adapted(base, kind, s, 3)
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        assert all(n.startswith("head.") or ".1." in n for n in names), names
        assert sum(".1." in n for n in names) == n_adapters * (2 if kind == "snnk" else 4)
        x = torch.randint(0, s.n_vocab, (2, s.n_tokens))
        base_h = base.encoder(base.embed(x) + base.pos)
        model_h = model.encoder(model.embed(x) + model.pos)
        assert torch.allclose(base_h, model_h, atol=1e-6)  # zero-initialised adapters
    assert trainable(adapted(base, "head", s, 3)) == s.d_model * 3 + 3


def test_the_token_tasks_label_what_they_say():
    s = BUDGETS["quick"]
    g = torch.Generator().manual_seed(0)
    x, y = token_task(200, "B", s, g)
    counts = torch.nn.functional.one_hot(x, s.n_vocab).sum(1)
    assert torch.equal(y, counts[:, 4:8].argmax(1))
    x, y = token_task(200, "xor", s, g)
    counts = torch.nn.functional.one_hot(x, s.n_vocab).sum(1)
    assert torch.equal(y, ((counts[:, 4] > counts[:, 5]) ^ (counts[:, 6] > counts[:, 7])).long())


# ---------------------------------------------------------------- registry and bad input
def test_registered_variants_build_and_run():
    model = archlab.build("snnk/tiny")
    assert model(torch.randn(3, 8) / 3).shape == (3, 1)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: FeatureMap(4, 0), "m must be an integer >= 1"),
        (lambda: FeatureMap(4, 8, "gelu"), "no random-feature map; expected one of"),
        (lambda: FeatureMap(4, 8).phi(torch.randn(2, 5)), "feature width 5, expected d=4"),
        (lambda: FeatureMap(4, 8, "relu").psi(torch.randn(2, 4), torch.ones(2)), "no bias"),
        (lambda: FeatureMap(4, 8).psi(torch.randn(2, 4), torch.ones(3)), "bias b has shape"),
        (lambda: closed_form_weights(torch.randn(5, 3), torch.randn(4, 1)), "same N"),
        (lambda: SNNKConfig(widths=()), "at least 1 layer"),
    ],
)
def test_bad_input_is_one_clear_line(call, match):
    with pytest.raises(SNNKError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
