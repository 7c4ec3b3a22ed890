"""Image restoration data: natural-image crops, irregular hole masks and noisy images.

Everything ships with scikit-image / scikit-learn (nothing is downloaded, DATA.md): the bundled
``skimage.data`` photographs plus scikit-learn's two sample photos. Crops are split into train and
test **by source image** (``DEFAULT_TEST`` photos never appear in training), so a test PSNR
measures generalisation to unseen scenes, not memorised patches.

- ``natural_crops``: float32 crops ``(n, C, size, size)`` in [0, 1] (RGB or grey), optionally
  with an edge-preserving smoothed copy (the "structure" image of inpainting papers such as
  MEDFE; total-variation smoothing stands in for RTV).
- ``irregular_masks``: hole masks ``(n, 1, H, W)`` with 1 = hole, in the style of the NVIDIA
  irregular-mask set (random thick brush strokes), plus elliptic blobs; the hole ratio of every
  mask lies in a configurable range.
- ``add_gaussian_noise``: additive white Gaussian noise of a given sigma.
- ``inpainting_batches`` / ``denoising_batches``: ``(batch_size, generator) -> batch`` streams for
  the engine: random crops from a pool with random flips, fresh masks / noise per batch.

All functions are deterministic given their ``seed`` (numpy ``default_rng``) or ``torch.Generator``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

RGB_PHOTOS = ("astronaut", "cat", "coffee", "rocket", "immunohistochemistry", "china", "flower")
"""Colour photographs (``china`` and ``flower`` come from ``sklearn.datasets.load_sample_images``).
The astronomy and retina images are left out: most of their crops are flat black or flat red."""

GRAY_PHOTOS = ("camera", "brick", "grass", "gravel", "moon", "coins", "cell", "page", "text")
"""Grey-level photographs (used, with the colour ones converted to grey, when ``n_channels=1``)."""

DEFAULT_TEST = ("coffee", "flower")
"""Photos held out for testing by default (two everyday scenes)."""

MASK_KINDS = ("strokes", "blobs", "mixed")


@functools.lru_cache(maxsize=64)
def _photo(name: str) -> np.ndarray:
    """One bundled photo as float32 (h, w, 3) or (h, w) in [0, 1] (read-only, cached)."""
    if name in ("china", "flower"):
        try:
            from sklearn.datasets import load_sample_images
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                f"photo {name!r} ships with scikit-learn: pip install scikit-learn"
            ) from e

        images = dict(zip(("china", "flower"), load_sample_images().images))
        im = images[name]
    else:
        import skimage.data

        if name not in RGB_PHOTOS + GRAY_PHOTOS:
            raise ValueError(
                f"unknown photo {name!r} (valid: {', '.join(RGB_PHOTOS + GRAY_PHOTOS)})"
            )
        im = getattr(skimage.data, name)()
    out = np.asarray(im, dtype=np.float32) / 255.0
    out.setflags(write=False)
    return out


def photo(name: str, n_channels: int = 3, downscale: int = 1) -> np.ndarray:
    """A bundled photo as float32 ``(n_channels, h, w)`` in [0, 1].

    Args:
        name: one of ``RGB_PHOTOS`` (or ``GRAY_PHOTOS`` when ``n_channels == 1``).
        n_channels: 3 (RGB) or 1 (grey; colour photos use ITU-R 601 luma weights).
        downscale: integer box-filter downscaling factor (more content per crop).
    """
    if n_channels not in (1, 3):
        raise ValueError(f"n_channels must be 1 or 3, got {n_channels}")
    im = _photo(name)
    if im.ndim == 2:
        if n_channels == 3:
            raise ValueError(f"photo {name!r} is grey; use n_channels=1 or an RGB photo")
        chw = im[None]
    elif n_channels == 3:
        chw = im.transpose(2, 0, 1)
    else:
        chw = (im @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[None]
    if downscale > 1:
        chw = F.avg_pool2d(torch.from_numpy(np.array(chw))[None], downscale)[0].numpy()
    return np.ascontiguousarray(chw, dtype=np.float32)


def split_photos(
    n_channels: int = 3, test: Sequence[str] = DEFAULT_TEST
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train photos, test photos) for ``n_channels``; the split is by source image."""
    pool = RGB_PHOTOS if n_channels == 3 else RGB_PHOTOS + GRAY_PHOTOS
    unknown = [t for t in test if t not in pool]
    if unknown:
        raise ValueError(f"test photos {unknown} are not available with n_channels={n_channels}")
    return tuple(p for p in pool if p not in test), tuple(test)


def edge_preserving_smooth(image: np.ndarray, weight: float = 0.1) -> np.ndarray:
    """Total-variation (Chambolle) smoothing of a ``(C, h, w)`` image: flat regions with sharp
    edges, the "structure" image of structure/texture inpainting (RTV in MEDFE)."""
    from skimage.restoration import denoise_tv_chambolle

    out = denoise_tv_chambolle(image, weight=weight, channel_axis=0)
    return out.astype(np.float32)


@functools.lru_cache(maxsize=64)
def _smoothed(name: str, n_channels: int, downscale: int, weight: float) -> np.ndarray:
    out = edge_preserving_smooth(photo(name, n_channels, downscale), weight)
    out.setflags(write=False)
    return out


def natural_crops(
    n: int,
    size: int = 32,
    *,
    split: str = "train",
    n_channels: int = 3,
    seed: int = 0,
    downscale: int = 2,
    min_std: float = 0.04,
    test_photos: Sequence[str] = DEFAULT_TEST,
    structure_weight: float | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Random square crops of the bundled photos.

    Each crop picks a photo of the split uniformly, then a position; crops whose standard
    deviation is below ``min_std`` (flat sky, black borders of the astronomy/retina images) are
    redrawn.

    Args:
        n: number of crops.
        size: crop side.
        split: ``"train"`` or ``"test"`` (``test_photos`` vs every other photo).
        n_channels: 3 (RGB photos only) or 1 (grey: every photo).
        seed: numpy seed; the same arguments give the same crops.
        downscale: box-filter downscaling of the photos before cropping.
        min_std: minimal pixel standard deviation of a crop.
        test_photos: the held-out photos.
        structure_weight: if given, also return the total-variation smoothed crops (same
            positions) with this smoothing weight.

    Returns:
        crops (n, C, size, size) float32 in [0, 1]; with ``structure_weight`` a pair
        (crops, structure crops).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if n < 0 or size < 1:
        raise ValueError(f"need n >= 0 and size >= 1, got n={n}, size={size}")
    train, test = split_photos(n_channels, test_photos)
    names = train if split == "train" else test
    images = [photo(name, n_channels, downscale) for name in names]
    smooth = None
    if structure_weight is not None:
        smooth = [_smoothed(nm, n_channels, downscale, float(structure_weight)) for nm in names]
    for name, im in zip(names, images):
        if min(im.shape[1:]) < size:
            raise ValueError(f"crop size {size} is larger than photo {name!r} {im.shape[1:]}")
    rng = np.random.default_rng(seed)
    out = np.empty((n, n_channels, size, size), np.float32)
    out_s = np.empty_like(out) if smooth is not None else None
    for i in range(n):
        for _ in range(100):
            k = int(rng.integers(len(images)))
            im = images[k]
            r = int(rng.integers(im.shape[1] - size + 1))
            c = int(rng.integers(im.shape[2] - size + 1))
            crop = im[:, r : r + size, c : c + size]
            if crop.std() >= min_std:
                break
        out[i] = crop
        if out_s is not None:
            out_s[i] = smooth[k][:, r : r + size, c : c + size]
    crops = torch.from_numpy(out)
    if out_s is None:
        return crops
    return crops, torch.from_numpy(out_s)


def _segment_distance(ys: np.ndarray, xs: np.ndarray, p0: np.ndarray, p1: np.ndarray):
    """Distance of every pixel (ys, xs) to the segment p0-p1 (points as (y, x))."""
    d = p1 - p0
    denom = float(d @ d) or 1.0
    t = np.clip(((ys - p0[0]) * d[0] + (xs - p0[1]) * d[1]) / denom, 0.0, 1.0)
    return np.hypot(ys - (p0[0] + t * d[0]), xs - (p0[1] + t * d[1]))


def _stroke(mask: np.ndarray, rng: np.random.Generator, ys, xs, max_width: float) -> None:
    """One brush stroke: a random walk of 2-6 thick segments (NVIDIA irregular-mask style)."""
    h, w = mask.shape
    p = np.array([rng.uniform(0, h), rng.uniform(0, w)])
    width = rng.uniform(max(1.0, 0.25 * max_width), max_width)
    angle = rng.uniform(0, 2 * np.pi)
    for _ in range(int(rng.integers(2, 7))):
        angle += rng.uniform(-np.pi / 2, np.pi / 2)
        length = rng.uniform(0.1, 0.4) * max(h, w)
        q = p + length * np.array([np.sin(angle), np.cos(angle)])
        q = np.clip(q, 0, [h - 1, w - 1])
        mask |= _segment_distance(ys, xs, p, q) <= width / 2
        p = q


def _blob(mask: np.ndarray, rng: np.random.Generator, ys, xs) -> None:
    """One rotated ellipse of random size."""
    h, w = mask.shape
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    a, b = rng.uniform(0.06, 0.25) * h, rng.uniform(0.06, 0.25) * w
    t = rng.uniform(0, np.pi)
    dy, dx = ys - cy, xs - cx
    u = dy * np.cos(t) + dx * np.sin(t)
    v = -dy * np.sin(t) + dx * np.cos(t)
    mask |= (u / a) ** 2 + (v / b) ** 2 <= 1.0


def irregular_masks(
    n: int,
    size: int | tuple[int, int] = 32,
    *,
    hole_range: tuple[float, float] = (0.1, 0.4),
    kind: str = "mixed",
    seed: int = 0,
) -> Tensor:
    """Irregular hole masks ``(n, 1, H, W)``, float32, **1 = hole**, 0 = known pixel.

    A target ratio is drawn uniformly from ``hole_range`` per mask; shapes (brush strokes for
    ``"strokes"``, ellipses for ``"blobs"``, either with equal probability for ``"mixed"``) are
    added until the hole ratio reaches the target; a shape that would push the ratio above the
    upper end of the range is skipped, so every ratio lies in ``hole_range`` (up to one pixel
    below the lower end).

    Args:
        n: number of masks.
        size: side, or (H, W).
        hole_range: (low, high) hole fraction, 0 <= low < high <= 1.
        kind: ``"strokes"``, ``"blobs"`` or ``"mixed"``.
        seed: numpy seed.
    """
    h, w = (size, size) if isinstance(size, int) else size
    lo, hi = hole_range
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"hole_range must satisfy 0 <= low < high <= 1, got {hole_range}")
    if kind not in MASK_KINDS:
        raise ValueError(f"kind must be one of {MASK_KINDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    ys, xs = ys + 0.5, xs + 0.5
    slack = 1.0 / (h * w)
    out = np.zeros((n, 1, h, w), np.float32)
    max_width = max(2.0, 0.15 * min(h, w))
    for i in range(n):
        target = rng.uniform(lo, hi)
        for _ in range(50):
            mask = np.zeros((h, w), bool)
            for _ in range(200):  # add shapes that keep the ratio <= high until >= target
                if mask.mean() >= target - slack:
                    break
                shape = np.zeros((h, w), bool)
                use_blob = kind == "blobs" or (kind == "mixed" and rng.random() < 0.5)
                if use_blob:
                    _blob(shape, rng, ys, xs)
                else:
                    _stroke(shape, rng, ys, xs, max_width)
                if (mask | shape).mean() <= hi:
                    mask |= shape
            if mask.mean() >= lo:
                break
        out[i, 0] = mask
    return torch.from_numpy(out)


def add_gaussian_noise(
    images: Tensor, sigma: float, generator: torch.Generator | None = None, clip: bool = False
) -> Tensor:
    """``images + sigma * N(0, 1)`` (sigma on the [0, 1] scale: 25/255 for "sigma = 25").

    Args:
        images: (B, C, H, W) float.
        sigma: noise standard deviation, >= 0.
        generator: torch generator (deterministic noise).
        clip: clamp the result to [0, 1] (off by default, as in AWGN benchmarks).
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    out = images + sigma * noise
    return out.clamp(0.0, 1.0) if clip else out


def _random_flips(x: Tensor, generator: torch.Generator) -> Tensor:
    """Per-sample random horizontal / vertical flips of (B, ...) tensors."""
    b = x.shape[0]
    flip_h = torch.rand(b, generator=generator) < 0.5
    flip_v = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip_h[:, None, None, None], x.flip(-1), x)
    return torch.where(flip_v[:, None, None, None], x.flip(-2), x)


def fill_holes(images: Tensor, holes: Tensor, value: float | Tensor = 0.0) -> Tensor:
    """``images`` with hole pixels (``holes == 1``) replaced by ``value``."""
    return images * (1.0 - holes) + holes * value


def inpainting_batches(
    images: Tensor,
    masks: Tensor,
    structure: Tensor | None = None,
    fill: float = 0.0,
) -> Callable[[int, torch.Generator], tuple[Tensor, ...]]:
    """A batch stream for inpainting.

    Each batch draws crops (with random flips) and, independently, masks from the bank (with
    random flips and transposes), so crops meet many masks.

    Args:
        images: pool of clean crops (n, C, H, W).
        masks: bank of hole masks (m, 1, H, W), 1 = hole.
        structure: optional smoothed crops aligned with ``images`` (flipped together).
        fill: value written into the holes of the input.

    Returns:
        ``batch(batch_size, generator) -> (masked, holes, target)`` or, with ``structure``,
        ``(masked, holes, target, structure_target)``.
    """
    if masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"mask size {tuple(masks.shape[-2:])} != image size {images.shape[-2:]}")

    def batch(batch_size: int, generator: torch.Generator):
        idx = torch.randint(len(images), (batch_size,), generator=generator)
        x = images[idx]
        if structure is not None:
            both = _random_flips(torch.cat([x, structure[idx]], 1), generator)
            x, s = both[:, : x.shape[1]], both[:, x.shape[1] :]
        else:
            x = _random_flips(x, generator)
        m = _random_flips(
            masks[torch.randint(len(masks), (batch_size,), generator=generator)], generator
        )
        if m.shape[-1] == m.shape[-2] and torch.rand((), generator=generator) < 0.5:
            m = m.transpose(-1, -2)
        masked = fill_holes(x, m, fill)
        return (masked, m, x) if structure is None else (masked, m, x, s)

    return batch


def denoising_batches(
    images: Tensor, sigma: float
) -> Callable[[int, torch.Generator], tuple[Tensor, Tensor]]:
    """A batch stream for Gaussian denoising: ``batch(batch_size, generator) -> (noisy, clean)``,
    crops drawn from ``images`` with random flips and fresh noise per batch."""

    def batch(batch_size: int, generator: torch.Generator):
        idx = torch.randint(len(images), (batch_size,), generator=generator)
        clean = _random_flips(images[idx], generator)
        return add_gaussian_noise(clean, sigma, generator), clean

    return batch
