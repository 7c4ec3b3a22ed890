"""MEDUSA invariants: one body computed once, one head per stage at that stage's resolution,
gating that reduces to the baseline ResNet when the attention is 1, and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import archlab
from archlab.baselines.resnet import ResNet
from archlab.papers.dense.medusa_med import Medusa, MedusaConfig

TINY = MedusaConfig(
    widths=(8, 16, 16), depths=(1, 1, 1), stem="cifar", body_widths=(8, 16), d_body=8, d_head=4
)


def test_one_head_per_stage_at_the_stage_resolution():
    model = Medusa(TINY).eval()
    x = torch.rand(2, 1, 32, 32)
    logits, maps = model.forward_with_attention(x)
    assert logits.shape == (2, 2)
    assert [tuple(a.shape) for a in maps] == [(2, 1, 32, 32), (2, 1, 16, 16), (2, 1, 8, 8)]
    assert all(((a > 0) & (a < 1)).all() for a in maps)  # sigmoid maps


def test_single_body_runs_once_on_the_downsampled_image():
    model = Medusa(TINY)
    calls = []
    model.body.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    model(torch.rand(3, 1, 32, 32))
    assert calls == [(3, 1, 16, 16)]  # body_scale 0.5, once for all heads


def test_unit_attention_reduces_to_the_baseline_resnet():
    torch.manual_seed(0)
    model = Medusa(TINY).eval()
    baseline = ResNet(TINY.backbone_config()).eval()
    baseline.load_state_dict(model.backbone.state_dict())
    for head in model.heads:  # sigmoid(large) = 1: every gate passes the features unchanged
        nn.init.zeros_(head.out.weight)
        nn.init.constant_(head.out.bias, 50.0)
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(model(x), baseline(x))


def test_residual_gate_doubles_with_unit_attention():
    torch.manual_seed(0)
    cfg = MedusaConfig(**{**TINY.__dict__, "gate": "residual"})
    model = Medusa(cfg).eval()
    for head in model.heads:
        nn.init.zeros_(head.out.weight)
        nn.init.constant_(head.out.bias, 50.0)
    _, maps = model.forward_with_attention(torch.rand(1, 1, 32, 32))
    assert all(torch.allclose(a, torch.ones_like(a)) for a in maps)


def test_attention_is_image_dependent_and_gets_gradients():
    model = Medusa(TINY)
    model(torch.rand(2, 1, 32, 32)).sum().backward()
    assert (
        model.body.head.weight.grad is not None and model.heads[0].out.weight.grad.abs().sum() > 0
    )


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(1, 1, 8, 32, 32), "2-D input"),
        (torch.rand(1, 3, 32, 32), "1 input channels"),
        (torch.rand(1, 1, 30, 30), "divisible by 4"),
        (torch.full((1, 1, 32, 32), float("nan")), "NaN"),
    ],
)
def test_bad_input_is_one_clear_error(x, match):
    with pytest.raises(ValueError, match=match):
        Medusa(TINY)(x)


def test_config_validation_and_registry():
    with pytest.raises(ValueError, match="gate"):
        MedusaConfig(gate="add")
    with pytest.raises(ValueError, match="body_scale"):
        MedusaConfig(body_scale=0.3)
    with pytest.raises(ValueError, match="widths"):
        MedusaConfig(widths=(8, 16), depths=(1,))
    model = archlab.build("medusa_med/tiny")
    assert len(model.heads) == len(model.cfg.widths)


def _force_attention(model: Medusa, value: float) -> None:
    """Every head outputs the constant ``sigmoid(value)`` (0 or 1 for large |value|)."""
    for head in model.heads:
        nn.init.zeros_(head.out.weight)
        nn.init.constant_(head.out.bias, value)


def _baseline_with_stage_scale(baseline: ResNet, x: torch.Tensor, scale: float) -> torch.Tensor:
    """The ResNet forward with every stage's output multiplied by ``scale`` (the gate's
    equation with a constant attention map)."""
    h = baseline.maxpool(torch.relu(baseline.bn1(baseline.conv1(x))))
    for stage in baseline.layers:
        h = stage(h) * scale
    return baseline.fc(h.mean(dim=(2, 3)))


@pytest.mark.parametrize("gate,value,scale", [("multiply", -50.0, 0.0), ("residual", 50.0, 2.0)])
def test_each_stage_is_gated_by_its_attention_map(gate, value, scale):
    """F' = F * A (multiply) or F * (1 + A) (residual) at every stage: with A forced to 0 the
    multiply gate removes every stage's features (the logits no longer depend on the image), with
    A = 1 the residual gate doubles them. Removing or altering the gate fails this test."""
    torch.manual_seed(0)
    cfg = MedusaConfig(**{**TINY.__dict__, "gate": gate})
    model = Medusa(cfg).eval()
    baseline = ResNet(cfg.backbone_config()).eval()
    baseline.load_state_dict(model.backbone.state_dict())
    _force_attention(model, value)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _baseline_with_stage_scale(baseline, x, scale))
        if gate == "multiply":
            torch.testing.assert_close(model(x), model(torch.rand(2, 1, 32, 32)))
