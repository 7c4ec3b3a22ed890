"""Miniature reproduction of ParaTransCNN: parallel CNN + pyramid-transformer encoders against
MONAI's U-Net and against itself without the transformer branch, on synthetic abdominal
multi-organ slices.

Data: ``archlab.data.organs`` slices (Synapse-like: liver, spleen, right/left kidney,
gallbladder, pancreas + background; appearance overlaps between classes, so position and
neighbourhood decide); training, validation and test slices from their own random streams.
``Settings.mirror`` can mirror slices left-right without swapping labels (TransUNet-style flips).
The miniature keeps the official model's proportions: the transformer branch holds about the
same share of the parameters as in the official Synapse model (22.7%; checked as an
invariant). Arms: ParaTransCNN, the CNN-only ablation (``use_transformer=False``: the fusions
see the CNN features alone) and MONAI's ``BasicUNet`` as is, of about ParaTransCNN's parameter
count. All start from random weights (the official CNN branch is ImageNet-pretrained); every
arm gets the same learning-rate sweep (each candidate from the same init stream, on the same
batches, the best kept by validation Dice), the same steps and the same recipe (0.5 CE + 0.5
Dice as the official trainer; AdamW with a cosine schedule instead of SGD with a poly schedule,
for the short run). Claims checked on the test set: mean foreground Dice above the U-Net's and
above the CNN-only model's, and small-organ (gallbladder, pancreas) Dice at least the U-Net's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.baselines.unet import MonaiBasicUNet
from archlab.data import image_batches
from archlab.data.organs import N_ORGAN_CLASSES, ORGAN_CLASSES, SMALL_ORGANS, organ_slices
from archlab.lab import Lab, Recipe, predict_labels
from archlab.lab.losses import dice_loss
from archlab.lab.metrics import dice
from archlab.lab.plots import overlay_grid
from archlab.lab.tasks import SEGMENT
from archlab.papers.dense.paratranscnn.model import ParaTransCNN, ParaTransCNNConfig

OFFICIAL_TRANSFORMER_SHARE = 0.2273
"""Transformer-branch parameters / all parameters of the official Synapse model (``base``:
55.8 M of 245.5 M, counted from this implementation of the official layout)."""


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    image_size: int
    mirror: float
    n_train: int
    n_val: int
    n_test: int
    recipe: Recipe
    lrs: tuple[float, ...]  # the learning-rate grid of every arm, picked on validation Dice
    paratranscnn: ParaTransCNNConfig
    unet_features: tuple[int, ...]  # MONAI BasicUNet's six widths
    share_range: tuple[float, float]  # the transformer's parameter share must lie in it
    mean_margin: float  # ParaTransCNN's mean organ Dice must beat the U-Net's (> 0: strictly)
    small_margin: float  # and its small-organ Dice by this much (0: at least equal)
    ablation_margin: float  # and the CNN-only model's mean Dice by more than this
    health_margin: float  # the U-Net's mean Dice must beat predicting background by this
    max_flattening: float | None  # and its training loss fall by at most this (last quarter)


def _para(
    dim: int, widths: tuple[int, int, int, int], heads: int, depth: int = 1
) -> ParaTransCNNConfig:
    return ParaTransCNNConfig(
        n_channels=1, n_classes=N_ORGAN_CLASSES, dim=dim, heads=heads, depth=(depth,) * 3,
        dropout=0.0, attn_dropout=0.0, cnn_widths=widths, cnn_depths=(1, 1, 1, 1),
        se_reduction=8,
    )  # fmt: skip


BUDGETS = {
    "smoke": Settings(
        image_size=32, mirror=0.0, n_train=16, n_val=4, n_test=4,
        recipe=SEGMENT.recipe(steps=2, batch_size=4, lr=2e-3, warmup_steps=0, weight_decay=0.0,
                              grad_clip=None),
        lrs=(2e-3,), paratranscnn=_para(8, (8, 8, 16, 16), 2),
        unet_features=(8, 8, 16, 32, 64, 8), share_range=(0.0, 1.0), mean_margin=1e-9,
        small_margin=0.0, ablation_margin=0.0, health_margin=-1.0, max_flattening=None,
    ),
    "quick": Settings(
        image_size=64, mirror=0.0, n_train=800, n_val=32, n_test=64,
        recipe=SEGMENT.recipe(steps=120, batch_size=8, lr=1e-2, warmup_steps=10, curve_points=24,
                              weight_decay=0.0, grad_clip=None),
        lrs=(1e-2, 3e-2),
        # CNN widths D x (1/4, 1/2, 1, 2) and 3 transformer layers per stage, as the official
        # D = 320 with ResNet-34 (64-512): the transformer's share of the parameters follows
        paratranscnn=_para(32, (8, 16, 32, 64), 2, depth=3),
        unet_features=(16, 32, 64, 128, 320, 16), share_range=(0.18, 0.28), mean_margin=1e-9,
        small_margin=0.0, ablation_margin=1e-9, health_margin=0.3, max_flattening=0.2,
    ),
}  # fmt: skip


def seg_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """0.5 cross-entropy + 0.5 Dice (the official trainer's loss; the shared
    ``SEGMENT.loss`` weighs them 1 + 1)."""
    x, y = batch
    logits = model(x)
    ce, dl = F.cross_entropy(logits, y), dice_loss(logits, y)
    return 0.5 * ce + 0.5 * dl, {"ce": ce.detach(), "dice_loss": dl.detach()}


def per_class_dice(pred: Tensor, masks: Tensor) -> Tensor:
    """Per-image Dice averaged over the images: (K,) (background included at 0)."""
    return dice(pred, masks, N_ORGAN_CLASSES, per_image=True).float().mean(0)


def transformer_share(model: ParaTransCNN) -> float:
    """Parameters of the transformer branch / all parameters."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.vit.parameters()) / total


def arms(s: Settings) -> dict[str, Callable[[], nn.Module]]:
    """ParaTransCNN, its CNN-only ablation and MONAI's BasicUNet."""
    cnn_only = dataclasses.replace(s.paratranscnn, use_transformer=False)
    return {
        "paratranscnn": lambda: ParaTransCNN(s.paratranscnn),
        "cnn_only": lambda: ParaTransCNN(cnn_only),
        "unet": lambda: MonaiBasicUNet(2, 1, N_ORGAN_CLASSES, s.unet_features, norm="instance"),
    }


def measure_dice(lab: Lab, arm: str, pred: Tensor, masks: Tensor) -> None:
    """``dice_<organ>/<arm>`` per organ, ``dice_mean/<arm>`` over the six organs and
    ``dice_small/<arm>`` over the small ones."""
    scores = per_class_dice(pred, masks)
    for k in range(1, N_ORGAN_CLASSES):
        lab.measure(f"dice_{ORGAN_CLASSES[k]}/{arm}", scores[k])
    lab.measure(f"dice_mean/{arm}", scores[1:].mean())
    lab.measure(f"dice_small/{arm}", scores[list(SMALL_ORGANS)].mean())


def run(lab: Lab) -> None:
    """Tune ParaTransCNN, its CNN-only ablation and a U-Net on the same organ slices; compare
    test Dice."""
    s: Settings = lab.settings
    kw = {"size": s.image_size, "mirror": s.mirror}
    split = {
        name: organ_slices(n, seed=lab.seed_for(f"{name}-data"), **kw)
        for name, n in (("train", s.n_train), ("val", s.n_val), ("test", s.n_test))
    }
    test = split["test"]
    data = image_batches(split["train"].images, split["train"].masks)

    def val_dice(model: nn.Module) -> float:
        pred = predict_labels(model, split["val"].images, batch_size=16)
        return float(per_class_dice(pred, split["val"].masks)[1:].mean())

    measure_dice(lab, "background_only", torch.zeros_like(test.masks), test.masks)
    preds: dict[str, Tensor] = {}
    for arm, make in arms(s).items():
        model = lab.tune(arm, make, seg_loss, data, s.recipe, lrs=s.lrs, score=val_dice)
        if arm == "paratranscnn":
            share = lab.measure("transformer_share/paratranscnn", transformer_share(model))
        preds[arm] = predict_labels(model, test.images, batch_size=16)
        measure_dice(lab, arm, preds[arm], test.masks)

    m = lab.metrics
    lo, hi = s.share_range
    lab.invariant(
        "the transformer branch holds about the official model's share of the parameters",
        lo <= share <= hi,
        f"{share:.1%} of {m['params/paratranscnn']:,} parameters (official Synapse model "
        f"{OFFICIAL_TRANSFORMER_SHARE:.1%}; needs {lo:.0%}-{hi:.0%}); CNN-only ablation "
        f"{m['params/cnn_only']:,}",
    )
    ratio = m["params/unet"] / m["params/paratranscnn"]
    lab.invariant(
        "the U-Net (MONAI BasicUNet) is of similar size to ParaTransCNN (0.8-1.25x)",
        0.8 <= ratio <= 1.25,
        f"{m['params/unet']:,} vs {m['params/paratranscnn']:,} parameters ({ratio:.2f}x)",
    )
    lab.health("unet", "dice_mean", ("predicting background", m["dice_mean/background_only"]),
               margin=s.health_margin, max_flattening=s.max_flattening)  # fmt: skip
    lab.compare(
        "ParaTransCNN mean organ Dice > U-Net's", "dice_mean", "paratranscnn", "unet",
        margin=s.mean_margin,
        note=f"{m['params/paratranscnn'] / 1e6:.2f}M vs {m['params/unet'] / 1e6:.2f}M "
        f"parameters, {s.recipe.steps} steps each, {s.n_test} test slices",
    )  # fmt: skip
    lab.compare(
        "ParaTransCNN small-organ Dice (gallbladder, pancreas) >= U-Net's",
        "dice_small", "paratranscnn", "unet", margin=s.small_margin,
    )  # fmt: skip
    lab.compare(
        "removing the transformer branch lowers mean organ Dice", "dice_mean", "paratranscnn",
        "cnn_only", margin=s.ablation_margin,
        note=f"CNN-only {m['params/cnn_only'] / 1e6:.2f}M parameters",
    )  # fmt: skip
    n_show = min(6, s.n_test)
    rows = {"ground truth": test.masks[:n_show], **{a: p[:n_show] for a, p in preds.items()}}
    lab.figure("predictions", overlay_grid(test.images[:n_show], rows, n_classes=N_ORGAN_CLASSES))
