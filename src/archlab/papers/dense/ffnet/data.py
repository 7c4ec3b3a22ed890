"""Context-dependent segmentation scenes: a region's class is decided by a distant cue.

Every image holds one or two large regions ("lots") filled with the same texture: the same
grey, the same fine diagonal stripes, the same noise, whatever their class. Their class is
decided by a cue 30-40 px (at 64 x 64) from the centre of each region: a red disc makes every
lot of the image class 1, a blue disc class 2 (as "road" and "sidewalk" can share one texture
and differ by what lies around them). A patch of a lot is therefore ambiguous on its own; the
network must bring the cue's colour across tens of pixels, which is what a large effective
receptive field buys. Distractor discs in other colours (green, yellow, magenta) carry no
information. Small checkered squares (class 3) are decidable locally. The background (class
0) is a smooth blotchy field in a random colour with pixel noise; the cue and the distractors
are labelled background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

SCENE_CLASSES = ("background", "lot/red-cue", "lot/blue-cue", "object")
"""Label ``k`` of ``context_scenes``."""

CUE_COLOURS = {1: (0.9, 0.12, 0.1), 2: (0.1, 0.2, 0.95)}
DISTRACTOR_COLOURS = ((0.15, 0.8, 0.15), (0.9, 0.85, 0.1), (0.85, 0.15, 0.85))


@dataclass(frozen=True)
class ContextScenes:
    """Images, per-pixel labels and where the cue is.

    Attributes:
        images: (n, 3, H, W) float32 in [0, 1].
        masks: (n, H, W) int64 labels in 0..3 (``SCENE_CLASSES``).
        cue_xy: (n, 2) float32 cue centre (x, y) in pixels.
        cue_class: (n,) int64, 1 (red) or 2 (blue): the class of every lot of the image.
    """

    images: Tensor
    masks: Tensor
    cue_xy: Tensor
    cue_class: Tensor

    def __len__(self) -> int:
        return len(self.images)


def context_scenes(
    n: int,
    *,
    size: int = 64,
    seed: int = 0,
    cue_distance: tuple[float, float] = (30.0, 40.0),
    lot_radius: tuple[float, float] = (8.0, 13.0),
    max_lots: int = 2,
    noise: float = 0.05,
) -> ContextScenes:
    """Draw ``n`` context-dependent segmentation scenes (see the module docstring).

    Args:
        n: number of images.
        size: H = W; distances and radii are given at 64 and scale with ``size / 64``.
        seed: the scenes are a pure function of the arguments.
        cue_distance: (min, max) distance from the cue to each lot's centre (pixels at 64).
        lot_radius: (min, max) semi-axes of the elliptical lots (pixels at 64).
        max_lots: lots per image are 1..max_lots.
        noise: standard deviation of the additive pixel noise.

    Returns:
        ``ContextScenes``; the two cue colours are balanced (alternating, then shuffled).
    """
    if n < 1 or size < 32:
        raise ValueError(f"need n >= 1 and size >= 32; got n={n}, size={size}")
    if not 0 < cue_distance[0] <= cue_distance[1]:
        raise ValueError(f"cue_distance must be (min, max) with 0 < min <= max: {cue_distance}")
    if max_lots < 1:
        raise ValueError(f"max_lots must be >= 1, got {max_lots}")
    rng = np.random.default_rng(seed)
    cue_class = 1 + (np.arange(n) % 2)
    rng.shuffle(cue_class)
    images = np.empty((n, 3, size, size), np.float32)
    masks = np.zeros((n, size, size), np.int64)
    cue_xy = np.empty((n, 2), np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    unit = size / 64.0
    for i in range(n):
        img, mask, cue = _draw(
            rng, size, unit, int(cue_class[i]), xx, yy, cue_distance, lot_radius, max_lots, noise
        )
        images[i], masks[i], cue_xy[i] = img, mask, cue
    return ContextScenes(
        images=torch.from_numpy(images),
        masks=torch.from_numpy(masks),
        cue_xy=torch.from_numpy(cue_xy),
        cue_class=torch.from_numpy(cue_class.astype(np.int64)),
    )


def _smooth_field(rng, size: int, cells: int) -> np.ndarray:
    """Blotchy [0, 1] field: a coarse random grid upsampled bilinearly."""
    coarse = torch.from_numpy(rng.uniform(0, 1, (1, 1, cells, cells)).astype(np.float32))
    up = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic")
    return up[0, 0].numpy().astype(np.float64)


def _draw(rng, size, unit, label, xx, yy, cue_distance, lot_radius, max_lots, noise):
    # Background: a random colour modulated by a blotchy field.
    base = rng.uniform(0.25, 0.75, 3)
    field = _smooth_field(rng, size, 6)
    img = base[:, None, None] * (0.75 + 0.5 * field)[None]
    mask = np.zeros((size, size), np.int64)

    # Cue position, then lots at the cue distance from it (inside the frame).
    margin = 5 * unit
    cue = rng.uniform(margin, size - margin, 2)
    n_lots = int(rng.integers(1, max_lots + 1))
    lot_tex_phase = rng.uniform(0, 2 * math.pi)
    for _ in range(n_lots):
        a, b = rng.uniform(*lot_radius, 2) * unit
        for _try in range(50):
            d = rng.uniform(*cue_distance) * unit
            ang = rng.uniform(0, 2 * math.pi)
            c = cue + d * np.array([math.cos(ang), math.sin(ang)])
            if (min(a, b) * 0.6 <= c).all() and (c <= size - min(a, b) * 0.6).all():
                break
        else:  # the cue sits so that no direction fits: move the lot to the far side
            c = np.clip(size - cue, 0, size)
        rot = rng.uniform(0, math.pi)
        dx, dy = xx - c[0], yy - c[1]
        u = dx * math.cos(rot) + dy * math.sin(rot)
        v = -dx * math.sin(rot) + dy * math.cos(rot)
        inside = (u / a) ** 2 + (v / b) ** 2 < 1.0
        # keep the cue's neighbourhood free
        inside &= (xx - cue[0]) ** 2 + (yy - cue[1]) ** 2 > (6 * unit) ** 2
        mask[inside] = label
    lots = mask > 0
    # Lot texture: identical for both classes (grey, fine diagonal stripes, noise).
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * (xx + yy) / (4.0 * unit) + lot_tex_phase)
    grey = 0.45 + 0.2 * stripes + rng.normal(0, 0.03, (size, size))
    img[:, lots] = np.array([1.0, 0.97, 0.93])[:, None] * grey[lots][None]

    # Cue disc (labelled background) and distractor discs in uninformative colours.
    r_cue = 3.0 * unit
    discs = [(cue, CUE_COLOURS[label])]
    for _ in range(int(rng.integers(0, 3))):
        for _try in range(20):
            p = rng.uniform(margin, size - margin, 2)
            if not lots[int(p[1]), int(p[0])]:
                break
        discs.append((p, DISTRACTOR_COLOURS[int(rng.integers(0, len(DISTRACTOR_COLOURS)))]))
    for p, colour in discs:
        d2 = ((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / r_cue**2
        disc = d2 < 1.0
        img[:, disc] = np.asarray(colour)[:, None] * (1.0 - 0.25 * d2[disc])[None]
        mask[disc] = 0

    # Local objects: small checkered squares (class 3), anywhere.
    for _ in range(int(rng.integers(0, 4))):
        half = rng.uniform(2.5, 4.0) * unit
        p = rng.uniform(half, size - half, 2)
        if np.abs(p - cue).max() < half + r_cue + unit:  # never hide the cue
            continue
        sq = (np.abs(xx - p[0]) < half) & (np.abs(yy - p[1]) < half)
        check = (np.floor((xx - p[0]) / (1.5 * unit)) + np.floor((yy - p[1]) / (1.5 * unit))) % 2
        colour = rng.uniform(0.3, 0.8, 3)  # unsaturated: never a red or blue cue
        img[:, sq] = (colour[:, None] * (0.2 + 0.8 * check[sq])[None]).clip(0, 1)
        mask[sq] = 3

    img = img + rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 1).astype(np.float32), mask, cue.astype(np.float32)
