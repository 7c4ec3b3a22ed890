"""Miniature reproduction of S-KAN: function fitting against single-space KANs and an MLP.

The KAN paper's toy regressions on ``[-1, 1]^2`` (``TASKS``), each fitted by ``[2, 5, 1]``
networks: S-KAN (every node selects its space from the pool, three-phase strategy), the five
single-space KANs of the pool (B-spline = the original KAN, Chebyshev, Fourier, RBF, wavelet;
equal parameter counts) and an MLP with about the pruned S-KAN's parameter count. Protocol
(``archlab.lab``): training, validation and test points from their own named streams; every arm
tuned over the same learning-rate grid (``lab.tune``, kept by validation RMSE), the same steps,
full-batch Adam; each baseline's health (RMSE well under the mean predictor's, a flattened
curve) checked before the comparisons. Thresholds in ``BUDGETS`` were set before any run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.lab import Lab, Recipe, predict
from archlab.lab.plots import new_figure
from archlab.papers.fields.s_kan.model import SKAN, SPACES, SKANConfig, active_parameters

TASKS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "exp_sin": lambda x, y: torch.exp(torch.sin(math.pi * x) + y**2),  # KAN paper, Fig. 3.1
    "product": lambda x, y: x * y,
    "bessel": lambda x, y: torch.special.bessel_j0(10 * x) + y,  # an oscillation
    "step": lambda x, y: torch.tanh(10 * x) + 0.5 * y**2,  # a near-discontinuity
}
"""Targets ``f(x, y)`` on ``[-1, 1]^2``."""


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    tasks: tuple[str, ...]
    widths: tuple[int, ...]
    n_basis: int
    top_k: int
    n_train: int
    n_val: int
    n_test: int
    noise: float  # std of the noise on the training targets
    recipe: Recipe  # full batch: batch_size = n_train
    lrs: tuple[float, ...]
    select_frac: float  # the selective phase starts at this fraction of the steps
    prune_frac: float  # ... the pruned phase at this one
    best_single_ratio: float  # S-KAN test RMSE <= this x the best single-space KAN's, every task
    mlp_wins: int  # S-KAN must beat the matched MLP on at least this many tasks
    health_ratio: float  # a baseline's test RMSE must be <= this x the mean predictor's
    max_flattening: float


def recipe(steps: int, n_train: int) -> Recipe:
    """Full-batch Adam at a constant rate after a short warm-up (as pykan trains): S-KAN's
    later phases get the same rate as its first, and so does every other arm."""
    return Recipe(steps=steps, batch_size=n_train, lr=1e-2, optimizer="adam",
                  schedule="constant", warmup_steps=steps // 50, curve_points=30)  # fmt: skip


BUDGETS = {
    "smoke": Settings(
        tasks=("product", "step"), widths=(2, 3, 1), n_basis=8, top_k=2, n_train=64, n_val=32,
        n_test=32, noise=0.0, recipe=recipe(8, 64), lrs=(1e-2,), select_frac=0.5, prune_frac=0.75,
        best_single_ratio=100.0, mlp_wins=0, health_ratio=10.0, max_flattening=1.0,
    ),
    "quick": Settings(
        tasks=tuple(TASKS), widths=(2, 5, 1), n_basis=8, top_k=2, n_train=300, n_val=300,
        n_test=1000, noise=0.0, recipe=recipe(400, 300), lrs=(1e-2, 3e-2), select_frac=0.5,
        prune_frac=0.75, best_single_ratio=1.5, mlp_wins=3, health_ratio=0.5,
        max_flattening=0.2,
    ),
}  # fmt: skip


def points(task: str, n: int, g: torch.Generator, noise: float = 0.0) -> tuple[Tensor, Tensor]:
    """``n`` uniform points of ``[-1, 1]^2`` and their targets (B, 1)."""
    x = torch.rand(n, 2, generator=g) * 2 - 1
    y = TASKS[task](x[:, 0], x[:, 1])[:, None]
    return x, y + noise * torch.randn(y.shape, generator=g)


def mse_loss(model: nn.Module, batch: tuple[Tensor, Tensor]):
    x, y = batch
    return ((model(x) - y) ** 2).mean(), {}


def rmse(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return float(((predict(model, x) - y) ** 2).mean().sqrt())


def matched_mlp_width(target: int, d_in: int = 2, d_out: int = 1) -> int:
    """The width ``h`` of a ``[d_in, h, h, d_out]`` MLP whose parameter count is closest to
    ``target``."""
    count = lambda h: d_in * h + h + h * h + h + h * d_out + d_out  # noqa: E731
    return min(range(1, 64), key=lambda h: abs(count(h) - target))


def mlp(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(2, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                         nn.Linear(width, 1))  # fmt: skip


def arms(s: Settings) -> dict[str, Callable[[], nn.Module]]:
    """S-KAN, the single-space KANs and the parameter-matched MLP."""
    steps = s.recipe.steps
    schedule = (round(s.select_frac * steps), round(s.prune_frac * steps))
    skan = SKANConfig(widths=s.widths, n_basis=s.n_basis, top_k=s.top_k, schedule=schedule)
    out: dict[str, Callable[[], nn.Module]] = {"skan": lambda: SKAN(skan)}
    for space in SPACES:
        single = SKANConfig(widths=s.widths, spaces=(space,), n_basis=s.n_basis, top_k=1)
        out[f"kan_{space}"] = lambda cfg=single: SKAN(cfg)
    width = matched_mlp_width(active_parameters(SKAN(skan)))
    out["mlp"] = lambda: mlp(width)
    return out


SINGLES = tuple(f"kan_{space}" for space in SPACES)


def run(lab: Lab) -> None:
    """Fit every task with every arm (each tuned on validation); check ranks and the MLP."""
    s: Settings = lab.settings
    makes = arms(s)
    chosen: dict[str, int] = {space: 0 for space in SPACES}
    for task in s.tasks:
        train = points(task, s.n_train, lab.rng(f"train-data/{task}"), s.noise)
        val = points(task, s.n_val, lab.rng(f"val-data/{task}"))
        test = points(task, s.n_test, lab.rng(f"test-data/{task}"))
        data = lambda batch_size, g, train=train: train  # noqa: E731  (full batch)
        lab.measure(f"rmse/{task}/mean", float(test[1].std(unbiased=False)))
        for arm, make in makes.items():
            model = lab.tune(f"{task}/{arm}", make, mse_loss, data, s.recipe, lrs=s.lrs,
                             score=lambda m, val=val: rmse(m, *val),
                             higher_is_better=False)  # fmt: skip
            lab.measure(f"rmse/{task}/{arm}", rmse(model, *test))
            if arm == "skan":
                lab.invariant(
                    f"{task}: after training every S-KAN node uses one space",
                    model.phase == "pruned", f"phase {model.phase}; nodes {model.chosen()}",
                )  # fmt: skip
                for layer in model.chosen():
                    for space in layer:
                        chosen[space] += 1
        mean = lab.value(f"rmse/{task}/mean")
        for arm in (*SINGLES, "mlp"):
            lab.health(f"{task}/{arm}", "rmse", ("the mean predictor", mean),
                       margin=(1 - s.health_ratio) * mean, higher_is_better=False,
                       max_flattening=s.max_flattening)  # fmt: skip
    for space, n in chosen.items():
        lab.measure(f"chosen_nodes/{space}", n)
    check_claims(lab, s)
    lab.figure("rmse", plot_rmse(lab, s))


def check_claims(lab: Lab, s: Settings) -> None:
    """Parameter invariants, then the three claims."""
    counts = {arm: lab.value(f"params/{s.tasks[0]}/{arm}") for arm in (*SINGLES, "mlp")}
    skan_active = active_parameters(arms(s)["skan"]())
    lab.measure("params_active/skan", skan_active)
    single = int(counts[SINGLES[0]])
    lab.invariant(
        "the single-space KANs have equal parameter counts, a pruned S-KAN uses as many (besides "
        "the selection logits), and the MLP is within 15% of that",
        len({counts[a] for a in SINGLES}) == 1
        and single - skan_active == sum(s.widths[1:])
        and abs(counts["mlp"] - skan_active) <= 0.15 * skan_active,
        f"single-space KANs {single:,} (incl. {single - skan_active} selection logits), pruned "
        f"S-KAN {skan_active:,} active, MLP {int(counts['mlp']):,}; S-KAN trains "
        f"{int(lab.value(f'params/{s.tasks[0]}/skan')):,} before pruning",
    )
    ranked = ("skan", *SINGLES)
    ranks = {arm: [] for arm in ranked}
    for task in s.tasks:
        order = sorted(ranked, key=lambda a: lab.value(f"rmse/{task}/{a}"))
        for r, arm in enumerate(order, 1):
            ranks[arm].append(r)
    mean_rank = {arm: sum(v) / len(v) for arm, v in ranks.items()}
    for arm, r in mean_rank.items():
        lab.measure(f"mean_rank/{arm}", r)
    best_other = min(SINGLES, key=lambda a: mean_rank[a])
    baselines = tuple(f"{t}/{a}" for t in s.tasks for a in SINGLES)
    lab.compare_values(
        f"S-KAN has the best mean rank (test RMSE) over {len(s.tasks)} tasks among S-KAN and the "
        f"{len(SINGLES)} single-space KANs",
        ("S-KAN", mean_rank["skan"]), (best_other, mean_rank[best_other]),
        higher_is_better=False, arms=baselines,
        note="ranks " + "; ".join(f"{a} {ranks[a]}" for a in ranked),
    )  # fmt: skip
    ratios = {
        task: lab.value(f"rmse/{task}/skan") / min(lab.value(f"rmse/{task}/{a}") for a in SINGLES)
        for task in s.tasks
    }
    worst = max(ratios, key=ratios.get)
    lab.bound(
        f"S-KAN is within {s.best_single_ratio}x the best single-space KAN's RMSE on every task "
        "(less variability across tasks than any one space)",
        f"worst ratio ({worst})", ratios[worst], at_most=s.best_single_ratio, unit="x",
        arms=baselines, note=", ".join(f"{t} {r:.2f}x" for t, r in ratios.items()),
    )  # fmt: skip
    wins = [t for t in s.tasks if lab.value(f"rmse/{t}/skan") < lab.value(f"rmse/{t}/mlp")]
    lab.compare_values(
        f"S-KAN beats the parameter-matched MLP on >= {s.mlp_wins} of {len(s.tasks)} tasks",
        ("tasks won", len(wins)), ("needed", s.mlp_wins), arms=tuple(f"{t}/mlp" for t in s.tasks),
        note=", ".join(f"{t} {lab.value(f'rmse/{t}/skan'):.4f} vs {lab.value(f'rmse/{t}/mlp'):.4f}"
                       for t in s.tasks),
    )  # fmt: skip


def plot_rmse(lab: Lab, s: Settings):
    """Test RMSE per task and arm (log scale)."""
    fig = new_figure(figsize=(8, 3.4))
    ax = fig.subplots()
    names = ("skan", *SINGLES, "mlp")
    width = 0.8 / len(names)
    for i, arm in enumerate(names):
        ys = [lab.value(f"rmse/{t}/{arm}") for t in s.tasks]
        ax.bar([j + i * width for j in range(len(s.tasks))], ys, width, label=arm)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(s.tasks))], list(s.tasks))
    ax.set(yscale="log", ylabel="test RMSE")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    return fig
