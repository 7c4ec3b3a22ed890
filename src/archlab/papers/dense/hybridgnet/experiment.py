"""Miniature reproduction of HybridGNet: landmark contours vs a U-Net's masks on chest phantoms.

Three models are built from the same init stream and tuned the same way (``lab.tune``: one
training run per learning rate of the budget's grid, on the same batch stream of synthetic chest
X-ray phantoms, ``hybridgnet.data``: two lungs and a heart with 44 / 50 / 26 landmarks; the
best run kept on validation phantoms — landmark error for the graph models, Dice for the U-Net):

- HybridGNet with two image-to-graph skip connections (IGSC), the paper's model;
- HybridGNet without IGSC (the plain graph decoder);
- a U-Net (``archlab.baselines.unet``) of similar parameter count, trained with cross-entropy +
  Dice on the rasterised masks (4 classes: background, right lung, left lung, heart).

Training, validation and test phantoms come from their own named streams. Then, on the test
phantoms:

(a) clean Dice of HybridGNet's rasterised contours against the U-Net's masks;
(b) the same test images with occluders (constant black or white rectangles / blobs covering about
    a quarter of the image, over the organs): rate of U-Net predictions whose mask of some organ
    is not one connected component or has a hole, against the rate of HybridGNet predictions
    with a self-intersecting contour;
(c) landmark error (mean distance in pixels) with and without IGSC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from archlab.baselines.unet import UNet, UNetConfig
from archlab.lab import Lab, Recipe, predict, predict_labels
from archlab.lab.metrics import dice, n_components, n_holes
from archlab.lab.plots import overlay_grid
from archlab.lab.tasks import SEGMENT
from archlab.papers.dense.hybridgnet.data import (
    N_CLASSES,
    ORGANS,
    PhantomConfig,
    Phantoms,
    contours_self_intersect,
    make_phantoms,
    organ_slices,
    rasterize_contours,
)
from archlab.papers.dense.hybridgnet.model import MINI, HybridGNet, HybridGNetConfig

STRICTLY = 1e-9  # added to a margin where the claim says "less than": a tie is no win


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    image_size: int
    n_train: int
    n_val: int
    n_test: int
    recipe: Recipe
    lrs: tuple[float, ...]  # the learning-rate grid every arm is tuned on (validation)
    occlusion: float  # image-area fraction covered by occluders at test time
    hybrid: HybridGNetConfig
    unet_widths: tuple[int, ...]
    dice_margin: float  # HybridGNet's clean Dice may trail the U-Net's by at most this
    max_invalid: float  # HybridGNet's self-intersection rate under occlusion must stay below
    min_broken: float  # the U-Net's broken-mask rate under occlusion must reach at least (> 0)
    broken_factor: float  # ... and at least this x HybridGNet's self-intersection rate
    health_dice: float  # the U-Net's clean Dice must beat the mean shape's by this much
    health_px: float  # the no-IGSC decoder's landmark error must beat the mean shape's by this
    max_flattening: float  # a baseline's loss falls by at most this over the last quarter


BUDGETS = {
    "smoke": Settings(
        image_size=64, n_train=16, n_val=4, n_test=4,
        recipe=SEGMENT.recipe(
            steps=2, batch_size=4, lr=1e-3, weight_decay=1e-5, warmup_steps=1, grad_clip=None
        ), lrs=(1e-2,),
        occlusion=0.25, hybrid=replace(MINI, c=1, f=8, K=2), unet_widths=(4, 8, 16),
        dice_margin=0.05, max_invalid=0.05, min_broken=0.10, broken_factor=2.0,
        health_dice=0.1, health_px=0.5, max_flattening=0.15,
    ),
    "quick": Settings(
        image_size=64, n_train=800, n_val=100, n_test=100,
        recipe=SEGMENT.recipe(
            steps=200, batch_size=16, lr=1e-2, weight_decay=1e-5, warmup_steps=20, grad_clip=None
        ), lrs=(3e-3, 1e-2),
        occlusion=0.25, hybrid=MINI, unet_widths=(8, 16, 32, 64, 64),
        dice_margin=0.05, max_invalid=0.05, min_broken=0.10, broken_factor=2.0,
        health_dice=0.1, health_px=0.5, max_flattening=0.15,
    ),
    "standard": Settings(
        image_size=64, n_train=4000, n_val=100, n_test=100,
        recipe=SEGMENT.recipe(
            steps=1600, batch_size=16, lr=1e-2, weight_decay=1e-5, warmup_steps=40, grad_clip=None
        ), lrs=(3e-3, 1e-2),
        occlusion=0.25, hybrid=MINI, unet_widths=(8, 16, 32, 64, 64),
        dice_margin=0.05, max_invalid=0.05, min_broken=0.10, broken_factor=2.0,
        health_dice=0.1, health_px=0.5, max_flattening=0.15,
    ),
}  # fmt: skip


def phantom_batches(data: Phantoms):
    """``(batch_size, generator) -> (images, masks, landmarks)`` by random indices."""

    def sample(batch_size: int, generator: torch.Generator):
        idx = torch.randint(len(data), (batch_size,), generator=generator)
        return data.images[idx], data.masks[idx], data.landmarks[idx]

    return sample


def hybrid_loss(model: HybridGNet, batch):
    """The official HybridGNet loss on the landmarks (landmark + IGSC position MSE + KL)."""
    x, _, landmarks = batch
    return model.loss(model.forward_all(x), landmarks)


def unet_loss(model: UNet, batch):
    """The shared segmentation loss (cross-entropy + Dice) on the rasterised masks."""
    x, masks, _ = batch
    return SEGMENT.loss(model, (x, masks))


def arms(s: Settings) -> dict[str, tuple[Callable[[], nn.Module], Callable]]:
    """arm -> (model factory, loss): HybridGNet with and without IGSC, and the U-Net."""
    unet = UNetConfig(n_channels=1, n_outputs=N_CLASSES, widths=s.unet_widths)
    return {
        "hybridgnet": (lambda: HybridGNet(s.hybrid), hybrid_loss),
        "hybridgnet_no_igsc": (lambda: HybridGNet(replace(s.hybrid, igsc=False)), hybrid_loss),
        "unet": (lambda: UNet(unet), unet_loss),
    }


def broken_masks(masks: Tensor) -> Tensor:
    """(n, H, W) labels -> (n,) bool: some organ's mask is not exactly one component without
    holes (an empty organ counts as broken: 0 components)."""
    flags = []
    for m in masks:
        organs = ((m == k).numpy() for k in range(1, N_CLASSES))
        flags.append(any(n_components(o) != 1 or n_holes(o) > 0 for o in organs))
    return torch.tensor(flags)


def landmark_error_px(pred: Tensor, target: Tensor, image_size: int) -> float:
    """Mean Euclidean distance between predicted and true landmarks, in pixels."""
    return float((pred - target).norm(dim=-1).mean() * image_size)


def segment(model: nn.Module, images: Tensor, n_lm: tuple[int, ...]):
    """(masks (n, H, W), landmarks (n, N, 2) or None): HybridGNet's contours are rasterised."""
    if not isinstance(model, HybridGNet):
        return predict_labels(model, images, batch_size=50), None
    lm = predict(model, images, batch_size=50)
    return rasterize_contours(lm, n_lm, images.shape[-1]), lm


def measure(lab: Lab, arm: str, split: str, masks: Tensor, lm: Tensor | None, truth: Phantoms):
    """Dice (mean and per organ) and broken-mask rate of the masks; with landmarks, their
    error (px) and the rate of images with a self-intersecting contour."""
    per_organ = dice(masks, truth.masks, N_CLASSES)
    lab.measure(f"dice_{split}/{arm}", per_organ[1:].mean())
    for k, organ in enumerate(ORGANS):
        lab.measure(f"dice_{split}/{arm}/{organ}", per_organ[k + 1])
    lab.measure(f"broken_rate_{split}/{arm}", broken_masks(masks).float().mean())
    if lm is not None:
        size, n_lm = truth.images.shape[-1], lab.settings.hybrid.n_landmarks
        lab.measure(f"landmark_err_px_{split}/{arm}", landmark_error_px(lm, truth.landmarks, size))
        rate = contours_self_intersect(lm, n_lm).any(1).float().mean()
        lab.measure(f"self_intersect_rate_{split}/{arm}", rate)


def run(lab: Lab) -> None:
    """Tune and train the three models on the same phantoms; check clean Dice, plausibility
    under occlusion and the IGSC landmark-error gain."""
    s: Settings = lab.settings
    cfg, size, n_lm = PhantomConfig(image_size=s.image_size), s.image_size, s.hybrid.n_landmarks
    train = make_phantoms(s.n_train, seed=lab.seed_for("train-phantoms"), config=cfg)
    val = make_phantoms(s.n_val, seed=lab.seed_for("val-phantoms"), config=cfg)
    test_seed = lab.seed_for("test-phantoms")
    splits = {  # the same held-out phantoms, clean and with occluders
        "clean": make_phantoms(s.n_test, seed=test_seed, config=cfg),
        "occluded": make_phantoms(s.n_test, seed=test_seed, config=cfg, occlusion=s.occlusion),
    }

    def val_score(model: nn.Module) -> float:  # landmark error (graph) or Dice (U-Net)
        masks, lm = segment(model, val.images, n_lm)
        if lm is not None:
            return landmark_error_px(lm, val.landmarks, size)
        return float(dice(masks, val.masks, N_CLASSES)[1:].mean())

    # an untrained HybridGNet: are non-self-intersecting contours learned or built in?
    untrained = lab.build("hybridgnet_untrained", arms(s)["hybridgnet"][0])
    _, lm0 = segment(untrained, splits["occluded"].images, n_lm)
    init_rate = contours_self_intersect(lm0, n_lm).any(1).float().mean()
    lab.measure("self_intersect_rate_occluded/hybridgnet_untrained", init_rate)
    lab.metrics.pop("params/hybridgnet_untrained")

    outputs: dict[str, tuple[Tensor, Tensor | None]] = {}  # "<arm>/<split>" -> masks, landmarks
    for arm, (make, loss_fn) in arms(s).items():
        graph = arm != "unet"
        model = lab.tune(arm, make, loss_fn, phantom_batches(train), s.recipe, lrs=s.lrs,
                         score=val_score, higher_is_better=not graph)  # fmt: skip
        lab.measure(f"flattening/{arm}", lab.fits[arm].flattening())
        for split, ph in splits.items():
            outputs[f"{arm}/{split}"] = segment(model, ph.images, n_lm)
            measure(lab, arm, split, *outputs[f"{arm}/{split}"], ph)
    clean = splits["clean"]
    lab.measure("broken_rate_clean/ground_truth", broken_masks(clean.masks).float().mean())
    mean_lm = train.landmarks.mean(0, keepdim=True).expand_as(clean.landmarks)  # reference
    measure(lab, "mean_shape", "clean", rasterize_contours(mean_lm, n_lm, size), mean_lm, clean)

    v = lab.value
    out_lm = outputs["hybridgnet/occluded"][1]
    lab.invariant(
        "HybridGNet outputs one closed contour per organ with the graph's landmark counts",
        tuple(out_lm.shape[1:]) == (sum(n_lm), 2),
        f"output {tuple(out_lm.shape)}: contours of {n_lm} landmarks, fixed by the decoder graph",
    )
    lab.health(
        "unet", "dice_clean", ("mean shape", v("dice_clean/mean_shape")),
        margin=s.health_dice, max_flattening=s.max_flattening,
    )  # fmt: skip
    lab.health(
        "hybridgnet_no_igsc", "landmark_err_px_clean",
        ("mean shape", v("landmark_err_px_clean/mean_shape")), margin=s.health_px,
        higher_is_better=False, max_flattening=s.max_flattening, unit=" px",
    )  # fmt: skip
    lab.compare(
        f"clean Dice of HybridGNet's contours >= U-Net's - {s.dice_margin} "
        f"({s.recipe.steps} steps each, {size}x{size} phantoms)",
        "dice_clean", "hybridgnet", "unet", margin=-s.dice_margin,
        note=f"mean over 3 organs, {s.n_test} images; params {v('params/hybridgnet'):,.0f} vs "
        f"{v('params/unet'):,.0f}; lr {v('lr/hybridgnet'):g} vs {v('lr/unet'):g}; "
        f"HybridGNet's loss fell {v('flattening/hybridgnet'):.1%} over the last quarter",
    )  # fmt: skip
    inv = v("self_intersect_rate_occluded/hybridgnet")
    lab.bound(
        f"under occlusion HybridGNet's contours stay plausible: self-intersecting rate <= "
        f"{s.max_invalid:.0%}",
        "self-intersecting rate (occluded)", inv, at_most=s.max_invalid,
        note=f"{s.n_test} images (clean: {v('self_intersect_rate_clean/hybridgnet'):.1%}; "
        f"untrained HybridGNet {float(init_rate):.0%}, so it is learned, not built in); "
        f"rasterised contours broken {v('broken_rate_occluded/hybridgnet'):.1%}",
    )  # fmt: skip
    lab.bound(  # min_broken > 0, so the bound also asks for a positive rate
        f"under occlusion the U-Net's masks break (components != 1 or holes) in >= "
        f"{s.min_broken:.0%} of images and >= {s.broken_factor:g}x HybridGNet's invalid rate",
        "U-Net broken rate (occluded)", v("broken_rate_occluded/unet"),
        at_least=max(s.min_broken, s.broken_factor * inv),
        note=f"clean {v('broken_rate_clean/unet'):.1%}; HybridGNet self-intersecting {inv:.1%}; "
        f"occluded Dice U-Net {v('dice_occluded/unet'):.3f}, HybridGNet "
        f"{v('dice_occluded/hybridgnet'):.3f}",
    )  # fmt: skip
    lab.compare(
        "IGSC lowers the landmark error (clean test, mean px distance)",
        "landmark_err_px_clean", "hybridgnet", "hybridgnet_no_igsc", higher_is_better=False,
        margin=STRICTLY, unit=" px",
        note=f"at {size}x{size}, mean shape {v('landmark_err_px_clean/mean_shape'):.3f} px "
        f"(occluded: {v('landmark_err_px_occluded/hybridgnet'):.3f} vs "
        f"{v('landmark_err_px_occluded/hybridgnet_no_igsc'):.3f}); lr "
        f"{v('lr/hybridgnet'):g} vs {v('lr/hybridgnet_no_igsc'):g}",
    )  # fmt: skip
    lab.figure("predictions", plot(splits["occluded"], outputs, n_lm, size))


def plot(occluded: Phantoms, outputs: dict, n_landmarks: tuple[int, ...], size: int):
    """Occluded inputs with the U-Net's masks and HybridGNet's contours (red: self-intersecting)."""
    n = min(6, len(occluded))
    # Show the cases where the U-Net breaks first, then the others.
    broken = broken_masks(outputs["unet/occluded"][0])
    order = torch.cat([torch.nonzero(broken).flatten(), torch.nonzero(~broken).flatten()])[:n]
    masks, lm = outputs["hybridgnet/occluded"]
    lm = lm[order]
    rows = {
        "ground truth": occluded.masks[order],
        "U-Net": outputs["unet/occluded"][0][order],
        "HybridGNet": masks[order],
    }
    titles = ["U-Net broken" if broken[i] else "U-Net intact" for i in order.tolist()]
    fig = overlay_grid(occluded.images[order], rows, n_classes=N_CLASSES, titles=titles)
    axes = np.asarray(fig.axes).reshape(len(rows), n)
    bad = contours_self_intersect(lm, n_landmarks)
    for c in range(n):
        for k, sl in enumerate(organ_slices(n_landmarks)):
            pts = torch.cat([lm[c, sl], lm[c, sl][:1]]).numpy() * size
            color = "red" if bad[c, k] else "yellow"
            axes[2, c].plot(pts[:, 0], pts[:, 1], "-", color=color, lw=0.8)
            axes[2, c].plot(pts[:-1, 0], pts[:-1, 1], ".", color=color, ms=1.5)
        axes[2, c].set_xlim(-0.5, size - 0.5)
        axes[2, c].set_ylim(size - 0.5, -0.5)
    fig.suptitle("occluded test phantoms: U-Net masks vs HybridGNet contours", fontsize=9)
    fig.tight_layout()
    return fig
