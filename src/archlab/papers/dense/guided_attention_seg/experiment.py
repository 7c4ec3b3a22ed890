"""Miniature reproduction of multi-scale self-guided attention against a U-Net, a single-scale
dual-attention (DANet) head, and itself without the guidance losses.

Data: ``archlab.data.organs`` slices relabelled to the CHAOS set (liver, right kidney, left
kidney, spleen + background; ``to_chaos``) under an MRI-like bias field and noise. The liver and
spleen share an intensity band, and the two kidneys look identical: position decides. A fixed
training pool and a held-out test set from other seeds. All four models start from random
weights (the official code re-initialises its backbone too) and are trained with the shared
engine on the same pool, steps, batch size and recipe (Adam-family optimiser, cosine schedule).
Segmentation loss: cross-entropy as the official code (for the guided models on each of the
eight deep-supervision outputs, plus 0.25 x semantic-guidance and 0.1 x reconstruction MSE;
the ablation sets those two weights to 0).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.baselines.unet import UNet, UNetConfig, n_params
from archlab.data import image_batches
from archlab.data.organs import CHAOS_CLASSES, organ_slices, to_chaos
from archlab.engine import fit_steps
from archlab.lab.inference import predict_labels
from archlab.lab.metrics import dice
from archlab.lab.plots import overlay_grid
from archlab.lab.profiling import one_thread
from archlab.lab.result import Budget, Result
from archlab.papers.dense.guided_attention_seg.model import (
    SPEC,
    DANet,
    GuidedAttentionConfig,
    GuidedAttentionNet,
    guided_loss,
)

K = len(CHAOS_CLASSES)


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    image_size: int
    n_train: int
    n_test: int
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    guided: GuidedAttentionConfig
    unet_widths: tuple[int, ...]


def _guided(width: int, d: int) -> GuidedAttentionConfig:
    return GuidedAttentionConfig(
        n_channels=1, n_classes=K, block="basic", widths=(width, 2 * width, 4 * width, 8 * width),
        depths=(1, 1, 1, 1), stem_width=width, d_features=d,
    )  # fmt: skip


SMOKE = Sizes(
    image_size=64, n_train=16, n_test=4, steps=2, batch_size=4, lr=2e-3, warmup_steps=0,
    guided=_guided(8, 8), unet_widths=(8, 16, 32),
)  # fmt: skip
QUICK = Sizes(
    image_size=64, n_train=800, n_test=64, steps=120, batch_size=8, lr=2e-3, warmup_steps=10,
    guided=_guided(16, 16), unet_widths=(16, 32, 64, 128),
)  # fmt: skip
BUDGETS = {"smoke": SMOKE, "quick": QUICK}


def ce_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
    x, y = batch
    return F.cross_entropy(model(x), y), {}


def make_guided_loss(semantic_weight: float, reconstruction_weight: float):
    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]):
        x, y = batch
        return guided_loss(
            model(x), y, semantic_weight=semantic_weight,
            reconstruction_weight=reconstruction_weight,
        )  # fmt: skip

    return loss_fn


def make_models(sizes: Sizes, seed: int) -> dict[str, tuple[nn.Module, object]]:
    """name -> (model, loss_fn), each initialised from ``seed``."""
    models = {}
    torch.manual_seed(seed)
    models["guided"] = (GuidedAttentionNet(sizes.guided), make_guided_loss(0.25, 0.1))
    torch.manual_seed(seed)
    models["guided_no_guidance"] = (GuidedAttentionNet(sizes.guided), make_guided_loss(0.0, 0.0))
    torch.manual_seed(seed)
    unet_cfg = UNetConfig(n_channels=1, n_outputs=K, widths=sizes.unet_widths)
    models["unet"] = (UNet(unet_cfg), ce_loss)
    torch.manual_seed(seed)
    models["danet"] = (DANet(replace(sizes.guided)), ce_loss)
    return models


def run(budget: Budget, seed: int) -> Result:
    """Train the guided model, its no-guidance ablation, a U-Net and DANet; compare test Dice."""
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(SPEC.slug, SPEC.title, SPEC.claim, budget.value, seed)
    m = result.metrics
    with one_thread():
        train = organ_slices(sizes.n_train, size=sizes.image_size, seed=2000 + seed)
        test = organ_slices(sizes.n_test, size=sizes.image_size, seed=8000 + seed)
        train_masks, test_masks = to_chaos(train.masks), to_chaos(test.masks)
        data = image_batches(train.images, train_masks)
        preds: dict[str, Tensor] = {}
        for name, (model, loss_fn) in make_models(sizes, seed).items():
            m[f"params/{name}"] = n_params(model)
            m[f"train_s/{name}"] = fit_steps(
                model, loss_fn, data, steps=sizes.steps, batch_size=sizes.batch_size,
                lr=sizes.lr, seed=seed, warmup_steps=sizes.warmup_steps,
            )  # fmt: skip
            preds[name] = predict_labels(model, test.images, batch_size=16)
            scores = dice(preds[name], test_masks, K, per_image=True).mean(0).float()
            for k in range(1, K):
                m[f"dice/{name}/{CHAOS_CLASSES[k]}"] = float(scores[k])
            m[f"dice/{name}/mean"] = float(scores[1:].mean())

    d = {name: m[f"dice/{name}/mean"] for name in preds}
    note = f"{sizes.steps} steps each, {sizes.n_test} test slices"
    result.check(
        "guided attention mean Dice > U-Net's",
        d["guided"] > d["unet"],
        f"guided {d['guided']:.4f} vs U-Net {d['unet']:.4f} "
        f"({m['params/guided'] / 1e6:.2f}M vs {m['params/unet'] / 1e6:.2f}M parameters; {note})",
    )
    result.check(
        "guided attention mean Dice > single-scale dual attention (DANet)'s",
        d["guided"] > d["danet"],
        f"guided {d['guided']:.4f} vs DANet {d['danet']:.4f}",
    )
    result.check(
        "removing the guidance losses lowers mean Dice",
        d["guided_no_guidance"] < d["guided"],
        f"without {d['guided_no_guidance']:.4f} vs with {d['guided']:.4f}",
    )
    n_show = min(6, sizes.n_test)
    rows = {"ground truth": test_masks[:n_show]}
    rows.update({name: p[:n_show] for name, p in preds.items()})
    result.figures["predictions"] = overlay_grid(test.images[:n_show], rows, n_classes=K)
    return result
