"""Miniature reproduction of Scan and Snap: attention dynamics of a 1-layer transformer.

The reparametrised model (``ScanSnapYZ``, ``Y = Z = 0`` at the start, so the attention is
uniform) is trained by SGD with momentum on the synthetic sequence classes of ``data.py``
(4 next tokens sharing 2 query tokens, 10 distinct tokens per class with increasing
``P(l|n)``, 5 common tokens, sequences of ``T = 64`` tokens), once per decoder/attention
learning-rate ratio ``eta_Y / eta_Z`` (one arm per ratio, named ``r<ratio>``) with the same
``eta_Z``, the same recipe and the same data stream (``lab.fit``). After every step the
class-averaged token mixture ``c_n`` (attention mass on each token, measured on a fixed held-out
set of sequences of every class) is recorded. There is no baseline model in this dynamics
paper: each run is compared with its own uniform start, and the runs are compared with each
other across learning-rate ratios.

Measured (``run``):

1. Scan: the attention share of the common tokens falls (<= 0.5x its uniform start), and the
   learned per-occurrence attention logits ``z_{m,l}`` of the distinct tokens are ordered like
   ``P(l|n)`` (Spearman), so attention moves onto the distinct tokens and keeps the frequent ones.
2. Snap: the token mixture stops changing before winner-take-all: the largest token share stays
   below 0.9 and the entropy of ``c_n`` over the distinct tokens plateaus (the step after which
   its change rate stays below ``rate_tol``), well before the end of training.
3. Learning-rate ratio (the paper's snap analysis, Fig. 6), within the theory's regime
   ``eta_Y > eta_Z``: the largest ratio snaps earlier and freezes a less sparse mixture (higher
   entropy) than the smallest ratio above 1. The direction is the official Fig. 6 sweep's
   (``scan_snap/figure_6_data.pkl``: ratio 10 above ratio 2 in all 16 settings); ratio 1,
   outside assumption (c), is measured but not checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from archlab.lab import Lab, Recipe, predict
from archlab.lab.plots import new_figure
from archlab.papers.language.scan_snap.data import LAYOUTS, SequenceClasses
from archlab.papers.language.scan_snap.model import ScanSnapConfig, ScanSnapYZ, next_token_loss

RATE_TOL = 1e-3  # nats/step: the entropy is "frozen" once its smoothed change rate stays below
RATE_WINDOW = 5  # steps over which the rate is smoothed


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides.

    The recipe's ``lr`` is the attention rate ``eta_Z``; each arm's decoder rate is
    ``eta_Y = ratio * eta_Z`` (optimizer groups of ``ScanSnapYZ.param_groups``).
    """

    layout: str  # the sequence-class layout of data.LAYOUTS
    T: int  # length of the sampled sequences: T - 1 context tokens, then the query
    recipe: Recipe  # SGD with momentum, constant eta_Z, no clipping, c_n recorded every step
    per_class_eval: int  # held-out sequences per class on which c_n is measured
    ratios: tuple[float, ...]  # eta_Y / eta_Z, increasing
    max_common_fraction: float = 0.5  # scan: common-token share at the end / at the start
    min_spearman: float = 0.6  # scan: rank correlation of the learned z_{m,l} with P(l|n)
    max_token_share: float = 0.9  # snap: no winner-take-all
    rate_tol: float = RATE_TOL  # snap: entropy change rate (nats/step) below which it is frozen
    rate_window: int = RATE_WINDOW  # snap: steps over which the rate is smoothed
    snap_within: float = 0.5  # snap: the snap step lies within this fraction of training
    max_late_change: float = 0.1  # snap: change over the second half / total change
    # ratio checks compare the largest ratio with the smallest ratio above 1 (the theory's
    # assumption (c), decoder faster than attention); margin 0 (strict): the direction of the
    # official Fig. 6 sweep (ratio 10 above ratio 2 in all 16 of its settings)
    min_entropy_gain: float = 1e-9  # ratio: the largest ratio freezes a strictly higher entropy
    snap_earlier_by: float = 1e-9  # ratio: the largest ratio snaps strictly earlier


def _sgd(steps: int, batch_size: int) -> Recipe:
    """SGD with momentum 0.9 (the official optimizer) at a constant ``eta_Z = 3``, no clipping;
    the evaluation (``c_n``) runs after every step."""
    return Recipe(
        steps=steps, batch_size=batch_size, lr=3.0, optimizer="sgd", momentum=0.9,
        schedule="constant", grad_clip=None, eval_every=1,
    )  # fmt: skip


BUDGETS = {
    "smoke": Settings(
        layout="tiny", T=16, recipe=_sgd(4, 16), per_class_eval=8, ratios=(1.0, 2.0, 10.0)
    ),
    "quick": Settings(
        layout="base",
        T=64,
        recipe=_sgd(200, 128),
        per_class_eval=256,
        ratios=(1.0, 2.0, 5.0, 10.0),  # the official Fig. 6 grid
    ),
}


def spearman(a, b) -> float:
    """Spearman rank correlation with average ranks for ties (nan if either side is constant)."""

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):  # average ranks of ties
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    ra = ranks(np.asarray(a, dtype=float))
    rb = ranks(np.asarray(b, dtype=float))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy in nats over the last axis of a (renormalised) distribution."""
    p = p / p.sum(-1, keepdim=True)
    return -(p * p.clamp_min(1e-30).log()).sum(-1)


def snap_step(h: np.ndarray, tol: float = RATE_TOL, window: int = RATE_WINDOW) -> int:
    """First step after which the entropy change rate, smoothed over ``window`` steps, stays
    below ``tol``.

    Args:
        h: (S+1,) entropy after steps 0..S.
    """
    rate = np.abs(h[window:] - h[:-window]) / window  # rate[i]: mean |dH/dt| over i..i+window
    above = np.nonzero(rate >= tol)[0]
    return 0 if len(above) == 0 else int(min(above[-1] + window, len(h) - 1))


def settle_step(h: np.ndarray, tol: float) -> int:
    """First step after which ``h`` stays within ``tol`` x its total change of its final value."""
    total = abs(h[-1] - h[0])
    away = np.nonzero(np.abs(h - h[-1]) > tol * total)[0]
    return 0 if len(away) == 0 else int(away[-1] + 1)


def mixture_recorder(
    classes: SequenceClasses, x_eval: torch.Tensor, n_eval: torch.Tensor
) -> tuple[list[torch.Tensor], Callable[[nn.Module], dict]]:
    """An ``eval_fn`` that appends the class-averaged mixture ``c_n`` (N, M) to a list."""
    mixtures: list[torch.Tensor] = []

    def record(model: nn.Module) -> dict:
        mixture = predict(model, x_eval, len(x_eval), fn=lambda m, x: m(x).mixture)  # (B, M)
        mixtures.append(torch.stack([mixture[n_eval == n].mean(0) for n in range(classes.n_next)]))
        return {}

    return mixtures, record


def summarize(
    mixtures: torch.Tensor, Z: torch.Tensor, classes: SequenceClasses, s: Settings
) -> dict[str, float]:
    """Scan/snap numbers of one trajectory of mixtures (S+1, N, M) and final logits Z (M, M)."""
    c = mixtures
    common = c[:, :, classes.common].sum(-1).mean(-1)  # (S+1,)
    distinct = torch.stack([c[:, n, classes.distinct[n]] for n in range(classes.n_next)], 1)
    h_distinct = entropy(distinct).mean(-1).numpy()  # (S+1,) mean over classes
    rhos = [
        spearman(Z[classes.query[n], classes.distinct[n]].numpy(),
                 classes.probs[n, classes.distinct[n]].numpy())
        for n in range(classes.n_next)
    ]  # fmt: skip
    half = (len(h_distinct) - 1) // 2
    return {
        "common_share_start": float(common[0]),
        "common_share_end": float(common[-1]),
        "common_share_fraction": float(common[-1] / common[0]),
        "spearman_z_vs_p": float(np.mean(rhos)),
        "max_token_share": float(c.amax(dim=(1, 2)).max()),
        "entropy_distinct_start": float(h_distinct[0]),
        "entropy_distinct_end": float(h_distinct[-1]),
        "entropy_full_end": float(entropy(c).mean(-1)[-1]),
        "entropy_change_late": float(abs(h_distinct[-1] - h_distinct[half])),
        "entropy_change_total": float(abs(h_distinct[-1] - h_distinct[0])),
        "snap_step": float(snap_step(h_distinct, s.rate_tol, s.rate_window)),
        "snap_step_rel90": float(settle_step(h_distinct, 0.1)),
    }


def _arm(ratio: float) -> str:
    return f"r{ratio:g}"


def train_ratios(lab: Lab, s: Settings, classes: SequenceClasses) -> dict[str, torch.Tensor]:
    """One arm per ratio, from ``Y = Z = 0``, on the same data stream; record ``c_n`` after
    every step and the scan/snap numbers (``<number>/r<ratio>``). Returns the mixtures
    (S+1, N, M) of each arm."""
    x_eval, _, n_eval = classes.balanced(s.per_class_eval, s.T, lab.rng("test-data"))

    def data(batch_size: int, generator: torch.Generator):
        x, y, _ = classes.sample(batch_size, s.T, generator)
        return x, y

    trajectories, zero_start = {}, []
    for ratio in s.ratios:
        arm = _arm(ratio)
        model = lab.build(arm, lambda: ScanSnapYZ(ScanSnapConfig(M=classes.M)))
        zero_start.append(all(bool((p == 0).all()) for p in model.parameters()))
        mixtures, record = mixture_recorder(classes, x_eval, n_eval)
        record(model)  # step 0
        groups = model.param_groups(lr_Z=s.recipe.lr, lr_Y=ratio * s.recipe.lr)
        fit = lab.fit(
            arm, model, next_token_loss, data, s.recipe, eval_fn=record, params=groups,
            stream="train-data",
        )  # fmt: skip
        trajectories[arm] = torch.stack(mixtures)  # (S+1, N, M)
        stats = summarize(trajectories[arm], model.Z.detach().cpu(), classes, s)
        for key, value in {**stats, "loss_end": fit.final_loss}.items():
            lab.measure(f"{key}/{arm}", value)
    lab.invariant("Y = Z = 0 at the start of every arm (uniform attention)", all(zero_start),
                  "zero_init=True")  # fmt: skip
    return trajectories


def run(lab: Lab) -> None:
    """Train at every learning-rate ratio, measure scan and snap, and check the claim."""
    s: Settings = lab.settings
    classes = SequenceClasses(LAYOUTS[s.layout])
    trajectories = train_ratios(lab, s, classes)
    arms = list(trajectories)

    def values(key: str) -> np.ndarray:  # one value per arm, in ratio order (nan propagates)
        return np.array([lab.value(key, arm) for arm in arms])

    def per_arm(key: str, spec: str = ".3f") -> str:
        return ", ".join(f"{arm}: {lab.value(key, arm):{spec}}" for arm in arms)

    # 1. scan: attention leaves the common tokens and ranks the distinct ones like P(l|n)
    lab.bound(
        f"scan: attention on common tokens falls to <= {s.max_common_fraction:g}x its "
        "uniform start (every ratio)",
        "largest end/start fraction",
        values("common_share_fraction").max(),
        at_most=s.max_common_fraction,
        note=f"start {per_arm('common_share_start')}; end {per_arm('common_share_end')}",
    )
    lab.bound(
        "scan: distinct-token attention logits z_ml ordered like P(l|n), Spearman >= "
        f"{s.min_spearman:g} (every ratio)",
        "smallest Spearman",
        values("spearman_z_vs_p").min(),
        at_least=s.min_spearman,
        note=per_arm("spearman_z_vs_p", ".2f"),
    )
    # 2. snap: the mixture freezes early, far from winner-take-all
    lab.bound(
        f"snap: no winner-take-all, largest token share < {s.max_token_share:g} "
        "throughout (every ratio)",
        "largest token share",
        values("max_token_share").max(),
        at_most=s.max_token_share,
        note=per_arm("max_token_share"),
    )
    lab.bound(
        f"snap: entropy plateaus (rate < {s.rate_tol:g}/step) in the first "
        f"{s.snap_within:.0%} of training (every ratio)",
        "latest snap step",
        values("snap_step").max(),
        at_most=s.snap_within * s.recipe.steps,
        note=per_arm("snap_step", ".0f"),
    )
    late = values("entropy_change_late") / values("entropy_change_total")
    lab.bound(
        f"snap: entropy change over the second half <= {s.max_late_change:.0%} of the "
        "total (every ratio)",
        "largest late/total change",
        late.max(),
        at_most=s.max_late_change,
        note=f"late {per_arm('entropy_change_late', '.4f')}; "
        f"total {per_arm('entropy_change_total', '.4f')}",
    )
    # 3. learning-rate ratio, within the theory's regime eta_Y > eta_Z (assumption (c)): a
    # faster decoder leaves a less sparse mixture and snaps earlier. Ratio 1 is measured and
    # plotted, not checked: it breaks assumption (c), and in the official sweep its entropy lies
    # above ratio 2's in 12 of 16 settings.
    above = [arm for arm, ratio in zip(arms, s.ratios) if ratio > 1]
    lo, hi = above[0], above[-1]
    lab.compare(
        f"ratio: with eta_Y > eta_Z, the largest ratio ({hi}) freezes a higher-entropy "
        f"mixture than the smallest ({lo})",
        "entropy_distinct_end",
        hi,
        lo,
        margin=s.min_entropy_gain,
        unit=" nats",
        note="H " + per_arm("entropy_distinct_end") + " (ratio 1 not checked)",
        strict=True,
    )
    lab.compare(
        f"ratio: with eta_Y > eta_Z, the largest ratio ({hi}) snaps earlier than the "
        f"smallest ({lo})",
        "snap_step",
        hi,
        lo,
        margin=s.snap_earlier_by,
        higher_is_better=False,
        unit=" steps",
        note="snap step " + per_arm("snap_step", ".0f") + "; 90% settled at "
        + per_arm("snap_step_rel90", ".0f"),
    )  # fmt: skip
    lab.figure("scan_attention", scan_figure(trajectories, classes, s))
    lab.figure("snap_entropy", snap_figure(trajectories, classes, s, lab))


# ----------------------------------------------------------------------------- figures
def scan_figure(trajectories: dict[str, torch.Tensor], classes: SequenceClasses, s: Settings):
    """Every token's share of class 0 at the largest ratio; the common-token total per ratio."""
    import matplotlib

    ref_arm = _arm(s.ratios[-1])  # the largest ratio: the paper's regime (decoder faster)
    ref = trajectories[ref_arm]
    steps = np.arange(ref.shape[0])
    fig = new_figure((11, 4))
    axes = fig.subplots(1, 2)
    n = 0
    blues = matplotlib.colormaps["Blues"]
    pd = classes.probs[n][classes.distinct[n]]
    for j, token in enumerate(classes.distinct[n].tolist()):
        shade = 0.35 + 0.65 * float((pd[j] - pd.min()) / (pd.max() - pd.min() + 1e-12))
        axes[0].plot(steps, ref[:, n, token], color=blues(shade), lw=1.2)
    for token in classes.common.tolist():
        axes[0].plot(steps, ref[:, n, token], color="tab:red", lw=1.2, ls="--")
    axes[0].plot([], [], color=blues(0.9), label="distinct tokens (darker: larger P(l|n))")
    axes[0].plot([], [], color="tab:red", ls="--", label="common tokens")
    axes[0].set(xlabel="SGD step", ylabel="attention share c_n[l]",
                title=f"Scan: class n=0, eta_Y/eta_Z={s.ratios[-1]:g}")  # fmt: skip
    axes[0].legend(fontsize=8)
    for ratio in s.ratios:
        mixtures = trajectories[_arm(ratio)]
        common = mixtures[:, :, classes.common].sum(-1).mean(-1)
        axes[1].plot(steps, common, label=f"eta_Y/eta_Z={ratio:g}")
    axes[1].set(xlabel="SGD step", ylabel="total attention on common tokens", title="Common tokens")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def snap_figure(
    trajectories: dict[str, torch.Tensor], classes: SequenceClasses, s: Settings, lab: Lab
):
    """Entropy over the distinct tokens during training (dotted: snap step); final entropy."""
    fig = new_figure((11, 4))
    axes = fig.subplots(1, 2)
    for ratio in s.ratios:
        arm = _arm(ratio)
        mixtures = trajectories[arm]
        d = torch.stack([mixtures[:, k, classes.distinct[k]] for k in range(classes.n_next)], 1)
        h = entropy(d).mean(-1).numpy()
        (line,) = axes[0].plot(np.arange(len(h)), h, label=f"eta_Y/eta_Z={ratio:g}")
        axes[0].axvline(lab.value("snap_step", arm), color=line.get_color(), ls=":", lw=1)
    axes[0].set(xlabel="SGD step", ylabel="entropy of c_n over distinct tokens (nats)",
                title="Snap: entropy plateaus (dotted: snap step)")  # fmt: skip
    axes[0].legend(fontsize=8)
    h_end = [lab.value("entropy_distinct_end", _arm(r)) for r in s.ratios]
    axes[1].plot(s.ratios, h_end, "o-")
    axes[1].set_xscale("log")
    axes[1].set(xlabel="eta_Y / eta_Z", ylabel="final entropy (nats)", title="Final entropy")
    fig.tight_layout()
    return fig
