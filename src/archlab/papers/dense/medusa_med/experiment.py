"""Miniature reproduction of MEDUSA against the same CNN without its attention.

Task (``medusa_med.data``): 64x64 chest-like images with 0-3 ring-shaped lesions and 0-3
smooth distractor discs in the lungs; label 1 when an image holds at least 2 lesions, so the
decision needs evidence gathered over the whole image. MEDUSA (a ResNet whose three stages are
gated by three heads of one U-Net attention body) and the ResNet alone
(``archlab.baselines.resnet``, the same main network) are built from the same init stream and
trained on the same data stream with the same recipe (``archlab.lab``). Measured: test ROC AUC
of both, and where MEDUSA's attention lands on test images with lesions: enrichment (attention
mass inside lesion masks over the lesions' area fraction; 1 = no preference), the same against
the distractors, and the pointing game (arg-max within 2 px of a lesion) against its chance
rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.baselines.resnet import ResNet
from archlab.lab import Lab, Recipe, predict
from archlab.lab.plots import overlay_grid
from archlab.lab.tasks import CLASSIFY
from archlab.papers.dense.medusa_med.data import (
    LesionImages,
    attention_scores,
    lesion_batches,
    lesion_images,
    roc_auc,
)
from archlab.papers.dense.medusa_med.model import VARIANTS, Medusa, MedusaConfig


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    size: int
    n_train: int
    n_test: int
    model: MedusaConfig
    recipe: Recipe
    auc_margin: float  # MEDUSA's AUC may trail the baseline's by at most this much
    min_enrichment: float  # stage-1 enrichment on lesions must reach this (1: no preference)
    distractor_margin: float  # enrichment on lesions minus on distractors (> 0: strictly)


BUDGETS = {
    "smoke": Settings(
        size=32, n_train=32, n_test=16,
        model=MedusaConfig(
            widths=(8, 16), depths=(1, 1), stem="cifar", body_widths=(8, 16), d_body=8, d_head=4
        ),
        recipe=CLASSIFY.recipe(steps=2, batch_size=8, lr=2e-3, weight_decay=5e-4,
                               warmup_steps=0, grad_clip=None),
        auc_margin=0.01, min_enrichment=1.0 + 1e-9, distractor_margin=1e-9,
    ),
    "quick": Settings(
        size=64, n_train=1500, n_test=500, model=VARIANTS["mini"],
        recipe=CLASSIFY.recipe(steps=150, batch_size=24, lr=2e-3, weight_decay=5e-4,
                               warmup_steps=15, grad_clip=None),
        auc_margin=0.01, min_enrichment=1.0 + 1e-9, distractor_margin=1e-9,
    ),
}  # fmt: skip


def attention_maps(model: Medusa, x: Tensor) -> Tensor:
    """Each head's map resized to the image size: ``(B, C, H, W)`` -> ``(B, n_heads, H, W)``."""
    _, att = model.forward_with_attention(x)
    return torch.stack([F.interpolate(a, size=x.shape[-2:], mode="bilinear")[:, 0] for a in att], 1)


def positive_probability(model: nn.Module, x: Tensor) -> Tensor:
    """P(label 1) per image: ``(B, C, H, W)`` -> ``(B,)``."""
    return model(x).softmax(-1)[:, 1]


def _nanmean(x: Tensor) -> float:
    x = x[~x.isnan()]
    return float(x.mean()) if len(x) else float("nan")


def measure_attention(lab: Lab, maps: Tensor, test: LesionImages) -> None:
    """Enrichment on lesions and on distractors, and the pointing game, per head (images with
    lesions only)."""
    has = test.n_lesions > 0
    for h in range(maps.shape[1]):
        les = attention_scores(maps[has, h], test.lesion_masks[has])
        dis = attention_scores(maps[has, h], test.distractor_masks[has])
        lab.measure(f"enrichment/head{h + 1}", _nanmean(les["enrichment"]))
        lab.measure(f"enrichment_distractors/head{h + 1}", _nanmean(dis["enrichment"]))
        lab.measure(f"pointing/head{h + 1}", _nanmean(les["pointing"]))
        lab.measure(f"pointing_chance/head{h + 1}", _nanmean(les["chance"]))


def attention_figure(test: LesionImages, maps: Tensor):
    """Six test images with lesions: masks (lesions 1, distractors 2) and each head's map."""
    idx = (test.n_lesions > 0).nonzero()[:, 0][:6]
    if len(idx) == 0:
        idx = torch.arange(min(3, len(test)))
    labels = (test.lesion_masks[idx] + 2 * test.distractor_masks[idx]).clamp_max(2)
    rows = {"lesions (1) / distractors (2)": labels}
    for h in range(maps.shape[1]):
        rows[f"attention, stage {h + 1}"] = maps[idx, h]
    titles = [f"{int(test.n_lesions[i])} lesions, y={int(test.labels[i])}" for i in idx]
    return overlay_grid(test.images[idx], rows, n_classes=3, titles=titles)


def run(lab: Lab) -> None:
    """Train MEDUSA and its ResNet alone on the lesion-count task; check AUC and attention."""
    s: Settings = lab.settings
    train = lesion_images(s.n_train, seed=lab.seed_for("train-data"), size=s.size)
    test = lesion_images(s.n_test, seed=lab.seed_for("test-data"), size=s.size)
    arms = {"medusa": lambda: Medusa(s.model), "resnet": lambda: ResNet(s.model.backbone_config())}
    models = {arm: lab.build(arm, make) for arm, make in arms.items()}
    for arm, model in models.items():
        lab.fit(arm, model, CLASSIFY.loss, lesion_batches(train), s.recipe)
        probs = predict(model, test.images, batch_size=100, fn=positive_probability)
        lab.measure(f"auc/{arm}", roc_auc(probs, test.labels))
        lab.measure(f"acc/{arm}", ((probs > 0.5).long() == test.labels).float().mean())
    maps = predict(models["medusa"], test.images, batch_size=100, fn=attention_maps)
    measure_attention(lab, maps, test)

    m, heads = lab.metrics, range(2, maps.shape[1] + 1)
    lab.compare(
        f"MEDUSA AUC >= ResNet AUC - {s.auc_margin} (same main network, data, steps)",
        "auc", "medusa", "resnet", margin=-s.auc_margin,
        note=f"{len(test)} test images; params {int(m['params/medusa']):,} vs "
        f"{int(m['params/resnet']):,}",
    )  # fmt: skip
    lab.bound(
        "MEDUSA's stage-1 attention concentrates on lesions (enrichment > 1)",
        "stage-1 enrichment on lesions", m["enrichment/head1"], at_least=s.min_enrichment,
        note=f"{m['enrichment_distractors/head1']:.2f} on distractors; pointing game "
        f"{m['pointing/head1']:.2f} (chance {m['pointing_chance/head1']:.2f}); heads "
        f"2-{maps.shape[1]}: " + ", ".join(f"{m[f'enrichment/head{h}']:.2f}" for h in heads),
    )  # fmt: skip
    lab.compare_values(
        "MEDUSA's stage-1 attention prefers lesions to look-alike distractors (enrichment on "
        "lesions > on distractors)",
        ("lesions", m["enrichment/head1"]), ("distractors", m["enrichment_distractors/head1"]),
        margin=s.distractor_margin,
        note=f"heads 2-{maps.shape[1]}: " + ", ".join(
            f"{m[f'enrichment/head{h}']:.2f} vs {m[f'enrichment_distractors/head{h}']:.2f}"
            for h in heads
        ),
    )  # fmt: skip
    lab.figure("attention", attention_figure(test, maps))
