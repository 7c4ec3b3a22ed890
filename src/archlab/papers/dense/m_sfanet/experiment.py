"""Miniature reproduction of M-SFANet / M-SegNet against SFANet on synthetic crowds.

1. Counting: SFANet (the baseline), M-SFANet (+ CAN + ASPP) and M-SegNet (max-unpooling) with
   the official layouts at 1/8 of the official widths, trained from scratch (no ImageNet VGG)
   on perspective crowd scenes (``m_sfanet.data``: 64 x 64, 2-120 people, perspective-scaled
   Gaussian density maps) with SFANet's loss (density-map MSE + 0.1 x BCE on the attention map,
   whose target is the density > 1e-3 mask). Fair-comparison protocol (``archlab.lab``): train /
   validation / test scenes from their own named streams; every arm tuned over the same
   learning-rate grid from the same init stream on the same batches, chosen on validation MAE;
   each arm's health (MAE well below the mean-count predictor's, a flattened training curve)
   checked before the comparisons. Test: count MAE / RMSE on the test scenes. The M-SFANet vs
   SFANet difference is about the size of seed noise, so it is a paired interval over
   ``n_pairs`` inner seeds (``lab.replicate``: init and batch streams ``init/i``, ``train/i``,
   each arm at its tuned lr).
2. ASPP context: on a 64 x 64 scene conv5_3 is a 4 x 4 map, where the official atrous rates
   6 / 12 / 18 read only their centre tap (ASPP = parallel 1 x 1 convolutions). The budget sets
   the rates in proportion to the map (1 / 2 / 3 here, as 6 / 12 / 18 are to the official
   32 x 32 map of a 512 x 512 crop); an invariant checks that zeroing every off-centre tap of the
   trained ASPP changes its output at the budget's resolution, and records that at the
   official rates the change is exactly 0.
3. Speed: single-image inference latency of M-SegNet against M-SFANet (the trained networks,
   eval mode, on the run's device and threads), timed alternately with
   ``archlab.lab.profiling.compare_latency``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
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
    n_val: int
    n_test: int
    count_range: tuple[int, int]
    recipe: Recipe
    lrs: tuple[float, ...]  # the learning-rate grid every arm is tuned over (on validation)
    aspp_rates: tuple[int, ...]  # atrous rates in proportion to the conv5_3 map
    density_scale: float  # targets are density x this (the prediction is divided back)
    att_weight: float  # SFANet's 0.1
    latency_size: int
    latency_repeats: int
    mae_ratio: float  # M-SFANet MAE must be <= this x SFANet's (single comparison)
    n_pairs: int  # inner seeds of the M-SFANet vs SFANet comparison (> 1: paired interval)
    segnet_speedup: float  # M-SFANet time / M-SegNet time must be >= this
    segnet_mae_cost: float  # M-SegNet MAE must be <= this x M-SFANet's
    health_fraction: float  # each arm's MAE must be below (1 - this) x the mean predictor's
    max_flattening: float  # ... and its loss fall by at most this over the last quarter


OFFICIAL_RATES = (6, 12, 18)  # the official ASPP rates (output stride 16, 512 x 512 crops)

BUDGETS = {
    "smoke": Settings(
        width_divisor=16, size=32, n_train=16, n_val=8, n_test=8, count_range=(2, 40),
        recipe=COUNT.recipe(steps=2, batch_size=4, lr=3e-3, warmup_steps=1, grad_clip=10.0),
        lrs=(3e-3,), aspp_rates=(1, 2, 3), density_scale=3.0, att_weight=0.1,
        latency_size=32, latency_repeats=2, mae_ratio=1.0, n_pairs=2, segnet_speedup=1.0,
        segnet_mae_cost=1.25, health_fraction=0.0, max_flattening=1.0,
    ),
    "quick": Settings(
        width_divisor=8, size=64, n_train=800, n_val=100, n_test=200, count_range=(2, 120),
        recipe=COUNT.recipe(steps=160, batch_size=16, lr=3e-3, warmup_steps=8, grad_clip=10.0),
        lrs=(1e-3, 3e-3), aspp_rates=(1, 2, 3), density_scale=3.0, att_weight=0.1,
        latency_size=128, latency_repeats=15, mae_ratio=1.0, n_pairs=3, segnet_speedup=1.25,
        segnet_mae_cost=1.25, health_fraction=0.5, max_flattening=0.2,
    ),
}  # fmt: skip


def arms(s: Settings) -> dict[str, Callable[[], nn.Module]]:
    """SFANet, M-SFANet and M-SegNet at the official widths / ``width_divisor``."""
    return {
        arch: partial(SFANet, replace(_narrow(arch, s.width_divisor), aspp_rates=s.aspp_rates))
        for arch in NAMES
    }


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


def counts_of(model: nn.Module, images: Tensor, density_scale: float) -> Tensor:
    """(n, 3, H, W) -> (n,) predicted counts."""
    return predict_density(model, images, density_scale).sum((1, 2, 3))


def off_centre_zeroed(aspp: nn.Module) -> nn.Module:
    """A copy of an ``ASPP`` whose atrous 3x3 convolutions keep only their centre tap."""
    out = copy.deepcopy(aspp)
    for branch in out.convs[1:-1]:
        conv = next(m for m in branch.modules() if isinstance(m, nn.Conv2d))
        with torch.no_grad():
            centre = conv.weight[:, :, 1, 1].clone()
            conv.weight.zero_()
            conv.weight[:, :, 1, 1] = centre
    return out


def at_rates(aspp: nn.Module, rates: tuple[int, ...]) -> nn.Module:
    """A copy of an ``ASPP`` with the same weights and other atrous rates ("same" padding)."""
    out = copy.deepcopy(aspp)
    for branch, r in zip(out.convs[1:-1], rates, strict=True):
        conv = next(m for m in branch.modules() if isinstance(m, nn.Conv2d))
        conv.dilation, conv.padding = (r, r), (r, r)
    return out


def off_centre_change(model: SFANet, images: Tensor, rates: tuple[int, ...] | None = None) -> float:
    """Relative change ``|ASPP(c5) - ASPP_centre-only(c5)| / |ASPP(c5)|`` of the model's ASPP on
    its conv5_3 features of ``images`` (eval mode), at the model's rates or at ``rates``."""
    aspp = model.spm["aspp"] if rates is None else at_rates(model.spm["aspp"], rates)
    centre = off_centre_zeroed(aspp)
    with evaluating(model), torch.no_grad():
        x = images.to(model_device(model))
        c5 = model.vgg(x)[3]
        y, y0 = aspp.eval()(c5), centre.eval()(c5)
    return float((y - y0).norm() / y.norm().clamp_min(1e-12))


def run(lab: Lab) -> None:
    """Tune SFANet, M-SFANet and M-SegNet on the same crowds; compare MAE and latency."""
    s: Settings = lab.settings
    kw = dict(size=s.size, count_range=s.count_range)
    train = crowd_scenes(s.n_train, seed=lab.seed_for("train-data"), **kw)
    val = crowd_scenes(s.n_val, seed=lab.seed_for("val-data"), **kw)
    test = crowd_scenes(s.n_test, seed=lab.seed_for("test-data"), **kw)
    mean_count = lab.measure("test_mean_count", test.counts.mean())
    train_mean = float(train.counts.float().mean())
    trivial, _ = count_errors(torch.full_like(test.counts.float(), train_mean), test.counts)
    lab.measure("mae/mean-count", trivial)
    models = {}
    data, loss = crowd_batches(train, s.density_scale), sfanet_loss(s.att_weight)
    for arm, make in arms(s).items():
        models[arm] = model = lab.tune(
            arm, make, loss, data, s.recipe, lrs=s.lrs, higher_is_better=False,
            score=lambda m: count_errors(counts_of(m, val.images, s.density_scale), val.counts)[0],
        )  # fmt: skip
        mae, rmse = count_errors(counts_of(model, test.images, s.density_scale), test.counts)
        lab.measure(f"mae/{arm}", mae)
        lab.measure(f"rmse/{arm}", rmse)
    paired = {arm: [lab.value("mae", arm)] for arm in ("m_sfanet", "sfanet")}
    for i in range(1, s.n_pairs):  # the M-SFANet vs SFANet effect is about seed noise's size
        for arm in paired:
            model = lab.replicate(arm, arms(s)[arm], loss, data, s.recipe, i)
            mae, _ = count_errors(counts_of(model, test.images, s.density_scale), test.counts)
            paired[arm].append(lab.measure(f"mae/{arm}/{i}", mae))

    msfa, segnet = models["m_sfanet"], models["m_segnet"]
    c5_side = s.size // 16
    change = lab.measure("aspp_off_centre_change", off_centre_change(msfa, val.images))
    official = lab.measure(
        "aspp_off_centre_change/official_rates", off_centre_change(msfa, val.images, OFFICIAL_RATES)
    )
    lab.invariant(
        f"The ASPP's atrous convolutions see context at this resolution: zeroing their "
        f"off-centre taps changes M-SFANet's ASPP output ({c5_side}x{c5_side} conv5_3 map, "
        f"rates {'/'.join(map(str, s.aspp_rates))})",
        change > 1e-3,
        f"relative change {change:.3g} (needs > 0.001); at the official rates "
        f"{'/'.join(map(str, OFFICIAL_RATES))} on the same weights and map {official:.3g} "
        f"(a {c5_side}x{c5_side} map: only the centre tap is inside); "
        f"{s.n_val} validation scenes",
    )

    shape = (1, 3, s.latency_size, s.latency_size)
    x = torch.rand(shape, generator=lab.rng("latency-input")).to(model_device(segnet))
    with evaluating(segnet), evaluating(msfa):
        c = compare_latency(partial(segnet, x), partial(msfa, x), repeats=s.latency_repeats,
                            warmup=1)  # fmt: skip
    lab.measure("latency_ms/m_segnet", c.a_s * 1e3)
    lab.measure("latency_ms/m_sfanet", c.b_s * 1e3)
    lab.measure("speedup/m_segnet_over_m_sfanet", c.ratio)

    for arm in NAMES:
        lab.health(
            arm, "mae", ("mean-count predictor", trivial), margin=s.health_fraction * trivial,
            higher_is_better=False, max_flattening=s.max_flattening,
        )  # fmt: skip
    sf, ms, sg = (lab.value("mae", arm) for arm in ("sfanet", "m_sfanet", "m_segnet"))
    lrs = ", ".join(f"{NAMES[a]} {lab.value('lr', a):g}" for a in NAMES)
    note = (
        f"MAE ratio {ms / sf:.3f}; chosen lr {lrs} (grid {', '.join(f'{x:g}' for x in s.lrs)}, "
        f"on {s.n_val} validation scenes); mean test count {mean_count:.1f}, {s.n_test} test "
        "scenes"
    )
    if s.n_pairs > 1:
        lab.paired(
            f"M-SFANet count MAE < SFANet's (paired over {s.n_pairs} inner seeds; same data, "
            "steps, recipe, lr grid)",
            ("m_sfanet", paired["m_sfanet"]), ("sfanet", paired["sfanet"]),
            higher_is_better=False, arms=("m_sfanet", "sfanet"), note=note,
        )  # fmt: skip
    else:
        lab.compare_values(
            f"M-SFANet count MAE <= {s.mae_ratio:g} x SFANet's (same data, steps, recipe, lr "
            "grid)", ("M-SFANet", ms), (f"{s.mae_ratio:g} x SFANet", s.mae_ratio * sf),
            higher_is_better=False, arms=("m_sfanet", "sfanet"), note=note,
        )  # fmt: skip
    lab.bound(
        f"M-SegNet is >= {s.segnet_speedup:g}x faster than M-SFANet "
        f"(1 x 3 x {s.latency_size}^2, {lab.device.type.upper()})",
        "latency ratio M-SFANet / M-SegNet", c.ratio, at_least=s.segnet_speedup, unit="x",
        note=f"M-SFANet {c.b_s * 1e3:.1f} ms, M-SegNet {c.a_s * 1e3:.1f} ms (medians of "
        f"{s.latency_repeats} alternating repeats)",
    )  # fmt: skip
    lab.compare_values(
        f"M-SegNet's MAE cost is small: <= {s.segnet_mae_cost:g} x M-SFANet's",
        ("M-SegNet", sg), (f"{s.segnet_mae_cost:g} x M-SFANet", s.segnet_mae_cost * ms),
        higher_is_better=False, arms=("m_segnet", "m_sfanet"),
        note=f"MAE ratio {sg / ms:.3f}",
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
