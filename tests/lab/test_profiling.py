"""Accuracy, FLOP counting and the paired latency comparison."""

from __future__ import annotations

import pytest
import torch

from archlab.lab.inference import evaluate_accuracy
from archlab.lab.metrics import accuracy
from archlab.lab.profiling import LatencyComparison, compare_latency, count_flops, training_step


def test_accuracy():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)


def test_evaluate_accuracy_restores_the_mode():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.randn(10, 1, 2, 2), torch.randint(0, 2, (10,))
    model.train()
    acc = evaluate_accuracy(model, x, y, batch_size=3)
    assert model.training and acc == pytest.approx(accuracy(model(x), y))


def test_count_flops_of_a_linear_layer():
    model = torch.nn.Linear(8, 4)
    assert count_flops(model, torch.randn(3, 8)) == 2 * 3 * 8 * 4
    assert count_flops(model, torch.randn(3, 8), backward=True) == 3 * (2 * 3 * 8 * 4) - (
        2 * 3 * 8 * 4
    )  # backward: grad of the weight only (the input needs no grad)


def test_compare_latency_alternates_and_reports_the_ratio():
    calls = []
    result = compare_latency(
        lambda: calls.append("a"), lambda: calls.append("b"), repeats=4, warmup=1
    )
    assert isinstance(result, LatencyComparison)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(result.times_a) == 4 and result.ratio == result.b_s / result.a_s


def test_training_step_leaves_gradients():
    model = torch.nn.Linear(3, 2)
    training_step(model, torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))()
    assert model.weight.grad is not None
