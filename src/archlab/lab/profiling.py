"""Profiling models: parameter counts, FLOPs, and paired latency comparisons.

``count_flops`` uses ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and
attention; a multiply-add counts as 2 FLOPs). ``compare_latency`` times two callables
alternately in one process, so that both see the same machine load, and reports medians.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def n_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (shared tensors counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def count_flops(model: nn.Module, *inputs, backward: bool = False) -> int:
    """FLOPs of one forward (and, with ``backward``, one backward) pass on ``inputs``.

    Counted by ``FlopCounterMode``: matrix multiplies, convolutions and attention kernels,
    2 FLOPs per multiply-add; element-wise ops (norms, activations, softmax) are not counted.
    Attention runs on the math SDPA kernel here: the fused CPU kernel is invisible to the
    counter, which would report 0 FLOPs for attention.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel([SDPBackend.MATH]):
        out = model(*inputs)
        if backward:
            out = out if isinstance(out, Tensor) else out[0]
            out.float().sum().backward()
    return int(counter.get_total_flops())


def forward_flops(model: nn.Module, *inputs) -> int:
    """FLOPs of one inference forward pass (eval mode, no grad; the mode is restored after)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return count_flops(model, *inputs)
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class LatencyComparison:
    """Seconds per call of two callables timed alternately.

    Attributes:
        a_s: median seconds per call of ``a``.
        b_s: median seconds per call of ``b``.
        times_a: every timed repeat of ``a`` (seconds per call).
        times_b: every timed repeat of ``b``.
    """

    a_s: float
    b_s: float
    times_a: tuple[float, ...]
    times_b: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """``b_s / a_s``: how many times faster ``a`` is than ``b`` (> 1: ``a`` is faster)."""
        return self.b_s / self.a_s

    def __str__(self) -> str:
        return f"a {self.a_s * 1e3:.2f} ms, b {self.b_s * 1e3:.2f} ms, b/a {self.ratio:.3f}x"


def compare_latency(
    a: Callable[[], object],
    b: Callable[[], object],
    repeats: int = 15,
    warmup: int = 2,
    calls_per_repeat: int = 1,
) -> LatencyComparison:
    """Time ``a()`` and ``b()`` alternately (a, b, b, a, a, b, ...) and compare the medians.

    Alternating, with the order swapped each repeat, cancels slow drifts of the machine (other
    processes, thermal state) that timing one after the other would attribute to one side.

    Args:
        a: zero-argument callable, e.g. ``training_step(model_a, x, y)``.
        b: the other one.
        repeats: timed repeats of each.
        warmup: untimed calls of each first.
        calls_per_repeat: calls inside one timed repeat (for very short calls).
    """
    if repeats < 1 or calls_per_repeat < 1:
        raise ValueError("repeats and calls_per_repeat must be >= 1")

    def timed(fn: Callable[[], object]) -> float:
        _sync()
        t0 = time.perf_counter()
        for _ in range(calls_per_repeat):
            fn()
        _sync()
        return (time.perf_counter() - t0) / calls_per_repeat

    for _ in range(warmup):
        a()
        b()
    times_a, times_b = [], []
    for i in range(repeats):
        first, second = ((a, times_a), (b, times_b)) if i % 2 == 0 else ((b, times_b), (a, times_a))
        first[1].append(timed(first[0]))
        second[1].append(timed(second[0]))
    return LatencyComparison(
        statistics.median(times_a), statistics.median(times_b), tuple(times_a), tuple(times_b)
    )


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def training_step(model: nn.Module, x: Tensor, y: Tensor | None = None) -> Callable[[], None]:
    """A zero-argument forward + backward of ``model`` on ``x`` (cross-entropy when y is given).

    Gradients are cleared each call; no optimizer step (the weights stay fixed).
    """

    def step() -> None:
        model.zero_grad(set_to_none=True)
        out = model(x)
        loss = nn.functional.cross_entropy(out, y) if y is not None else out.float().sum()
        loss.backward()

    return step
