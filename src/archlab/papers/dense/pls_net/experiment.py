"""Miniature reproduction of PLS-Net against MONAI's 3-D BasicUNet on synthetic lesion volumes.

Both networks are built from the same init stream and tuned the same way (``lab.tune``: one
training run per learning rate of the budget's grid on the same volume stream, with the same
recipe and loss, cross-entropy + Dice, the best kept on validation Dice) on synthetic head
volumes (``pls_net.data``: 0-3 enhancing lesions in a 32^3 volume with tissue texture, bright
vessel distractors, bias field and noise). The lesions' equivalent radius is log-uniform over
``radius_range``, whose lower end is chosen so that every lesion's diameter is at least
PLS-Net's total stride (8 voxels): each lesion covers at least one cell of the deepest level,
as the paper's meningiomas do at 256x192x256. Training, validation and test volumes come from
their own named streams. Scored on the test volumes: foreground Dice per volume (volumes with
lesions), lesion-wise Dice per size bin (bins at the terciles of the radius range) and
lesion-wise detection F1 (a lesion is detected when the predicted components touching it reach
Dice >= 0.1; see ``pls_net.data``). Parameter counts and single-volume CPU inference latency are
reported too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn

from archlab.baselines.unet import MonaiBasicUNet
from archlab.lab import Lab, Recipe, evaluating, predict_labels
from archlab.lab.inference import model_device
from archlab.lab.metrics import dice
from archlab.lab.plots import overlay_grid
from archlab.lab.profiling import compare_latency
from archlab.lab.tasks import SEGMENT
from archlab.papers.dense.pls_net.data import (
    SIZE_NAMES,
    LesionVolumes,
    detection_f1,
    dice_by_size,
    lesion_scores,
    lesion_volumes,
    volume_batches,
)
from archlab.papers.dense.pls_net.model import PlsNet, PlsNetConfig


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    size: int  # volume side
    radius_range: tuple[float, float]  # lesions' equivalent radius (voxels), log-uniform
    n_train: int
    n_val: int
    n_test: int
    pls_widths: tuple[int, int, int]
    growth_rate: int
    unet_features: tuple[int, ...]  # MONAI BasicUNet's six widths
    recipe: Recipe
    lrs: tuple[float, ...]  # the learning-rate grid every arm is tuned on (validation)
    max_param_ratio: float  # PLS-Net has at most this fraction of the U-Net's parameters
    dice_margin: float  # PLS-Net Dice may trail the U-Net's by at most this much
    f1_margin: float  # and its detection F1 by at most this much (both from the notes)
    size_margin: float  # large-bin minus small-bin lesion Dice (> 0: strictly)
    health_margin: float  # the U-Net's Dice must beat predicting background (0) by this
    max_flattening: float  # and its loss fall by at most this over the last quarter
    latency_repeats: int

    @property
    def size_edges(self) -> tuple[int, int]:
        """Voxel-count edges of the small / medium / large bins: the volumes of spheres at the
        terciles of the log-uniform radius range (fixed by the range, not by any run)."""
        lo, hi = self.radius_range
        radii = (lo * (hi / lo) ** (1 / 3), lo * (hi / lo) ** (2 / 3))
        return tuple(round(4 / 3 * math.pi * r**3) for r in radii)  # type: ignore[return-value]


BUDGETS = {
    "smoke": Settings(
        size=16, radius_range=(4.0, 4.0), n_train=6, n_val=2, n_test=3, pls_widths=(4, 8, 8),
        growth_rate=4, unet_features=(8, 8, 16, 32, 64, 8),  # the 1/5 invariant holds here too
        recipe=SEGMENT.recipe(steps=2, batch_size=2, lr=6e-3, warmup_steps=0, grad_clip=None),
        lrs=(6e-3,), max_param_ratio=1 / 5, dice_margin=0.08, f1_margin=0.05, size_margin=1e-9,
        health_margin=0.3, max_flattening=0.2, latency_repeats=3,
    ),
    "quick": Settings(
        size=32, radius_range=(4.0, 7.0), n_train=160, n_val=24, n_test=64,
        pls_widths=(8, 24, 48), growth_rate=6, unet_features=(8, 8, 16, 32, 64, 8),
        recipe=SEGMENT.recipe(steps=200, batch_size=2, lr=6e-3, warmup_steps=20, grad_clip=None,
                              curve_points=10),
        lrs=(6e-3, 1.2e-2), max_param_ratio=1 / 5, dice_margin=0.08, f1_margin=0.05,
        size_margin=1e-9, health_margin=0.3, max_flattening=0.2, latency_repeats=3,
    ),
    "standard": Settings(
        size=32, radius_range=(4.0, 7.0), n_train=320, n_val=24, n_test=64,
        pls_widths=(8, 24, 48), growth_rate=6, unet_features=(8, 8, 16, 32, 64, 8),
        recipe=SEGMENT.recipe(steps=800, batch_size=2, lr=6e-3, warmup_steps=40, grad_clip=None,
                              curve_points=10),
        lrs=(6e-3, 1.2e-2), max_param_ratio=1 / 5, dice_margin=0.08, f1_margin=0.05,
        size_margin=1e-9, health_margin=0.3, max_flattening=0.2, latency_repeats=3,
    ),
}  # fmt: skip


def arms(s: Settings) -> dict[str, Callable[[], nn.Module]]:
    """PLS-Net (BatchNorm on, see the card) and MONAI's 3-D BasicUNet (BatchNorm) baseline."""
    pls = PlsNetConfig(widths=s.pls_widths, growth_rate=s.growth_rate, batch_norm=True)
    return {
        "pls_net": lambda: PlsNet(pls),
        "unet": lambda: MonaiBasicUNet(3, 1, 2, features=s.unet_features, norm="batch"),
    }


def volume_dice(pred: Tensor, data: LesionVolumes) -> float:
    """Mean foreground Dice over the volumes with lesions."""
    has = data.masks.flatten(1).any(1)
    return float(dice(pred[has], data.masks[has], 2, per_image=True)[:, 1].mean())


def equivalent_diameters(data: LesionVolumes) -> np.ndarray:
    """Each lesion's equivalent diameter (of the sphere with its voxel count), in voxels."""
    vox = np.array([v for vs in data.lesion_voxels for v in vs], dtype=float)
    return 2.0 * (3.0 * vox / (4.0 * math.pi)) ** (1 / 3)


def evaluate(pred: Tensor, test: LesionVolumes, edges: tuple[int, ...]) -> dict[str, float]:
    """Volume Dice (volumes with lesions), lesion-wise Dice per size bin, detection scores."""
    scores = [lesion_scores(p, inst) for p, inst in zip(pred, test.instances)]
    precision, recall, f1 = detection_f1(scores)
    dices = [d for s in scores for d in s.dice]  # every lesion's Dice
    out = {
        "dice": volume_dice(pred, test),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "lesion_dice": float(np.mean(dices)) if dices else float("nan"),
    }
    for b, (mean, n) in dice_by_size(scores, edges).items():
        out[f"dice_{SIZE_NAMES[b]}"] = mean
        out[f"n_{SIZE_NAMES[b]}"] = n
    return out


def measure_latency(lab: Lab, models: dict[str, nn.Module], x: Tensor, repeats: int) -> None:
    """Single-volume inference latency of both arms, timed alternately (``latency_ms/<arm>``)."""
    pls, unet = models["pls_net"], models["unet"]
    with evaluating(pls), evaluating(unet):
        lat = compare_latency(
            partial(pls, x.to(model_device(pls))), partial(unet, x.to(model_device(unet))),
            repeats=repeats, warmup=1,
        )  # fmt: skip
    lab.measure("latency_ms/pls_net", lat.a_s * 1e3)
    lab.measure("latency_ms/unet", lat.b_s * 1e3)


def predictions_figure(test: LesionVolumes, preds: dict[str, Tensor]):
    """Axial slices through the largest lesion of up to 6 test volumes, small to large."""
    picks = []
    for i, vox in enumerate(test.lesion_voxels):
        if vox:
            k = int(np.argmax(vox))
            picks.append((vox[k], i, k + 1))
    picks.sort()
    if len(picks) > 6:
        picks = [picks[j] for j in np.linspace(0, len(picks) - 1, 6).round().astype(int)]
    if not picks:  # no lesion at all (tiny smoke sets): show the middle slices
        picks = [(0, i, 0) for i in range(min(3, len(test)))]
    images, rows, titles = [], {"truth": [], "PLS-Net": [], "U-Net": []}, []
    for vox, i, k in picks:
        inst = test.instances[i]
        z = int(inst.eq(k).nonzero()[:, 0].float().mean()) if k else inst.shape[0] // 2
        images.append(test.images[i, :, z])
        rows["truth"].append(test.masks[i, z])
        rows["PLS-Net"].append(preds["pls_net"][i, z])
        rows["U-Net"].append(preds["unet"][i, z])
        titles.append(f"{vox} voxels")
    return overlay_grid(
        torch.stack(images), {k: torch.stack(v) for k, v in rows.items()}, n_classes=2,
        titles=titles,
    )  # fmt: skip


def run(lab: Lab) -> None:
    """Tune PLS-Net and a 3-D U-Net on the same volumes; check the paper's claims."""
    s: Settings = lab.settings
    t0 = time.perf_counter()
    volumes = partial(lesion_volumes, size=s.size, radius_range=s.radius_range)
    train = volumes(s.n_train, seed=lab.seed_for("train-data"))
    val = volumes(s.n_val, seed=lab.seed_for("val-data"))
    test = volumes(s.n_test, seed=lab.seed_for("test-data"))
    lab.measure("data_s", time.perf_counter() - t0)

    def val_dice(model: nn.Module) -> float:
        return volume_dice(predict_labels(model, val.images, batch_size=8), val)

    models: dict[str, nn.Module] = {}
    preds: dict[str, Tensor] = {}
    for arm, make in arms(s).items():
        models[arm] = lab.tune(arm, make, SEGMENT.loss, volume_batches(train), s.recipe,
                               lrs=s.lrs, score=val_dice)  # fmt: skip
        preds[arm] = predict_labels(models[arm], test.images, batch_size=8)
        for k, v in evaluate(preds[arm], test, s.size_edges).items():
            lab.measure(f"{k}/{arm}", v)
    measure_latency(lab, models, test.images[:1], s.latency_repeats)

    m, nan = lab.metrics, float("nan")
    stride = PlsNetConfig.multiple
    diam = equivalent_diameters(test)
    lab.measure("lesion_diameter_min/test", float(diam.min()) if len(diam) else nan)
    lab.measure("lesion_diameter_median/test", float(np.median(diam)) if len(diam) else nan)
    lab.invariant(
        f"every lesion spans at least PLS-Net's total stride ({stride} voxels)",
        2 * s.radius_range[0] >= stride,
        f"equivalent radius log-uniform in {s.radius_range} voxels: diameter >= "
        f"{2 * s.radius_range[0]:g}; test lesions' equivalent diameter min "
        f"{m['lesion_diameter_min/test']:.2f}, median {m['lesion_diameter_median/test']:.2f} "
        f"voxels ({len(diam)} lesions; the voxelised min can fall a little under 2 x radius)",
    )  # fmt: skip
    n_p, n_u = m["params/pls_net"], m["params/unet"]
    lab.invariant(
        f"PLS-Net has at most 1/{round(1 / s.max_param_ratio)} of the 3-D U-Net's parameters",
        n_p <= s.max_param_ratio * n_u,
        f"PLS-Net {int(n_p):,} vs U-Net {int(n_u):,} ({n_p / n_u:.3f}x); fixed by the configs",
    )
    lab.health(
        "unet", "dice", ("all background", 0.0), margin=s.health_margin,
        max_flattening=s.max_flattening,
    )  # fmt: skip
    lab.measure("flattening/pls_net", lab.fits["pls_net"].flattening())
    lab.compare(
        f"PLS-Net Dice >= U-Net Dice - {s.dice_margin} (held-out volumes with lesions)",
        "dice", "pls_net", "unet", margin=-s.dice_margin,
        note=f"lr {m['lr/pls_net']:g} vs {m['lr/unet']:g}; PLS-Net's loss fell "
        f"{m['flattening/pls_net']:.1%} over the last quarter",
    )  # fmt: skip
    lab.compare(
        f"PLS-Net lesion detection F1 >= U-Net's - {s.f1_margin}", "f1", "pls_net", "unet",
        margin=-s.f1_margin,
        note=f"precision / recall: PLS-Net {m['precision/pls_net']:.2f} / "
        f"{m['recall/pls_net']:.2f}, U-Net {m['precision/unet']:.2f} / {m['recall/unet']:.2f}",
    )  # fmt: skip
    small, large = s.size_edges
    lab.compare_values(
        "PLS-Net lesion-wise Dice grows with lesion size (large bin > small bin)",
        ("large", m.get("dice_large/pls_net", nan)), ("small", m.get("dice_small/pls_net", nan)),
        margin=s.size_margin,
        note=f"bins < {small:,} <= medium < {large:,} <= large voxels; n = "
        f"{int(m.get('n_large/pls_net', 0))} large, {int(m.get('n_small/pls_net', 0))} small; "
        f"medium {m.get('dice_medium/pls_net', nan):.3f}; U-Net small "
        f"{m.get('dice_small/unet', nan):.3f}, large {m.get('dice_large/unet', nan):.3f}",
    )  # fmt: skip
    lab.figure("predictions", predictions_figure(test, preds))
