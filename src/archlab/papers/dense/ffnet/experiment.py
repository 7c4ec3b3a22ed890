"""Miniature reproduction of FFNet: BasicBlock FFNet against its bottleneck-ResNet variant.

Both networks are the same family (stem A, four stages of depths 2-2-3-2, the official "B"
up-head and segmentation head, widths / 4): FFNet-mini with BasicBlocks, the baseline with
bottleneck blocks (as the paper compares ResNet-34 with ResNet-50). Under the fair-comparison
protocol (``archlab.lab``): train / validation / test scenes from their own named streams
(``ffnet.data``: 64 x 64, the class of a textured lot is decided by a cue 30-40 px away); each
arm tuned with the same learning-rate grid from the same init stream on the same batches and
chosen on validation mIoU; the baseline's health (mIoU above predicting background everywhere,
a flattened training curve) checked before the comparison. Measured:

1. the claim: mIoU over the four classes on the test scenes (and the IoU of the two context
   classes);
2. the effective receptive field (Luo et al. 2016) of the centre output pixel of each network,
   at initialisation (an invariant: two 3x3 convolutions per basic block against one per
   bottleneck already make it larger before any training) and trained, with the change training
   made to the ratio: |d logits_centre / d input| averaged over 320 x 320 inputs tiled from test
   scenes, summarised by the radius that holds 90 % of the gradient mass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.lab import Lab, Recipe, predict_labels
from archlab.lab.metrics import iou
from archlab.lab.plots import new_figure, overlay_grid
from archlab.lab.tasks import SEGMENT
from archlab.papers.dense.ffnet.data import SCENE_CLASSES, ContextScenes, context_scenes
from archlab.papers.dense.ffnet.erf import erf_map, erf_radius
from archlab.papers.dense.ffnet.model import FFNet, mini

NAMES = {"ffnet": "FFNet (basic)", "bottleneck": "bottleneck"}
K = len(SCENE_CLASSES)
STRICTLY = 1e-9  # added to a margin where the claim says "more than": a tie is no win


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    width_divisor: int
    depths: tuple[int, ...]
    size: int
    n_train: int
    n_val: int
    n_test: int
    recipe: Recipe
    lrs: tuple[float, ...]  # the learning-rate grid every arm is tuned over (on validation)
    erf_size: int  # ERF input side (tiles of test scenes)
    erf_images: int
    erf_fraction: float  # the ERF radius holds this fraction of the gradient mass
    miou_margin: float  # FFNet's mIoU must exceed the baseline's by more than this
    health_margin: float  # the baseline's mIoU must beat all-background by this
    max_flattening: float  # ... and its loss fall by at most this over the last quarter


BUDGETS = {
    "smoke": Settings(
        width_divisor=8, depths=(1, 1, 1, 1), size=64, n_train=16, n_val=8, n_test=8,
        recipe=SEGMENT.recipe(steps=2, batch_size=4, lr=2e-3, warmup_steps=1, grad_clip=5.0),
        lrs=(2e-3,), erf_size=64, erf_images=2, erf_fraction=0.9, miou_margin=0.0,
        health_margin=0.0, max_flattening=1.0,
    ),
    "quick": Settings(
        width_divisor=4, depths=(2, 2, 3, 2), size=64, n_train=1000, n_val=100, n_test=200,
        recipe=SEGMENT.recipe(steps=350, batch_size=8, lr=2e-3, warmup_steps=20, grad_clip=5.0),
        lrs=(2e-3, 6e-3), erf_size=320, erf_images=8, erf_fraction=0.9, miou_margin=0.0,
        health_margin=0.3, max_flattening=0.2,
    ),
}  # fmt: skip


def arms(s: Settings) -> dict[str, Callable[[], nn.Module]]:
    """FFNet-mini (BasicBlocks) and the same network with bottleneck blocks."""
    return {
        "ffnet": lambda: FFNet(mini("basic", depths=s.depths, k=s.width_divisor)),
        "bottleneck": lambda: FFNet(mini("bottleneck", depths=s.depths, k=s.width_divisor)),
    }


def flipped_batches(scenes: ContextScenes):
    """``(batch_size, generator) -> (x, y)``: random scenes with random flips (both axes)."""
    images, masks = scenes.images, scenes.masks

    def sample(batch_size: int, g: torch.Generator):
        idx = torch.randint(len(images), (batch_size,), generator=g)
        x, y = images[idx], masks[idx]
        for dim in (-1, -2):
            flip = torch.rand(batch_size, generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(dim), x)
            y = torch.where(flip[:, None, None], y.flip(dim), y)
        return x, y

    return sample


def tiled(images: Tensor, size: int, n: int) -> Tensor:
    """``n`` inputs of side ``size`` tiled from (N, C, h, w) scenes (consecutive scenes)."""
    h = images.shape[-1]
    t = size // h
    out = []
    for i in range(n):
        tiles = images[(torch.arange(t * t) + i * t * t) % len(images)]  # (t*t, C, h, h)
        rows = [torch.cat(list(tiles[r * t : (r + 1) * t]), dim=-1) for r in range(t)]
        out.append(torch.cat(rows, dim=-2))  # (C, size, size)
    return torch.stack(out)


def measure_iou(lab: Lab, arm: str, pred: Tensor, target: Tensor) -> None:
    """``miou/<arm>``, ``iou/<arm>/<class>`` and ``context_iou/<arm>`` (the two lot classes)."""
    per_class = iou(pred, target, K)  # (K,)
    lab.measure(f"miou/{arm}", per_class.mean())
    lab.measure(f"context_iou/{arm}", per_class[1:3].mean())
    for k, cls in enumerate(SCENE_CLASSES):
        lab.measure(f"iou/{arm}/{cls}", per_class[k])


def miou_of(model: nn.Module, scenes: ContextScenes) -> float:
    """mIoU over the four classes of ``model``'s labels on ``scenes`` (the tuning score)."""
    return float(iou(predict_labels(model, scenes.images, batch_size=50), scenes.masks, K).mean())


def run(lab: Lab) -> None:
    """Tune FFNet-mini and its bottleneck variant on context scenes; compare mIoU; ERFs."""
    s: Settings = lab.settings
    train = context_scenes(s.n_train, size=s.size, seed=lab.seed_for("train-data"))
    val = context_scenes(s.n_val, size=s.size, seed=lab.seed_for("val-data"))
    test = context_scenes(s.n_test, size=s.size, seed=lab.seed_for("test-data"))
    erf_inputs = tiled(test.images, s.erf_size, s.erf_images)
    preds, erfs = {}, {}
    for arm, make in arms(s).items():
        init = lab.build(arm, make)  # the init every candidate of the sweep starts from
        lab.measure(f"erf_radius_init/{arm}", erf_radius(erf_map(init, erf_inputs), s.erf_fraction))
        model = lab.tune(
            arm, make, SEGMENT.loss, flipped_batches(train), s.recipe, lrs=s.lrs,
            score=lambda m: miou_of(m, val),
        )  # fmt: skip
        preds[arm] = predict_labels(model, test.images, batch_size=50)
        measure_iou(lab, arm, preds[arm], test.masks)
        erfs[arm] = erf_map(model, erf_inputs)
        lab.measure(f"erf_radius/{arm}", erf_radius(erfs[arm], s.erf_fraction))
        lab.measure(f"erf_radius50/{arm}", erf_radius(erfs[arm], 0.5))

    v = lab.value
    grid = ", ".join(f"{x:g}" for x in s.lrs)
    background = lab.measure(
        "miou/all-background", iou(torch.zeros_like(test.masks), test.masks, K).mean()
    )
    lab.health(
        "bottleneck", "miou", ("all-background", background), margin=s.health_margin,
        max_flattening=s.max_flattening,
    )  # fmt: skip
    lab.compare(
        f"FFNet-mini mIoU > bottleneck variant's + {s.miou_margin:g} on context scenes",
        "miou", "ffnet", "bottleneck", margin=s.miou_margin + STRICTLY,
        note=f"context classes {v('context_iou/ffnet'):.3f} vs {v('context_iou/bottleneck'):.3f};"
        f" lr {v('lr/ffnet'):g} vs {v('lr/bottleneck'):g} (grid {grid},"
        f" chosen on {s.n_val} validation scenes); {s.n_test} test scenes",
    )  # fmt: skip
    rf, rb = v("erf_radius/ffnet"), v("erf_radius/bottleneck")
    init_f, init_b = v("erf_radius_init/ffnet"), v("erf_radius_init/bottleneck")
    ratio, r0 = lab.measure("erf_ratio", rf / rb), lab.measure("erf_ratio_init", init_f / init_b)
    gain = lab.measure("erf_ratio_trained_minus_init", ratio - r0)
    lab.invariant(
        f"At initialisation FFNet-mini's effective receptive field ({100 * s.erf_fraction:.0f}% "
        "gradient-mass radius) is larger than the bottleneck variant's (two 3x3 convs per basic "
        "block, one per bottleneck)",
        init_f > init_b,
        f"at init {init_f:.1f} vs {init_b:.1f} px (ratio {r0:.2f}); trained {rf:.1f} vs "
        f"{rb:.1f} px (ratio {ratio:.2f}: training changed the ratio by {gain:+.2f}); trained "
        f"50% radius {v('erf_radius50/ffnet'):.1f} vs {v('erf_radius50/bottleneck'):.1f} px; "
        f"{s.erf_images} {s.erf_size}x{s.erf_size} inputs tiled from test scenes",
    )
    lab.figure("predictions", plot_predictions(test, preds))
    lab.figure("erf", plot_erf(erfs, {arm: v(f"erf_radius/{arm}") for arm in erfs}, s))


def plot_predictions(test: ContextScenes, preds: dict[str, Tensor], n: int = 8):
    rows = {"ground truth": test.masks[:n]} | {NAMES[k]: v[:n] for k, v in preds.items()}
    titles = [f"{'red' if int(c) == 1 else 'blue'} cue" for c in test.cue_class[:n]]
    fig = overlay_grid(test.images[:n], rows, n_classes=K, titles=titles)
    fig.suptitle(
        "overlays: blue = lot of class 1 (red cue), orange = lot of class 2 (blue cue), "
        "green = object (class 3)",
        fontsize=8,
    )
    fig.subplots_adjust(top=0.9)
    return fig


def plot_erf(erfs: dict[str, Tensor], radii: dict[str, float], s: Settings):
    from matplotlib.patches import Circle

    fig = new_figure(figsize=(3.4 * len(erfs), 3.4))
    axes = fig.subplots(1, len(erfs), squeeze=False)[0]
    for ax, (arm, e) in zip(axes, erfs.items(), strict=True):
        ax.imshow((e / e.max()).sqrt().numpy(), cmap="inferno")  # sqrt: show the tails
        h = e.shape[0]
        ax.add_patch(Circle((h // 2, h // 2), radii[arm], fill=False, color="cyan", lw=1))
        ax.set_title(
            f"{NAMES[arm]}\n{100 * s.erf_fraction:.0f}% radius {radii[arm]:.1f} px", fontsize=8
        )
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("effective receptive field of the centre output (sqrt of |grad|)", fontsize=9)
    fig.tight_layout()
    return fig
