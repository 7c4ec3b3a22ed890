"""Miniature reproduction of multi-scale self-guided attention against a U-Net, a single-scale
dual-attention (DANet) head, and itself without the guidance losses.

Data: ``archlab.data.organs`` slices relabelled to the CHAOS set (liver, right kidney, left
kidney, spleen + background; ``to_chaos``) under an MRI-like bias field and noise. The liver and
spleen share an intensity band, and the two kidneys look identical: position decides. A fixed
training pool and a held-out test set from their own random streams. All four models start from
random weights (the official code re-initialises its backbone too), built from the same init
stream and trained on the same data stream with the same recipe (``archlab.lab``: AdamW without
weight decay, warm-up, cosine). Segmentation loss: cross-entropy as the official code (for the
guided models on each of the eight deep-supervision outputs, plus 0.25 x semantic-guidance and
0.1 x reconstruction MSE; the ablation sets those two weights to 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from archlab.baselines.unet import UNet, UNetConfig
from archlab.data import image_batches
from archlab.data.organs import CHAOS_CLASSES, organ_slices, to_chaos
from archlab.lab import Lab, Recipe, predict_labels
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
    n_test: int
    recipe: Recipe
    guided: GuidedAttentionConfig
    unet_widths: tuple[int, ...]
    semantic_weight: float  # the official 0.25 (0 in the ablation)
    reconstruction_weight: float  # the official 0.1 (0 in the ablation)
    margin: float  # the guided model's mean Dice must exceed each other arm's by more than this


def guided_config(width: int, d: int) -> GuidedAttentionConfig:
    return GuidedAttentionConfig(
        n_channels=1, n_classes=K, block="basic", widths=(width, 2 * width, 4 * width, 8 * width),
        depths=(1, 1, 1, 1), stem_width=width, d_features=d,
    )  # fmt: skip


# The official optimiser has no weight decay and no clipping; so does this recipe.
BUDGETS = {
    "smoke": Settings(
        image_size=64, n_train=16, n_test=4,
        recipe=SEGMENT.recipe(steps=2, batch_size=4, lr=2e-3, weight_decay=0.0, grad_clip=None),
        guided=guided_config(8, 8), unet_widths=(8, 16, 32), semantic_weight=0.25,
        reconstruction_weight=0.1, margin=0.0,
    ),
    "quick": Settings(
        image_size=64, n_train=800, n_test=64,
        recipe=SEGMENT.recipe(
            steps=120, batch_size=8, lr=2e-3, warmup_steps=10, weight_decay=0.0, grad_clip=None
        ),
        guided=guided_config(16, 16), unet_widths=(16, 32, 64, 128), semantic_weight=0.25,
        reconstruction_weight=0.1, margin=0.0,
    ),
}  # fmt: skip


def ce_loss(model: nn.Module, batch: tuple[Tensor, Tensor]):
    """Cross-entropy of one output (the baselines; the official loss)."""
    x, y = batch
    return F.cross_entropy(model(x), y), {}


def guidance_loss(semantic_weight: float, reconstruction_weight: float):
    """The guided models' loss: deep-supervised cross-entropy + the two guidance terms."""

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]):
        x, y = batch
        return guided_loss(
            model(x), y, semantic_weight=semantic_weight,
            reconstruction_weight=reconstruction_weight,
        )  # fmt: skip

    return loss_fn


def arms(s: Settings) -> dict[str, tuple[Callable[[], nn.Module], Callable]]:
    """arm -> (model factory, loss)."""
    unet = UNetConfig(n_channels=1, n_outputs=K, widths=s.unet_widths)
    return {
        "guided": (
            lambda: GuidedAttentionNet(s.guided),
            guidance_loss(s.semantic_weight, s.reconstruction_weight),
        ),
        "guided_no_guidance": (lambda: GuidedAttentionNet(s.guided), guidance_loss(0.0, 0.0)),
        "unet": (lambda: UNet(unet), ce_loss),
        "danet": (lambda: DANet(s.guided), ce_loss),
    }


def run(lab: Lab) -> None:
    """Train the guided model, its no-guidance ablation, a U-Net and DANet; compare test Dice."""
    s: Settings = lab.settings
    train = organ_slices(s.n_train, size=s.image_size, seed=lab.seed_for("train-slices"))
    test = organ_slices(s.n_test, size=s.image_size, seed=lab.seed_for("test-slices"))
    train_masks, test_masks = to_chaos(train.masks), to_chaos(test.masks)
    preds: dict[str, Tensor] = {}
    for arm, (make, loss_fn) in arms(s).items():
        model = lab.build(arm, make)
        lab.fit(arm, model, loss_fn, image_batches(train.images, train_masks), s.recipe)
        preds[arm] = predict_labels(model, test.images, batch_size=16)
        scores = dice(preds[arm], test_masks, K, per_image=True).mean(0)  # (K,)
        lab.measure(f"dice/{arm}", scores[1:].mean())
        for k in range(1, K):
            lab.measure(f"dice/{arm}/{CHAOS_CLASSES[k]}", scores[k])

    params = f"{lab.value('params/guided') / 1e6:.2f}M vs {lab.value('params/unet') / 1e6:.2f}M"
    lab.compare(
        "guided attention mean Dice > U-Net's",
        "dice",
        "guided",
        "unet",
        margin=s.margin + STRICTLY,
        note=f"{params} parameters; {s.recipe.steps} steps each, {s.n_test} test slices",
    )
    lab.compare(
        "guided attention mean Dice > single-scale dual attention (DANet)'s",
        "dice",
        "guided",
        "danet",
        margin=s.margin + STRICTLY,
    )
    lab.compare("removing the guidance losses lowers mean Dice", "dice", "guided",
                "guided_no_guidance", margin=s.margin + STRICTLY)  # fmt: skip
    n = min(6, s.n_test)
    rows = {"ground truth": test_masks[:n]} | {arm: p[:n] for arm, p in preds.items()}
    lab.figure("predictions", overlay_grid(test.images[:n], rows, n_classes=K))
