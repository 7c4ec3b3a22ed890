"""Synthetic chest-radiograph-like images whose label needs the whole image: a lesion count.

Each image is a gray "chest": a bright body with two dark lung fields, bright rib bands across
the lungs, a smooth bias field and noise. Inside the lungs lie 0..3 *lesions* (ring-shaped
nodules: a bright rim around a darker core, radius 2.5-5 px) and 0..3 *distractors* (smooth bright
discs of the same mean intensity and a similar size). The label is 1 when the image holds at
least ``threshold`` lesions (default 2), so no single region decides it: the evidence is spread
over both lungs, and the model must both tell lesions from distractors locally and aggregate them
globally. Lesion and distractor masks are kept for attention analysis (``attention_scores``).

Attention scores of a non-negative map ``A`` against a lesion mask ``M`` (images with lesions):

- **enrichment** = (mass of ``A`` inside ``M`` / total mass of ``A``) / (area of ``M`` / image
  area): 1 for a uniform map, > 1 when attention concentrates on lesions.
- **pointing game**: whether the arg-max of ``A`` falls inside ``M`` dilated by ``tolerance``
  pixels; chance is the dilated mask's area fraction (also returned).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class LesionImages:
    """Images, labels and masks.

    Attributes:
        images: (N, 1, H, W) float32 in [0, 1].
        labels: (N,) int64, 1 when ``n_lesions >= threshold``.
        lesion_masks: (N, H, W) int64, 1 on lesions (the full disc inside each ring's outer edge).
        distractor_masks: (N, H, W) int64, 1 on distractors.
        n_lesions: (N,) int64 lesion counts.
    """

    images: Tensor
    labels: Tensor
    lesion_masks: Tensor
    distractor_masks: Tensor
    n_lesions: Tensor

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx) -> LesionImages:
        return LesionImages(
            self.images[idx],
            self.labels[idx],
            self.lesion_masks[idx],
            self.distractor_masks[idx],
            self.n_lesions[idx],
        )


def _place(g: torch.Generator, lungs: Tensor, taken: Tensor, r: float):
    """A random centre (pixel) at least ``r + 1`` px inside the lungs and ``r + 2`` px away from
    anything ``taken``; None when there is no room."""
    from scipy.ndimage import distance_transform_edt

    inside = torch.from_numpy(distance_transform_edt(lungs.numpy()))
    free = torch.from_numpy(distance_transform_edt(~taken.numpy())) if taken.any() else None
    ok = inside > r + 1
    if free is not None:
        ok &= free > r + 2
    idx = ok.flatten().nonzero()[:, 0]
    if len(idx) == 0:
        return None
    pick = int(idx[torch.randint(len(idx), (1,), generator=g)])
    size = lungs.shape[1]
    return pick // size + 0.5, pick % size + 0.5


def lesion_images(
    n: int,
    *,
    seed: int = 0,
    size: int = 64,
    max_lesions: int = 3,
    max_distractors: int = 3,
    threshold: int = 2,
    noise: float = 0.06,
) -> LesionImages:
    """``n`` chest-like images labelled by whether they hold at least ``threshold`` lesions.

    Args:
        n: number of images.
        seed: images are a pure function of ``(n, seed)`` and the settings.
        size: image side H = W (>= 32).
        max_lesions: lesion counts are uniform in ``0..max_lesions``.
        max_distractors: distractor counts are uniform in ``0..max_distractors``.
        threshold: label = ``n_lesions >= threshold``.
        noise: standard deviation of the additive Gaussian noise.
    """
    if n < 1 or size < 32:
        raise ValueError(f"need n >= 1 and size >= 32; got n={n}, size={size}")
    if not 0 < threshold <= max_lesions:
        raise ValueError(f"threshold must be in 1..max_lesions={max_lesions}, got {threshold}")
    g = torch.Generator().manual_seed(seed)
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (H, W) pixel centres
    u, v = xx / size * 2 - 1, yy / size * 2 - 1  # in [-1, 1]
    s = size / 64  # radii are given for 64 x 64 images
    images, les, dis, counts = [], [], [], []
    for _ in range(n):
        rnd = torch.rand(12, generator=g)
        body = ((u / (0.95 + 0.04 * rnd[0])) ** 2 + (v / 1.05) ** 2) < 1.0
        lungs = torch.zeros(size, size, dtype=torch.bool)
        for side in (-1, 1):
            cu = side * (0.42 + 0.05 * rnd[1])
            au, av = 0.3 + 0.05 * rnd[2], 0.62 + 0.08 * rnd[3]
            lungs |= ((u - cu) / au) ** 2 + ((v + 0.05) / av) ** 2 < 1.0
        img = 0.12 + 0.5 * body.float()
        img = torch.where(lungs, torch.full_like(img, 0.3), img)
        # Ribs: bright bands, slightly curved, of random phase and period.
        period = 0.28 + 0.06 * rnd[4]
        ribs = torch.sin(2 * math.pi * (v + 0.15 * u.abs() ** 2) / period + 6.28 * rnd[5])
        img = img + 0.09 * (ribs > 0.3).float() * lungs
        # Lesions (rings) and distractors (smooth discs), never touching each other.
        n_les = int(torch.randint(0, max_lesions + 1, (1,), generator=g))
        n_dis = int(torch.randint(0, max_distractors + 1, (1,), generator=g))
        taken = torch.zeros(size, size, dtype=torch.bool)
        lesion_mask = torch.zeros(size, size, dtype=torch.bool)
        distractor_mask = torch.zeros(size, size, dtype=torch.bool)
        placed = 0
        for k in range(n_les + n_dis):
            is_lesion = k < n_les
            r = s * (2.5 + 2.5 * float(torch.rand(1, generator=g)))
            spot = _place(g, lungs, taken, r)
            if spot is None:
                continue
            cy, cx = spot
            dist = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt() / r  # 1 on the edge
            taken |= dist <= 1.0
            edge = (1.0 - dist).mul(r).add(0.5).clamp(0, 1)  # anti-aliased disc
            if is_lesion:  # bright rim (0.55..1), darker core: mean about 0.42 above lungs
                profile = 0.22 + 0.33 * (dist > 0.55).float()
                lesion_mask |= dist <= 1.0
                placed += 1
            else:  # smooth disc of a similar mean brightness
                profile = 0.42 * (1 - 0.3 * dist**2)
                distractor_mask |= dist <= 1.0
            img = img + edge * profile * (0.85 + 0.3 * float(torch.rand(1, generator=g)))
        # Bias field and noise.
        a, b, c = (rnd[6:9] * 2 - 1).tolist()
        img = img * (1 + 0.2 * (a * u + b * v + c * u * v))
        img = img + noise * torch.randn(size, size, generator=g)
        images.append(img.clamp(0, 1))
        les.append(lesion_mask)
        dis.append(distractor_mask)
        counts.append(placed)
    n_lesions = torch.tensor(counts)
    return LesionImages(
        images=torch.stack(images).unsqueeze(1),  # (N, 1, H, W)
        labels=(n_lesions >= threshold).long(),
        lesion_masks=torch.stack(les).long(),
        distractor_masks=torch.stack(dis).long(),
        n_lesions=n_lesions,
    )


def lesion_batches(
    data: LesionImages, flip: bool = True
) -> Callable[[int, torch.Generator], tuple[Tensor, Tensor]]:
    """A batch stream ``(batch_size, generator) -> (images (B, 1, H, W), labels (B,))``; ``flip``
    mirrors images left-right with probability 1/2 (the label does not change)."""

    def batch(batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        idx = torch.randint(len(data), (batch_size,), generator=generator)
        x = data.images[idx]
        if flip:
            mirror = torch.rand(batch_size, generator=generator) < 0.5
            x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
        return x, data.labels[idx]

    return batch


def attention_scores(attention: Tensor, masks: Tensor, tolerance: int = 2) -> dict[str, Tensor]:
    """Enrichment and pointing game of attention maps against masks (see the module docstring).

    Args:
        attention: (N, H, W) non-negative maps (resize them to the masks' size first).
        masks: (N, H, W) 0/1 masks; images with an empty mask get NaN scores.
        tolerance: pointing-game tolerance in pixels (the mask is dilated by it).

    Returns:
        ``enrichment``, ``pointing`` (1.0 hit / 0.0 miss) and ``chance`` (dilated-mask area
        fraction), each (N,) float.
    """
    if attention.shape != masks.shape or attention.ndim != 3:
        raise ValueError(
            f"expected (N, H, W) attention and masks, got {tuple(attention.shape)} and "
            f"{tuple(masks.shape)}"
        )
    if (attention < 0).any():
        raise ValueError("attention maps must be non-negative")
    m = masks.bool()
    empty = ~m.flatten(1).any(1)
    a = attention.float()
    mass_in = (a * m).flatten(1).sum(1) / a.flatten(1).sum(1).clamp_min(1e-12)
    area = m.flatten(1).float().mean(1)
    enrichment = mass_in / area.clamp_min(1e-12)
    k = 2 * tolerance + 1
    dilated = F.max_pool2d(m[:, None].float(), k, stride=1, padding=tolerance)[:, 0] > 0
    top = a.flatten(1).argmax(1)
    pointing = dilated.flatten(1).gather(1, top[:, None])[:, 0].float()
    chance = dilated.flatten(1).float().mean(1)
    nan = torch.full_like(enrichment, float("nan"))
    return {
        "enrichment": torch.where(empty, nan, enrichment),
        "pointing": torch.where(empty, nan, pointing),
        "chance": torch.where(empty, nan, chance),
    }


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted half); NaN with one class."""
    scores, labels = scores.double().flatten(), labels.flatten().bool()
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).double().sum()
    ties = (pos[:, None] == neg[None, :]).double().sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
