"""Miniature reproduction of PLS-Net against a 3-D U-Net on synthetic lesion volumes.

Both networks are built from the same init stream and trained on the same data stream with the
same recipe (``archlab.lab``) on synthetic head volumes (``pls_net.data``: 0-3 enhancing
lesions of log-uniform radius 1.5-8 voxels in a 32^3 volume with tissue texture, bright vessel
distractors, bias field and noise), with the same loss (cross-entropy + Dice), then scored on
held-out volumes: foreground Dice per volume (volumes with lesions), lesion-wise Dice per size
bin and lesion-wise detection F1 (a lesion is detected when the predicted components touching it
reach Dice >= 0.1; see ``pls_net.data``). Parameter counts and single-volume CPU
inference latency are reported too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn

from archlab.baselines.unet import UNet, UNetConfig
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
    n_train: int
    n_test: int
    pls_widths: tuple[int, int, int]
    growth_rate: int
    unet_widths: tuple[int, ...]
    recipe: Recipe
    max_param_ratio: float  # PLS-Net has at most this fraction of the U-Net's parameters
    dice_margin: float  # PLS-Net Dice may trail the U-Net's by at most this much
    f1_margin: float  # and its detection F1 by at most this much (both from the notes)
    size_margin: float  # large-bin minus small-bin lesion Dice (> 0: strictly)
    latency_repeats: int


BUDGETS = {
    "smoke": Settings(
        size=16, n_train=6, n_test=3, pls_widths=(4, 8, 8), growth_rate=4,
        unet_widths=(8, 16, 32),  # 85,186 parameters: the 1/5 invariant holds here too
        recipe=SEGMENT.recipe(steps=2, batch_size=2, lr=6e-3, warmup_steps=0, grad_clip=None),
        max_param_ratio=1 / 5, dice_margin=0.08, f1_margin=0.05, size_margin=1e-9,
        latency_repeats=3,
    ),
    "quick": Settings(
        size=32, n_train=160, n_test=48, pls_widths=(8, 24, 48), growth_rate=6,
        unet_widths=(8, 16, 32, 64),
        recipe=SEGMENT.recipe(steps=220, batch_size=2, lr=6e-3, warmup_steps=22, grad_clip=None),
        max_param_ratio=1 / 5, dice_margin=0.08, f1_margin=0.05, size_margin=1e-9,
        latency_repeats=3,
    ),
}  # fmt: skip


def arms(s: Settings) -> dict[str, Callable[[], nn.Module]]:
    """PLS-Net (BatchNorm on, see the card) and the 3-D U-Net baseline."""
    pls = PlsNetConfig(widths=s.pls_widths, growth_rate=s.growth_rate, batch_norm=True)
    unet = UNetConfig(n_channels=1, n_outputs=2, widths=s.unet_widths, n_dims=3)
    return {"pls_net": lambda: PlsNet(pls), "unet": lambda: UNet(unet)}


def evaluate(pred: Tensor, test: LesionVolumes) -> dict[str, float]:
    """Volume Dice (volumes with lesions), lesion-wise Dice per size bin, detection scores."""
    has = test.masks.flatten(1).any(1)
    vol_dice = dice(pred[has], test.masks[has], 2, per_image=True)[:, 1]  # (n_pos,)
    scores = [lesion_scores(p, inst) for p, inst in zip(pred, test.instances)]
    precision, recall, f1 = detection_f1(scores)
    dices = [d for s in scores for d in s.dice]  # every lesion's Dice
    out = {
        "dice": float(vol_dice.mean()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "lesion_dice": float(np.mean(dices)) if dices else float("nan"),
    }
    for b, (mean, n) in dice_by_size(scores).items():
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
    """Train PLS-Net and a 3-D U-Net on the same volumes; check the paper's claims."""
    s: Settings = lab.settings
    t0 = time.perf_counter()
    train = lesion_volumes(s.n_train, seed=lab.seed_for("train-data"), size=s.size)
    test = lesion_volumes(s.n_test, seed=lab.seed_for("test-data"), size=s.size)
    lab.measure("data_s", time.perf_counter() - t0)
    models = {arm: lab.build(arm, make) for arm, make in arms(s).items()}
    preds: dict[str, Tensor] = {}
    for arm, model in models.items():
        lab.fit(arm, model, SEGMENT.loss, volume_batches(train), s.recipe)
        preds[arm] = predict_labels(model, test.images, batch_size=8)
        for k, v in evaluate(preds[arm], test).items():
            lab.measure(f"{k}/{arm}", v)
    measure_latency(lab, models, test.images[:1], s.latency_repeats)

    m, nan = lab.metrics, float("nan")
    n_p, n_u = m["params/pls_net"], m["params/unet"]
    lab.invariant(
        f"PLS-Net has at most 1/{round(1 / s.max_param_ratio)} of the 3-D U-Net's parameters",
        n_p <= s.max_param_ratio * n_u,
        f"PLS-Net {int(n_p):,} vs U-Net {int(n_u):,} ({n_p / n_u:.3f}x); fixed by the configs",
    )
    lab.compare(
        f"PLS-Net Dice >= U-Net Dice - {s.dice_margin} (held-out volumes with lesions)",
        "dice", "pls_net", "unet", margin=-s.dice_margin,
    )  # fmt: skip
    lab.compare(
        f"PLS-Net lesion detection F1 >= U-Net's - {s.f1_margin}", "f1", "pls_net", "unet",
        margin=-s.f1_margin,
        note=f"precision / recall: PLS-Net {m['precision/pls_net']:.2f} / "
        f"{m['recall/pls_net']:.2f}, U-Net {m['precision/unet']:.2f} / {m['recall/unet']:.2f}",
    )  # fmt: skip
    lab.compare_values(
        "PLS-Net lesion-wise Dice grows with lesion size (large bin > small bin)",
        ("large", m.get("dice_large/pls_net", nan)), ("small", m.get("dice_small/pls_net", nan)),
        margin=s.size_margin,
        note=f"n = {int(m.get('n_large/pls_net', 0))} large, "
        f"{int(m.get('n_small/pls_net', 0))} small; medium "
        f"{m.get('dice_medium/pls_net', nan):.3f}; U-Net small "
        f"{m.get('dice_small/unet', nan):.3f}, large {m.get('dice_large/unet', nan):.3f}",
    )  # fmt: skip
    lab.figure("predictions", predictions_figure(test, preds))
