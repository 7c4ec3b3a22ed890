"""Miniature reproduction of ParaTransCNN: parallel CNN + pyramid-transformer encoders against a
ResNet U-Net on synthetic abdominal multi-organ slices.

Data: ``archlab.data.organs`` slices (Synapse-like: liver, spleen, right/left kidney,
gallbladder, pancreas + background; appearance overlaps between classes, so position and
neighbourhood decide), a fixed training pool and a held-out test set drawn from other seeds.
``Sizes.mirror`` can mirror slices left-right without swapping labels (TransUNet-style flips),
so that only the anatomy tells the right kidney from the left; the card reports that setting.
Both models start from random weights (the official CNN branch is ImageNet-pretrained) and are
trained with the shared engine on the same pool, steps, batch size and recipe (0.5 CE + 0.5 Dice
as the official trainer; AdamW with a cosine schedule instead of SGD with a poly schedule, for the
short run). Claims checked on the test set: mean foreground Dice above the ResNet U-Net's, and
small-organ (gallbladder, pancreas) Dice at least the U-Net's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.baselines.unet import UNet, UNetConfig, n_params
from archlab.data import image_batches
from archlab.data.organs import N_ORGAN_CLASSES, ORGAN_CLASSES, SMALL_ORGANS, organ_slices
from archlab.engine import fit_steps
from archlab.lab.inference import predict_labels
from archlab.lab.losses import dice_loss
from archlab.lab.metrics import dice
from archlab.lab.plots import overlay_grid
from archlab.lab.profiling import one_thread
from archlab.lab.result import Budget, Result
from archlab.papers.dense.paratranscnn.model import SPEC, ParaTransCNN, ParaTransCNNConfig


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    image_size: int
    mirror: float
    n_train: int
    n_test: int
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    paratranscnn: ParaTransCNNConfig
    unet_widths: tuple[int, ...]


def _para(dim: int, widths: tuple[int, int, int, int], heads: int) -> ParaTransCNNConfig:
    return ParaTransCNNConfig(
        n_channels=1, n_classes=N_ORGAN_CLASSES, dim=dim, heads=heads, depth=(1, 1, 1),
        dropout=0.0, attn_dropout=0.0, cnn_widths=widths, cnn_depths=(1, 1, 1, 1),
        se_reduction=8,
    )  # fmt: skip


SMOKE = Sizes(
    image_size=32, mirror=0.0, n_train=16, n_test=4, steps=2, batch_size=4, lr=2e-3, warmup_steps=0,
    paratranscnn=_para(8, (8, 8, 16, 16), 2), unet_widths=(8, 8, 16, 16),
)  # fmt: skip
QUICK = Sizes(
    image_size=64, mirror=0.0, n_train=800, n_test=64, steps=250, batch_size=8, lr=2e-3,
    warmup_steps=10,
    paratranscnn=_para(16, (16, 32, 64, 96), 2), unet_widths=(24, 48, 96, 192),
)  # fmt: skip
BUDGETS = {"smoke": SMOKE, "quick": QUICK}


def seg_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """0.5 cross-entropy + 0.5 Dice (the official trainer's loss)."""
    x, y = batch
    logits = model(x)
    ce, dl = F.cross_entropy(logits, y), dice_loss(logits, y)
    return 0.5 * ce + 0.5 * dl, {"ce": float(ce.detach()), "dice_loss": float(dl.detach())}


def per_class_dice(pred: Tensor, masks: Tensor) -> Tensor:
    """Per-image Dice averaged over the test images: (K,) (background included at 0)."""
    return dice(pred, masks, N_ORGAN_CLASSES, per_image=True).mean(0).float()


def make_models(sizes: Sizes, seed: int) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    para = ParaTransCNN(sizes.paratranscnn)
    torch.manual_seed(seed)
    unet = UNet(
        UNetConfig(
            n_channels=1, n_outputs=N_ORGAN_CLASSES, widths=sizes.unet_widths, block="residual"
        )
    )
    return {"paratranscnn": para, "resunet": unet}


def run(budget: Budget, seed: int) -> Result:
    """Train ParaTransCNN and the ResNet U-Net on the same organ slices; compare test Dice."""
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(SPEC.slug, SPEC.title, SPEC.claim, budget.value, seed)
    m = result.metrics
    with one_thread():
        kw = {"size": sizes.image_size, "mirror": sizes.mirror}
        train = organ_slices(sizes.n_train, seed=1000 + seed, **kw)
        test = organ_slices(sizes.n_test, seed=9000 + seed, **kw)
        data = image_batches(train.images, train.masks)
        scores: dict[str, Tensor] = {}
        preds: dict[str, Tensor] = {}
        for name, model in make_models(sizes, seed).items():
            m[f"params/{name}"] = n_params(model)
            m[f"train_s/{name}"] = fit_steps(
                model, seg_loss, data, steps=sizes.steps, batch_size=sizes.batch_size,
                lr=sizes.lr, seed=seed, warmup_steps=sizes.warmup_steps,
            )  # fmt: skip
            preds[name] = predict_labels(model, test.images, batch_size=16)
            scores[name] = per_class_dice(preds[name], test.masks)
            for k in range(1, N_ORGAN_CLASSES):
                m[f"dice/{name}/{ORGAN_CLASSES[k]}"] = float(scores[name][k])
            m[f"dice/{name}/mean"] = float(scores[name][1:].mean())
            m[f"dice/{name}/small"] = float(scores[name][list(SMALL_ORGANS)].mean())

    p_mean, u_mean = m["dice/paratranscnn/mean"], m["dice/resunet/mean"]
    p_small, u_small = m["dice/paratranscnn/small"], m["dice/resunet/small"]
    size_note = (
        f"{m['params/paratranscnn'] / 1e6:.2f}M vs {m['params/resunet'] / 1e6:.2f}M parameters, "
        f"{sizes.steps} steps each, {sizes.n_test} test slices"
    )
    result.check(
        "ParaTransCNN mean organ Dice > ResNet U-Net's",
        p_mean > u_mean,
        f"ParaTransCNN {p_mean:.4f} vs ResNet U-Net {u_mean:.4f} ({size_note})",
    )
    result.check(
        "ParaTransCNN small-organ Dice (gallbladder, pancreas) >= ResNet U-Net's",
        p_small >= u_small,
        f"ParaTransCNN {p_small:.4f} vs ResNet U-Net {u_small:.4f}",
    )
    n_show = min(6, sizes.n_test)
    rows = {"ground truth": test.masks[:n_show]}
    rows.update({name: p[:n_show] for name, p in preds.items()})
    result.figures["predictions"] = overlay_grid(
        test.images[:n_show], rows, n_classes=N_ORGAN_CLASSES
    )
    return result
