"""Miniature reproduction of FFNet: BasicBlock FFNet against its bottleneck-ResNet variant.

Both networks are the same family (stem A, four stages of depths 2-2-3-2, the official "B"
up-head and segmentation head, widths / 4): FFNet-mini with BasicBlocks, the baseline with
bottleneck blocks (as the paper compares ResNet-34 with ResNet-50). They are trained with the
same data, steps, recipe and seed on 96 x 96 context-dependent scenes (``archlab.data.scenes``:
the class of a textured lot is decided by a cue 45-60 px away). Measured:

1. mIoU over the four classes on held-out scenes, and the IoU of the two context classes;
2. the effective receptive field (Luo et al. 2016) of the centre output pixel of each trained
   network: |d logits_centre / d input| averaged over 288 x 288 inputs tiled from held-out
   scenes (large enough that the image border does not clip it), summarised by the radius that
   holds 90 % of the gradient mass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.data.scenes import SCENE_CLASSES, context_scenes
from archlab.engine import fit_steps, seed_everything
from archlab.lab.inference import predict_labels
from archlab.lab.losses import ce_dice_loss
from archlab.lab.metrics import iou
from archlab.lab.profiling import one_thread
from archlab.lab.result import Budget, Result
from archlab.papers.dense.ffnet.erf import erf_map, erf_radius
from archlab.papers.dense.ffnet.model import SPEC, FFNet, mini

NAMES = {"ffnet": "FFNet (basic)", "bottleneck": "bottleneck"}
K = len(SCENE_CLASSES)


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    width_divisor: int
    depths: tuple[int, ...]
    size: int
    n_train: int
    n_test: int
    steps: int
    batch_size: int
    lr: float
    erf_size: int  # ERF input side (tiles of test scenes)
    erf_images: int
    erf_fraction: float
    miou_margin: float  # FFNet mIoU must be > baseline + this
    erf_ratio: float  # FFNet ERF radius must be > this x the baseline's


SMOKE = Sizes(
    width_divisor=8, depths=(1, 1, 1, 1), size=64, n_train=16, n_test=8, steps=2, batch_size=4,
    lr=2e-3, erf_size=64, erf_images=2, erf_fraction=0.9, miou_margin=0.0, erf_ratio=1.0,
)  # fmt: skip
QUICK = Sizes(
    width_divisor=4, depths=(2, 2, 3, 2), size=96, n_train=1000, n_test=200, steps=500,
    batch_size=8, lr=2e-3, erf_size=288, erf_images=16, erf_fraction=0.9, miou_margin=0.01,
    erf_ratio=1.0,
)  # fmt: skip
BUDGETS = {"smoke": SMOKE, "quick": QUICK}


def batches(images: Tensor, masks: Tensor):
    """``(batch_size, generator) -> (x, y)``: random scenes with random flips (both axes)."""

    def sample(batch_size: int, g: torch.Generator):
        idx = torch.randint(len(images), (batch_size,), generator=g)
        x, y = images[idx], masks[idx]
        for dim in (-1, -2):
            flip = torch.rand(batch_size, generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(dim), x)
            y = torch.where(flip[:, None, None], y.flip(dim), y)
        return x, y

    return sample


def loss_fn(model: nn.Module, batch):
    x, y = batch
    return ce_dice_loss(model(x), y), {}


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


def run(budget: Budget, seed: int) -> Result:
    """Train FFNet-mini and its bottleneck variant on context scenes; compare mIoU and ERF."""
    import matplotlib

    matplotlib.use("Agg")
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(SPEC.slug, SPEC.title, SPEC.claim, budget.value, seed)
    m = result.metrics
    with one_thread():
        train = context_scenes(sizes.n_train, size=sizes.size, seed=20_000 + 2 * seed)
        test = context_scenes(sizes.n_test, size=sizes.size, seed=20_001 + 2 * seed)
        data = batches(train.images, train.masks)
        erf_inputs = tiled(test.images, sizes.erf_size, sizes.erf_images)
        models, preds, mious, erfs, radii = {}, {}, {}, {}, {}
        for name, block in (("ffnet", "basic"), ("bottleneck", "bottleneck")):
            seed_everything(seed)
            model = FFNet(mini(block, depths=sizes.depths, k=sizes.width_divisor))
            m[f"params/{name}"] = sum(p.numel() for p in model.parameters())
            m[f"erf_radius_init/{name}"] = erf_radius(
                erf_map(model, erf_inputs), sizes.erf_fraction
            )
            m[f"train_s/{name}"] = fit_steps(
                model,
                loss_fn,
                data,
                steps=sizes.steps,
                batch_size=sizes.batch_size,
                lr=sizes.lr,
                seed=seed,
                weight_decay=1e-4,
                warmup_steps=max(1, sizes.steps // 20),
                grad_clip=5.0,
            )
            pred = predict_labels(model, test.images, batch_size=50)
            per_class = iou(pred, test.masks, K)  # (K,)
            mious[name] = float(per_class.mean())
            m[f"miou/{name}"] = mious[name]
            for k, cls in enumerate(SCENE_CLASSES):
                m[f"iou/{name}/{cls}"] = float(per_class[k])
            m[f"context_iou/{name}"] = float(per_class[1:3].mean())
            erfs[name] = erf_map(model, erf_inputs)
            radii[name] = erf_radius(erfs[name], sizes.erf_fraction)
            m[f"erf_radius/{name}"] = radii[name]
            m[f"erf_radius50/{name}"] = erf_radius(erfs[name], 0.5)
            models[name], preds[name] = model, pred

    f, b = mious["ffnet"], mious["bottleneck"]
    result.check(
        f"FFNet-mini mIoU > bottleneck variant's + {sizes.miou_margin:.2f} on context scenes",
        f > b + sizes.miou_margin,
        f"FFNet {f:.3f} vs bottleneck {b:.3f} (context classes: "
        f"{m['context_iou/ffnet']:.3f} vs {m['context_iou/bottleneck']:.3f}); "
        f"{sizes.n_test} test scenes, {sizes.steps} steps each",
    )
    rf, rb = radii["ffnet"], radii["bottleneck"]
    pct = round(100 * sizes.erf_fraction)
    result.check(
        f"FFNet-mini's effective receptive field ({pct}% gradient-mass radius, trained) > "
        f"{sizes.erf_ratio:g}x the bottleneck variant's",
        rf > sizes.erf_ratio * rb,
        f"FFNet {rf:.1f} px vs bottleneck {rb:.1f} px (ratio {rf / rb:.2f}; 50% radius "
        f"{m['erf_radius50/ffnet']:.1f} vs {m['erf_radius50/bottleneck']:.1f}; at "
        f"initialisation {m['erf_radius_init/ffnet']:.1f} vs "
        f"{m['erf_radius_init/bottleneck']:.1f}) on {sizes.erf_images} "
        f"{sizes.erf_size}x{sizes.erf_size} inputs tiled from test scenes",
    )
    result.figures["predictions"] = _plot_predictions(test, preds)
    result.figures["erf"] = _plot_erf(erfs, radii, sizes)
    return result


def _plot_predictions(test, preds: dict, n: int = 8):
    from archlab.lab.plots import overlay_grid

    rows = {"ground truth": test.masks[:n]}
    rows |= {NAMES[k]: v[:n] for k, v in preds.items()}
    titles = [f"{'red' if int(c) == 1 else 'blue'} cue" for c in test.cue_class[:n]]
    fig = overlay_grid(test.images[:n], rows, n_classes=K, titles=titles)
    fig.suptitle(
        "overlays: blue = lot of class 1 (red cue), orange = lot of class 2 (blue cue), "
        "green = object (class 3)",
        fontsize=8,
    )
    fig.subplots_adjust(top=0.9)
    return fig


def _plot_erf(erfs: dict, radii: dict, sizes: Sizes):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(erfs), figsize=(3.4 * len(erfs), 3.4))
    for ax, (name, e) in zip(axes, erfs.items(), strict=True):
        ax.imshow((e / e.max()).sqrt().numpy(), cmap="inferno")  # sqrt: show the tails
        h = e.shape[0]
        circle = plt.Circle((h // 2, h // 2), radii[name], fill=False, color="cyan", lw=1)
        ax.add_patch(circle)
        ax.set_title(
            f"{NAMES[name]}\n{round(100 * sizes.erf_fraction)}% radius {radii[name]:.1f} px",
            fontsize=8,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("effective receptive field of the centre output (sqrt of |grad|)", fontsize=9)
    fig.tight_layout()
    return fig
