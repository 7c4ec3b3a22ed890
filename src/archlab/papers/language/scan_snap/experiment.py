"""Miniature reproduction of Scan and Snap: attention dynamics of a 1-layer transformer.

The reparametrised model (``ScanSnapYZ``, ``Y = Z = 0`` at the start, so the attention is
uniform) is trained by SGD with momentum on the synthetic sequence classes of ``data.py``
(4 next tokens sharing 2 query tokens, 10 distinct tokens per class with increasing
``P(l|n)``, 5 common tokens, ``T = 64``), once per decoder/attention learning-rate ratio
``eta_Y / eta_Z`` with the same ``eta_Z``, the same data stream and the same seed. After every
step the class-averaged token mixture ``c_n`` (attention mass on each token, measured on a fixed
held-out set of sequences of every class) is recorded. There is no baseline model in this
dynamics paper: each run is compared with its own uniform start, and the runs are compared with
each other across learning-rate ratios.

Measured (``run``):

1. Scan: the attention share of the common tokens falls (<= 0.5x its uniform start), and the
   learned per-occurrence attention logits ``z_{m,l}`` of the distinct tokens are ordered like
   ``P(l|n)`` (Spearman), so attention moves onto the distinct tokens and keeps the frequent ones.
2. Snap: the token mixture stops changing before winner-take-all: the largest token share stays
   below 0.9 and the entropy of ``c_n`` over the distinct tokens plateaus (the step after which
   its change rate stays below ``RATE_TOL``), well before the end of training.
3. Learning-rate ratio (the paper's snap analysis, Fig. 6): a larger ``eta_Y / eta_Z`` snaps
   earlier and freezes a less sparse mixture (higher entropy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from archlab.engine import TrainConfig, Trainer, seed_everything
from archlab.lab.result import Budget, Result
from archlab.papers.language.scan_snap.data import LAYOUTS, SequenceClasses
from archlab.papers.language.scan_snap.model import (
    SPEC,
    ScanSnapConfig,
    ScanSnapYZ,
    next_token_loss,
)

RATE_TOL = 1e-3  # nats/step: the entropy is "frozen" once its smoothed change rate stays below
RATE_WINDOW = 5  # steps over which the rate is smoothed


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    layout: str
    T: int
    steps: int
    batch_size: int
    per_class_eval: int
    lr_Z: float  # noqa: N815 - the paper's eta_Z
    ratios: tuple[float, ...]  # eta_Y / eta_Z


SMOKE = Sizes("tiny", 16, 4, 16, 8, 3.0, (1.0, 10.0))
QUICK = Sizes("base", 64, 200, 128, 256, 3.0, (1.0, 3.0, 10.0))
BUDGETS = {"smoke": SMOKE, "quick": QUICK}


@dataclass
class Trajectory:
    """One training run: the class-averaged token mixtures after every step.

    Attributes:
        ratio: ``eta_Y / eta_Z``.
        mixtures: (S+1, N, M) ``c_n`` at steps 0..S.
        Z: (M, M) final attention logits.
        loss: final training loss.
    """

    ratio: float
    mixtures: torch.Tensor
    Z: torch.Tensor
    loss: float


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


def train_ratio(classes: SequenceClasses, sizes: Sizes, ratio: float, seed: int) -> Trajectory:
    """Train ``ScanSnapYZ`` with ``eta_Y = ratio * eta_Z``; record ``c_n`` after every step."""
    cfg = ScanSnapConfig(M=classes.M, T=sizes.T)
    seed_everything(seed)
    model = ScanSnapYZ(cfg)
    x_eval, _, n_eval = classes.balanced(
        sizes.per_class_eval, sizes.T, torch.Generator().manual_seed(10_000 + seed)
    )
    mixtures = []

    def record(m: torch.nn.Module) -> dict[str, float]:
        mixture = m(x_eval).mixture  # (B, M)
        c = torch.stack([mixture[n_eval == n].mean(0) for n in range(classes.n_next)])  # (N, M)
        mixtures.append(c)
        return {}

    with torch.no_grad():
        record(model)

    def data(batch_size: int, generator: torch.Generator):
        x, y, _ = classes.sample(batch_size, sizes.T, generator)
        return x, y

    train_cfg = TrainConfig(
        steps=sizes.steps,
        batch_size=sizes.batch_size,
        lr=sizes.lr_Z,
        optimizer="sgd",
        momentum=0.9,
        grad_clip=None,
        eval_every=1,
        log_every=sizes.steps,
        seed=seed,
        device="cpu",
        progress=False,
    )
    params = model.param_groups(lr_Z=sizes.lr_Z, lr_Y=ratio * sizes.lr_Z)
    fit = Trainer(model, next_token_loss, train_cfg, eval_fn=record, params=params).fit(data)
    return Trajectory(
        ratio, torch.stack(mixtures), model.Z.detach().clone(), fit.history[-1]["loss"]
    )


def snap_step(h: np.ndarray) -> int:
    """First step after which the smoothed entropy change rate stays below ``RATE_TOL``.

    Args:
        h: (S+1,) entropy after steps 0..S.
    """
    w = RATE_WINDOW
    rate = np.abs(h[w:] - h[:-w]) / w  # rate[i]: mean |dH/dt| over steps i..i+w
    above = np.nonzero(rate >= RATE_TOL)[0]
    return 0 if len(above) == 0 else int(min(above[-1] + w, len(h) - 1))


def settle_step(h: np.ndarray, tol: float) -> int:
    """First step after which ``h`` stays within ``tol`` x its total change of its final value."""
    total = abs(h[-1] - h[0])
    away = np.nonzero(np.abs(h - h[-1]) > tol * total)[0]
    return 0 if len(away) == 0 else int(away[-1] + 1)


def summarize(traj: Trajectory, classes: SequenceClasses) -> dict[str, float]:
    """Scan/snap numbers of one trajectory."""
    c = traj.mixtures  # (S+1, N, M)
    common = c[:, :, classes.common].sum(-1).mean(-1)  # (S+1,)
    distinct = torch.stack([c[:, n, classes.distinct[n]] for n in range(classes.n_next)], 1)
    h_distinct = entropy(distinct).mean(-1).numpy()  # (S+1,) mean over classes
    h_full = entropy(c).mean(-1).numpy()
    rhos = []
    for n in range(classes.n_next):
        z = traj.Z[classes.query[n], classes.distinct[n]]
        rhos.append(spearman(z.numpy(), classes.probs[n, classes.distinct[n]].numpy()))
    s = len(h_distinct) - 1
    return {
        "common_share_start": float(common[0]),
        "common_share_end": float(common[-1]),
        "common_share_fraction": float(common[-1] / common[0]),
        "spearman_z_vs_p": float(np.mean(rhos)),
        "max_token_share": float(c.amax(dim=(1, 2)).max()),
        "entropy_distinct_start": float(h_distinct[0]),
        "entropy_distinct_end": float(h_distinct[-1]),
        "entropy_full_end": float(h_full[-1]),
        "entropy_change_late": float(abs(h_distinct[-1] - h_distinct[s // 2])),
        "entropy_change_total": float(abs(h_distinct[-1] - h_distinct[0])),
        "snap_step": float(snap_step(h_distinct)),
        "snap_step_rel90": float(settle_step(h_distinct, 0.1)),
        "loss_end": traj.loss,
    }


def _fmt(r: float) -> str:
    return f"{r:g}"


def _figures(trajs: list[Trajectory], classes: SequenceClasses, stats: list[dict]) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {}
    ref = trajs[-1]  # the largest ratio: the paper's regime (decoder faster than attention)
    steps = np.arange(ref.mixtures.shape[0])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    n = 0
    blues = plt.get_cmap("Blues")
    p = classes.probs[n]
    pd = p[classes.distinct[n]]
    for j, token in enumerate(classes.distinct[n].tolist()):
        shade = 0.35 + 0.65 * float((pd[j] - pd.min()) / (pd.max() - pd.min() + 1e-12))
        axes[0].plot(steps, ref.mixtures[:, n, token], color=blues(shade), lw=1.2)
    for token in classes.common.tolist():
        axes[0].plot(steps, ref.mixtures[:, n, token], color="tab:red", lw=1.2, ls="--")
    axes[0].plot([], [], color=blues(0.9), label="distinct tokens (darker: larger P(l|n))")
    axes[0].plot([], [], color="tab:red", ls="--", label="common tokens")
    axes[0].set(
        xlabel="SGD step",
        ylabel="attention share c_n[l]",
        title=f"Scan: class n=0, eta_Y/eta_Z={_fmt(ref.ratio)}",
    )
    axes[0].legend(fontsize=8)
    for t in trajs:
        common = t.mixtures[:, :, classes.common].sum(-1).mean(-1)
        axes[1].plot(steps, common, label=f"eta_Y/eta_Z={_fmt(t.ratio)}")
    axes[1].set(xlabel="SGD step", ylabel="total attention on common tokens", title="Common tokens")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    figures["scan_attention"] = fig

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for t, st in zip(trajs, stats):
        d = torch.stack([t.mixtures[:, k, classes.distinct[k]] for k in range(classes.n_next)], 1)
        h = entropy(d).mean(-1).numpy()
        (line,) = axes[0].plot(np.arange(len(h)), h, label=f"eta_Y/eta_Z={_fmt(t.ratio)}")
        axes[0].axvline(st["snap_step"], color=line.get_color(), ls=":", lw=1)
    axes[0].set(
        xlabel="SGD step",
        ylabel="entropy of c_n over distinct tokens (nats)",
        title="Snap: entropy plateaus (dotted: snap step)",
    )
    axes[0].legend(fontsize=8)
    ratios = [t.ratio for t in trajs]
    axes[1].plot(ratios, [s["entropy_distinct_end"] for s in stats], "o-")
    axes[1].set_xscale("log")
    axes[1].set(xlabel="eta_Y / eta_Z", ylabel="final entropy (nats)", title="Final entropy")
    fig.tight_layout()
    figures["snap_entropy"] = fig
    return figures


def run(budget: Budget, seed: int) -> Result:
    """Train at every learning-rate ratio, measure scan and snap, and check the claim."""
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(SPEC.slug, SPEC.title, SPEC.claim, budget.value, seed)
    classes = SequenceClasses(LAYOUTS[sizes.layout])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: intra-op threads only add overhead
    try:
        t0 = time.perf_counter()
        trajs = [train_ratio(classes, sizes, r, seed) for r in sizes.ratios]
        train_s = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    stats = [summarize(t, classes) for t in trajs]
    m = result.metrics
    for t, st in zip(trajs, stats):
        for k, v in st.items():
            m[f"r{_fmt(t.ratio)}/{k}"] = v
    m["time/train_s"] = train_s

    # ---------------------------------------------------------------- 1. scan
    frac = [s["common_share_fraction"] for s in stats]
    result.check(
        "scan: attention on common tokens falls to <= 0.5x its uniform start (every ratio)",
        all(f <= 0.5 for f in frac),
        ", ".join(
            f"r={_fmt(t.ratio)}: {s['common_share_start']:.3f} -> {s['common_share_end']:.3f}"
            for t, s in zip(trajs, stats)
        ),
    )
    rho = [s["spearman_z_vs_p"] for s in stats]
    result.check(
        "scan: distinct-token attention logits z_ml ordered like P(l|n), Spearman >= 0.6",
        all(r >= 0.6 for r in rho),
        ", ".join(f"r={_fmt(t.ratio)}: {x:.2f}" for t, x in zip(trajs, rho)),
    )
    # ---------------------------------------------------------------- 2. snap
    mx = [s["max_token_share"] for s in stats]
    result.check(
        "snap: no winner-take-all, largest token share < 0.9 throughout (every ratio)",
        all(x < 0.9 for x in mx),
        ", ".join(f"r={_fmt(t.ratio)}: {x:.3f}" for t, x in zip(trajs, mx)),
    )
    half = sizes.steps // 2
    frozen = [
        s["snap_step"] <= half and s["entropy_change_late"] <= 0.1 * s["entropy_change_total"]
        for s in stats
    ]
    result.check(
        f"snap: entropy plateaus (rate < {RATE_TOL:g}/step) in the first half, "
        "later change <= 10% of the total",
        all(frozen),
        ", ".join(
            f"r={_fmt(t.ratio)}: snap@{s['snap_step']:.0f}, late {s['entropy_change_late']:.4f} "
            f"of {s['entropy_change_total']:.4f}"
            for t, s in zip(trajs, stats)
        ),
    )
    # ---------------------------------------------------------------- 3. learning-rate ratio
    h_end = [s["entropy_distinct_end"] for s in stats]
    result.check(
        "ratio: larger eta_Y/eta_Z freezes a higher-entropy mixture (monotone)",
        all(b > a for a, b in zip(h_end, h_end[1:])),
        ", ".join(f"r={_fmt(t.ratio)}: H={h:.3f}" for t, h in zip(trajs, h_end)),
    )
    snaps = [s["snap_step"] for s in stats]
    result.check(
        "ratio: larger eta_Y/eta_Z snaps earlier (largest vs smallest ratio)",
        snaps[-1] < snaps[0],
        ", ".join(
            f"r={_fmt(t.ratio)}: step {s['snap_step']:.0f} (90% settled at "
            f"{s['snap_step_rel90']:.0f})"
            for t, s in zip(trajs, stats)
        ),
    )
    result.figures = _figures(trajs, classes, stats)
    return result
