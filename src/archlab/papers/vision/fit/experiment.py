"""Miniature reproduction of FIT: long-range accuracy against local and full attention, and cost.

1. Long-range task ("key/value pair"): a sequence of L tokens in G groups of n. Token 0 is a
   reader token (every model reads its prediction from it); a *key* token with symbol a sits in
   group i and a *value* token with symbol b in group j, with 1 <= i != j < G random, among
   filler tokens (``n_fillers`` random ids). The label is the pair (a, b) (S*S classes); "do key
   and value match" is read off the predicted pair. Nothing the reader's own group holds tells
   the answer, so a local-only transformer is at chance by construction (an invariant); full
   attention and FIT (read -> global -> write) can solve it. The quick budget's variant (a
   longer sequence and more symbols than the first miniature, on which every model scored
   1.000) was chosen on validation so that it is not solved by every model within the budget.
   The three models share width, heads, token layers, init stream, data stream and recipe
   (``CLASSIFY`` with weight decay 0.01, fresh batches): FIT ``(1)1(1)1(1)`` (quick budget),
   local-only ``(3)`` on the same groups, full attention ``(3)`` with one group. Each arm is
   tuned with ``lab.tune`` over the same learning-rate grid, picked on a validation set
   (``val-data`` stream); the test set (``test-data`` stream) is evaluated once, after every
   choice. Full attention, the baseline of the accuracy comparison, passes a health check
   (beats the majority pair by a margin, its loss curve has flattened) first.
2. Cost: forward time of FIT ``(2)2(2)`` and of full attention ``(4)`` at L in {1024, ..., 8192}
   (untrained, width 64, 4 token layers each; FIT with n = 64 and m = 4, so G = L / 64), timed
   alternately in one process with ``archlab.lab.profiling.compare_latency``; the log-log slope
   of time over L; and the activation memory a training step keeps for the backward pass,
   measured by summing the distinct storages that autograd saves during a forward
   (``saved_tensors_hooks``; parameters excluded), with the attention weights materialised
   (SDPA's math backend, as the paper's reference implementation does) and, as a second
   number, with the fused kernel. The saved bytes follow from the tensor shapes alone (the same
   in every run), so the memory ratio is an invariant; the timings are claim checks.

The paper's settings are high-resolution images (up to 6400 x 6400, 160K tokens) on TPUs; here
the task is a synthetic 128-token sequence and the cost sweep stops at 8192 tokens on a CPU.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.lab import Lab, Recipe, predict
from archlab.lab.plots import new_figure
from archlab.lab.profiling import compare_latency
from archlab.lab.tasks import CLASSIFY
from archlab.papers.vision.fit.model import FIT, FITConfig, parse_layout

N_FILLERS = 1  # default number of filler token ids (1..n_fillers); 0 is the reader token
D_COST_INPUT = 16  # input width of the untrained cost models


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    recipe: Recipe
    lrs: tuple[float, ...]  # the learning-rate grid of every arm (picked on validation)
    seq_len: int
    n_groups: int
    n_latents: int
    d_model: int
    n_heads: int
    n_symbols: int
    n_fillers: int
    n_val: int
    n_test: int
    fit_layout: str
    timing_lengths: tuple[int, ...]
    timing_repeats: int
    memory_lengths: tuple[int, ...]
    check_length: int  # L at which time and memory ratios are checked
    timing_group_size: int
    timing_latents: int
    d_timing: int
    full_margin: float  # FIT may trail full attention by this much accuracy
    local_margin: float  # FIT must beat local-only attention by this much accuracy
    chance_slack: float  # local-only accuracy <= chance + slack (invariant of the task)
    health_margin: float  # full attention must beat chance by this much accuracy
    max_flattening: float  # full attention's loss fell by at most this over the last quarter
    time_ratio: float  # FIT forward time at check_length <= ratio x full attention's
    memory_ratio: float  # FIT activation memory at check_length <= ratio x full's (invariant)
    max_fit_slope: float  # log-log slope of FIT's forward time over L
    min_full_slope: float  # log-log slope of full attention's, over the last pair of lengths


BUDGETS = {
    "smoke": Settings(
        recipe=CLASSIFY.recipe(steps=2, batch_size=8, lr=3e-3, weight_decay=0.01,
                               warmup_steps=1),
        lrs=(3e-3,), seq_len=32, n_groups=4, n_latents=2, d_model=16, n_heads=2, n_symbols=2,
        n_fillers=1, n_val=100, n_test=100, fit_layout="(1)1(1)", timing_lengths=(128, 256),
        timing_repeats=1, memory_lengths=(128, 256), check_length=256, timing_group_size=16,
        timing_latents=2, d_timing=16, full_margin=0.03, local_margin=0.25, chance_slack=0.10,
        health_margin=0.0, max_flattening=1.0, time_ratio=0.5, memory_ratio=0.5,
        max_fit_slope=1.5, min_full_slope=1.7,
    ),
    "quick": Settings(
        recipe=CLASSIFY.recipe(steps=200, batch_size=32, lr=3e-3, weight_decay=0.01,
                               warmup_steps=10, curve_points=10),
        lrs=(1e-3, 3e-3), seq_len=256, n_groups=16, n_latents=2, d_model=32, n_heads=2,
        n_symbols=4, n_fillers=1, n_val=500, n_test=500, fit_layout="(1)1(1)1(1)",
        timing_lengths=(1024, 2048, 4096, 8192), timing_repeats=3,
        memory_lengths=(1024, 2048, 4096), check_length=4096, timing_group_size=64,
        timing_latents=4, d_timing=64, full_margin=0.03, local_margin=0.25, chance_slack=0.10,
        health_margin=0.25, max_flattening=0.2, time_ratio=0.5, memory_ratio=0.5,
        max_fit_slope=1.5, min_full_slope=1.7,
    ),
}  # fmt: skip


def vocab_size(n_symbols: int, n_fillers: int = N_FILLERS) -> int:
    """Reader token, fillers, S key tokens and S value tokens."""
    return 1 + n_fillers + 2 * n_symbols


def pair_task(
    batch_size: int,
    generator: torch.Generator,
    seq_len: int,
    n_groups: int,
    n_symbols: int,
    n_fillers: int = N_FILLERS,
) -> tuple[Tensor, Tensor]:
    """A batch of the key/value pair task.

    Returns:
        one-hot tokens (B, L, V) float32 and labels (B,) = a * S + b, where a is the key's
        symbol (group i) and b the value's (group j); 1 <= i != j < G, so neither lies in the
        reader's group 0.
    """
    if n_groups < 3:
        raise ValueError(f"the pair task needs n_groups >= 3 (reader + two others); got {n_groups}")
    B, L, G, S = batch_size, seq_len, n_groups, n_symbols
    n = L // G
    g = generator
    tokens = torch.randint(1, 1 + n_fillers, (B, L), generator=g)
    tokens[:, 0] = 0  # the reader token
    gi = torch.randint(1, G, (B,), generator=g)
    gj = 1 + (gi - 1 + torch.randint(1, G - 1, (B,), generator=g)) % (G - 1)  # != gi, >= 1
    pi = gi * n + torch.randint(0, n, (B,), generator=g)
    pj = gj * n + torch.randint(0, n, (B,), generator=g)
    a = torch.randint(0, S, (B,), generator=g)
    b = torch.randint(0, S, (B,), generator=g)
    rows = torch.arange(B)
    tokens[rows, pi] = 1 + n_fillers + a
    tokens[rows, pj] = 1 + n_fillers + S + b
    return F.one_hot(tokens, vocab_size(S, n_fillers)).float(), a * S + b


def task_models(s: Settings) -> dict[str, Callable[[], FIT]]:
    """Constructors of FIT, local-only and full-attention models of the same width and token
    layers."""
    common = dict(
        n_latents=s.n_latents, d_input=vocab_size(s.n_symbols, s.n_fillers), d_model=s.d_model,
        d_latent=s.d_model, n_heads=s.n_heads, n_latent_heads=s.n_heads,
        n_classes=s.n_symbols**2, pool="first",
    )  # fmt: skip
    n = s.seq_len // s.n_groups
    plain = f"({sum(a for a, _ in parse_layout(s.fit_layout))})"  # as many token layers as FIT's
    cfgs = {
        "fit": FITConfig(layout=s.fit_layout, n_groups=s.n_groups, group_size=n, **common),
        "local": FITConfig(layout=plain, n_groups=s.n_groups, group_size=n, **common),
        "full": FITConfig(layout=plain, n_groups=1, group_size=s.seq_len, **common),
    }
    return {arm: partial(FIT, cfg) for arm, cfg in cfgs.items()}


def cost_models(L: int, s: Settings) -> dict[str, Callable[[], FIT]]:
    """Constructors of the untrained FIT (n fixed, G = L / n) and full-attention models of the
    cost sweep."""
    common = dict(
        n_latents=s.timing_latents, d_input=D_COST_INPUT, d_model=s.d_timing,
        d_latent=s.d_timing, n_heads=4, n_latent_heads=4, n_classes=2, pool="first",
    )  # fmt: skip
    n = s.timing_group_size
    return {
        "fit": partial(FIT, FITConfig(layout="(2)2(2)", n_groups=L // n, group_size=n, **common)),
        "full": partial(FIT, FITConfig(layout="(4)", n_groups=1, group_size=L, **common)),
    }


def saved_activation_bytes(model: nn.Module, x: Tensor, materialize: bool) -> int:
    """Bytes of the distinct storages autograd saves for backward in one forward of ``model``.

    Parameters (and views of them) are excluded; each storage counts once.

    Args:
        model: the model (its mode is left as is).
        x: one input batch.
        materialize: run attention with SDPA's math backend (the (B, nh, T, S) weights are
            materialised and saved) instead of the default fused kernel.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    backend = sdpa_kernel([SDPBackend.MATH]) if materialize else contextlib.nullcontext()
    with backend, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(seen.values())


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) over log(x)."""
    lx = [math.log(v) for v in xs]
    ly = [math.log(v) for v in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def measure_cost(lab: Lab, s: Settings, L: int) -> None:
    """Forward time (``time_s/<arm>_L<L>``) and activation memory (``memory_mib/<arm>[_fused]
    _L<L>``) of the untrained FIT and full-attention models at sequence length ``L``."""
    models = {
        arm: lab.build(f"cost/{arm}/L{L}", make, stream="cost-init").eval()
        for arm, make in cost_models(L, s).items()
    }
    x = torch.randn(1, L, D_COST_INPUT, generator=lab.rng(f"cost-input/L{L}"))
    if L in s.timing_lengths:
        with torch.no_grad():
            c = compare_latency(partial(models["fit"], x), partial(models["full"], x),
                                repeats=s.timing_repeats, warmup=0)  # fmt: skip
        lab.measure(f"time_s/fit_L{L}", c.a_s)
        lab.measure(f"time_s/full_L{L}", c.b_s)
    if L in s.memory_lengths:
        for arm, model in models.items():
            for suffix, materialize in (("", True), ("_fused", False)):
                mib = saved_activation_bytes(model, x, materialize) / 2**20
                lab.measure(f"memory_mib/{arm}{suffix}_L{L}", mib)


def run(lab: Lab) -> None:
    """Train FIT / local-only / full attention on the pair task and measure cost; check claims."""
    s: Settings = lab.settings
    task = partial(pair_task, seq_len=s.seq_len, n_groups=s.n_groups, n_symbols=s.n_symbols,
                   n_fillers=s.n_fillers)  # fmt: skip
    x_val, y_val = task(s.n_val, lab.rng("val-data"))
    x_test, y_test = task(s.n_test, lab.rng("test-data"))
    S = s.n_symbols

    def predict_pairs(model: nn.Module, x: Tensor) -> Tensor:
        return predict(model, x, 100, fn=lambda m, b: m(b).argmax(-1))

    def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
        return float((predict_pairs(model, x) == y).float().mean())

    models = {
        arm: lab.tune(arm, make, CLASSIFY.loss, task, s.recipe, lrs=s.lrs,
                      score=lambda m: accuracy(m, x_val, y_val))
        for arm, make in task_models(s).items()
    }  # fmt: skip
    for arm, model in models.items():  # the test set, once, after every choice
        pred = predict_pairs(model, x_test)
        lab.measure(f"acc/{arm}", (pred == y_test).float().mean())
        match_pred, match_true = (pred // S) == (pred % S), (y_test // S) == (y_test % S)
        lab.measure(f"match_acc/{arm}", (match_pred == match_true).float().mean())
    # The trivial predictor, measured: the most frequent pair of a training-sized draw.
    _, y_draw = task(s.n_val, lab.rng("majority-data"))
    majority = int(torch.bincount(y_draw, minlength=S * S).argmax())
    lab.measure("acc/majority", (y_test == majority).float().mean())
    for L in sorted(set(s.timing_lengths) | set(s.memory_lengths)):
        measure_cost(lab, s, L)

    chance = lab.measure("acc/chance", 1.0 / S**2)
    lengths = list(s.timing_lengths)
    times = {arm: [lab.value(f"time_s/{arm}_L{L}") for L in lengths] for arm in ("fit", "full")}
    slope_fit = lab.measure("slope/fit", loglog_slope(lengths, times["fit"]))
    lab.measure("slope/full", loglog_slope(lengths, times["full"]))
    slope_last = lab.measure("slope/full_last_pair", loglog_slope(lengths[-2:], times["full"][-2:]))
    Lc, v = s.check_length, lab.value
    time_ratio = lab.measure("ratio/time_L_check", v(f"time_s/fit_L{Lc}") / v(f"time_s/full_L{Lc}"))
    mem = {k: v(f"memory_mib/{k}_L{Lc}") for k in ("fit", "full", "fit_fused", "full_fused")}
    mem_ratio = lab.measure("ratio/memory_L_check", mem["fit"] / mem["full"])
    lab.measure("ratio/memory_fused_L_check", mem["fit_fused"] / mem["full_fused"])

    lab.health(
        "full", "acc", ("majority pair", v("acc/majority")), margin=s.health_margin,
        max_flattening=s.max_flattening,
    )  # fmt: skip
    lr_note = ", ".join(f"{a} {v(f'lr/{a}'):g}" for a in ("fit", "full", "local"))
    lab.compare(
        f"FIT matches full attention on the L={s.seq_len}, S={S} pair task (>= full - "
        f"{s.full_margin:.0%})",
        "acc", "fit", "full", margin=-s.full_margin,
        note=f"{s.recipe.steps} steps each; lr picked on validation: {lr_note}",
    )  # fmt: skip
    lab.compare(
        f"FIT beats local-only attention by >= {s.local_margin:.0%}",
        "acc", "fit", "local", margin=s.local_margin,
        note=f"G={s.n_groups}, n={s.seq_len // s.n_groups}",
    )  # fmt: skip
    lab.invariant(
        f"local-only attention stays near chance (<= chance + {s.chance_slack:.0%}): the "
        "reader's group holds neither key nor value",
        v("acc/local") <= chance + s.chance_slack,
        f"local-only {v('acc/local'):.3f}, chance {chance:.3f}",
    )
    lab.bound(
        f"FIT forward time at L={Lc} <= {s.time_ratio} x full attention's",
        "time ratio FIT / full", time_ratio, at_most=s.time_ratio,
        note=f"{v(f'time_s/fit_L{Lc}') * 1e3:.1f} ms vs {v(f'time_s/full_L{Lc}') * 1e3:.1f} ms; "
        f"alternating timing, medians of {s.timing_repeats}",
    )  # fmt: skip
    lab.invariant(
        f"FIT activation memory at L={Lc} <= {s.memory_ratio} x full attention's (attention "
        "weights materialised; fixed by the tensor shapes)",
        mem_ratio <= s.memory_ratio,
        f"{mem['fit']:.1f} MiB vs {mem['full']:.1f} MiB (ratio {mem_ratio:.3f}); with the fused "
        f"kernel: {mem['fit_fused']:.1f} vs {mem['full_fused']:.1f} MiB",
    )
    lab.check(
        f"time scaling exponent: FIT clearly below 2 (<= {s.max_fit_slope}), full attention near "
        f"2 at large L (>= {s.min_full_slope})",
        slope_fit <= s.max_fit_slope and slope_last >= s.min_full_slope,
        f"log-log slope over L={lengths}: FIT {slope_fit:.2f}, full {v('slope/full'):.2f} "
        f"(full, last pair: {slope_last:.2f})",
    )
    lab.figure("time_vs_length", plot_cost(lab, s))
    lab.figure("accuracy", plot_accuracy(lab, s))


def plot_cost(lab: Lab, s: Settings):
    """Forward time and activation memory against sequence length (log-log)."""
    fig = new_figure(figsize=(10, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    lengths, mlengths = list(s.timing_lengths), list(s.memory_lengths)
    for name, color, label in (("fit", "tab:blue", "FIT"), ("full", "tab:orange", "full")):
        times = [lab.value(f"time_s/{name}_L{L}") for L in lengths]
        slope = loglog_slope(lengths, times)
        ax1.loglog(lengths, times, "o-", color=color, label=f"{label} (slope {slope:.2f})")
        for suffix, style, extra in (("", "o-", ""), ("_fused", "x--", ", fused attention")):
            memory = [lab.value(f"memory_mib/{name}{suffix}_L{L}") for L in mlengths]
            ax2.loglog(mlengths, memory, style, color=color, label=f"{label}{extra}")
    t0 = lab.value(f"time_s/full_L{lengths[0]}")
    ax1.loglog(lengths, [t0 * (v / lengths[0]) ** 2 for v in lengths], ":", color="gray",
               label="slope 2")  # fmt: skip
    ax1.set_xlabel("sequence length L")
    ax1.set_ylabel("forward time (s)")
    ax1.set_title("forward time, batch 1 (CPU)")
    ax1.legend()
    ax2.set_xlabel("sequence length L")
    ax2.set_ylabel("activations saved for backward (MiB)")
    ax2.set_title("activation memory")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_accuracy(lab: Lab, s: Settings):
    """Test accuracy of the three trained models against chance."""
    fig = new_figure(figsize=(5, 3.8))
    ax = fig.subplots()
    names = ["full", "fit", "local"]
    labels = ["full attention", f"FIT {s.fit_layout}", "local-only"]
    ax.bar(range(3), [lab.value("acc", n) for n in names],
           color=["tab:orange", "tab:blue", "tab:gray"])  # fmt: skip
    ax.axhline(lab.value("acc/chance"), ls="--", color="k", label="chance")
    ax.set_xticks(range(3), labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test accuracy (key/value pair)")
    ax.set_title(f"long-range pair task, L={s.seq_len}, G={s.n_groups}")
    ax.legend()
    fig.tight_layout()
    return fig
