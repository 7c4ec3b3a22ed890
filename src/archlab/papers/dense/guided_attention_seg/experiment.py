"""Miniature reproduction of multi-scale self-guided attention against a U-Net, a single-scale
dual-attention (DANet) head, and itself without the guidance losses.

Data: ``archlab.data.organs`` slices relabelled to the CHAOS set (liver, right kidney, left
kidney, spleen + background; ``to_chaos``) under an MRI-like bias field and noise. The liver and
spleen share an intensity band, and the two kidneys look identical: position decides. Training,
validation and test slices come from their own random streams. All four models start from
random weights (the official code re-initialises its backbone too); every arm gets the same
learning-rate sweep (each candidate from the same init stream, on the same batches, the best
kept by validation Dice) and the same steps and recipe (``archlab.lab``: AdamW without weight
decay, warm-up, cosine). The U-Net is MONAI's ``BasicUNet`` as is, of about the guided model's
parameter count. Every segmentation output of every arm is trained with cross-entropy + Dice
(for the guided models each of the eight deep-supervision outputs, plus 0.25 x semantic-guidance
and 0.1 x reconstruction MSE; the ablation sets those two weights to 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.baselines.unet import MonaiBasicUNet
from archlab.data import image_batches
from archlab.data.organs import CHAOS_CLASSES, organ_slices, to_chaos
from archlab.lab import Lab, Recipe, predict_labels
from archlab.lab.losses import ce_dice_loss
from archlab.lab.metrics import dice
from archlab.lab.plots import overlay_grid
from archlab.lab.tasks import SEGMENT
from archlab.papers.dense.guided_attention_seg.model import (
    DANet,
    GuidedAttentionConfig,
    GuidedAttentionNet,
    guided_loss,
)

K = len(CHAOS_CLASSES)
STRICTLY = 1e-9  # added to a margin where the claim says "more than": a tie is no win


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    image_size: int
    n_train: int
    n_val: int
    n_test: int
    recipe: Recipe
    lrs: tuple[float, ...]  # the learning-rate grid of every arm, picked on validation Dice
    guided: GuidedAttentionConfig
    unet_features: tuple[int, ...]  # MONAI BasicUNet's six widths
    semantic_weight: float  # the official 0.25 (0 in the ablation)
    reconstruction_weight: float  # the official 0.1 (0 in the ablation)
    margin: float  # the guided model's mean Dice must exceed each other arm's by more than this
    n_pairs: int  # inner seeds of the guidance ablation (its effect is about seed noise's size)
    health_margin: float  # a baseline's mean Dice must beat predicting background by this
    health_organ_margin: float  # ... and its Dice of every organ (it segments each organ)
    max_flattening: float | None  # and its training loss fall by at most this (last quarter)


def guided_config(width: int, d: int) -> GuidedAttentionConfig:
    return GuidedAttentionConfig(
        n_channels=1, n_classes=K, block="basic", widths=(width, 2 * width, 4 * width, 8 * width),
        depths=(1, 1, 1, 1), stem_width=width, d_features=d,
    )  # fmt: skip


# The official optimiser has no weight decay and no clipping; so does this recipe.
BUDGETS = {
    "smoke": Settings(
        image_size=64, n_train=16, n_val=4, n_test=4,
        recipe=SEGMENT.recipe(steps=2, batch_size=4, lr=2e-3, weight_decay=0.0, grad_clip=None),
        lrs=(2e-3,), guided=guided_config(8, 8), unet_features=(8, 8, 16, 32, 64, 8),
        semantic_weight=0.25, reconstruction_weight=0.1, margin=0.0, n_pairs=2,
        health_margin=-1.0, health_organ_margin=-1.0, max_flattening=None,
    ),
    "quick": Settings(
        image_size=64, n_train=800, n_val=32, n_test=64,
        recipe=SEGMENT.recipe(
            steps=64, batch_size=8, lr=3e-3, warmup_steps=6, weight_decay=0.0, grad_clip=None,
            curve_points=16,
        ),
        lrs=(3e-3, 1e-2), guided=guided_config(12, 12), unet_features=(20, 20, 40, 80, 160, 20),
        semantic_weight=0.25, reconstruction_weight=0.1, margin=0.0, n_pairs=3,
        health_margin=0.3, health_organ_margin=0.1, max_flattening=0.2,
    ),
    # quick's widths and data, six times the steps: enough for the U-Net to segment every organ
    "standard": Settings(
        image_size=64, n_train=800, n_val=32, n_test=64,
        recipe=SEGMENT.recipe(
            steps=384, batch_size=8, lr=3e-3, warmup_steps=12, weight_decay=0.0, grad_clip=None,
            curve_points=32,
        ),
        lrs=(3e-3, 1e-2), guided=guided_config(12, 12), unet_features=(20, 20, 40, 80, 160, 20),
        semantic_weight=0.25, reconstruction_weight=0.1, margin=0.0, n_pairs=3,
        health_margin=0.3, health_organ_margin=0.1, max_flattening=0.2,
    ),
}  # fmt: skip


def seg_loss(model: nn.Module, batch: tuple[Tensor, Tensor]):
    """Cross-entropy + Dice of one output (the U-Net and DANet)."""
    x, y = batch
    return ce_dice_loss(model(x), y), {}


def guidance_loss(semantic_weight: float, reconstruction_weight: float):
    """The guided models' loss: deep-supervised cross-entropy + Dice on the eight outputs, and the
    two guidance terms."""

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]):
        x, y = batch
        return guided_loss(
            model(x), y, seg_loss=ce_dice_loss, semantic_weight=semantic_weight,
            reconstruction_weight=reconstruction_weight,
        )  # fmt: skip

    return loss_fn


def arms(s: Settings) -> dict[str, tuple[Callable[[], nn.Module], Callable]]:
    """arm -> (model factory, loss)."""
    return {
        "guided": (
            lambda: GuidedAttentionNet(s.guided),
            guidance_loss(s.semantic_weight, s.reconstruction_weight),
        ),
        "guided_no_guidance": (lambda: GuidedAttentionNet(s.guided), guidance_loss(0.0, 0.0)),
        "unet": (lambda: MonaiBasicUNet(2, 1, K, s.unet_features, norm="instance"), seg_loss),
        "danet": (lambda: DANet(s.guided), seg_loss),
    }


def organ_dice(pred: Tensor, masks: Tensor) -> Tensor:
    """Per-image Dice of each class averaged over the images: ``(K,)``."""
    return dice(pred, masks, K, per_image=True).float().mean(0)


def run(lab: Lab) -> None:
    """Tune the guided model, its no-guidance ablation, a U-Net and DANet; compare test Dice."""
    s: Settings = lab.settings
    split = {
        name: organ_slices(n, size=s.image_size, seed=lab.seed_for(f"{name}-data"))
        for name, n in (("train", s.n_train), ("val", s.n_val), ("test", s.n_test))
    }
    masks = {name: to_chaos(sl.masks) for name, sl in split.items()}
    data = image_batches(split["train"].images, masks["train"])

    def val_dice(model: nn.Module) -> float:
        pred = predict_labels(model, split["val"].images, batch_size=16)
        return float(organ_dice(pred, masks["val"])[1:].mean())

    background = organ_dice(torch.zeros_like(masks["test"]), masks["test"])[1:].mean()
    lab.measure("dice/background_only", background)
    preds: dict[str, Tensor] = {}
    for arm, (make, loss_fn) in arms(s).items():
        model = lab.tune(arm, make, loss_fn, data, s.recipe, lrs=s.lrs, score=val_dice)
        preds[arm] = predict_labels(model, split["test"].images, batch_size=16)
        scores = organ_dice(preds[arm], masks["test"])  # (K,)
        lab.measure(f"dice/{arm}", scores[1:].mean())
        for k in range(1, K):
            lab.measure(f"dice/{arm}/{CHAOS_CLASSES[k]}", scores[k])

    lab.invariant(
        "the guided model and its no-guidance ablation are the same network",
        lab.value("params/guided") == lab.value("params/guided_no_guidance"),
        f"{lab.value('params/guided'):,} parameters each (only the loss weights differ)",
    )
    ratio = lab.value("params/unet") / lab.value("params/guided")
    lab.invariant(
        "the U-Net (MONAI BasicUNet) is of similar size to the guided model (0.8-1.25x)",
        0.8 <= ratio <= 1.25,
        f"{lab.value('params/unet'):,} vs {lab.value('params/guided'):,} parameters "
        f"({ratio:.2f}x); DANet {lab.value('params/danet'):,}",
    )
    for arm in ("unet", "danet"):
        lab.health(arm, "dice", ("predicting background", float(background)),
                   margin=s.health_margin, max_flattening=s.max_flattening)  # fmt: skip
        worst = min(CHAOS_CLASSES[1:], key=lambda organ: lab.value(f"dice/{arm}/{organ}"))
        lab.measure(f"dice_worst_organ/{arm}", lab.value(f"dice/{arm}/{worst}"))
        lab.health(arm, "dice_worst_organ", (f"predicting background ({worst})", 0.0),
                   margin=s.health_organ_margin, aspect="it segments every organ")  # fmt: skip

    note = f"{s.recipe.steps} steps each, lr picked on {s.n_val} validation slices"
    lab.compare("guided attention mean Dice > U-Net's", "dice", "guided", "unet",
                margin=s.margin + STRICTLY, note=f"{note}, {s.n_test} test slices")  # fmt: skip
    lab.compare("guided attention mean Dice > single-scale dual attention (DANet)'s", "dice",
                "guided", "danet", margin=s.margin + STRICTLY)  # fmt: skip
    ablation = {arm: [lab.value("dice", arm)] for arm in ("guided", "guided_no_guidance")}
    for i in range(1, s.n_pairs):
        for arm in ablation:
            make, loss_fn = arms(s)[arm]
            model = lab.replicate(arm, make, loss_fn, data, s.recipe, i)
            pred = predict_labels(model, split["test"].images, batch_size=16)
            dice = organ_dice(pred, masks["test"])[1:].mean()
            ablation[arm].append(lab.measure(f"dice/{arm}/{i}", dice))
    lab.paired(f"removing the guidance losses lowers mean Dice (paired over {s.n_pairs} inner "
               "seeds)", ("guided", ablation["guided"]),
               ("guided_no_guidance", ablation["guided_no_guidance"]), margin=s.margin,
               note="each pair: one init and batch stream, each arm at its lr")  # fmt: skip
    n = min(6, s.n_test)
    rows = {"ground truth": masks["test"][:n]} | {arm: p[:n] for arm, p in preds.items()}
    lab.figure("predictions", overlay_grid(split["test"].images[:n], rows, n_classes=K))
