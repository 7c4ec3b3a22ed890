"""Miniature reproduction of M-SFANet / M-SegNet against SFANet on synthetic crowds.

1. Counting: SFANet (the baseline), M-SFANet (+ CAN + ASPP) and M-SegNet (max-unpooling) with
   the official layouts at 1/8 of the official widths, trained from scratch (no ImageNet VGG),
   built from the same init stream and trained on the same data stream with the same recipe
   (``archlab.lab``) on perspective crowd scenes (``m_sfanet.data``: 64 x 64, 2-120
   people, perspective-scaled Gaussian density maps) with SFANet's loss (density-map MSE +
   0.1 x BCE on the attention map, whose target is the density > 1e-3 mask). Test: count
   MAE / RMSE on held-out scenes.
2. Speed: single-image inference latency of M-SegNet against M-SFANet (the trained networks,
   eval mode, on the run's device and threads), timed alternately with
   ``archlab.lab.profiling.compare_latency``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.lab import Lab, Recipe, evaluating, predict
from archlab.lab.inference import model_device
from archlab.lab.metrics import count_errors
from archlab.lab.plots import new_figure
from archlab.lab.profiling import compare_latency
from archlab.lab.tasks import COUNT
from archlab.papers.dense.m_sfanet.data import (
    CrowdScenes,
    attention_mask,
    crowd_scenes,
    downsample_density,
)
from archlab.papers.dense.m_sfanet.model import SFANet, _narrow

NAMES = {"sfanet": "SFANet", "m_sfanet": "M-SFANet", "m_segnet": "M-SegNet"}


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    width_divisor: int  # official widths / this
    size: int
    n_train: int
    n_test: int
    count_range: tuple[int, int]
    recipe: Recipe
    density_scale: float  # targets are density x this (the prediction is divided back)
    att_weight: float  # SFANet's 0.1
    latency_size: int
    latency_repeats: int
    mae_ratio: float  # M-SFANet MAE must be <= this x SFANet's
    segnet_speedup: float  # M-SFANet time / M-SegNet time must be >= this
    segnet_mae_cost: float  # M-SegNet MAE must be <= this x M-SFANet's


BUDGETS = {
    "smoke": Settings(
        width_divisor=16, size=32, n_train=16, n_test=8, count_range=(2, 40),
        recipe=COUNT.recipe(steps=2, batch_size=4, lr=3e-3, warmup_steps=1, grad_clip=10.0),
        density_scale=3.0, att_weight=0.1, latency_size=32, latency_repeats=2,
        mae_ratio=1.0, segnet_speedup=1.0, segnet_mae_cost=1.25,
    ),
    "quick": Settings(
        width_divisor=8, size=64, n_train=800, n_test=200, count_range=(2, 120),
        recipe=COUNT.recipe(steps=300, batch_size=16, lr=3e-3, warmup_steps=15, grad_clip=10.0),
        density_scale=3.0, att_weight=0.1, latency_size=128, latency_repeats=15,
        mae_ratio=1.0, segnet_speedup=1.25, segnet_mae_cost=1.25,
    ),
}  # fmt: skip


def arms(s: Settings) -> dict[str, Callable[[], nn.Module]]:
    """SFANet, M-SFANet and M-SegNet at the official widths / ``width_divisor``."""
    return {arch: partial(SFANet, _narrow(arch, s.width_divisor)) for arch in NAMES}


def targets(density: Tensor) -> tuple[Tensor, Tensor]:
    """Full-resolution density (B, 1, H, W) -> stride-2 density and attention targets."""
    att = F.avg_pool2d(attention_mask(density), 2)  # (B, 1, H/2, W/2) soft mask
    return downsample_density(density, 2), att


def crowd_batches(train: CrowdScenes, density_scale: float):
    """A ``(batch_size, generator) -> batch`` stream: random scenes, random horizontal flips."""
    images, density = train.images, train.density

    def sample(batch_size: int, g: torch.Generator):
        idx = torch.randint(len(images), (batch_size,), generator=g)
        x, d = images[idx], density[idx]
        flip = torch.rand(batch_size, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        d = torch.where(flip[:, None, None, None], d.flip(-1), d)
        dens, att = targets(d)
        return x, dens * density_scale, att

    return sample


def sfanet_loss(att_weight: float):
    """SFANet's loss: summed squared density error + att_weight x summed BCE, per image (the
    BCE in float32: it is not autocast-safe)."""

    def loss_fn(model: nn.Module, batch):
        x, dens, att = batch
        pred, amap = model(x)
        b = x.shape[0]
        loss_den = (pred.float() - dens).square().sum() / b
        with torch.autocast(x.device.type, enabled=False):
            loss_att = F.binary_cross_entropy(amap.float(), att, reduction="sum") / b
        loss = loss_den + att_weight * loss_att
        return loss, {"den": loss_den.detach(), "att": loss_att.detach()}

    return loss_fn


def predict_density(model: nn.Module, images: Tensor, density_scale: float) -> Tensor:
    """(n, 3, H, W) -> (n, 1, H/2, W/2) density maps in people per pixel."""
    return predict(model, images, batch_size=50, fn=lambda m, x: m(x)[0]) / density_scale


def run(lab: Lab) -> None:
    """Train SFANet, M-SFANet and M-SegNet on the same crowds; compare MAE and latency."""
    s: Settings = lab.settings
    kw = dict(size=s.size, count_range=s.count_range)
    train = crowd_scenes(s.n_train, seed=lab.seed_for("train-crowds"), **kw)
    test = crowd_scenes(s.n_test, seed=lab.seed_for("test-crowds"), **kw)
    mean_count = lab.measure("test_mean_count", test.counts.mean())
    models = {}
    for arm, make in arms(s).items():
        models[arm] = model = lab.build(arm, make)
        lab.fit(arm, model, sfanet_loss(s.att_weight), crowd_batches(train, s.density_scale),
                s.recipe)  # fmt: skip
        counts = predict_density(model, test.images, s.density_scale).sum((1, 2, 3))
        mae, rmse = count_errors(counts, test.counts)
        lab.measure(f"mae/{arm}", mae)
        lab.measure(f"rmse/{arm}", rmse)

    segnet, msfa = models["m_segnet"], models["m_sfanet"]
    shape = (1, 3, s.latency_size, s.latency_size)
    x = torch.rand(shape, generator=lab.rng("latency-input")).to(model_device(segnet))
    with evaluating(segnet), evaluating(msfa):
        c = compare_latency(partial(segnet, x), partial(msfa, x), repeats=s.latency_repeats,
                            warmup=1)  # fmt: skip
    lab.measure("latency_ms/m_segnet", c.a_s * 1e3)
    lab.measure("latency_ms/m_sfanet", c.b_s * 1e3)
    lab.measure("speedup/m_segnet_over_m_sfanet", c.ratio)

    sf, ms, sg = (lab.value("mae", arm) for arm in ("sfanet", "m_sfanet", "m_segnet"))
    lab.bound(
        f"M-SFANet count MAE <= {s.mae_ratio:g} x SFANet's (same data, steps, recipe)",
        "MAE ratio M-SFANet / SFANet", ms / sf, at_most=s.mae_ratio,
        note=f"M-SFANet {ms:.2f} vs SFANet {sf:.2f}; mean test count {mean_count:.1f}, "
        f"{s.n_test} test scenes",
    )  # fmt: skip
    lab.bound(
        f"M-SegNet is >= {s.segnet_speedup:g}x faster than M-SFANet "
        f"(1 x 3 x {s.latency_size}^2, {lab.device.type.upper()})",
        "latency ratio M-SFANet / M-SegNet", c.ratio, at_least=s.segnet_speedup, unit="x",
        note=f"M-SFANet {c.b_s * 1e3:.1f} ms, M-SegNet {c.a_s * 1e3:.1f} ms (medians of "
        f"{s.latency_repeats} alternating repeats)",
    )  # fmt: skip
    lab.bound(
        f"M-SegNet's MAE cost is small: <= {s.segnet_mae_cost:g} x M-SFANet's",
        "MAE ratio M-SegNet / M-SFANet", sg / ms, at_most=s.segnet_mae_cost,
        note=f"M-SegNet {sg:.2f} vs M-SFANet {ms:.2f}",
    )  # fmt: skip
    lab.figure("predictions", plot(models, test, s))


def plot(models: dict[str, nn.Module], test: CrowdScenes, s: Settings, n: int = 6):
    """Inputs with their true counts, the true density, and each model's density and count."""
    order = torch.argsort(test.counts)
    idx = order[torch.linspace(0, len(order) - 1, n).round().long()]  # sparse to dense
    x = test.images[idx]
    rows = {"ground truth": downsample_density(test.density[idx], 2)}
    rows |= {NAMES[arm]: predict_density(m, x, s.density_scale) for arm, m in models.items()}
    fig = new_figure(figsize=(1.7 * n, 1.75 * (len(rows) + 1)))
    axes = fig.subplots(len(rows) + 1, n, squeeze=False)
    for c in range(n):
        axes[0, c].imshow(x[c].permute(1, 2, 0).clamp(0, 1).numpy())
        axes[0, c].set_title(f"count {int(test.counts[idx[c]])}", fontsize=8)
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
