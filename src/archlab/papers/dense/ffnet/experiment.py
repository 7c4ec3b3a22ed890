"""Miniature reproduction of FFNet: BasicBlock FFNet against its bottleneck-ResNet variant.

Both networks are the same family (stem A, four stages of depths 2-2-3-2, the official "B"
up-head and segmentation head, widths / 4): FFNet-mini with BasicBlocks, the baseline with
bottleneck blocks (as the paper compares ResNet-34 with ResNet-50). They are built from the same
init stream and trained on the same data stream with the same recipe (``archlab.lab``) on
96 x 96 context-dependent scenes (``ffnet.data``: the class of a textured lot is
decided by a cue 45-60 px away). Measured:

1. mIoU over the four classes on held-out scenes, and the IoU of the two context classes;
2. the effective receptive field (Luo et al. 2016) of the centre output pixel of each network,
   at initialisation and trained: |d logits_centre / d input| averaged over 288 x 288 inputs
   tiled from held-out scenes (large enough that the image border does not clip it),
   summarised by the radius that holds 90 % of the gradient mass.
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
    n_test: int
    recipe: Recipe
    erf_size: int  # ERF input side (tiles of test scenes)
    erf_images: int
    erf_fraction: float  # the ERF radius holds this fraction of the gradient mass
    miou_margin: float  # FFNet's mIoU must exceed the baseline's by more than this
    erf_ratio: float  # FFNet's trained ERF radius must exceed this x the baseline's


BUDGETS = {
    "smoke": Settings(
        width_divisor=8, depths=(1, 1, 1, 1), size=64, n_train=16, n_test=8,
        recipe=SEGMENT.recipe(steps=2, batch_size=4, lr=2e-3, warmup_steps=1, grad_clip=5.0),
        erf_size=64, erf_images=2, erf_fraction=0.9, miou_margin=0.0, erf_ratio=1.0,
    ),
    "quick": Settings(
        width_divisor=4, depths=(2, 2, 3, 2), size=96, n_train=1000, n_test=200,
        recipe=SEGMENT.recipe(steps=500, batch_size=8, lr=2e-3, warmup_steps=25, grad_clip=5.0),
        erf_size=288, erf_images=16, erf_fraction=0.9, miou_margin=0.01, erf_ratio=1.0,
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


def run(lab: Lab) -> None:
    """Train FFNet-mini and its bottleneck variant on context scenes; compare mIoU and ERF."""
    s: Settings = lab.settings
    train = context_scenes(s.n_train, size=s.size, seed=lab.seed_for("train-scenes"))
    test = context_scenes(s.n_test, size=s.size, seed=lab.seed_for("test-scenes"))
    erf_inputs = tiled(test.images, s.erf_size, s.erf_images)
    preds, erfs = {}, {}
    for arm, make in arms(s).items():
        model = lab.build(arm, make)
        lab.measure(
            f"erf_radius_init/{arm}", erf_radius(erf_map(model, erf_inputs), s.erf_fraction)
        )
        lab.fit(arm, model, SEGMENT.loss, flipped_batches(train), s.recipe)
        preds[arm] = predict_labels(model, test.images, batch_size=50)
        measure_iou(lab, arm, preds[arm], test.masks)
        erfs[arm] = erf_map(model, erf_inputs)
        lab.measure(f"erf_radius/{arm}", erf_radius(erfs[arm], s.erf_fraction))
        lab.measure(f"erf_radius50/{arm}", erf_radius(erfs[arm], 0.5))

    v = lab.value
    lab.compare(
        f"FFNet-mini mIoU > bottleneck variant's + {s.miou_margin:g} on context scenes",
        "miou", "ffnet", "bottleneck", margin=s.miou_margin + STRICTLY,
        note=f"context classes {v('context_iou/ffnet'):.3f} vs {v('context_iou/bottleneck'):.3f};"
        f" {s.n_test} test scenes",
    )  # fmt: skip
    rf, rb = v("erf_radius/ffnet"), v("erf_radius/bottleneck")
    init_f, init_b = v("erf_radius_init/ffnet"), v("erf_radius_init/bottleneck")
    lab.measure("erf_ratio", rf / rb)
    r0 = lab.measure("erf_ratio_init", init_f / init_b)
    lab.compare_values(
        f"FFNet-mini's effective receptive field ({100 * s.erf_fraction:.0f}% gradient-mass "
        f"radius, trained) > {s.erf_ratio:g}x the bottleneck variant's",
        ("FFNet", rf), (f"{s.erf_ratio:g}x bottleneck", s.erf_ratio * rb),
        margin=STRICTLY, unit=" px",
        note=f"trained ratio {rf / rb:.2f}; at initialisation, before any training, "
        f"{init_f:.1f} vs {init_b:.1f} px (ratio {r0:.2f}: "
        f"{'already' if init_f > s.erf_ratio * init_b else 'not'} larger; the architecture "
        f"alone: two 3x3 convs per basic block, one per bottleneck); 50% radius "
        f"{v('erf_radius50/ffnet'):.1f} vs {v('erf_radius50/bottleneck'):.1f} px; "
        f"{s.erf_images} {s.erf_size}x{s.erf_size} inputs tiled from test scenes",
    )  # fmt: skip
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
