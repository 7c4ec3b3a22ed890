"""Miniature reproduction of HybridGNet: landmark contours vs a U-Net's masks on chest phantoms.

Three models are trained from the same seed on the same synthetic chest X-ray phantoms
(``archlab.data.phantoms``: two lungs and a heart with 44 / 50 / 26 landmarks), with the same
optimiser, schedule, batch size and number of steps:

- HybridGNet with two image-to-graph skip connections (IGSC), the paper's model;
- HybridGNet without IGSC (the plain graph decoder);
- a U-Net (``archlab.baselines.unet``) of similar parameter count, trained with cross-entropy +
  Dice on the rasterised masks (4 classes: background, right lung, left lung, heart).

Then, on held-out phantoms:

(a) clean Dice of HybridGNet's rasterised contours against the U-Net's masks;
(b) the same test images with occluders (constant black or white rectangles / blobs covering about
    a quarter of the image, over the organs): rate of U-Net predictions whose mask of some organ
    is not one connected component or has a hole, against the rate of HybridGNet predictions
    with a self-intersecting contour;
(c) landmark error (mean distance in pixels) with and without IGSC.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from archlab.baselines.unet import UNet, UNetConfig, n_params
from archlab.data.phantoms import (
    N_CLASSES,
    ORGANS,
    PhantomConfig,
    Phantoms,
    contours_self_intersect,
    make_phantoms,
    organ_slices,
    rasterize_contours,
)
from archlab.engine import fit_steps, seed_everything
from archlab.lab.inference import predict_labels
from archlab.lab.losses import ce_dice_loss
from archlab.lab.metrics import dice, n_components, n_holes
from archlab.lab.profiling import one_thread
from archlab.lab.result import Budget, Result
from archlab.papers.dense.hybridgnet.model import MINI, SPEC, HybridGNet, HybridGNetConfig


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    image_size: int
    n_train: int
    n_test: int
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    occlusion: float  # image-area fraction covered by occluders at test time
    hybrid: HybridGNetConfig
    unet_widths: tuple[int, ...]
    dice_margin: float  # HybridGNet's clean Dice may trail the U-Net's by at most this
    max_invalid: float  # HybridGNet's self-intersection rate under occlusion must stay below
    min_broken: float  # the U-Net's broken-mask rate under occlusion must reach at least


SMOKE = Sizes(
    image_size=64, n_train=16, n_test=4, steps=2, batch_size=4, lr=1e-3, weight_decay=1e-5,
    occlusion=0.25, hybrid=replace(MINI, c=1, f=8, K=2), unet_widths=(4, 8, 16),
    dice_margin=0.05, max_invalid=0.05, min_broken=0.10,
)  # fmt: skip
QUICK = Sizes(
    image_size=64, n_train=800, n_test=100, steps=400, batch_size=16, lr=1e-2,
    weight_decay=1e-5, occlusion=0.25, hybrid=MINI, unet_widths=(8, 16, 32, 64, 64),
    dice_margin=0.05, max_invalid=0.05, min_broken=0.10,
)  # fmt: skip
BUDGETS = {"smoke": SMOKE, "quick": QUICK}


def load_data(sizes: Sizes, seed: int) -> tuple[Phantoms, Phantoms, Phantoms]:
    """Train phantoms, clean test phantoms and the same test phantoms with occluders."""
    cfg = PhantomConfig(image_size=sizes.image_size)
    train = make_phantoms(sizes.n_train, seed=seed, config=cfg)
    test = make_phantoms(sizes.n_test, seed=seed, config=cfg, start=sizes.n_train)
    occluded = make_phantoms(
        sizes.n_test, seed=seed, config=cfg, start=sizes.n_train, occlusion=sizes.occlusion
    )
    return train, test, occluded


def phantom_batches(data: Phantoms):
    """``(batch_size, generator) -> (images, masks, landmarks)`` by random indices."""

    def sample(batch_size: int, generator: torch.Generator):
        idx = torch.randint(len(data), (batch_size,), generator=generator)
        return data.images[idx], data.masks[idx], data.landmarks[idx]

    return sample


def _hybrid_loss(model: HybridGNet, batch) -> tuple[Tensor, dict[str, float]]:
    x, _, landmarks = batch
    return model.loss(model.forward_all(x), landmarks)


def _unet_loss(model: UNet, batch) -> tuple[Tensor, dict[str, float]]:
    x, masks, _ = batch
    return ce_dice_loss(model(x), masks), {}


@torch.no_grad()
def predict_landmarks(model: HybridGNet, images: Tensor, batch_size: int = 50) -> Tensor:
    model.eval()
    return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def mean_dice(pred: Tensor, target: Tensor) -> float:
    """Foreground Dice, per organ over the test set, averaged over organs."""
    return float(dice(pred, target, N_CLASSES)[1:].mean())


def broken_masks(masks: Tensor) -> Tensor:
    """(n, H, W) labels -> (n,) bool: some organ's mask is not exactly one component without
    holes (an empty organ counts as broken: 0 components)."""
    flags = []
    for m in masks:
        bad = False
        for k in range(1, N_CLASSES):
            organ = (m == k).numpy()
            if n_components(organ) != 1 or n_holes(organ) > 0:
                bad = True
                break
        flags.append(bad)
    return torch.tensor(flags)


def landmark_error_px(pred: Tensor, target: Tensor, image_size: int) -> float:
    """Mean Euclidean distance between predicted and true landmarks, in pixels."""
    return float((pred - target).norm(dim=-1).mean() * image_size)


def make_models(sizes: Sizes, seed: int) -> dict[str, nn.Module]:
    """HybridGNet (IGSC), HybridGNet (no IGSC) and the U-Net, each initialised from ``seed``."""
    models: dict[str, nn.Module] = {}
    for name, cfg in (
        ("hybridgnet", sizes.hybrid),
        ("hybridgnet_no_igsc", replace(sizes.hybrid, igsc=False)),
    ):
        seed_everything(seed)
        models[name] = HybridGNet(cfg)
    seed_everything(seed)
    models["unet"] = UNet(UNetConfig(n_channels=1, n_outputs=N_CLASSES, widths=sizes.unet_widths))
    return models


def run(budget: Budget, seed: int) -> Result:
    """Train the three models on the same phantoms; check clean Dice, plausibility under
    occlusion and the IGSC landmark-error gain."""
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(SPEC.slug, SPEC.title, SPEC.claim, budget.value, seed)
    m = result.metrics
    size = sizes.image_size
    with one_thread():
        t0 = time.perf_counter()
        train, test, occluded = load_data(sizes, seed)
        m["data_s"] = time.perf_counter() - t0
        data = phantom_batches(train)
        models = make_models(sizes, seed)
        preds: dict[str, dict[str, Tensor]] = {}
        for name, model in models.items():
            m[f"params/{name}"] = n_params(model)
            loss_fn = _unet_loss if name == "unet" else _hybrid_loss
            m[f"train_s/{name}"] = fit_steps(
                model, loss_fn, data, steps=sizes.steps, batch_size=sizes.batch_size,
                lr=sizes.lr, seed=seed, optimizer="adamw", weight_decay=sizes.weight_decay,
                schedule="cosine", warmup_steps=max(1, sizes.steps // 20),
            )  # fmt: skip
            preds[name] = {}
            for split, ph in (("clean", test), ("occluded", occluded)):
                if name == "unet":
                    preds[name][f"{split}_masks"] = predict_labels(model, ph.images, batch_size=50)
                else:
                    lm = predict_landmarks(model, ph.images)
                    preds[name][f"{split}_landmarks"] = lm
                    preds[name][f"{split}_masks"] = rasterize_contours(
                        lm, model.cfg.n_landmarks, size
                    )

    # Metrics.
    n_lm = sizes.hybrid.n_landmarks
    for name, p in preds.items():
        for split, ph in (("clean", test), ("occluded", occluded)):
            m[f"dice_{split}/{name}"] = mean_dice(p[f"{split}_masks"], ph.masks)
            for k, organ in enumerate(ORGANS):
                m[f"dice_{split}/{name}/{organ}"] = float(
                    dice(p[f"{split}_masks"], ph.masks, N_CLASSES)[k + 1]
                )
            m[f"broken_rate_{split}/{name}"] = float(
                broken_masks(p[f"{split}_masks"]).float().mean()
            )
            if name != "unet":
                lm = p[f"{split}_landmarks"]
                m[f"landmark_err_px_{split}/{name}"] = landmark_error_px(lm, ph.landmarks, size)
                m[f"self_intersect_rate_{split}/{name}"] = float(
                    contours_self_intersect(lm, n_lm).any(1).float().mean()
                )
    m["broken_rate_clean/ground_truth"] = float(broken_masks(test.masks).float().mean())
    # Reference: predicting the training set's mean shape for every test image.
    mean_lm = train.landmarks.mean(0, keepdim=True).expand_as(test.landmarks)
    m["landmark_err_px_clean/mean_shape"] = landmark_error_px(mean_lm, test.landmarks, size)
    m["dice_clean/mean_shape"] = mean_dice(rasterize_contours(mean_lm, n_lm, size), test.masks)

    hg, unet = "hybridgnet", "unet"
    d_hg, d_u = m[f"dice_clean/{hg}"], m[f"dice_clean/{unet}"]
    result.check(
        f"clean Dice of HybridGNet's contours >= U-Net's - {sizes.dice_margin} "
        f"({sizes.steps} steps each, {size}x{size} phantoms)",
        d_hg >= d_u - sizes.dice_margin,
        f"HybridGNet {d_hg:.4f} vs U-Net {d_u:.4f} (mean over 3 organs, {len(test)} images; "
        f"params {m[f'params/{hg}']:,.0f} vs {m[f'params/{unet}']:,.0f})",
    )
    inv = m[f"self_intersect_rate_occluded/{hg}"]
    brk = m[f"broken_rate_occluded/{unet}"]
    result.check(
        f"under occlusion HybridGNet's contours stay plausible: self-intersecting rate <= "
        f"{sizes.max_invalid:.0%}",
        inv <= sizes.max_invalid,
        f"{inv:.1%} of {len(occluded)} occluded images have a self-intersecting contour "
        f"(clean: {m[f'self_intersect_rate_clean/{hg}']:.1%}); rasterised contours broken "
        f"{m[f'broken_rate_occluded/{hg}']:.1%}",
    )
    result.check(
        f"under occlusion the U-Net's masks break (components != 1 or holes) in >= "
        f"{sizes.min_broken:.0%} of images and >= 2x HybridGNet's invalid rate",
        brk >= max(sizes.min_broken, 2 * inv) and brk > 0,
        f"U-Net broken {brk:.1%} (clean {m[f'broken_rate_clean/{unet}']:.1%}) vs HybridGNet "
        f"self-intersecting {inv:.1%}; occluded Dice U-Net {m[f'dice_occluded/{unet}']:.3f}, "
        f"HybridGNet {m[f'dice_occluded/{hg}']:.3f}",
    )
    e_igsc = m[f"landmark_err_px_clean/{hg}"]
    e_plain = m["landmark_err_px_clean/hybridgnet_no_igsc"]
    result.check(
        "IGSC lowers the landmark error (clean test, mean px distance)",
        e_igsc < e_plain,
        f"with IGSC {e_igsc:.3f} px vs without {e_plain:.3f} px at {size}x{size}, mean shape "
        f"{m['landmark_err_px_clean/mean_shape']:.3f} px "
        f"(occluded: {m[f'landmark_err_px_occluded/{hg}']:.3f} vs "
        f"{m['landmark_err_px_occluded/hybridgnet_no_igsc']:.3f})",
    )
    result.figures["predictions"] = _plot(occluded, preds, n_lm, size)
    return result


def _plot(occluded: Phantoms, preds: dict, n_landmarks: tuple[int, ...], size: int):
    """Occluded inputs with the U-Net's masks and HybridGNet's contours (red: self-intersecting)."""
    from archlab.lab.plots import overlay_grid

    n = min(6, len(occluded))
    # Show the cases where the U-Net breaks first, then the others.
    broken = broken_masks(preds["unet"]["occluded_masks"])
    order = torch.cat([torch.nonzero(broken).flatten(), torch.nonzero(~broken).flatten()])[:n]
    lm = preds["hybridgnet"]["occluded_landmarks"][order]
    rows = {
        "ground truth": occluded.masks[order],
        "U-Net": preds["unet"]["occluded_masks"][order],
        "HybridGNet": preds["hybridgnet"]["occluded_masks"][order],
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
