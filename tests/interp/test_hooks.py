"""Activation access on any module: names, capture, patch, ablate, hook removal, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab.baselines.gpt2 import GPT2, GPT2Config
from archlab.interp import HookError, ablate, capture, hook_points, hooks, patch, run_with_cache


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def n_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_any_module_exposes_its_submodules_outputs_and_inputs():
    model, x = mlp(), torch.randn(3, 4)
    _, cache = run_with_cache(model, x, names=["0", "1", "2:input", "2"])
    assert torch.equal(cache["1"], torch.relu(model[0](x)))
    assert torch.equal(cache["2:input"], cache["1"])
    assert torch.equal(cache["2"], model(x))
    assert {"0", "0:input", "2"} <= set(hook_points(model))


def test_patching_replaces_the_tensor_and_feeds_it_downstream():
    model, x = mlp(), torch.randn(3, 4)
    with torch.no_grad(), patch(model, {"1": torch.zeros(3, 8)}):
        out = model(x)
    assert torch.allclose(out, model[2].bias.expand(3, 2))
    with torch.no_grad(), patch(model, {"2:input": lambda h: 2 * h}):
        doubled = model(x)
    assert torch.allclose(doubled - model[2].bias, 2 * (model(x) - model[2].bias), atol=1e-6)


def test_hooks_are_removed_on_exit_and_on_an_exception():
    model = mlp()
    with capture(model, ["0", "2"]):
        assert n_hooks(model) == 2
    assert n_hooks(model) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with patch(model, {"1": lambda t: t}), capture(model, ["0"]):
            assert n_hooks(model) == 2
            raise RuntimeError("boom")
    assert n_hooks(model) == 0
    with pytest.raises(HookError):  # a failure while installing removes what was installed
        with hooks(model, {"0": lambda t: None, "nope": lambda t: None}):
            pass
    assert n_hooks(model) == 0


def test_unknown_names_list_close_matches_in_one_line():
    model = GPT2(GPT2Config(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2))
    with pytest.raises(HookError, match="close matches: blocks.0.attn.hook_pattern") as info:
        with capture(model, ["blocks.0.attn.hook_patern"]):
            pass
    assert "\n" not in str(info.value)


def test_zero_and_mean_ablation_of_heads():
    model = GPT2(GPT2Config(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2)).eval()
    x = torch.randint(0, 11, (2, 5))
    name = "blocks.0.attn.hook_z"
    with torch.no_grad(), ablate(model, {name: 1}), capture(model, ["blocks.0.attn.hook_z"]) as c:
        model(x)
    # the capture sees the ablated tensor when installed after the ablation
    _, clean = run_with_cache(model, x, names=[name])
    assert torch.equal(c[name][:, :, 0], clean[name][:, :, 0])
    assert torch.equal(c[name][:, :, 1], torch.zeros_like(c[name][:, :, 1]))
    means = {name: clean[name][:, :, 1].mean((0, 1))}  # (hd,)
    with torch.no_grad(), ablate(model, {name: 1}, means=means), capture(model, [name]) as m:
        model(x)
    assert torch.allclose(m[name][:, :, 1], means[name].expand_as(m[name][:, :, 1]))
    with pytest.raises(HookError, match="needs means"):
        with ablate(model, {name: 1}, means={}):
            pass


def test_read_only_views_and_bad_patches_are_clear_errors():
    model = GPT2(GPT2Config(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2)).eval()
    x = torch.randint(0, 11, (2, 5))
    with pytest.raises(HookError, match="read-only"):
        with torch.no_grad(), patch(model, {"blocks.0.attn.hook_result": lambda t: t}):
            model(x)
    with pytest.raises(HookError, match=r"a patch of shape \(3, 3\)"):
        with torch.no_grad(), patch(model, {"blocks.0.hook_resid_post": torch.zeros(3, 3)}):
            model(x)


def test_capture_without_detach_keeps_the_graph_for_attribution():
    model, x = mlp(), torch.randn(3, 4)
    with capture(model, ["1"], detach=False) as cache:
        out = model(x).sum()
    (grad,) = torch.autograd.grad(out, cache["1"])
    assert torch.allclose(grad, model[2].weight.sum(0).expand(3, 8))
