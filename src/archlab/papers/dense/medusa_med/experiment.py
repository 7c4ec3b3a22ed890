"""Miniature reproduction of MEDUSA against the same CNN without its attention.

Task (``archlab.data.lesions``): 64x64 chest-like images with 0-3 ring-shaped lesions and 0-3
smooth distractor discs in the lungs; label 1 when an image holds at least 2 lesions, so the
decision needs evidence gathered over the whole image. MEDUSA (a ResNet whose three stages are
gated by three heads of one U-Net attention body) and the ResNet alone
(``archlab.baselines.resnet``, the same main network) are trained with the shared engine on
the same images, steps, recipe and seed. Measured: test ROC AUC of both, and where MEDUSA's
attention lands on test images with lesions: enrichment (attention mass inside lesion masks
over the lesions' area fraction; 1 = no preference), the same against the distractors, and the
pointing game (arg-max within 2 px of a lesion) against its chance rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.baselines.resnet import ResNet
from archlab.data.lesions import (
    LesionImages,
    attention_scores,
    lesion_batches,
    lesion_images,
    roc_auc,
)
from archlab.engine import fit_steps
from archlab.lab.metrics import accuracy
from archlab.lab.profiling import one_thread
from archlab.lab.result import Budget, Result
from archlab.papers.dense.medusa_med.model import SPEC, VARIANTS, Medusa, MedusaConfig, n_params


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    size: int
    n_train: int
    n_test: int
    model: MedusaConfig
    steps: int
    batch_size: int
    lr: float
    auc_margin: float  # MEDUSA's AUC may trail the baseline's by at most this much


SMOKE = Sizes(
    size=32, n_train=32, n_test=16,
    model=MedusaConfig(
        widths=(8, 16), depths=(1, 1), stem="cifar", body_widths=(8, 16), d_body=8, d_head=4
    ),
    steps=2, batch_size=8, lr=2e-3, auc_margin=0.01,
)  # fmt: skip
QUICK = Sizes(
    size=64, n_train=1500, n_test=500, model=VARIANTS["mini"], steps=150, batch_size=24,
    lr=2e-3, auc_margin=0.01,
)  # fmt: skip
BUDGETS = {"smoke": SMOKE, "quick": QUICK}


def _loss(model: nn.Module, batch: tuple[Tensor, Tensor]):
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits, y), {"acc": accuracy(logits.detach(), y)}


@torch.no_grad()
def scores_and_maps(model: nn.Module, images: Tensor, batch_size: int = 100):
    """P(label 1) per image, and (for MEDUSA) each head's map resized to the image size."""
    model.eval()
    probs, maps = [], []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size]
        if isinstance(model, Medusa):
            logits, att = model.forward_with_attention(x)
            maps.append(
                torch.stack(
                    [F.interpolate(a, size=x.shape[-2:], mode="bilinear")[:, 0] for a in att], 1
                )
            )  # (b, n_heads, H, W)
        else:
            logits = model(x)
        probs.append(logits.softmax(-1)[:, 1])
    return torch.cat(probs), (torch.cat(maps) if maps else None)


def _nanmean(x: Tensor) -> float:
    x = x[~x.isnan()]
    return float(x.mean()) if len(x) else float("nan")


def run(budget: Budget, seed: int) -> Result:
    """Train MEDUSA and its ResNet alone on the lesion-count task; check AUC and attention."""
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(SPEC.slug, SPEC.title, SPEC.claim, budget.value, seed)
    m = result.metrics
    with one_thread():
        data = lesion_images(sizes.n_train + sizes.n_test, seed=2000 + seed, size=sizes.size)
        train, test = data[: sizes.n_train], data[sizes.n_train :]
        torch.manual_seed(seed)
        medusa = Medusa(sizes.model)
        torch.manual_seed(seed)
        resnet = ResNet(sizes.model.backbone_config())
        stream = lesion_batches(train)
        aucs, maps = {}, None
        for name, model in {"medusa": medusa, "resnet": resnet}.items():
            m[f"params/{name}"] = n_params(model)
            m[f"train_s/{name}"] = fit_steps(
                model, _loss, stream, steps=sizes.steps, batch_size=sizes.batch_size,
                lr=sizes.lr, seed=seed, weight_decay=5e-4, warmup_steps=sizes.steps // 10,
            )  # fmt: skip
            probs, att = scores_and_maps(model, test.images)
            aucs[name] = roc_auc(probs, test.labels)
            m[f"auc/{name}"] = aucs[name]
            m[f"acc/{name}"] = float(((probs > 0.5).long() == test.labels).float().mean())
            if att is not None:
                maps = att
        has = test.n_lesions > 0
        head_scores = []
        for s in range(maps.shape[1]):
            les = attention_scores(maps[has, s], test.lesion_masks[has])
            dis = attention_scores(maps[has, s], test.distractor_masks[has])
            head_scores.append(les)
            m[f"enrichment/head{s + 1}"] = _nanmean(les["enrichment"])
            m[f"enrichment_distractors/head{s + 1}"] = _nanmean(dis["enrichment"])
            m[f"pointing/head{s + 1}"] = _nanmean(les["pointing"])
            m[f"pointing_chance/head{s + 1}"] = _nanmean(les["chance"])

    a_m, a_r = aucs["medusa"], aucs["resnet"]
    result.check(
        f"MEDUSA AUC >= ResNet AUC - {sizes.auc_margin} (same main network, data, steps)",
        not math.isnan(a_m) and a_m >= a_r - sizes.auc_margin,
        f"MEDUSA {a_m:.4f} vs ResNet {a_r:.4f} on {len(test)} test images "
        f"(params {int(m['params/medusa']):,} vs {int(m['params/resnet']):,})",
    )
    e1 = m["enrichment/head1"]
    result.check(
        "MEDUSA's stage-1 attention concentrates on lesions (enrichment > 1)",
        e1 > 1.0,
        f"enrichment {e1:.2f} on lesions vs {m['enrichment_distractors/head1']:.2f} on "
        f"distractors; pointing game {m['pointing/head1']:.2f} (chance "
        f"{m['pointing_chance/head1']:.2f}); heads 2-{maps.shape[1]}: "
        + ", ".join(f"{m[f'enrichment/head{s + 1}']:.2f}" for s in range(1, maps.shape[1])),
    )
    d1 = m["enrichment_distractors/head1"]
    result.check(
        "MEDUSA's stage-1 attention prefers lesions to look-alike distractors (enrichment on "
        "lesions > on distractors)",
        e1 > d1,
        f"lesions {e1:.2f} vs distractors {d1:.2f}; heads 2-{maps.shape[1]}: "
        + ", ".join(
            f"{m[f'enrichment/head{s + 1}']:.2f} vs {m[f'enrichment_distractors/head{s + 1}']:.2f}"
            for s in range(1, maps.shape[1])
        ),
    )
    result.figures["attention"] = _plot(test, maps)
    return result


def _plot(test: LesionImages, maps: Tensor):
    """Six test images with lesions: masks (lesions 1, distractors 2) and each head's map."""
    from archlab.lab.plots import overlay_grid

    idx = (test.n_lesions > 0).nonzero()[:, 0][:6]
    if len(idx) == 0:
        idx = torch.arange(min(3, len(test)))
    labels = (test.lesion_masks[idx] + 2 * test.distractor_masks[idx]).clamp_max(2)
    rows = {"lesions (1) / distractors (2)": labels}
    for s in range(maps.shape[1]):
        rows[f"attention, stage {s + 1}"] = maps[idx, s]
    titles = [f"{int(test.n_lesions[i])} lesions, y={int(test.labels[i])}" for i in idx]
    return overlay_grid(test.images[idx], rows, n_classes=3, titles=titles)
