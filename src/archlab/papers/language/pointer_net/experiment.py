"""Miniature reproduction of Pointer Networks: sorting and planar convex hull vs seq2seq.

Ptr-Net and the attention seq2seq baseline (``archlab.baselines.lstm_seq2seq``, whose output
vocabulary is a fixed set of positions) are trained with the shared engine on the very same
batches, for the same steps, from the same seed:

1. Sorting ``n`` numbers from U[0, 1], trained on ``n`` in [5, 10]. Exact match at the training
   ``n = 10`` and beyond it (``n = 15, 20``), where the baseline cannot name the answer's
   positions (exact match 0 by construction).
2. Planar convex hull, trained on ``n`` in [5, 20]. Area coverage and exact match (same polygon)
   at ``n = 20`` and at the unseen ``n = 40``.

Decoding is greedy and restricted to valid outputs for both models (``model.py``). Training runs
on one thread: these models are small, and extra intra-op threads mostly add overhead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from archlab.baselines.lstm_seq2seq import LSTMSeq2Seq, LSTMSeq2SeqConfig
from archlab.engine import TrainConfig, Trainer
from archlab.lab.result import Budget, Result
from archlab.papers.language.pointer_net import tasks
from archlab.papers.language.pointer_net.model import (
    SPEC,
    PointerNet,
    pointer_loss,
)

SORT_RANGE = (5, 10)  # training lengths of the sorting task
HULL_RANGE = (5, 20)  # training lengths of the convex hull task
SORT_BEYOND = 15  # unseen sorting length of the checks
HULL_BEYOND = 40  # unseen hull length of the checks


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides (both models of a task get the same values)."""

    sort_hidden: int  # d_embed = d_hidden of both sorting models
    hull_hidden: int  # d_embed = d_hidden of both convex hull models
    batch_size: int
    lr: float  # Adam, cosine decay to 0
    sort_steps: int
    hull_steps: int
    n_eval: int  # test examples per length
    sort_eval_ns: tuple[int, ...]
    hull_eval_ns: tuple[int, ...]


SMOKE = Sizes(16, 16, 16, 2e-3, 3, 3, 8, (5, 10, 15), (10, 20, 40))
QUICK = Sizes(64, 128, 64, 2e-3, 1000, 800, 500, (5, 10, 15, 20), (10, 20, 30, 40))
BUDGETS = {"smoke": SMOKE, "quick": QUICK}


# ----------------------------------------------------------------------------- training
def _build(model_cls: Callable, cfg, seed: int) -> torch.nn.Module:
    """Build a model with its init seeded by ``seed``."""
    torch.manual_seed(seed)
    return model_cls(cfg)


def _replay(batches: list[dict]) -> Callable:
    """An engine data stream that returns ``batches`` in order, ignoring its generator.

    The batches are drawn once from the run's seed, so both models of a task see the very same
    examples and the hull targets are computed once.
    """
    stream = iter(batches)
    return lambda batch_size, generator: next(stream)


def _train(model: torch.nn.Module, batches: list[dict], sizes: Sizes, seed: int) -> float:
    """Train on ``batches`` with the engine (Adam, gradient clip 2 as in the paper).

    Returns:
        The training time in seconds.
    """
    cfg = TrainConfig(
        steps=len(batches),
        batch_size=sizes.batch_size,
        lr=sizes.lr,
        optimizer="adam",
        schedule="cosine",
        grad_clip=2.0,
        log_every=max(1, len(batches)),
        seed=seed,
        device="cpu",
        progress=False,
    )
    t0 = time.perf_counter()
    Trainer(model, pointer_loss, cfg).fit(_replay(batches))
    return time.perf_counter() - t0


def _train_pair(
    models: dict[str, torch.nn.Module], make: Callable, n_range, steps, sizes, seed, m, task
) -> None:
    """Draw ``steps`` length-bucketed batches once and train every model on them."""
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    batches = [tasks.bucketed_batch(make, sizes.batch_size, g, *n_range) for _ in range(steps)]
    m[f"time/{task}_data_s"] = time.perf_counter() - t0
    for name, model in models.items():
        m[f"time/{task}_{name}_train_s"] = _train(model, batches, sizes, seed)


# ----------------------------------------------------------------------------- evaluation
def _decode(model: torch.nn.Module, batch: dict) -> list[list[int]]:
    """Greedy outputs as lists of input indices (end token and padding dropped)."""
    model.eval()
    out = model.decode(batch["inputs"], batch["lengths"])
    return [row[: int(k)].tolist() for row, k in zip(out.indices, out.lengths)]


def eval_sorting(model: torch.nn.Module, batch: dict) -> dict[str, float]:
    """Exact match (the output is the argsort) and valid-permutation rate."""
    exact, valid = [], []
    orders = tasks.targets_to_indices(batch["targets"])
    for b, pred in enumerate(_decode(model, batch)):
        n = int(batch["lengths"][b])
        exact.append(pred == orders[b, :n].tolist())
        valid.append(sorted(pred) == list(range(n)))
    return {"exact": float(np.mean(exact)), "valid": float(np.mean(valid))}


def eval_hull(model: torch.nn.Module, batch: dict) -> tuple[dict[str, float], list[list[int]]]:
    """Area coverage (0 for an invalid polygon), same-polygon exact match, valid rate.

    Returns:
        The metrics and the predicted vertex lists (for drawing).
    """
    cover, exact = [], []
    orders = tasks.targets_to_indices(batch["targets"])
    preds = _decode(model, batch)
    for b, pred in enumerate(preds):
        n = int(batch["lengths"][b])
        points = batch["inputs"][b, :n].double().numpy()
        target = [i for i in orders[b].tolist() if i >= 0]
        cover.append(tasks.area_coverage(points, pred, tasks.polygon_area(points[target])))
        exact.append(tasks.same_polygon(pred, target))
    metrics = {
        "coverage": float(np.mean(cover)),
        "exact": float(np.mean(exact)),
        "valid": float(np.mean([c > 0 for c in cover])),
    }
    return metrics, preds


# ----------------------------------------------------------------------------- the run
def run(budget: Budget, seed: int) -> Result:
    """Train Ptr-Net and the seq2seq baseline on sorting and convex hull; check the claim."""
    import matplotlib

    matplotlib.use("Agg")
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(
        slug=SPEC.slug, title=SPEC.title, claim=SPEC.claim, budget=budget.value, seed=seed
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run_sorting(sizes, seed, result.metrics)
        drawings = _run_hull(sizes, seed, result.metrics)
    finally:
        torch.set_num_threads(threads)
    _checks(result)
    result.figures["accuracy_vs_n"] = _plot_vs_n(result.metrics, sizes)
    result.figures["hull_examples"] = _plot_hulls(drawings, HULL_BEYOND)
    return result


def _run_sorting(sizes: Sizes, seed: int, m: dict[str, float]) -> None:
    """Sorting: train both models on n in SORT_RANGE, test exact match and validity per n."""
    h = sizes.sort_hidden
    ptr_cfg = replace(SPEC.variants["sort"], d_embed=h, d_hidden=h)
    s2s_cfg = LSTMSeq2SeqConfig(
        d_input=1, d_embed=h, d_hidden=h, n_positions=SORT_RANGE[1], permutation_output=True
    )
    models = {"ptr": _build(PointerNet, ptr_cfg, seed), "s2s": _build(LSTMSeq2Seq, s2s_cfg, seed)}
    _train_pair(models, tasks.sorting_batch, SORT_RANGE, sizes.sort_steps, sizes, seed, m, "sort")
    t0 = time.perf_counter()
    for n in sizes.sort_eval_ns:
        test = tasks.sorting_batch(
            sizes.n_eval, torch.Generator().manual_seed(10**6 * (seed + 1) + n), n, n
        )
        for name, model in models.items():
            for key, value in eval_sorting(model, test).items():
                m[f"sort/{name}_{key}@{n}"] = value
    m["time/sort_eval_s"] = time.perf_counter() - t0


def _run_hull(sizes: Sizes, seed: int, m: dict[str, float]) -> dict:
    """Convex hull: train both models on n in HULL_RANGE, test coverage and exact match per n.

    Returns:
        ``{(model name, n): (test batch, predictions)}`` for the figure.
    """
    h = sizes.hull_hidden
    ptr_cfg = replace(SPEC.variants["hull"], d_embed=h, d_hidden=h)
    s2s_cfg = LSTMSeq2SeqConfig(d_input=2, d_embed=h, d_hidden=h, n_positions=HULL_RANGE[1])
    models = {"ptr": _build(PointerNet, ptr_cfg, seed), "s2s": _build(LSTMSeq2Seq, s2s_cfg, seed)}
    make = tasks.convex_hull_batch
    _train_pair(models, make, HULL_RANGE, sizes.hull_steps, sizes, seed + 1, m, "hull")
    t0 = time.perf_counter()
    drawings = {}
    for n in sizes.hull_eval_ns:
        test = make(sizes.n_eval, torch.Generator().manual_seed(10**6 * (seed + 1) + 500 + n), n, n)
        for name, model in models.items():
            metrics, preds = eval_hull(model, test)
            for key, value in metrics.items():
                m[f"hull/{name}_{key}@{n}"] = value
            drawings[name, n] = (test, preds)
    m["time/hull_eval_s"] = time.perf_counter() - t0
    return drawings


def _checks(result: Result) -> None:
    """The claim as comparisons measured in this run."""
    m = result.metrics
    n_sort, n_hull = SORT_RANGE[1], HULL_RANGE[1]
    sort_ptr, sort_s2s = m[f"sort/ptr_exact@{n_sort}"], m[f"sort/s2s_exact@{n_sort}"]
    result.check(
        f"sort: Ptr-Net exact match at training n={n_sort} >= 0.85",
        sort_ptr >= 0.85,
        f"ptr {sort_ptr:.3f}, seq2seq {sort_s2s:.3f}",
    )
    valid = m[f"sort/ptr_valid@{SORT_BEYOND}"]
    result.check(
        f"sort: Ptr-Net emits only valid permutations at unseen n={SORT_BEYOND}",
        valid >= 1.0,
        f"valid-permutation rate {valid:.3f}",
    )
    far_ptr, far_s2s = m[f"sort/ptr_exact@{SORT_BEYOND}"], m[f"sort/s2s_exact@{SORT_BEYOND}"]
    result.check(
        f"sort: Ptr-Net exact match at unseen n={SORT_BEYOND} >= 0.4",
        far_ptr >= 0.4,
        f"ptr {far_ptr:.3f}; seq2seq {far_s2s:.3f} (0 by construction: its vocabulary names "
        f"positions 0..{n_sort - 1} only)",
    )
    cover, exact = m[f"hull/ptr_coverage@{n_hull}"], m[f"hull/ptr_exact@{n_hull}"]
    result.check(
        f"hull: Ptr-Net area coverage at training n={n_hull} >= 0.95",
        cover >= 0.95,
        f"{cover:.3f} (exact {exact:.3f})",
    )
    far_cover, far_exact = m[f"hull/ptr_coverage@{HULL_BEYOND}"], m[f"hull/ptr_exact@{HULL_BEYOND}"]
    result.check(
        f"hull: Ptr-Net area coverage at unseen n={HULL_BEYOND} >= 0.90",
        far_cover >= 0.90,
        f"{far_cover:.3f} (exact {far_exact:.3f})",
    )
    s2s_cover, s2s_exact = m[f"hull/s2s_coverage@{n_hull}"], m[f"hull/s2s_exact@{n_hull}"]
    result.check(
        f"hull: Ptr-Net beats seq2seq at training n={n_hull} in coverage and exact match",
        cover > s2s_cover and exact > s2s_exact,
        f"coverage {cover:.3f} vs {s2s_cover:.3f}; exact {exact:.3f} vs {s2s_exact:.3f}",
    )


# ----------------------------------------------------------------------------- figures
def _plot_vs_n(m: dict[str, float], sizes: Sizes):
    """Sorting exact match and hull area coverage vs n, both models, training range shaded."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    panels = [
        (axes[0], "sort", sizes.sort_eval_ns, SORT_RANGE, "sorting"),
        (axes[1], "hull", sizes.hull_eval_ns, HULL_RANGE, "planar convex hull"),
    ]
    for ax, task, ns, (lo, hi), title in panels:
        ax.axvspan(lo, hi, color="0.9", label="training n")
        metrics = ("exact",) if task == "sort" else ("coverage", "exact")
        for metric, line in zip(metrics, ("-", ":")):
            for name, label, marker, color in (
                ("ptr", "Ptr-Net", "o", "C0"),
                ("s2s", "seq2seq + attention", "s", "C1"),
            ):
                ys = [m[f"{task}/{name}_{metric}@{n}"] for n in ns]
                ax.plot(ns, ys, marker=marker, ls=line, color=color, label=f"{label} {metric}")
        ax.set(title=title, xlabel="n (input length)", ylim=(-0.02, 1.02))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _plot_hulls(drawings: dict, n: int, count: int = 4):
    """A few Ptr-Net and seq2seq outputs at ``n`` over the true hull (green)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, count, figsize=(2.6 * count, 5.4))
    for row, (name, label, color) in enumerate(
        (("ptr", "Ptr-Net", "C0"), ("s2s", "seq2seq", "C1"))
    ):
        batch, preds = drawings[name, n]
        for i in range(count):
            ax = axes[row, i]
            pts = batch["inputs"][i, : int(batch["lengths"][i])].numpy()
            true = tasks.convex_hull_order(pts.astype(np.float64))
            ax.fill(pts[true, 0], pts[true, 1], color="C2", alpha=0.25)
            ax.scatter(pts[:, 0], pts[:, 1], s=6, color="0.3")
            if preds[i]:
                cycle = preds[i] + preds[i][:1]
                ax.plot(pts[cycle, 0], pts[cycle, 1], "-", color=color)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(label)
    fig.suptitle(f"convex hull outputs at unseen n={n} (green: true hull)")
    fig.tight_layout()
    return fig
