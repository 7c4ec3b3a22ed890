"""Transcoders: the planted circuit computes what it claims, the attributions are the exact
linear terms of the transcoder's pre-activations, and the experiment's helpers."""

from __future__ import annotations

import math

import pytest
import torch

import archlab
from archlab.interp import DictionaryConfig, DictionaryError, SparseDictionary, to_sae_lens
from archlab.papers.interp.transcoders import input_attribution, weight_attribution
from archlab.papers.interp.transcoders.data import CircuitConfig, PlantedCircuit
from archlab.papers.interp.transcoders.experiment import (
    auroc,
    firing_mean,
    interpolate_log,
    match_latents,
)

CFG = CircuitConfig(n_in=40, n_out=20, d=16)


def circuit() -> PlantedCircuit:
    return PlantedCircuit(CFG, torch.Generator().manual_seed(0))


def test_the_mlp_computes_the_planted_features_from_superposed_inputs():
    c = circuit()
    assert torch.equal(c.mlp[0].weight, c.A @ c.E_in)  # reads every parent's direction
    assert torch.equal(c.mlp[0].bias, torch.full((CFG.n_out,), -CFG.threshold))
    assert torch.equal(c.mlp[2].weight, c.E_out.T)
    assert (c.edges.sum(1) == CFG.n_parents).all()
    f, x = c.sample(1000, torch.Generator().manual_seed(1))
    assert torch.allclose(x, f @ c.E_in)
    hidden = torch.relu((f @ c.E_in) @ (c.A @ c.E_in).T - CFG.threshold)
    assert torch.allclose(c.mlp(x), hidden @ c.E_out, atol=1e-5)
    # with orthonormal input directions there is no interference: exactly ReLU(f A^T - b)
    q, _ = torch.linalg.qr(torch.randn(CFG.d, CFG.d))
    small = PlantedCircuit(CircuitConfig(n_in=16, n_out=8, d=16), torch.Generator().manual_seed(0))
    small.E_in = q
    with torch.no_grad():
        small.mlp[0].weight.copy_(small.A @ q)
    f, _ = small.sample(200, torch.Generator().manual_seed(2))
    out = small.mlp[1](small.mlp[0](f @ q))
    assert torch.allclose(out, small.output_features(f), atol=1e-5)


def transcoder(seed: int = 0) -> SparseDictionary:
    g = torch.Generator().manual_seed(seed)
    tc = SparseDictionary(DictionaryConfig(CFG.d, 32, d_out=CFG.d), g)
    with torch.no_grad():
        tc.W_enc.add_(0.5 * torch.randn(tc.W_enc.shape, generator=g))  # not W_dec^T (its init)
        tc.b_enc.normal_(0, 0.1, generator=g)
        tc.b_dec.normal_(0, 0.1, generator=g)
    return tc


def test_weight_attribution_is_the_derivative_of_the_pre_activation():
    c, tc = circuit(), transcoder()
    a = torch.rand(CFG.n_in, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda a: tc.pre_activations(a @ c.E_in), a)
    assert torch.allclose(weight_attribution(c.E_in, tc), jac.T, atol=1e-5)


def test_input_attributions_sum_to_the_pre_activation():
    c, tc = circuit(), transcoder()
    f, x = c.sample(50, torch.Generator().manual_seed(2))
    attr = input_attribution(f, c.E_in, tc)  # (N, n_in, d_sae)
    assert torch.allclose(attr.sum(1) + tc.b_enc, tc.pre_activations(x), atol=1e-5)
    # and the copied sae_lens transcoder encodes the same (its encoder is the attribution's)
    theirs = to_sae_lens(tc)
    with torch.no_grad():
        assert torch.allclose(theirs.encode(x), tc.encode(x), atol=1e-6)


def test_latents_are_matched_to_planted_features_by_decoder_direction():
    c = circuit()
    tc = transcoder()
    perm = torch.randperm(CFG.n_out, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        tc.W_dec[: CFG.n_out] = 2.5 * c.E_out[perm]
    feature, ok = match_latents(tc, c.E_out, 0.99)
    assert ok[: CFG.n_out].all() and torch.equal(feature[: CFG.n_out], perm)


def test_helpers():
    assert auroc(torch.tensor([0.1, 0.9, 0.2, 0.8]), torch.tensor([0, 1, 0, 1])) == 1.0
    assert interpolate_log(10.0, [1.0, 100.0], [1.0, 0.01]) == pytest.approx(0.1)
    assert interpolate_log(200.0, [1.0, 100.0], [1.0, 0.01]) is None
    values = torch.arange(8.0).reshape(2, 2, 2)  # (N, n_in, K)
    acts = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert torch.equal(firing_mean(values, acts), torch.tensor([[2.0, 5.0], [4.0, 7.0]]))
    assert math.isfinite(interpolate_log(5.0, [4.0, 5.0, 6.0], [0.3, 0.2, 0.1]))


def test_registered_variants_and_bad_input():
    tc = archlab.build("transcoders/tiny")
    assert tc(torch.randn(3, 8)).shape == (3, 8)
    with pytest.raises(DictionaryError, match=r"upstream_decoder must be \(n_features, 16\)"):
        weight_attribution(torch.randn(5, 7), transcoder())
    from archlab.papers.interp.transcoders.model import build

    with pytest.raises(DictionaryError, match="needs d_out"):
        build(DictionaryConfig(8, 16))
