"""Miniature reproduction of FIT: long-range accuracy against local and full attention, and cost.

1. Long-range task ("key/value pair"): a sequence of L tokens in G groups of n. Token 0 is a
   reader token (every model reads its prediction from it); a *key* token with symbol a sits in
   group i and a *value* token with symbol b in group j, with 1 <= i != j < G random, among
   blank filler tokens. The label is the pair (a, b) (S*S classes); "do key and value match"
   is read off the predicted pair. Nothing the reader's own group holds tells the answer, so a
   local-only transformer is at chance; full attention and FIT (read -> global -> write) can
   solve it. The three models share width, heads, token layers, data, steps and recipe:
   FIT ``(1)1(1)1(1)`` (quick budget), local-only ``(3)`` on the same groups, full attention
   ``(3)`` with one group.
2. Cost: forward time of FIT ``(2)2(2)`` and of full attention ``(4)`` at L in {1024, ..., 8192}
   (untrained, width 64, 4 token layers each; FIT with n = 64 and m = 4, so G = L / 64), timed
   alternately in one process with ``archlab.measure.compare_latency``; the log-log slope of
   time over L; and the activation memory a training step keeps for the backward pass,
   measured by summing the distinct storages that autograd saves during a forward
   (``saved_tensors_hooks``; parameters excluded), with the attention weights materialised
   (SDPA's math backend, as the paper's reference implementation does) and, as a second
   number, with the fused kernel.

The paper's settings are high-resolution images (up to 6400 x 6400, 160K tokens) on TPUs; here
the task is a synthetic 128-token sequence and the cost sweep stops at 8192 tokens on a CPU.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.engine import fit_steps
from archlab.lab.losses import classification_loss
from archlab.lab.profiling import compare_latency, one_thread
from archlab.lab.result import Budget, Result
from archlab.papers.vision.fit.model import FIT, SPEC, FITConfig, parse_layout

N_FILLERS = 1  # filler token ids 1..N_FILLERS; 0 is the reader token


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    seq_len: int
    n_groups: int
    n_latents: int
    d_model: int
    n_heads: int
    n_symbols: int
    steps: int
    batch_size: int
    lr: float
    n_test: int
    timing_lengths: tuple[int, ...]
    timing_repeats: int
    memory_lengths: tuple[int, ...]
    check_length: int  # L at which time and memory ratios are checked
    timing_group_size: int
    timing_latents: int
    d_timing: int
    fit_layout: str


SMOKE = Sizes(
    seq_len=32, n_groups=4, n_latents=2, d_model=16, n_heads=2, n_symbols=2, steps=2,
    batch_size=8, lr=3e-3, n_test=32, timing_lengths=(64, 128), timing_repeats=1,
    memory_lengths=(64, 128), check_length=128, timing_group_size=16, timing_latents=2,
    d_timing=16, fit_layout="(1)1(1)",
)  # fmt: skip
QUICK = Sizes(
    seq_len=128, n_groups=8, n_latents=2, d_model=32, n_heads=2, n_symbols=2, steps=100,
    batch_size=32, lr=3e-3, n_test=500, timing_lengths=(1024, 2048, 4096, 8192),
    timing_repeats=3, memory_lengths=(1024, 2048, 4096), check_length=4096,
    timing_group_size=64, timing_latents=4, d_timing=64, fit_layout="(1)1(1)1(1)",
)  # fmt: skip
BUDGETS = {"smoke": SMOKE, "quick": QUICK}


def vocab_size(n_symbols: int) -> int:
    """Reader token, fillers, S key tokens and S value tokens."""
    return 1 + N_FILLERS + 2 * n_symbols


def pair_task(
    batch_size: int, generator: torch.Generator, seq_len: int, n_groups: int, n_symbols: int
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
    tokens = torch.randint(1, 1 + N_FILLERS, (B, L), generator=g)
    tokens[:, 0] = 0  # the reader token
    gi = torch.randint(1, G, (B,), generator=g)
    gj = 1 + (gi - 1 + torch.randint(1, G - 1, (B,), generator=g)) % (G - 1)  # != gi, >= 1
    pi = gi * n + torch.randint(0, n, (B,), generator=g)
    pj = gj * n + torch.randint(0, n, (B,), generator=g)
    a = torch.randint(0, S, (B,), generator=g)
    b = torch.randint(0, S, (B,), generator=g)
    rows = torch.arange(B)
    tokens[rows, pi] = 1 + N_FILLERS + a
    tokens[rows, pj] = 1 + N_FILLERS + S + b
    return F.one_hot(tokens, vocab_size(S)).float(), a * S + b


def task_models(sizes: Sizes, seed: int) -> dict[str, FIT]:
    """FIT, local-only and full-attention models of the same width and token layers."""
    common = dict(
        n_latents=sizes.n_latents,
        d_input=vocab_size(sizes.n_symbols),
        d_model=sizes.d_model,
        d_latent=sizes.d_model,
        n_heads=sizes.n_heads,
        n_latent_heads=sizes.n_heads,
        n_classes=sizes.n_symbols**2,
        pool="first",
    )
    n = sizes.seq_len // sizes.n_groups
    n_token_layers = sum(a for a, _ in parse_layout(sizes.fit_layout))
    plain = f"({n_token_layers})"  # as many token layers as FIT has local layers
    cfgs = {
        "fit": FITConfig(layout=sizes.fit_layout, n_groups=sizes.n_groups, group_size=n, **common),
        "local": FITConfig(layout=plain, n_groups=sizes.n_groups, group_size=n, **common),
        "full": FITConfig(layout=plain, n_groups=1, group_size=sizes.seq_len, **common),
    }
    models = {}
    for name, cfg in cfgs.items():
        torch.manual_seed(seed)
        models[name] = FIT(cfg)
    return models


def cost_models(L: int, sizes: Sizes) -> dict[str, FIT]:
    """Untrained FIT (n fixed, G = L / n) and full-attention models for the cost sweep."""
    common = dict(
        n_latents=sizes.timing_latents,
        d_input=16,
        d_model=sizes.d_timing,
        d_latent=sizes.d_timing,
        n_heads=4,
        n_latent_heads=4,
        n_classes=2,
        pool="first",
    )
    n = sizes.timing_group_size
    torch.manual_seed(0)
    fit = FIT(FITConfig(layout="(2)2(2)", n_groups=L // n, group_size=n, **common))
    full = FIT(FITConfig(layout="(4)", n_groups=1, group_size=L, **common))
    return {"fit": fit.eval(), "full": full.eval()}


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


def train_and_test(model: FIT, sizes: Sizes, seed: int) -> tuple[float, float, float]:
    """Train on fresh batches; returns (pair accuracy, match accuracy, seconds) on a test set."""
    L, G, S = sizes.seq_len, sizes.n_groups, sizes.n_symbols

    def data(batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return pair_task(batch_size, generator, L, G, S)

    seconds = fit_steps(
        model,
        classification_loss,
        data,
        steps=sizes.steps,
        batch_size=sizes.batch_size,
        lr=sizes.lr,
        optimizer="adamw",
        weight_decay=0.01,
        schedule="cosine",
        warmup_steps=max(1, sizes.steps // 10),
        grad_clip=1.0,
        seed=seed,
    )
    x, y = pair_task(sizes.n_test, torch.Generator().manual_seed(10_000 + seed), L, G, S)
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 100]).argmax(-1) for i in range(0, len(x), 100)])
    pair_acc = (pred == y).float().mean().item()
    match_pred = (pred // S) == (pred % S)
    match_true = (y // S) == (y % S)
    return pair_acc, (match_pred == match_true).float().mean().item(), seconds


def run(budget: Budget, seed: int) -> Result:
    """Train FIT / local-only / full attention on the pair task and measure cost; check claims."""
    import matplotlib

    matplotlib.use("Agg")
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(
        slug=SPEC.slug, title=SPEC.title, claim=SPEC.claim, budget=budget.value, seed=seed
    )
    m = result.metrics
    with one_thread():
        accs: dict[str, float] = {}
        for name, model in task_models(sizes, seed).items():
            pair_acc, match_acc, secs = train_and_test(model, sizes, seed)
            accs[name] = pair_acc
            m[f"acc/{name}"] = pair_acc
            m[f"match_acc/{name}"] = match_acc
            m[f"params/{name}"] = sum(p.numel() for p in model.parameters())
            m[f"train_s/{name}"] = secs
        times: dict[str, list[float]] = {"fit": [], "full": []}
        for L in sizes.timing_lengths:
            models = cost_models(L, sizes)
            x = torch.randn(1, L, 16)
            with torch.no_grad():
                c = compare_latency(
                    partial(models["fit"], x),
                    partial(models["full"], x),
                    repeats=sizes.timing_repeats,
                    warmup=0,
                )
            times["fit"].append(c.a_s)
            times["full"].append(c.b_s)
            m[f"time_s/fit_L{L}"], m[f"time_s/full_L{L}"] = c.a_s, c.b_s
        memory: dict[str, list[float]] = {"fit": [], "full": [], "fit_fused": [], "full_fused": []}
        for L in sizes.memory_lengths:
            models = cost_models(L, sizes)
            x = torch.randn(1, L, 16)
            for name, model in models.items():
                for suffix, materialize in (("", True), ("_fused", False)):
                    mib = saved_activation_bytes(model, x, materialize) / 2**20
                    memory[name + suffix].append(mib)
                    m[f"memory_mib/{name}{suffix}_L{L}"] = mib

    chance = 1.0 / sizes.n_symbols**2
    m["acc/chance"] = chance
    lengths = list(sizes.timing_lengths)
    slope_fit = loglog_slope(lengths, times["fit"])
    slope_full = loglog_slope(lengths, times["full"])
    slope_full_last = loglog_slope(lengths[-2:], times["full"][-2:])
    m["slope/fit"], m["slope/full"], m["slope/full_last_pair"] = (
        slope_fit,
        slope_full,
        slope_full_last,
    )
    Lc = sizes.check_length
    time_ratio = m[f"time_s/fit_L{Lc}"] / m[f"time_s/full_L{Lc}"]
    mem_ratio = m[f"memory_mib/fit_L{Lc}"] / m[f"memory_mib/full_L{Lc}"]
    m["ratio/time_L_check"], m["ratio/memory_L_check"] = time_ratio, mem_ratio
    m["ratio/memory_fused_L_check"] = (
        m[f"memory_mib/fit_fused_L{Lc}"] / m[f"memory_mib/full_fused_L{Lc}"]
    )

    fit_acc, full_acc, local_acc = accs["fit"], accs["full"], accs["local"]
    L, G = sizes.seq_len, sizes.n_groups
    result.check(
        f"FIT matches full attention on the L={L} pair task (>= full - 3 points)",
        fit_acc >= full_acc - 0.03,
        f"FIT {fit_acc:.3f} vs full {full_acc:.3f} ({sizes.steps} steps each)",
    )
    result.check(
        "FIT beats local-only attention by >= 25 points",
        fit_acc >= local_acc + 0.25,
        f"FIT {fit_acc:.3f} vs local-only {local_acc:.3f} (G={G}, n={L // G})",
    )
    result.check(
        "local-only attention stays near chance (<= chance + 10 points)",
        local_acc <= chance + 0.10,
        f"local-only {local_acc:.3f}, chance {chance:.3f}",
    )
    result.check(
        f"FIT forward time at L={Lc} <= 0.5 x full attention's",
        time_ratio <= 0.5,
        f"{m[f'time_s/fit_L{Lc}'] * 1e3:.1f} ms vs {m[f'time_s/full_L{Lc}'] * 1e3:.1f} ms "
        f"(ratio {time_ratio:.3f}; alternating timing, medians of {sizes.timing_repeats})",
    )
    result.check(
        f"FIT activation memory at L={Lc} <= 0.5 x full attention's (attention weights "
        "materialised)",
        mem_ratio <= 0.5,
        f"{m[f'memory_mib/fit_L{Lc}']:.1f} MiB vs {m[f'memory_mib/full_L{Lc}']:.1f} MiB "
        f"(ratio {mem_ratio:.3f}); with the fused kernel: "
        f"{m[f'memory_mib/fit_fused_L{Lc}']:.1f} vs {m[f'memory_mib/full_fused_L{Lc}']:.1f} MiB",
    )
    result.check(
        "time scaling exponent: FIT clearly below 2 (<= 1.5), full attention near 2 at large L "
        "(>= 1.7)",
        slope_fit <= 1.5 and slope_full_last >= 1.7,
        f"log-log slope over L={lengths}: FIT {slope_fit:.2f}, full {slope_full:.2f} "
        f"(full, last pair: {slope_full_last:.2f})",
    )
    result.figures["time_vs_length"] = _plot_time(lengths, times, memory, sizes)
    result.figures["accuracy"] = _plot_accuracy(accs, chance, L, G)
    return result


def _plot_time(lengths: list[int], times: dict, memory: dict, sizes: Sizes):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, color, label in (("fit", "tab:blue", "FIT"), ("full", "tab:orange", "full")):
        slope = loglog_slope(lengths, times[name])
        ax1.loglog(lengths, times[name], "o-", color=color, label=f"{label} (slope {slope:.2f})")
        ax2.loglog(sizes.memory_lengths, memory[name], "o-", color=color, label=f"{label}")
        ax2.loglog(
            sizes.memory_lengths,
            memory[f"{name}_fused"],
            "x--",
            color=color,
            label=f"{label}, fused attention",
        )
    ref = [times["full"][0] * (v / lengths[0]) ** 2 for v in lengths]
    ax1.loglog(lengths, ref, ":", color="gray", label="slope 2")
    ax1.set_xlabel("sequence length L")
    ax1.set_ylabel("forward time (s)")
    ax1.set_title("forward time, batch 1 (CPU, 1 thread)")
    ax1.legend()
    ax2.set_xlabel("sequence length L")
    ax2.set_ylabel("activations saved for backward (MiB)")
    ax2.set_title("activation memory")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot_accuracy(accs: dict, chance: float, L: int, G: int):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.8))
    names = ["full", "fit", "local"]
    labels = ["full attention", "FIT (2)2(2)", "local-only"]
    colors = ["tab:orange", "tab:blue", "tab:gray"]
    ax.bar(range(3), [accs[n] for n in names], color=colors)
    ax.axhline(chance, ls="--", color="k", label="chance")
    ax.set_xticks(range(3), labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test accuracy (key/value pair)")
    ax.set_title(f"long-range pair task, L={L}, G={G}")
    ax.legend()
    fig.tight_layout()
    return fig
