"""Miniature reproduction of PLS-Net against a 3-D U-Net on synthetic lesion volumes.

Both networks are trained with the shared engine on the same synthetic head volumes
(``archlab.data.volumes``: 0-3 enhancing lesions of log-uniform radius 1.5-8 voxels in a 32^3
volume with tissue texture, bright vessel distractors, bias field and noise), the same loss
(cross-entropy + Dice), steps, batch, optimiser and seed, then scored on held-out volumes:
foreground Dice per volume (volumes with lesions), lesion-wise Dice per size bin and lesion-wise
detection F1 (a lesion is detected when the predicted components touching it reach Dice >= 0.1;
see ``archlab.data.volumes``). Parameter counts and single-volume CPU latency are reported too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn

from archlab.baselines.unet import UNet, UNetConfig
from archlab.data.volumes import (
    SIZE_NAMES,
    LesionVolumes,
    detection_f1,
    dice_by_size,
    lesion_scores,
    lesion_volumes,
    volume_batches,
)
from archlab.engine import fit_steps
from archlab.lab.inference import predict_labels
from archlab.lab.losses import ce_dice_loss
from archlab.lab.metrics import dice
from archlab.lab.profiling import compare_latency, one_thread
from archlab.lab.result import Budget, Result
from archlab.papers.dense.pls_net.model import SPEC, PlsNet, PlsNetConfig, n_params


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    size: int  # volume side
    n_train: int
    n_test: int
    pls_widths: tuple[int, int, int]
    growth_rate: int
    unet_widths: tuple[int, ...]
    steps: int
    batch_size: int
    lr: float
    dice_margin: float  # PLS-Net Dice may trail the U-Net's by at most this much
    f1_margin: float  # and its detection F1 by at most this much (both from the notes)


SMOKE = Sizes(
    size=16, n_train=6, n_test=3, pls_widths=(4, 8, 8), growth_rate=4, unet_widths=(4, 8, 16),
    steps=2, batch_size=2, lr=6e-3, dice_margin=0.08, f1_margin=0.05,
)  # fmt: skip
QUICK = Sizes(
    size=32, n_train=160, n_test=48, pls_widths=(8, 24, 48), growth_rate=6,
    unet_widths=(8, 16, 32, 64), steps=220, batch_size=2, lr=6e-3, dice_margin=0.08,
    f1_margin=0.05,
)  # fmt: skip
BUDGETS = {"smoke": SMOKE, "quick": QUICK}


def _loss(model: nn.Module, batch: tuple[Tensor, Tensor]):
    x, y = batch
    logits = model(x)  # (B, 2, D, H, W)
    return ce_dice_loss(logits, y), {}


def evaluate(pred: Tensor, test: LesionVolumes) -> dict[str, float]:
    """Volume Dice (volumes with lesions), lesion-wise Dice per size bin, detection scores."""
    has = test.masks.flatten(1).any(1)
    vol_dice = dice(pred[has], test.masks[has], 2, per_image=True)[:, 1]  # (n_pos,)
    scores = [lesion_scores(p, inst) for p, inst in zip(pred, test.instances)]
    precision, recall, f1 = detection_f1(scores)
    out = {
        "dice": float(vol_dice.mean()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "lesion_dice": float(np.mean([d for s in scores for d in s.dice])),
    }
    for b, (mean, n) in dice_by_size(scores).items():
        out[f"dice_{SIZE_NAMES[b]}"] = mean
        out[f"n_{SIZE_NAMES[b]}"] = n
    return out


def run(budget: Budget, seed: int) -> Result:
    """Train PLS-Net and a 3-D U-Net on the same volumes; check the paper's claims."""
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(SPEC.slug, SPEC.title, SPEC.claim, budget.value, seed)
    m = result.metrics
    with one_thread():
        t0 = time.perf_counter()
        data = lesion_volumes(sizes.n_train + sizes.n_test, seed=1000 + seed, size=sizes.size)
        train, test = data[: sizes.n_train], data[sizes.n_train :]
        m["data_s"] = time.perf_counter() - t0
        torch.manual_seed(seed)
        pls = PlsNet(
            PlsNetConfig(widths=sizes.pls_widths, growth_rate=sizes.growth_rate, batch_norm=True)
        )
        torch.manual_seed(seed)
        unet = UNet(UNetConfig(n_channels=1, n_outputs=2, widths=sizes.unet_widths, n_dims=3))
        models = {"pls_net": pls, "unet": unet}
        stream = volume_batches(train)
        evals, preds = {}, {}
        for name, model in models.items():
            m[f"params/{name}"] = n_params(model)
            m[f"train_s/{name}"] = fit_steps(
                model, _loss, stream, steps=sizes.steps, batch_size=sizes.batch_size,
                lr=sizes.lr, seed=seed, weight_decay=1e-4, warmup_steps=sizes.steps // 10,
            )  # fmt: skip
            preds[name] = predict_labels(model, test.images, batch_size=8)
            evals[name] = evaluate(preds[name], test)
            for k, v in evals[name].items():
                m[f"{k}/{name}"] = v
        x1 = test.images[:1]
        lat = compare_latency(partial(pls, x1), partial(unet, x1), repeats=3, warmup=1)
        m["latency_ms/pls_net"], m["latency_ms/unet"] = lat.a_s * 1e3, lat.b_s * 1e3

    p, u = evals["pls_net"], evals["unet"]
    n_p, n_u = m["params/pls_net"], m["params/unet"]
    result.check(
        "PLS-Net has at most 1/5 of the 3-D U-Net's parameters",
        n_p * 5 <= n_u,
        f"PLS-Net {int(n_p):,} vs U-Net {int(n_u):,} ({n_p / n_u:.3f}x)",
    )
    result.check(
        f"PLS-Net Dice >= U-Net Dice - {sizes.dice_margin} (held-out volumes with lesions)",
        p["dice"] >= u["dice"] - sizes.dice_margin,
        f"PLS-Net {p['dice']:.3f} vs U-Net {u['dice']:.3f}",
    )
    result.check(
        f"PLS-Net lesion detection F1 >= U-Net's - {sizes.f1_margin}",
        p["f1"] >= u["f1"] - sizes.f1_margin,
        f"PLS-Net F1 {p['f1']:.3f} (P {p['precision']:.2f}, R {p['recall']:.2f}) vs U-Net "
        f"{u['f1']:.3f} (P {u['precision']:.2f}, R {u['recall']:.2f})",
    )
    small, large = p.get("dice_small", float("nan")), p.get("dice_large", float("nan"))
    result.check(
        "PLS-Net lesion-wise Dice grows with lesion size (large bin > small bin)",
        large > small,
        f"small {small:.3f} (n={int(p.get('n_small', 0))}), medium "
        f"{p.get('dice_medium', float('nan')):.3f}, large {large:.3f} "
        f"(n={int(p.get('n_large', 0))}); U-Net small {u.get('dice_small', float('nan')):.3f}, "
        f"large {u.get('dice_large', float('nan')):.3f}",
    )
    result.figures["predictions"] = _plot(test, preds)
    return result


def _plot(test: LesionVolumes, preds: dict[str, Tensor]):
    """Axial slices through the largest lesion of up to 6 test volumes, small to large."""
    from archlab.lab.plots import overlay_grid

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
