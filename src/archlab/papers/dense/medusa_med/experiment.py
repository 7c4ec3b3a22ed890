"""Miniature reproduction of MEDUSA against the same CNN without its attention.

Task (``medusa_med.data``): chest-like images with 0-3 ring-shaped lesions and 0-3 smooth
distractor discs in the lungs; label 1 when an image holds at least 2 lesions, so the decision
needs evidence gathered over the whole image. The quick budget's images are smaller (48 x 48,
so lesions of radius 1.9-3.8 px), noisier and fewer than the first miniature's (on which both
networks scored AUC >= 0.998), calibrated on validation so that neither network saturates.
MEDUSA (a ResNet whose three stages are gated by three heads of one U-Net attention body) and
the ResNet alone (``archlab.baselines.resnet``, the same main network) are each tuned with
``lab.tune`` over the same learning-rate grid (every candidate from the same init stream, on
the same batch stream, with the same recipe), picked on validation ROC AUC. Train, validation
and test images come from their own named streams; the test split is evaluated once, after
every choice. The ResNet passes a health check (AUC above the constant predictor's 0.5 by a
margin, its loss curve has flattened) before the comparison. Measured on test images with
lesions: where MEDUSA's attention lands: enrichment (attention mass inside lesion masks over
the lesions' area fraction; 1 = no preference), the same against the distractors, and the
pointing game (arg-max within 2 px of a lesion) against its chance rate measured on the same
images (the dilated lesion masks' area fraction: the hit rate of a map whose peak falls
anywhere at random).
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
    noise: float  # standard deviation of the images' Gaussian noise
    n_train: int
    n_val: int
    n_test: int
    model: MedusaConfig
    recipe: Recipe
    lrs: tuple[float, ...]  # the learning-rate grid of both arms (picked on validation AUC)
    auc_margin: float  # MEDUSA's AUC may trail the baseline's by at most this much (0: >=)
    health_margin: float  # the ResNet's AUC must beat the constant predictor's 0.5 by this
    max_flattening: float  # the ResNet's loss fell by at most this over the last quarter
    pointing_margin: float  # stage-1 pointing game must beat its chance rate by this much
    distractor_margin: float  # enrichment on lesions minus on distractors (> 0: strictly)


BUDGETS = {
    "smoke": Settings(
        size=32, noise=0.06, n_train=32, n_val=16, n_test=16,
        model=MedusaConfig(
            widths=(8, 16), depths=(1, 1), stem="cifar", body_widths=(8, 16), d_body=8, d_head=4
        ),
        recipe=CLASSIFY.recipe(steps=2, batch_size=8, lr=2e-3, weight_decay=5e-4,
                               warmup_steps=0, grad_clip=None),
        lrs=(2e-3,), auc_margin=0.01, health_margin=0.0, max_flattening=1.0,
        pointing_margin=0.0, distractor_margin=1e-9,
    ),
    "quick": Settings(
        size=48, noise=0.12, n_train=600, n_val=300, n_test=500, model=VARIANTS["mini"],
        recipe=CLASSIFY.recipe(steps=120, batch_size=24, lr=2e-3, weight_decay=5e-4,
                               warmup_steps=12, grad_clip=None, curve_points=10),
        lrs=(1e-3, 3e-3), auc_margin=0.0, health_margin=0.1, max_flattening=0.2,
        pointing_margin=0.1, distractor_margin=1e-9,
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
    """Tune MEDUSA and its ResNet alone on the lesion-count task; check AUC and attention."""
    s: Settings = lab.settings
    data = {
        split: lesion_images(n, seed=lab.seed_for(f"{split}-data"), size=s.size, noise=s.noise)
        for split, n in (("train", s.n_train), ("val", s.n_val), ("test", s.n_test))
    }
    val, test = data["val"], data["test"]
    arms = {"medusa": lambda: Medusa(s.model), "resnet": lambda: ResNet(s.model.backbone_config())}

    def val_auc(model: nn.Module) -> float:
        probs = predict(model, val.images, batch_size=100, fn=positive_probability)
        return roc_auc(probs, val.labels)

    models = {
        arm: lab.tune(arm, make, CLASSIFY.loss, lesion_batches(data["train"]), s.recipe,
                      lrs=s.lrs, score=val_auc)
        for arm, make in arms.items()
    }  # fmt: skip
    for arm, model in models.items():  # the test split, once, after every choice
        probs = predict(model, test.images, batch_size=100, fn=positive_probability)
        lab.measure(f"auc/{arm}", roc_auc(probs, test.labels))
        lab.measure(f"acc/{arm}", ((probs > 0.5).long() == test.labels).float().mean())
    lab.measure("auc/constant", 0.5)  # any constant score: every pair is a tie
    # The head whose attention is checked: the best pointing game on validation.
    val_maps = predict(models["medusa"], val.images, batch_size=100, fn=attention_maps)
    has = val.n_lesions > 0
    val_pointing = [
        _nanmean(attention_scores(val_maps[has, h], val.lesion_masks[has])["pointing"])
        for h in range(val_maps.shape[1])
    ]
    for h, value in enumerate(val_pointing):
        lab.measure(f"val_pointing/head{h + 1}", value)
    k = 1 + max(range(len(val_pointing)), key=lambda h: (val_pointing[h], -h))
    lab.measure("attention_head", k)
    maps = predict(models["medusa"], test.images, batch_size=100, fn=attention_maps)
    measure_attention(lab, maps, test)

    m = lab.metrics
    lab.health(
        "resnet", "auc", ("a constant score", m["auc/constant"]), margin=s.health_margin,
        max_flattening=s.max_flattening,
    )  # fmt: skip
    lab.compare(
        f"MEDUSA AUC >= ResNet AUC - {s.auc_margin:g} (same main network, data, steps, lr grid)",
        "auc", "medusa", "resnet", margin=-s.auc_margin,
        note=f"{len(test)} test images; params {int(m['params/medusa']):,} vs "
        f"{int(m['params/resnet']):,}; lr {m['lr/medusa']:g} vs {m['lr/resnet']:g}",
    )  # fmt: skip
    others = [h for h in range(1, maps.shape[1] + 1) if h != k]
    lab.compare_values(
        "MEDUSA's attention peaks on a lesion (pointing game of the head chosen on validation "
        f">= its chance rate + {s.pointing_margin:g})",
        ("pointing game", m[f"pointing/head{k}"]), ("chance", m[f"pointing_chance/head{k}"]),
        margin=s.pointing_margin,
        note=f"stage-{k} head; enrichment on lesions {m[f'enrichment/head{k}']:.2f}; other "
        "heads: " + ", ".join(f"stage {h} {m[f'pointing/head{h}']:.2f}" for h in others),
    )  # fmt: skip
    lab.compare_values(
        f"MEDUSA's stage-{k} attention prefers lesions to look-alike distractors (enrichment "
        "on lesions > on distractors)",
        ("lesions", m[f"enrichment/head{k}"]),
        ("distractors", m[f"enrichment_distractors/head{k}"]),
        margin=s.distractor_margin,
        note="other heads: " + ", ".join(
            f"stage {h} {m[f'enrichment/head{h}']:.2f} vs "
            f"{m[f'enrichment_distractors/head{h}']:.2f}" for h in others
        ),
    )  # fmt: skip
    lab.figure("attention", attention_figure(test, maps))
