"""Synthetic 3-D "brain MRI" volumes with lesions of widely varying size, and lesion-wise scores.

A stand-in for contrast-enhanced T1 volumes with meningiomas (Bouget et al. 2020, arXiv
2010.07002): a head (bright skull shell around an ellipsoidal brain with smooth tissue texture and
dark ventricles), thin bright "vessels" (tubes as bright as the lesions, so intensity alone does not
separate them), and 0..``max_lesions`` enhancing ellipsoidal lesions whose equivalent radius is
log-uniform over ``radius_range`` (a few voxels to a large fraction of the brain), optionally with
a brighter rim and a darker core. A smooth multiplicative bias field and Gaussian noise finish the
volume. Lesions never touch each other, so each is one connected component of the mask.

Scores for size-stratified evaluation (``lesion_scores``, ``detection_f1``):

- **Lesion-wise Dice.** For each ground-truth lesion ``G``: the Dice between ``G`` and the union
  of the predicted connected components (26-connectivity) that overlap ``G`` (0 if none does).
  This charges a lesion for being missed, under-segmented or over-segmented.
- **Detection.** A lesion is *detected* when its lesion-wise Dice is at least ``min_dice``
  (default 0.1, the threshold of Bouget et al.); a predicted component is a *true positive* when
  its Dice against the union of the lesions it overlaps is at least ``min_dice``, otherwise a false
  positive. Recall = detected / lesions, precision = true-positive components / components,
  F1 = 2PR / (P + R), pooled over a data set. With no lesion and no prediction anywhere, F1 = 1.
- **Size bins.** ``size_bin`` maps a lesion's voxel count to 0 (small), 1 (medium), 2 (large) with
  the edges ``SIZE_EDGES`` (voxels).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

SIZE_EDGES = (100, 500)
"""Voxel-count edges of the size bins: small < 100 <= medium < 500 <= large."""
SIZE_NAMES = ("small", "medium", "large")


@dataclass
class LesionVolumes:
    """A set of volumes with their lesion annotations.

    Attributes:
        images: (N, 1, S, S, S) float32 in [0, 1].
        masks: (N, S, S, S) int64, 1 inside a lesion, 0 elsewhere.
        instances: (N, S, S, S) int64, 0 background, ``i`` inside lesion ``i`` (1-based).
        lesion_voxels: per volume, the voxel count of each lesion (in instance order).
    """

    images: Tensor
    masks: Tensor
    instances: Tensor
    lesion_voxels: list[list[int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx) -> LesionVolumes:
        """A subset (``idx``: slice, list or index tensor)."""
        if isinstance(idx, slice):
            voxels = self.lesion_voxels[idx]
        else:
            voxels = [self.lesion_voxels[int(i)] for i in idx]
        return LesionVolumes(self.images[idx], self.masks[idx], self.instances[idx], voxels)


def size_bin(n_voxels: int, edges: tuple[int, ...] = SIZE_EDGES) -> int:
    """Size bin of a lesion of ``n_voxels`` voxels: the number of ``edges`` it reaches."""
    return sum(n_voxels >= e for e in edges)


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise, normalised to zero mean and unit standard deviation."""
    from scipy.ndimage import gaussian_filter

    field_ = gaussian_filter(rng.standard_normal((size,) * 3), sigma, mode="wrap")
    return (field_ - field_.mean()) / (field_.std() + 1e-8)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _one_volume(
    rng: np.random.Generator,
    size: int,
    max_lesions: int,
    radius_range: tuple[float, float],
    n_vessels: int,
    noise: float,
    bias: float,
    rim: bool,
):
    coords = (np.arange(size) + 0.5) - size / 2  # voxel centres, origin at the volume centre
    z, y, x = np.meshgrid(coords, coords, coords, indexing="ij")
    pts = np.stack([z, y, x], -1)  # (S, S, S, 3)
    half = size / 2

    # Head: brain ellipsoid, skull shell, ventricles, smooth tissue texture.
    axes = half * rng.uniform(0.72, 0.86, 3)
    rho = np.sqrt(((pts / axes) ** 2).sum(-1))  # 1 on the brain surface
    brain = rho < 1.0
    skull = (rho >= 1.0) & (rho < 1.0 + 2.2 / axes.min())
    img = np.zeros((size,) * 3)
    img[skull] = 0.55
    tissue = 0.38 + 0.05 * _smooth_noise(rng, size, 1.5) + 0.03 * _smooth_noise(rng, size, 4.0)
    img[brain] = tissue[brain]
    for side in (-1.0, 1.0):  # two dark ventricles beside the midline
        c = np.array([0.0, 0.0, side * 0.18 * axes[2]])
        va = axes * np.array([0.28, 0.42, 0.12]) * rng.uniform(0.8, 1.2, 3)
        img[(((pts - c) / va) ** 2).sum(-1) < 1.0] = 0.16

    # Vessels: thin bright tubes inside the brain (as bright as lesions, but elongated).
    lesion_level = 0.78
    for _ in range(rng.integers(0, n_vessels + 1)):
        a = rng.uniform(-0.7, 0.7, 3) * axes
        d = rng.standard_normal(3)
        d /= np.linalg.norm(d)
        length = rng.uniform(0.4, 1.0) * half
        t = np.clip(((pts - a) @ d), 0.0, length)
        dist = np.linalg.norm(pts - (a + t[..., None] * d), axis=-1)
        r_v = rng.uniform(0.6, 1.1)
        tube = np.clip(1.2 * (r_v - dist) + 0.5, 0.0, 1.0) * brain
        img = img * (1 - tube) + lesion_level * tube

    # Lesions: non-touching ellipsoids, log-uniform equivalent radius.
    instances = np.zeros((size,) * 3, dtype=np.int64)
    occupied = np.zeros((size,) * 3, dtype=bool)
    voxels: list[int] = []
    n_lesions = int(rng.integers(0, max_lesions + 1))
    lo, hi = radius_range
    for _ in range(n_lesions):
        for _attempt in range(30):
            r = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            semi = r * rng.uniform(0.75, 1.3, 3)
            semi *= r / np.prod(semi) ** (1 / 3)  # keep the equivalent radius r
            rot = _random_rotation(rng)
            room = np.maximum(axes - semi.max() - 1.0, 0.0)
            c = rng.uniform(-1, 1, 3) * room * 0.95
            local = (pts - c) @ rot  # (S, S, S, 3) in the lesion frame
            sdist = np.sqrt(((local / semi) ** 2).sum(-1))  # 1 on the surface
            inside = (sdist < 1.0) & brain
            margin = sdist < 1.0 + 1.5 / semi.min()  # keep a gap to other lesions
            if inside.sum() >= 4 and not (margin & occupied).any():
                break
        else:
            continue
        occupied |= margin
        instances[inside] = len(voxels) + 1
        voxels.append(int(inside.sum()))
        # Partial-volume edge (about one voxel wide), rim enhancement and darker core.
        edge = np.clip((1.0 - sdist) * semi.min() + 0.5, 0.0, 1.0) * brain
        level = lesion_level + rng.uniform(-0.06, 0.06) + 0.03 * _smooth_noise(rng, size, 1.0)
        if rim and r > 3.0:
            level = level + 0.08 * (sdist > 0.7) - 0.18 * (sdist < 0.45)
        img = img * (1 - edge) + level * edge

    # Multiplicative bias field (a random smooth quadratic) and noise.
    u = pts / half
    coef = rng.uniform(-1, 1, 6)
    poly = (
        coef[0] * u[..., 0] + coef[1] * u[..., 1] + coef[2] * u[..., 2]
        + 0.5 * (coef[3] * u[..., 0] ** 2 + coef[4] * u[..., 1] ** 2 + coef[5] * u[..., 2] ** 2)
    )  # fmt: skip
    img = img * np.exp(bias * poly / 2.0)
    img = img + noise * rng.standard_normal(img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32), instances, voxels


def lesion_volumes(
    n: int,
    *,
    seed: int = 0,
    size: int = 32,
    max_lesions: int = 3,
    radius_range: tuple[float, float] | None = None,
    n_vessels: int = 3,
    noise: float = 0.05,
    bias: float = 0.25,
    rim: bool = True,
) -> LesionVolumes:
    """``n`` synthetic head volumes with 0..``max_lesions`` lesions each.

    Volume ``i`` depends only on ``(seed, i)`` and the settings, so ``lesion_volumes(10)`` is the
    first ten of ``lesion_volumes(100)``.

    Args:
        n: number of volumes.
        seed: base seed (numpy ``SeedSequence``; each volume gets its own child stream).
        size: side S of the cubic volume (>= 16).
        max_lesions: lesions per volume are uniform in ``0..max_lesions``.
        radius_range: equivalent-radius range (voxels) of the log-uniform lesion size; default
            ``(1.5, size / 4)``.
        n_vessels: up to this many bright tubular distractors per volume.
        noise: standard deviation of the additive Gaussian noise.
        bias: strength of the multiplicative bias field (about +-``bias`` at the volume edge).
        rim: brighter rim and darker core on lesions with radius > 3 voxels.

    Returns:
        A ``LesionVolumes``.
    """
    if n < 1 or size < 16:
        raise ValueError(f"need n >= 1 and size >= 16; got n={n}, size={size}")
    if max_lesions < 0:
        raise ValueError(f"max_lesions must be >= 0, got {max_lesions}")
    lo, hi = radius_range if radius_range is not None else (1.5, size / 4)
    if not 0 < lo <= hi:
        raise ValueError(f"radius_range must satisfy 0 < low <= high, got {(lo, hi)}")
    streams = np.random.SeedSequence(seed).spawn(n)
    images, instances, voxels = [], [], []
    for ss in streams:
        img, inst, vox = _one_volume(
            np.random.default_rng(ss), size, max_lesions, (lo, hi), n_vessels, noise, bias, rim
        )
        images.append(img)
        instances.append(inst)
        voxels.append(vox)
    inst_t = torch.from_numpy(np.stack(instances))  # (N, S, S, S)
    return LesionVolumes(
        images=torch.from_numpy(np.stack(images)).unsqueeze(1),  # (N, 1, S, S, S)
        masks=(inst_t > 0).long(),
        instances=inst_t,
        lesion_voxels=voxels,
    )


def volume_batches(
    volumes: LesionVolumes, flip: bool = True
) -> Callable[[int, torch.Generator], tuple[Tensor, Tensor]]:
    """A batch stream ``(batch_size, generator) -> (images (B, 1, S, S, S), masks (B, S, S, S))``.

    Volumes are drawn with replacement; ``flip`` mirrors each along every axis with probability
    1/2 (the same flips for image and mask).
    """

    def batch(batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        idx = torch.randint(len(volumes), (batch_size,), generator=generator)
        x, y = volumes.images[idx].clone(), volumes.masks[idx].clone()
        if flip:
            flips = torch.rand(batch_size, 3, generator=generator) < 0.5
            for b in range(batch_size):
                dims = [d for d in range(3) if flips[b, d]]
                if dims:
                    x[b] = x[b].flip([d + 1 for d in dims])
                    y[b] = y[b].flip(dims)
        return x, y

    return batch


@dataclass
class LesionScores:
    """Lesion-wise scores of one volume (see the module docstring for the definitions).

    Attributes:
        dice: lesion-wise Dice of each ground-truth lesion (instance order).
        voxels: voxel count of each ground-truth lesion.
        detected: whether each lesion is detected (Dice >= ``min_dice``).
        n_components: predicted connected components.
        n_true_components: predicted components matching a lesion (Dice >= ``min_dice``).
    """

    dice: list[float]
    voxels: list[int]
    detected: list[bool]
    n_components: int
    n_true_components: int


def lesion_scores(pred_mask, instances, min_dice: float = 0.1) -> LesionScores:
    """Lesion-wise Dice and detection for one volume.

    Args:
        pred_mask: (D, H, W) predicted foreground (bool or 0/1), tensor or array.
        instances: (D, H, W) ground-truth instance labels (0 background, 1..k lesions).
        min_dice: Dice threshold of a detection.
    """
    from scipy.ndimage import label

    pred = np.asarray(torch.as_tensor(pred_mask).cpu()).astype(bool)
    inst = np.asarray(torch.as_tensor(instances).cpu()).astype(np.int64)
    if pred.shape != inst.shape or pred.ndim != 3:
        raise ValueError(
            f"expected two (D, H, W) maps of equal shape, got {pred.shape} and {inst.shape}"
        )
    comps, n_comp = label(pred, structure=np.ones((3, 3, 3)))
    n_lesions = int(inst.max())
    dice, voxels, detected = [], [], []
    for k in range(1, n_lesions + 1):
        g = inst == k
        touching = np.unique(comps[g & pred])
        p = np.isin(comps, touching[touching > 0])
        d = 2.0 * (p & g).sum() / max(p.sum() + g.sum(), 1)
        dice.append(float(d))
        voxels.append(int(g.sum()))
        detected.append(bool(d >= min_dice))
    n_true = 0
    for c in range(1, n_comp + 1):
        p = comps == c
        hit = np.unique(inst[p])
        g = np.isin(inst, hit[hit > 0])
        d = 2.0 * (p & g).sum() / max(p.sum() + g.sum(), 1)
        n_true += int(d >= min_dice)
    return LesionScores(dice, voxels, detected, int(n_comp), n_true)


def detection_f1(scores: list[LesionScores]) -> tuple[float, float, float]:
    """Pooled (precision, recall, F1) over volumes; both empty -> 1.0, one empty -> 0.0."""
    n_lesions = sum(len(s.detected) for s in scores)
    n_detected = sum(sum(s.detected) for s in scores)
    n_comp = sum(s.n_components for s in scores)
    n_true = sum(s.n_true_components for s in scores)
    if n_lesions == 0 and n_comp == 0:
        return 1.0, 1.0, 1.0
    precision = n_true / n_comp if n_comp else 0.0
    recall = n_detected / n_lesions if n_lesions else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def dice_by_size(
    scores: list[LesionScores], edges: tuple[int, ...] = SIZE_EDGES
) -> dict[int, tuple[float, int]]:
    """Mean lesion-wise Dice per size bin: ``{bin: (mean Dice, n lesions)}`` (bins present)."""
    bins: dict[int, list[float]] = {}
    for s in scores:
        for d, v in zip(s.dice, s.voxels):
            bins.setdefault(size_bin(v, edges), []).append(d)
    return {b: (float(np.mean(ds)), len(ds)) for b, ds in sorted(bins.items())}
