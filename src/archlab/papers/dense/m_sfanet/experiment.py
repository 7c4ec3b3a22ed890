"""Miniature reproduction of M-SFANet / M-SegNet against SFANet on synthetic crowds.

1. Counting: SFANet (the baseline), M-SFANet (+ CAN + ASPP) and M-SegNet (max-unpooling) with
   the official layouts at 1/8 of the official widths, trained from scratch (no ImageNet VGG)
   with the same data, steps, recipe and seed on perspective crowd scenes
   (``archlab.data.crowds``: 64 x 64, 2-120 people, perspective-scaled Gaussian density maps)
   with SFANet's loss (density-map MSE + 0.1 x BCE on the attention map, whose target is the
   density > 1e-3 mask). Test: count MAE / RMSE on held-out scenes.
2. Speed: single-image inference latency of M-SegNet against M-SFANet (the trained networks,
   eval mode, 1 thread), timed alternately with ``archlab.measure.compare_latency``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.data.crowds import attention_mask, crowd_scenes, downsample_density
from archlab.engine import fit_steps, seed_everything
from archlab.lab.metrics import count_errors
from archlab.lab.profiling import compare_latency, one_thread
from archlab.lab.result import Budget, Result
from archlab.papers.dense.m_sfanet.model import SPEC, SFANet, _narrow

NAMES = {"sfanet": "SFANet", "m_sfanet": "M-SFANet", "m_segnet": "M-SegNet"}


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    width_divisor: int  # official widths / this
    size: int
    n_train: int
    n_test: int
    count_range: tuple[int, int]
    steps: int
    batch_size: int
    lr: float
    density_scale: float  # targets are density x this (the prediction is divided back)
    att_weight: float  # SFANet's 0.1
    latency_size: int
    latency_repeats: int
    mae_ratio: float  # M-SFANet MAE must be <= this x SFANet's
    segnet_speedup: float  # M-SFANet time / M-SegNet time must be >= this
    segnet_mae_cost: float  # M-SegNet MAE must be <= this x M-SFANet's


SMOKE = Sizes(
    width_divisor=16, size=32, n_train=16, n_test=8, count_range=(2, 40), steps=2, batch_size=4,
    lr=3e-3, density_scale=3.0, att_weight=0.1, latency_size=32, latency_repeats=2,
    mae_ratio=1.0, segnet_speedup=1.0, segnet_mae_cost=1.25,
)  # fmt: skip
QUICK = Sizes(
    width_divisor=8, size=64, n_train=800, n_test=200, count_range=(2, 120), steps=300,
    batch_size=16, lr=3e-3, density_scale=3.0, att_weight=0.1, latency_size=128,
    latency_repeats=15, mae_ratio=1.0, segnet_speedup=1.25, segnet_mae_cost=1.25,
)  # fmt: skip
BUDGETS = {"smoke": SMOKE, "quick": QUICK}


def make_data(sizes: Sizes, seed: int):
    """Train and test crowd scenes (different seeds)."""
    kw = dict(size=sizes.size, count_range=sizes.count_range)
    train = crowd_scenes(sizes.n_train, seed=10_000 + 2 * seed, **kw)
    test = crowd_scenes(sizes.n_test, seed=10_001 + 2 * seed, **kw)
    return train, test


def targets(density: Tensor) -> tuple[Tensor, Tensor]:
    """Full-resolution density (B, 1, H, W) -> stride-2 density and attention targets."""
    att = F.avg_pool2d(attention_mask(density), 2)  # (B, 1, H/2, W/2) soft mask
    return downsample_density(density, 2), att


def batches(train, sizes: Sizes):
    """A ``(batch_size, generator) -> batch`` stream: random scenes, random horizontal flips."""
    images, density = train.images, train.density

    def sample(batch_size: int, g: torch.Generator):
        idx = torch.randint(len(images), (batch_size,), generator=g)
        x, d = images[idx], density[idx]
        flip = torch.rand(batch_size, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        d = torch.where(flip[:, None, None, None], d.flip(-1), d)
        dens, att = targets(d)
        return x, dens * sizes.density_scale, att

    return sample


def loss_fn(model: nn.Module, batch, att_weight: float):
    """SFANet's loss: summed squared density error + att_weight x summed BCE, per image."""
    x, dens, att = batch
    pred, amap = model(x)
    b = x.shape[0]
    loss_den = (pred - dens).square().sum() / b
    loss_att = F.binary_cross_entropy(amap, att, reduction="sum") / b
    return loss_den + att_weight * loss_att, {"den": loss_den.item(), "att": loss_att.item()}


@torch.no_grad()
def predict_counts(model: nn.Module, images: Tensor, scale: float, batch: int = 50) -> Tensor:
    model.eval()
    out = [
        model(images[i : i + batch])[0].sum((1, 2, 3)) / scale for i in range(0, len(images), batch)
    ]
    return torch.cat(out)


def run(budget: Budget, seed: int) -> Result:
    """Train SFANet, M-SFANet and M-SegNet on the same crowds; compare MAE and latency."""
    import matplotlib

    matplotlib.use("Agg")
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(SPEC.slug, SPEC.title, SPEC.claim, budget.value, seed)
    m = result.metrics
    with one_thread():
        t0 = time.perf_counter()
        train, test = make_data(sizes, seed)
        m["data_s"] = time.perf_counter() - t0
        m["test_mean_count"] = float(test.counts.mean())
        data = batches(train, sizes)
        models, maes, preds = {}, {}, {}
        for arch in NAMES:
            seed_everything(seed)
            model = SFANet(_narrow(arch, sizes.width_divisor))
            m[f"params/{arch}"] = sum(p.numel() for p in model.parameters())
            m[f"train_s/{arch}"] = fit_steps(
                model,
                partial(loss_fn, att_weight=sizes.att_weight),
                data,
                steps=sizes.steps,
                batch_size=sizes.batch_size,
                lr=sizes.lr,
                seed=seed,
                weight_decay=1e-4,
                warmup_steps=max(1, sizes.steps // 20),
                grad_clip=10.0,
            )
            counts = predict_counts(model, test.images, sizes.density_scale)
            mae, rmse = count_errors(counts, test.counts)
            m[f"mae/{arch}"], m[f"rmse/{arch}"] = mae, rmse
            models[arch], maes[arch], preds[arch] = model, mae, counts

        x = torch.rand(1, 3, sizes.latency_size, sizes.latency_size)
        with torch.no_grad():
            c = compare_latency(
                partial(models["m_segnet"], x),
                partial(models["m_sfanet"], x),
                repeats=sizes.latency_repeats,
                warmup=1,
            )
        m["latency_ms/m_segnet"], m["latency_ms/m_sfanet"] = c.a_s * 1e3, c.b_s * 1e3
        m["speedup/m_segnet_over_m_sfanet"] = c.ratio
        fig = _plot(models, test, preds, sizes)

    mean_count = m["test_mean_count"]
    s, ms, sg = maes["sfanet"], maes["m_sfanet"], maes["m_segnet"]
    result.check(
        f"M-SFANet count MAE <= {sizes.mae_ratio:g} x SFANet's (same data, steps, recipe)",
        ms <= sizes.mae_ratio * s,
        f"M-SFANet {ms:.2f} vs SFANet {s:.2f} (ratio {ms / s:.3f}); mean test count "
        f"{mean_count:.1f}, {sizes.n_test} test scenes",
    )
    result.check(
        f"M-SegNet is >= {sizes.segnet_speedup:g}x faster than M-SFANet "
        f"(1 x 3 x {sizes.latency_size}^2, CPU)",
        c.ratio >= sizes.segnet_speedup,
        f"M-SFANet {c.b_s * 1e3:.1f} ms / M-SegNet {c.a_s * 1e3:.1f} ms = {c.ratio:.2f}x",
    )
    result.check(
        f"M-SegNet's MAE cost is small: <= {sizes.segnet_mae_cost:g} x M-SFANet's",
        sg <= sizes.segnet_mae_cost * ms,
        f"M-SegNet {sg:.2f} vs M-SFANet {ms:.2f} (ratio {sg / ms:.3f})",
    )
    result.figures["predictions"] = fig
    return result


@torch.no_grad()
def _plot(models: dict, test, preds: dict, sizes: Sizes, n: int = 6):
    """Inputs with their true counts, the true density, and each model's density and count."""
    import matplotlib.pyplot as plt

    order = torch.argsort(test.counts)
    idx = order[torch.linspace(0, len(order) - 1, n).round().long()]  # sparse to dense
    x = test.images[idx]
    rows = {"ground truth": downsample_density(test.density[idx], 2)}
    for arch, model in models.items():
        rows[NAMES[arch]] = model(x)[0] / sizes.density_scale
    fig, axes = plt.subplots(len(rows) + 1, n, figsize=(1.7 * n, 1.75 * (len(rows) + 1)))
    for c in range(n):
        i = int(idx[c])
        axes[0, c].imshow(x[c].permute(1, 2, 0).clamp(0, 1).numpy())
        axes[0, c].set_title(f"count {int(test.counts[i])}", fontsize=8)
        for r, (name, maps) in enumerate(rows.items(), start=1):
            ax = axes[r, c]
            ax.imshow(maps[c, 0].clamp_min(0).numpy(), cmap="inferno")
            ax.set_title(f"{float(maps[c].sum()):.1f}", fontsize=7, pad=2)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("input", fontsize=8)
    fig.suptitle("density maps (stride 2) and counts on held-out scenes", fontsize=9)
    fig.tight_layout()
    return fig
