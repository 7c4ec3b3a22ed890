"""Synthetic abdominal multi-organ slices, in the spirit of Synapse (CT) and CHAOS (MRI).

Each slice is an axial cut through an abdomen in radiological convention (the patient's right on
the image's left, anterior at the top): a body outline with a subcutaneous fat ring, the spine
and aorta, bowel loops, and six organs of very different sizes:

======  ==============  ===============================================================
class   name            appearance and where it sits
======  ==============  ===============================================================
0       background      air, fat, muscle, spine, aorta, bowel loops
1       liver           large two-lobed organ, image left-top; intensity ~ spleen's
2       spleen          medium, image right; same intensity band as the liver
3       right kidney    medium, left of the spine; *identical* in look to the left kidney
4       left kidney     medium, right of the spine
5       gallbladder     small dark fluid pouch on the liver's lower edge; dark bowel loops
                        have the same intensity, only its place against the liver tells it
6       pancreas        thin curved band in front of the spine and between the kidneys;
                        grey bowel loops share its intensity
======  ==============  ===============================================================

Appearance overlaps between classes (liver/spleen, kidney right/left, gallbladder/dark bowel,
pancreas/grey bowel), so a pixel's class depends on context: its place in the body and its
neighbours. Every image has its own body pose (shift, scale, rotation), organ jitter, texture,
contrast, a smooth multiplicative intensity bias (MRI-like) and Gaussian noise.

Everything is drawn with one ``torch.Generator``: the same seed gives the same tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

ORGAN_CLASSES = (
    "background",
    "liver",
    "spleen",
    "right_kidney",
    "left_kidney",
    "gallbladder",
    "pancreas",
)
"""Class ``k`` of the masks is ``ORGAN_CLASSES[k]``."""

N_ORGAN_CLASSES = len(ORGAN_CLASSES)
LARGE_ORGANS = (1,)
MEDIUM_ORGANS = (2, 3, 4)
SMALL_ORGANS = (5, 6)
"""Class indices by size: the gallbladder and pancreas cover well under 1% of the image each."""

CHAOS_CLASSES = ("background", "liver", "right_kidney", "left_kidney", "spleen")
"""The CHAOS abdominal MRI label set (``to_chaos``): gallbladder and pancreas become background."""

_TO_CHAOS = torch.tensor([0, 1, 4, 2, 3, 0, 0])


@dataclass(frozen=True)
class OrganSlices:
    """A batch of slices.

    Attributes:
        images: (N, 1, H, W) float32 in [0, 1].
        masks: (N, H, W) int64 class indices in ``0 .. N_ORGAN_CLASSES - 1``.
    """

    images: Tensor
    masks: Tensor

    def __iter__(self):  # so that ``x, y = organ_slices(...)`` works
        return iter((self.images, self.masks))


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> Tensor:  # (n,)
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _smooth_noise(n: int, size: int, scale: int, g: torch.Generator) -> Tensor:
    """Zero-mean, unit-std noise smooth over ~``scale`` pixels: (n, size, size)."""
    coarse = max(2, size // scale)
    z = torch.randn(n, 1, coarse, coarse, generator=g)
    z = F.interpolate(z, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    z = z - z.mean(dim=(1, 2), keepdim=True)
    return z / z.std(dim=(1, 2), keepdim=True).clamp_min(1e-6)


def _rotate(u: Tensor, v: Tensor, angle: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate coordinates (N, H, W) by per-image angles (N,) in radians."""
    c, s = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    return c * u + s * v, -s * u + c * v


def _ellipse(
    u: Tensor,
    v: Tensor,
    center: tuple[Tensor, Tensor],
    axes: tuple[Tensor, Tensor],
    angle: Tensor,
    wobble: Tensor | None = None,
) -> Tensor:
    """Boolean (N, H, W): inside a rotated ellipse with an optionally wobbly boundary.

    Args:
        u, v: body coordinates (N, H, W).
        center, axes, angle: per-image (N,) tensors.
        wobble: (N, 3, 2) amplitudes/phases of the boundary's 2nd..4th harmonics, or None.
    """
    du = u - center[0][:, None, None]
    dv = v - center[1][:, None, None]
    du, dv = _rotate(du, dv, angle)
    a, b = axes[0][:, None, None], axes[1][:, None, None]
    r = torch.sqrt((du / a) ** 2 + (dv / b) ** 2)
    limit = torch.ones_like(r)
    if wobble is not None:
        theta = torch.atan2(dv / b, du / a)
        for i, k in enumerate((2, 3, 4)):
            amp, phase = wobble[:, i, 0, None, None], wobble[:, i, 1, None, None]
            limit = limit + amp * torch.cos(k * theta + phase)
    return r < limit


def _wobble(n: int, amplitude: float, g: torch.Generator) -> Tensor:  # (n, 3, 2)
    amp = amplitude * torch.rand(n, 3, generator=g) / torch.tensor([1.0, 1.5, 2.0])
    phase = 2 * math.pi * torch.rand(n, 3, generator=g)
    return torch.stack([amp, phase], dim=-1)


def _band(
    u: Tensor,
    v: Tensor,
    start: tuple[Tensor, Tensor],
    end: tuple[Tensor, Tensor],
    bend: Tensor,
    thickness: Tensor,
) -> Tensor:
    """Boolean (N, H, W): a thin curved band from ``start`` to ``end`` (per-image (N,) tensors).

    The band's centre line is the parabola ``w = bend * (1 - (2 t / L)^2)`` over the chord, its
    half-thickness tapers from ``thickness`` at the start (the pancreatic head) to 60% at the end.
    """
    su, sv = start[0][:, None, None], start[1][:, None, None]
    eu, ev = end[0][:, None, None], end[1][:, None, None]
    length = torch.sqrt((eu - su) ** 2 + (ev - sv) ** 2)
    tu, tv = (eu - su) / length, (ev - sv) / length  # unit chord direction
    du, dv = u - su, v - sv
    t = du * tu + dv * tv  # along the chord
    w = -du * tv + dv * tu  # across the chord
    frac = t / length  # 0 at the start, 1 at the end
    centre = bend[:, None, None] * (1 - (2 * frac - 1) ** 2)
    half = thickness[:, None, None] * (1.0 - 0.4 * frac.clamp(0, 1))
    return (frac >= 0) & (frac <= 1) & ((w - centre).abs() < half)


def organ_slices(
    n: int,
    *,
    size: int = 96,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    noise: float = 0.05,
    bias: float = 0.25,
    mirror: float = 0.0,
) -> OrganSlices:
    """Draw ``n`` synthetic abdominal slices with their organ masks.

    Args:
        n: number of slices.
        size: image height = width in pixels (>= 32).
        seed: seed of a fresh generator (ignored when ``generator`` is given).
        generator: a ``torch.Generator`` to draw from (advanced in place), e.g. the engine's.
        noise: standard deviation of the additive Gaussian noise.
        bias: amplitude of the smooth multiplicative intensity bias (0 = none).
        mirror: probability of mirroring a slice left-right, image and mask together, without
            swapping labels (the random flips of TransUNet-style training): the patient's right
            is then on the image's right, and only the anatomy (the liver's side) tells the
            right kidney from the left one.

    Returns:
        ``OrganSlices(images (n, 1, size, size) in [0, 1], masks (n, size, size) int64)``.

    Raises:
        ValueError: for ``n < 1``, ``size < 32`` or negative ``noise``/``bias``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")
    if noise < 0 or bias < 0:
        raise ValueError(f"noise and bias must be >= 0, got noise={noise}, bias={bias}")
    if not 0.0 <= mirror <= 1.0:
        raise ValueError(f"mirror is a probability in [0, 1], got {mirror}")
    g = generator
    if g is None:
        g = torch.Generator().manual_seed(0 if seed is None else seed)

    def rnd(lo: float, hi: float) -> Tensor:
        return _uniform(n, lo, hi, g)

    # Pixel grid in [-1, 1], then per-image body pose -> body coordinates (u right, v down).
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    xx, yy = xx.expand(n, size, size), yy.expand(n, size, size)
    scale = rnd(0.9, 1.08)[:, None, None]
    u = (xx - rnd(-0.06, 0.06)[:, None, None]) / scale
    v = (yy - rnd(-0.06, 0.06)[:, None, None]) / scale
    u, v = _rotate(u, v, rnd(-0.15, 0.15))

    def jit(c: float, d: float) -> Tensor:
        return c + rnd(-d, d)

    zeros = torch.zeros(n)
    body = _ellipse(u, v, (zeros, jit(0.02, 0.02)), (jit(0.9, 0.04), jit(0.68, 0.04)), zeros)
    inner = _ellipse(u, v, (zeros, jit(0.02, 0.02)), (jit(0.82, 0.03), jit(0.6, 0.03)), zeros)
    mask = torch.zeros(n, size, size, dtype=torch.long)
    img = torch.zeros(n, size, size)

    tex_fine = _smooth_noise(n, size, 3, g)
    tex_mid = _smooth_noise(n, size, 6, g)

    def paint(region: Tensor, level: Tensor, texture: Tensor, amount: float) -> None:
        img.copy_(torch.where(region, level[:, None, None] + amount * texture, img))

    paint(body, jit(0.27, 0.04), tex_mid, 0.03)  # subcutaneous fat ring
    paint(inner, jit(0.44, 0.04), tex_mid, 0.04)  # muscle / soft tissue

    # Spine (bright rim, darker marrow) and aorta, in the posterior midline.
    spine_c = (jit(0.0, 0.03), jit(0.47, 0.03))
    spine_r = jit(0.12, 0.015)
    spine = _ellipse(u, v, spine_c, (spine_r, spine_r), zeros)
    marrow = _ellipse(u, v, spine_c, (0.65 * spine_r, 0.65 * spine_r), zeros)
    paint(spine, jit(0.95, 0.03), tex_fine, 0.02)
    paint(marrow, jit(0.7, 0.04), tex_fine, 0.04)
    aorta_r = jit(0.05, 0.01)
    aorta = _ellipse(u, v, (spine_c[0] + 0.1, spine_c[1] - 0.2), (aorta_r, aorta_r), zeros)
    paint(aorta, jit(0.78, 0.04), tex_fine, 0.02)

    # Bowel loops: dark (fluid, like the gallbladder) or grey (like the pancreas), in the
    # anterior and central abdomen, away from the liver's lower edge.
    gall_level = jit(0.2, 0.03)
    panc_level = jit(0.53, 0.03)
    for _ in range(7):
        present = torch.rand(n, generator=g) < 0.7
        dark = torch.rand(n, generator=g) < 0.5
        c = (rnd(0.0, 0.62), rnd(-0.35, 0.3))
        ax = (rnd(0.05, 0.1), rnd(0.04, 0.08))
        loop = _ellipse(u, v, c, ax, rnd(0, math.pi)) & inner & present[:, None, None]
        level = torch.where(dark, gall_level + rnd(-0.03, 0.03), panc_level + rnd(-0.03, 0.03))
        paint(loop, level, tex_fine, 0.05)

    # Liver: a large right lobe and a smaller left lobe reaching across the midline.
    liver_level = jit(0.6, 0.04)
    liver = _ellipse(
        u, v, (jit(-0.4, 0.04), jit(-0.12, 0.04)), (jit(0.38, 0.04), jit(0.32, 0.04)),
        jit(-0.35, 0.15), _wobble(n, 0.08, g),
    )  # fmt: skip
    liver |= _ellipse(
        u, v, (jit(-0.05, 0.05), jit(-0.34, 0.03)), (jit(0.26, 0.04), jit(0.11, 0.02)),
        jit(0.15, 0.1), _wobble(n, 0.06, g),
    )  # fmt: skip
    liver &= inner
    paint(liver, liver_level, tex_mid, 0.05)
    mask[liver] = 1

    # Spleen: same intensity band as the liver, on the other side.
    spleen = _ellipse(
        u, v, (jit(0.56, 0.04), jit(-0.02, 0.05)), (jit(0.18, 0.03), jit(0.11, 0.02)),
        jit(0.8, 0.2), _wobble(n, 0.1, g),
    )  # fmt: skip
    spleen &= inner
    paint(spleen, liver_level + rnd(-0.02, 0.06), tex_mid, 0.05)
    mask[spleen] = 2

    # Kidneys: identical look (bright cortex, darker hilum); only the side tells them apart.
    cortex_level = jit(0.78, 0.04)
    for cls, side in ((3, -1.0), (4, 1.0)):
        c = (spine_c[0] + side * jit(0.33, 0.03), spine_c[1] - jit(0.12, 0.03))
        ax = (jit(0.12, 0.015), jit(0.08, 0.01))
        angle = side * jit(1.1, 0.2)
        kidney = _ellipse(u, v, c, ax, angle, _wobble(n, 0.05, g)) & inner
        hilum = _ellipse(u, v, c, (0.5 * ax[0], 0.45 * ax[1]), angle) & kidney
        paint(kidney, cortex_level, tex_fine, 0.04)
        paint(hilum, cortex_level - jit(0.25, 0.04), tex_fine, 0.04)
        mask[kidney] = cls

    # Pancreas: a thin band in front of the spine, from near the liver to the spleen.
    panc = _band(
        u, v,
        (jit(-0.2, 0.04), jit(0.16, 0.04)),
        (jit(0.42, 0.04), jit(0.03, 0.04)),
        jit(0.07, 0.04),
        jit(0.045, 0.008),
    )  # fmt: skip
    panc &= inner & ~liver
    paint(panc, panc_level, tex_fine, 0.07)
    mask[panc] = 6

    # Gallbladder: a small dark pouch hanging from the liver's lower edge.
    gall_c = (jit(-0.26, 0.04), jit(0.14, 0.03))
    gall = _ellipse(u, v, gall_c, (jit(0.09, 0.015), jit(0.055, 0.01)), jit(0.5, 0.3))
    gall &= inner
    paint(gall, gall_level, tex_fine, 0.03)
    mask[gall] = 5

    # Contrast, bias field, blur, noise.
    img = img * rnd(0.85, 1.15)[:, None, None] + rnd(-0.05, 0.05)[:, None, None]
    img = img * (1 + bias * _smooth_noise(n, size, max(8, size // 3), g).tanh())
    img = F.avg_pool2d(img[:, None], 3, stride=1, padding=1, count_include_pad=False)[:, 0]
    img = img + noise * torch.randn(n, size, size, generator=g)
    flip = (torch.rand(n, generator=g) < mirror)[:, None, None]
    img = torch.where(flip, img.flip(-1), img)
    mask = torch.where(flip, mask.flip(-1), mask)
    return OrganSlices(images=img.clamp(0.0, 1.0)[:, None].contiguous(), masks=mask)


def organ_batches(size: int = 96, noise: float = 0.05, bias: float = 0.25, mirror: float = 0.0):
    """A data callable for the engine: ``(batch_size, generator) -> (images, masks)``, fresh
    slices every call (an endless training stream, deterministic given the generator)."""

    def draw(batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        s = organ_slices(
            batch_size, size=size, generator=generator, noise=noise, bias=bias, mirror=mirror
        )
        return s.images, s.masks

    return draw


def to_chaos(masks: Tensor) -> Tensor:
    """Relabel ``ORGAN_CLASSES`` masks to ``CHAOS_CLASSES`` (liver, right kidney, left kidney,
    spleen; gallbladder and pancreas -> background). Same shape, int64."""
    if masks.is_floating_point() or (masks.numel() and (masks.min() < 0 or masks.max() >= 7)):
        raise ValueError(f"expected integer organ masks in 0..{N_ORGAN_CLASSES - 1}")
    return _TO_CHAOS[masks.long()]


def class_fractions(masks: Tensor, n_classes: int = N_ORGAN_CLASSES) -> Tensor:
    """Fraction of pixels of each class over a batch of masks (N, H, W) -> (K,)."""
    counts = torch.bincount(masks.reshape(-1), minlength=n_classes).float()
    return counts / counts.sum()
