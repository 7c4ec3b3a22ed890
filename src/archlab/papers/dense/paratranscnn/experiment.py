"""Miniature reproduction of ParaTransCNN: parallel CNN + pyramid-transformer encoders against a
ResNet U-Net on synthetic abdominal multi-organ slices.

Data: ``archlab.data.organs`` slices (Synapse-like: liver, spleen, right/left kidney,
gallbladder, pancreas + background; appearance overlaps between classes, so position and
neighbourhood decide), a fixed training pool and a held-out test set drawn from their own random
streams. ``Settings.mirror`` can mirror slices left-right without swapping labels
(TransUNet-style flips), so that only the anatomy tells the right kidney from the left; the card
reports that setting. Both models start from random weights (the official CNN branch is
ImageNet-pretrained), are built from the same init stream and trained on the same data stream
with the same recipe (``archlab.lab``; 0.5 CE + 0.5 Dice as the official trainer; AdamW with a
cosine schedule instead of SGD with a poly schedule, for the short run). Claims checked on the
test set: mean foreground Dice above the ResNet U-Net's, and small-organ (gallbladder, pancreas)
Dice at least the U-Net's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from archlab.baselines.unet import UNet, UNetConfig
from archlab.data import image_batches
from archlab.data.organs import N_ORGAN_CLASSES, ORGAN_CLASSES, SMALL_ORGANS, organ_slices
from archlab.lab import Lab, Recipe, predict_labels
from archlab.lab.losses import dice_loss
from archlab.lab.metrics import dice
from archlab.lab.plots import overlay_grid
from archlab.lab.tasks import SEGMENT
from archlab.papers.dense.paratranscnn.model import ParaTransCNN, ParaTransCNNConfig


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    image_size: int
    mirror: float
    n_train: int
    n_test: int
    recipe: Recipe
    paratranscnn: ParaTransCNNConfig
    unet_widths: tuple[int, ...]
    mean_margin: float  # ParaTransCNN's mean organ Dice must beat the U-Net's (> 0: strictly)
    small_margin: float  # and its small-organ Dice by this much (0: at least equal)


def _para(dim: int, widths: tuple[int, int, int, int], heads: int) -> ParaTransCNNConfig:
    return ParaTransCNNConfig(
        n_channels=1, n_classes=N_ORGAN_CLASSES, dim=dim, heads=heads, depth=(1, 1, 1),
        dropout=0.0, attn_dropout=0.0, cnn_widths=widths, cnn_depths=(1, 1, 1, 1),
        se_reduction=8,
    )  # fmt: skip


BUDGETS = {
    "smoke": Settings(
        image_size=32, mirror=0.0, n_train=16, n_test=4,
        recipe=SEGMENT.recipe(steps=2, batch_size=4, lr=2e-3, warmup_steps=0, weight_decay=0.0,
                              grad_clip=None),
        paratranscnn=_para(8, (8, 8, 16, 16), 2), unet_widths=(8, 8, 16, 16),
        mean_margin=1e-9, small_margin=0.0,
    ),
    "quick": Settings(
        image_size=64, mirror=0.0, n_train=800, n_test=64,
        recipe=SEGMENT.recipe(steps=250, batch_size=8, lr=2e-3, warmup_steps=10,
                              weight_decay=0.0, grad_clip=None),
        paratranscnn=_para(16, (16, 32, 64, 96), 2), unet_widths=(24, 48, 96, 192),
        mean_margin=1e-9, small_margin=0.0,
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
    """Per-image Dice averaged over the test images: (K,) (background included at 0)."""
    return dice(pred, masks, N_ORGAN_CLASSES, per_image=True).mean(0).float()


def arms(s: Settings) -> dict[str, Callable[[], nn.Module]]:
    """ParaTransCNN and the ResNet U-Net baseline."""
    unet = UNetConfig(
        n_channels=1, n_outputs=N_ORGAN_CLASSES, widths=s.unet_widths, block="residual"
    )
    return {"paratranscnn": lambda: ParaTransCNN(s.paratranscnn), "resunet": lambda: UNet(unet)}


def measure_dice(lab: Lab, arm: str, pred: Tensor, masks: Tensor) -> None:
    """``dice_<organ>/<arm>`` per organ, ``dice_mean/<arm>`` over the six organs and
    ``dice_small/<arm>`` over the small ones."""
    scores = per_class_dice(pred, masks)
    for k in range(1, N_ORGAN_CLASSES):
        lab.measure(f"dice_{ORGAN_CLASSES[k]}/{arm}", scores[k])
    lab.measure(f"dice_mean/{arm}", scores[1:].mean())
    lab.measure(f"dice_small/{arm}", scores[list(SMALL_ORGANS)].mean())


def run(lab: Lab) -> None:
    """Train ParaTransCNN and the ResNet U-Net on the same organ slices; compare test Dice."""
    s: Settings = lab.settings
    kw = {"size": s.image_size, "mirror": s.mirror}
    train = organ_slices(s.n_train, seed=lab.seed_for("train-data"), **kw)
    test = organ_slices(s.n_test, seed=lab.seed_for("test-data"), **kw)
    preds: dict[str, Tensor] = {}
    for arm, make in arms(s).items():
        model = lab.build(arm, make)
        lab.fit(arm, model, seg_loss, image_batches(train.images, train.masks), s.recipe)
        preds[arm] = predict_labels(model, test.images, batch_size=16)
        measure_dice(lab, arm, preds[arm], test.masks)

    m = lab.metrics
    lab.compare(
        "ParaTransCNN mean organ Dice > ResNet U-Net's", "dice_mean", "paratranscnn", "resunet",
        margin=s.mean_margin,
        note=f"{m['params/paratranscnn'] / 1e6:.2f}M vs {m['params/resunet'] / 1e6:.2f}M "
        f"parameters, {s.recipe.steps} steps each, {s.n_test} test slices",
    )  # fmt: skip
    lab.compare(
        "ParaTransCNN small-organ Dice (gallbladder, pancreas) >= ResNet U-Net's",
        "dice_small", "paratranscnn", "resunet", margin=s.small_margin,
    )  # fmt: skip
    n_show = min(6, s.n_test)
    rows = {"ground truth": test.masks[:n_show], **{a: p[:n_show] for a, p in preds.items()}}
    lab.figure("predictions", overlay_grid(test.images[:n_show], rows, n_classes=N_ORGAN_CLASSES))
