"""Miniature reproduction of Pointer Networks: sorting and planar convex hull vs seq2seq.

Ptr-Net and the paper's seq2seq baseline (the shared ``archlab.baselines.lstm_seq2seq`` with
``feed="coordinates"``: attention LSTM seq2seq whose output vocabulary is a fixed set of
positions and whose decoder reads the previously chosen element's coordinates, as Ptr-Net's
does) are tuned with ``lab.tune`` on the same lr grid (the
budget's ``lrs``), from the same init stream, on the same training batches of a task, and each
keeps the lr that scores best on the validation split:

1. Sorting ``n`` numbers from U[0, 1], trained on ``n`` in [5, 10]. Exact match at the training
   ``n = 10`` and beyond it (``n = 15, 20``), where the baseline cannot name the answer's
   positions (exact match 0 by construction).
2. Planar convex hull, trained on ``n`` in [5, 20]. Area coverage and exact match (same polygon)
   at ``n = 20`` and at the unseen ``n = 40``.

Splits: training batches from the kit's ``train`` stream (``lab.tune``), validation and test
sets per length from ``val-data/<task>/<n>`` and ``test-data/<task>/<n>``. Every seq2seq arm
passes a health check (exact match / area coverage at a training length well above an untrained
seq2seq of the same init, measured in the run; flattened loss curve) before a comparison uses
it.

Every batch shares one ``n`` (length bucketing). Decoding is greedy and restricted to valid
outputs for both models (``model.py``), so Ptr-Net's sorting outputs are valid permutations by
construction (an invariant).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from torch import nn

from archlab.baselines.lstm_seq2seq import LSTMSeq2Seq, LSTMSeq2SeqConfig
from archlab.lab import Lab, Recipe, evaluating
from archlab.lab.inference import model_device
from archlab.lab.plots import new_figure
from archlab.papers.language.pointer_net import tasks
from archlab.papers.language.pointer_net.model import SPEC, PointerNet, pointer_loss

SORT_RANGE = (5, 10)  # training lengths of the sorting task
HULL_RANGE = (5, 20)  # training lengths of the convex hull task
SORT_BEYOND = 15  # unseen sorting length of the checks
HULL_BEYOND = 40  # unseen hull length of the checks


def paper_recipe(steps: int, batch_size: int, lr: float) -> Recipe:
    """Adam with cosine decay to 0 and the paper's gradient clipping at 2."""
    return Recipe(
        steps=steps, batch_size=batch_size, lr=lr, optimizer="adam", schedule="cosine",
        grad_clip=2.0,
    )  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides (both models of a task get the same values)."""

    sort_hidden: int  # d_embed = d_hidden of both sorting models
    hull_hidden: int  # d_embed = d_hidden of both convex hull models
    sort_recipe: Recipe
    hull_recipe: Recipe
    n_eval: int  # test examples per length
    n_val: int  # validation examples per training length scored by the lr sweep
    lrs: tuple[float, ...]  # the lr grid of every arm (Ptr-Net and seq2seq), picked on val
    sort_eval_ns: tuple[int, ...]
    hull_eval_ns: tuple[int, ...]
    sort_exact_min: float = 0.85  # Ptr-Net sorting exact match at the training n = 10
    sort_exact_beyond_min: float = 0.4  # ... at the unseen n = 15
    hull_coverage_min: float = 0.95  # Ptr-Net hull area coverage at the training n = 20
    hull_coverage_beyond_min: float = 0.90  # ... at the unseen n = 40
    beats_margin: float = 1e-9  # Ptr-Net strictly above seq2seq (margin 0: the paper's direction)
    health_margin: float = 0.2  # seq2seq health: above an untrained seq2seq by 0.2 (a priori)
    max_flattening: float = 0.2  # seq2seq health: loss fell <= 20% over the last quarter


BUDGETS = {
    "smoke": Settings(
        sort_hidden=16, hull_hidden=16, sort_recipe=paper_recipe(3, 16, 2e-3),
        hull_recipe=paper_recipe(3, 16, 2e-3), n_eval=8, sort_eval_ns=(5, 10, 15),
        hull_eval_ns=(10, 20, 40), n_val=8, lrs=(2e-3,),
    ),
    "quick": Settings(
        sort_hidden=64, hull_hidden=128, sort_recipe=paper_recipe(1000, 64, 2e-3),
        hull_recipe=paper_recipe(600, 64, 2e-3), n_eval=500, sort_eval_ns=(5, 10, 15, 20),
        hull_eval_ns=(10, 20, 30, 40), n_val=200, lrs=(2e-3, 6e-3),  # lr, 3 lr
    ),
    # quick, with the hull trained 2,000 steps: the seq2seq's hull loss leaves its plateau
    # after about 600 steps and flattens by about 1,800 (a calibration run of the seq2seq
    # alone, seed 0, on its own streams)
    "standard": Settings(
        sort_hidden=64, hull_hidden=128, sort_recipe=paper_recipe(1000, 64, 2e-3),
        hull_recipe=paper_recipe(2000, 64, 2e-3), n_eval=500, sort_eval_ns=(5, 10, 15, 20),
        hull_eval_ns=(10, 20, 30, 40), n_val=200, lrs=(2e-3, 6e-3),
    ),
}  # fmt: skip


# ----------------------------------------------------------------------------- models and data
def sort_arms(h: int) -> dict[str, Callable[[], nn.Module]]:
    """Ptr-Net and the coordinate-fed seq2seq for sorting; seq2seq names positions 0..9 only."""
    ptr = replace(SPEC.variants["sort"], d_embed=h, d_hidden=h)
    s2s = LSTMSeq2SeqConfig(
        d_input=1,
        d_embed=h,
        d_hidden=h,
        n_positions=SORT_RANGE[1],
        permutation_output=True,
        feed="coordinates",
    )
    return {"sort/ptr": lambda: PointerNet(ptr), "sort/s2s": lambda: LSTMSeq2Seq(s2s)}


def hull_arms(h: int) -> dict[str, Callable[[], nn.Module]]:
    """Ptr-Net and the coordinate-fed seq2seq for the hull; seq2seq names positions 0..19 only."""
    ptr = replace(SPEC.variants["hull"], d_embed=h, d_hidden=h)
    s2s = LSTMSeq2SeqConfig(
        d_input=2, d_embed=h, d_hidden=h, n_positions=HULL_RANGE[1], feed="coordinates"
    )
    return {"hull/ptr": lambda: PointerNet(ptr), "hull/s2s": lambda: LSTMSeq2Seq(s2s)}


def length_buckets(make: Callable, n_range: tuple[int, int]) -> Callable:
    """The engine's data stream ``(batch_size, generator) -> batch``: one ``n`` per batch."""
    return lambda batch_size, g: tasks.bucketed_batch(make, batch_size, g, *n_range)


# ----------------------------------------------------------------------------- evaluation
def _decode(model: nn.Module, batch: dict) -> list[list[int]]:
    """Greedy outputs as lists of input indices (end token and padding dropped)."""
    device = model_device(model)
    with evaluating(model):
        out = model.decode(batch["inputs"].to(device), batch["lengths"].to(device))
    return [row[: int(k)].tolist() for row, k in zip(out.indices, out.lengths)]


def eval_sorting(model: nn.Module, batch: dict) -> dict[str, float]:
    """Exact match (the output is the argsort) and valid-permutation rate."""
    exact, valid = [], []
    orders = tasks.targets_to_indices(batch["targets"])
    for b, pred in enumerate(_decode(model, batch)):
        n = int(batch["lengths"][b])
        exact.append(pred == orders[b, :n].tolist())
        valid.append(sorted(pred) == list(range(n)))
    return {"exact": float(np.mean(exact)), "valid": float(np.mean(valid))}


def eval_hull(model: nn.Module, batch: dict) -> tuple[dict[str, float], list[list[int]]]:
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
SORT_HEALTH_N = 5  # a training length at which the sorting seq2seq must beat its untrained self
HULL_HEALTH_N = 10  # the same for the convex hull seq2seq


def run(lab: Lab) -> None:
    """Tune Ptr-Net and the seq2seq baseline on sorting and convex hull; check the claim."""
    s: Settings = lab.settings
    drawings = {}  # (arm, n) -> (test batch, predictions), for the figure
    for task, arms, make_batch, n_range, recipe, eval_ns, health_n in (
        ("sort", sort_arms(s.sort_hidden), tasks.sorting_batch, SORT_RANGE, s.sort_recipe,
         s.sort_eval_ns, SORT_HEALTH_N),
        ("hull", hull_arms(s.hull_hidden), tasks.convex_hull_batch, HULL_RANGE, s.hull_recipe,
         s.hull_eval_ns, HULL_HEALTH_N),
    ):  # fmt: skip
        metric = "exact" if task == "sort" else "coverage"

        def evaluate(model, batch, task=task):
            return eval_sorting(model, batch) if task == "sort" else eval_hull(model, batch)

        val = {n: make_batch(s.n_val, lab.rng(f"val-data/{task}/{n}"), n, n) for n in n_range}

        def score(model, val=val, metric=metric, evaluate=evaluate):  # mean over both ends
            return float(np.mean([_metrics(evaluate(model, b))[metric] for b in val.values()]))

        tests = {n: make_batch(s.n_eval, lab.rng(f"test-data/{task}/{n}"), n, n) for n in eval_ns}
        tests.setdefault(health_n, make_batch(s.n_eval, lab.rng(f"test-data/{task}/{health_n}"),
                                              health_n, health_n))  # fmt: skip
        data = length_buckets(make_batch, n_range)
        for arm, make in arms.items():
            if arm.endswith("/s2s"):  # the trivial predictor of its health check
                untrained = lab.build(f"{arm}/untrained", make)
                value = _metrics(evaluate(untrained, tests[health_n]))[metric]
                lab.measure(f"{metric}@{health_n}/{arm}/untrained", value)
            # lab.tune fits on the kit's "train" stream (its ``stream`` names the init stream)
            model = lab.tune(arm, make, pointer_loss, data, recipe, lrs=s.lrs, score=score)
            for n, test in tests.items():
                out = evaluate(model, test)
                if task == "hull":
                    drawings[arm, n] = (test, out[1])
                for key, value in _metrics(out).items():
                    lab.measure(f"{key}@{n}/{arm}", value)
        s2s = f"{task}/s2s"
        lab.health(s2s, f"{metric}@{health_n}",
                   (f"untrained seq2seq {metric}@{health_n}",
                    lab.value(f"{metric}@{health_n}/{s2s}/untrained")),
                   margin=s.health_margin, max_flattening=s.max_flattening)  # fmt: skip

    n_sort, n_hull, v = SORT_RANGE[1], HULL_RANGE[1], lab.value
    lab.bound(f"sort: Ptr-Net exact match at training n={n_sort} >= {s.sort_exact_min}",
              "ptr", v(f"exact@{n_sort}", "sort/ptr"), at_least=s.sort_exact_min,
              note=f"seq2seq {v(f'exact@{n_sort}', 'sort/s2s'):.3f}")  # fmt: skip
    lab.compare(f"sort: Ptr-Net beats seq2seq at training n={n_sort} in exact match",
                f"exact@{n_sort}", "sort/ptr", "sort/s2s", margin=s.beats_margin,
                note=f"at n={SORT_HEALTH_N}: ptr {v(f'exact@{SORT_HEALTH_N}', 'sort/ptr'):.3f}, "
                f"seq2seq {v(f'exact@{SORT_HEALTH_N}', 'sort/s2s'):.3f}")  # fmt: skip
    valid = v(f"valid@{SORT_BEYOND}", "sort/ptr")
    lab.invariant(f"sort: Ptr-Net emits only valid permutations at unseen n={SORT_BEYOND} "
                  "(the decoding masks guarantee it)", valid >= 1.0,
                  f"valid-permutation rate {valid:.3f}")  # fmt: skip
    lab.bound(f"sort: Ptr-Net exact match at unseen n={SORT_BEYOND} >= {s.sort_exact_beyond_min}",
              "ptr", v(f"exact@{SORT_BEYOND}", "sort/ptr"), at_least=s.sort_exact_beyond_min,
              note=f"seq2seq {v(f'exact@{SORT_BEYOND}', 'sort/s2s'):.3f} (0 by construction: "
              f"its vocabulary names positions 0..{n_sort - 1} only)")  # fmt: skip
    for n, at_least, when in ((n_hull, s.hull_coverage_min, "training"),
                              (HULL_BEYOND, s.hull_coverage_beyond_min, "unseen")):  # fmt: skip
        lab.bound(f"hull: Ptr-Net area coverage at {when} n={n} >= {at_least}", "coverage",
                  v(f"coverage@{n}", "hull/ptr"), at_least=at_least,
                  note=f"exact {v(f'exact@{n}', 'hull/ptr'):.3f}")  # fmt: skip
    for metric in ("coverage", "exact"):
        lab.compare(f"hull: Ptr-Net beats seq2seq at training n={n_hull} in {metric}",
                    f"{metric}@{n_hull}", "hull/ptr", "hull/s2s",
                    margin=s.beats_margin)  # fmt: skip
    lab.figure("accuracy_vs_n", plot_vs_n(lab, s))
    lab.figure("hull_examples", plot_hulls(drawings, HULL_BEYOND))


def _metrics(out) -> dict[str, float]:
    """The metrics of ``eval_sorting`` (a dict) or ``eval_hull`` (metrics, predictions)."""
    return out[0] if isinstance(out, tuple) else out


# ----------------------------------------------------------------------------- figures
def plot_vs_n(lab: Lab, s: Settings):
    """Sorting exact match and hull area coverage vs n, both models, training range shaded."""
    fig = new_figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2)
    panels = [
        (axes[0], "sort", s.sort_eval_ns, SORT_RANGE, "sorting"),
        (axes[1], "hull", s.hull_eval_ns, HULL_RANGE, "planar convex hull"),
    ]
    for ax, task, ns, (lo, hi), title in panels:
        ax.axvspan(lo, hi, color="0.9", label="training n")
        metrics = ("exact",) if task == "sort" else ("coverage", "exact")
        for metric, line in zip(metrics, ("-", ":")):
            for model, label, marker, color in (
                ("ptr", "Ptr-Net", "o", "C0"),
                ("s2s", "seq2seq + attention", "s", "C1"),
            ):
                ys = [lab.value(f"{metric}@{n}", f"{task}/{model}") for n in ns]
                ax.plot(ns, ys, marker=marker, ls=line, color=color, label=f"{label} {metric}")
        ax.set(title=title, xlabel="n (input length)", ylim=(-0.02, 1.02))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_hulls(drawings: dict, n: int, count: int = 4):
    """A few Ptr-Net and seq2seq outputs at ``n`` over the true hull (green)."""
    fig = new_figure(figsize=(2.6 * count, 5.4))
    axes = fig.subplots(2, count)
    for row, (arm, label, color) in enumerate(
        (("hull/ptr", "Ptr-Net", "C0"), ("hull/s2s", "seq2seq", "C1"))
    ):
        batch, preds = drawings[arm, n]
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
