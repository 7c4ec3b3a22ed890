"""Perspective crowd scenes with head annotations and density maps, drawn from a seed.

A camera looks down at a ground plane: rows near the horizon are far away, so people there are
small and, for people spread uniformly over the ground, densely packed in the image (the image
area of a ground patch shrinks with the square of its distance). Each person is a head (a dark,
shaded disc) on a textured body (an ellipse in a random clothing colour, striped or plain),
painted far to near so that near people occlude far ones. People stand in groups and alone;
counts are log-uniform over a wide range (a few to about a hundred and fifty per image). The
background is a perspective-tiled ground, a wall with dark windows above the horizon when it is
in view, and clutter on the ground that looks like heads (dark discs without bodies) or like
bodies (posts). A smooth illumination gradient and pixel noise finish the image.

Annotations: one point per head centre, the head radius, and a density map made of one Gaussian
per head, either perspective-scaled (sigma proportional to the head radius, as WorldExpo'10's
perspective maps) or geometry-adaptive (sigma = beta times the mean distance to the k nearest
heads, Zhang et al. 2016, MCNN). Each kernel is renormalised on the pixel grid, so a density
map sums exactly to its image's count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

KERNELS = ("perspective", "adaptive", "fixed")


@dataclass(frozen=True)
class CrowdScenes:
    """A set of crowd images and their annotations.

    Attributes:
        images: (n, 3, H, W) float32 in [0, 1].
        density: (n, 1, H, W) float32; ``density[i].sum() == counts[i]`` (up to float error).
        counts: (n,) float32 number of annotated heads.
        points: per image, (P_i, 2) float32 head centres as (x, y) pixel coordinates.
        head_radius: per image, (P_i,) float32 head radii in pixels (the perspective scale).
        horizon: (n,) float32 row of the horizon (negative when it is above the image).
    """

    images: Tensor
    density: Tensor
    counts: Tensor
    points: list[Tensor]
    head_radius: list[Tensor]
    horizon: Tensor

    def __len__(self) -> int:
        return len(self.images)


def gaussian_density(
    points: np.ndarray | Tensor, sigmas: np.ndarray | Tensor, height: int, width: int
) -> Tensor:
    """Sum of one unit-mass Gaussian per point on an (H, W) pixel grid.

    Each Gaussian is separable and renormalised over the grid (truncated kernels at the border
    keep their full mass), so the map sums to the number of points.

    Args:
        points: (P, 2) head centres (x, y) in pixel coordinates (pixel centres at i + 0.5).
        sigmas: (P,) standard deviations in pixels (> 0).
        height: H.
        width: W.

    Returns:
        (H, W) float32 density.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if len(pts) != len(sig):
        raise ValueError(f"points ({len(pts)}) and sigmas ({len(sig)}) must have the same length")
    if len(pts) == 0:
        return torch.zeros(height, width)
    if (sig <= 0).any() or not np.isfinite(sig).all():
        raise ValueError("sigmas must be finite and > 0")
    xs = np.arange(width) + 0.5
    ys = np.arange(height) + 0.5
    gx = np.exp(-0.5 * ((xs[None] - pts[:, :1]) / sig[:, None]) ** 2)  # (P, W)
    gy = np.exp(-0.5 * ((ys[None] - pts[:, 1:]) / sig[:, None]) ** 2)  # (P, H)
    gx /= np.maximum(gx.sum(1, keepdims=True), 1e-300)
    gy /= np.maximum(gy.sum(1, keepdims=True), 1e-300)
    return torch.from_numpy((gy.T @ gx).astype(np.float32))  # (H, W)


def adaptive_sigmas(
    points: np.ndarray | Tensor, k: int = 3, beta: float = 0.3, fallback: float = 2.0
) -> np.ndarray:
    """Geometry-adaptive kernel widths (MCNN): ``beta * mean distance to the k nearest heads``.

    Args:
        points: (P, 2) head centres.
        k: neighbours averaged.
        beta: scale (0.3 in MCNN).
        fallback: sigma of a head with no neighbour (an image with one head).

    Returns:
        (P,) sigmas, at least 0.5 px.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 2:
        return np.full(len(pts), float(fallback))
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))  # (P, P)
    np.fill_diagonal(d, np.inf)
    kk = min(k, len(pts) - 1)
    nearest = np.sort(d, axis=1)[:, :kk]  # (P, kk)
    return np.maximum(beta * nearest.mean(1), 0.5)


def downsample_density(density: Tensor, factor: int) -> Tensor:
    """Sum-pool a density map by ``factor``, preserving counts: (B, 1, H, W) -> (B, 1, H/f, W/f)."""
    if factor == 1:
        return density
    if density.shape[-1] % factor or density.shape[-2] % factor:
        raise ValueError(f"density size {tuple(density.shape[-2:])} not divisible by {factor}")
    return F.avg_pool2d(density, factor) * (factor * factor)


def attention_mask(density: Tensor, threshold: float = 1e-3) -> Tensor:
    """SFANet's attention target: 1 where the full-resolution density exceeds ``threshold``."""
    return (density > threshold).to(density.dtype)


def crowd_scenes(
    n: int,
    *,
    size: int = 64,
    seed: int = 0,
    count_range: tuple[int, int] = (2, 150),
    kernel: str = "perspective",
    sigma_scale: float = 0.6,
    near_radius: tuple[float, float] = (3.0, 5.0),
    noise: float = 0.03,
) -> CrowdScenes:
    """Draw ``n`` perspective crowd scenes (see the module docstring).

    Args:
        n: number of images.
        size: image side H = W (the geometry scales with it; designed for 48 to 256).
        seed: the scenes are a pure function of the arguments.
        count_range: (min, max) people per image; counts are log-uniform in this range.
        kernel: ``"perspective"`` (sigma = ``sigma_scale`` x head radius), ``"adaptive"``
            (MCNN's geometry-adaptive kernel, beta 0.3, k 3) or ``"fixed"`` (sigma = 0.06 x size).
        sigma_scale: sigma / head radius of the perspective kernel.
        near_radius: range of the head radius (pixels at size 64) of a person on the bottom row.
        noise: standard deviation of the additive pixel noise.

    Returns:
        ``CrowdScenes`` with images (n, 3, size, size), density (n, 1, size, size), counts, head
        points and radii.
    """
    if n < 1 or size < 16:
        raise ValueError(f"need n >= 1 and size >= 16; got n={n}, size={size}")
    lo, hi = count_range
    if not 0 <= lo <= hi:
        raise ValueError(f"count_range must be (min, max) with 0 <= min <= max, got {count_range}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    rng = np.random.default_rng(seed)
    images = np.empty((n, 3, size, size), np.float32)
    density = torch.empty(n, 1, size, size)
    points, radii, horizons = [], [], np.empty(n, np.float32)
    for i in range(n):
        img, pts, rad, y_h = _draw_scene(rng, size, lo, hi, near_radius, noise)
        images[i] = img
        if kernel == "perspective":
            sig = np.maximum(sigma_scale * rad, 0.5)
        elif kernel == "adaptive":
            sig = adaptive_sigmas(pts, fallback=max(0.06 * size, 0.5))
        else:
            sig = np.full(len(pts), 0.06 * size)
        density[i, 0] = gaussian_density(pts, sig, size, size)
        points.append(torch.from_numpy(pts.astype(np.float32)))
        radii.append(torch.from_numpy(rad.astype(np.float32)))
        horizons[i] = y_h
    counts = torch.tensor([len(p) for p in points], dtype=torch.float32)
    return CrowdScenes(
        images=torch.from_numpy(images),
        density=density,
        counts=counts,
        points=points,
        head_radius=radii,
        horizon=torch.from_numpy(horizons),
    )


def _log_uniform_int(rng: np.random.Generator, lo: int, hi: int) -> int:
    if hi <= max(lo, 1):
        return int(hi)
    return int(round(math.exp(rng.uniform(math.log(max(lo, 1) - 0.49), math.log(hi + 0.49)))))


def _sample_people(rng, n_people: int, size: int, y_h: float, s_min: float):
    """Positions (x, s) of people: s in (s_min, 1] is the perspective scale of their row.

    Uniform on the ground plane -> per image row, density ~ s^-3; groups cluster on the ground.
    """
    n_groups = rng.integers(0, 4)
    in_groups = int(round(n_people * rng.uniform(0.3, 0.8))) if n_groups else 0
    n_alone = n_people - in_groups

    def ground_s(m: int) -> np.ndarray:  # inverse CDF of pdf ~ s^-3 on [s_min, 1]
        u = rng.uniform(size=m)
        return 1.0 / np.sqrt(1.0 / s_min**2 - u * (1.0 / s_min**2 - 1.0))

    xs = [rng.uniform(0, size, n_alone)]
    ss = [ground_s(n_alone)]
    if in_groups:
        members = rng.multinomial(in_groups, np.ones(n_groups) / n_groups)
        centres_s = ground_s(n_groups)
        for m, gs in zip(members, centres_s, strict=True):
            gx = rng.uniform(0.1, 0.9) * size
            spread = rng.uniform(0.08, 0.2) * size * gs  # ground spread, projected
            xs.append(gx + rng.normal(0, spread, m))
            ss.append(gs * np.exp(rng.normal(0, 0.12, m)))
    x = np.concatenate(xs)
    s = np.clip(np.concatenate(ss), s_min, 1.0)
    y = y_h + s * (size - y_h)
    keep = (x >= 0) & (x < size) & (y >= 0) & (y < size)
    # people pushed out of the frame by the group spread are redrawn alone, so the count holds
    while not keep.all():
        m = int((~keep).sum())
        x[~keep] = rng.uniform(0, size, m)
        s[~keep] = ground_s(m)
        y = y_h + s * (size - y_h)
        keep = (x >= 0) & (x < size) & (y >= 0) & (y < size)
    return x, y, s


def _draw_scene(rng, size: int, lo: int, hi: int, near_radius, noise: float):
    """One image (3, H, W), head points (P, 2), radii (P,) and the horizon row."""
    unit = size / 64.0
    r_near = rng.uniform(*near_radius) * unit
    y_h = rng.uniform(-0.45, 0.2) * size  # horizon row; above the image top when negative
    # the farthest people: the image top, or a head radius of ~0.7 px
    s_top = max(0.0, -y_h / (size - y_h))
    s_min = max(s_top + 1e-3, 0.7 * unit / r_near, 0.08)
    n_people = _log_uniform_int(rng, lo, hi)
    x, y, s = _sample_people(rng, n_people, size, y_h, s_min)
    r = r_near * s  # head radius (perspective scale)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5  # (H, W) pixel centres
    img = _background(rng, size, y_h, xx, yy)  # (3, H, W)

    # Clutter on the ground: head-like dark discs without bodies, and posts.
    n_clutter = rng.poisson(3 + 0.05 * n_people)
    cs = np.clip(1.0 / np.sqrt(rng.uniform(1, 1 / s_min**2, n_clutter)), s_min, 1)
    cx = rng.uniform(0, size, n_clutter)
    cy = y_h + cs * (size - y_h)
    for j in range(n_clutter):
        rr = r_near * cs[j] * rng.uniform(0.8, 1.6)
        colour = rng.uniform(0.05, 0.35, 3)
        if rng.uniform() < 0.6:  # dark disc (a bin, a bush)
            d2 = ((xx - cx[j]) ** 2 + (yy - cy[j]) ** 2) / rr**2
            mask = d2 < 1.0
            shade = 1.0 - 0.35 * d2
            img[:, mask] = colour[:, None] * shade[mask][None] + 0.05
        else:  # post: a thin vertical bar standing on the ground
            mask = (np.abs(xx - cx[j]) < 0.45 * rr) & (yy > cy[j] - 4 * rr) & (yy < cy[j])
            img[:, mask] = colour[:, None] * 1.5

    # People, painted far to near: the owner of a pixel is the nearest person covering it.
    order = np.argsort(s)
    x, y, s, r = x[order], y[order], s[order], r[order]
    if len(x):
        dx = xx[None] - x[:, None, None]  # (P, H, W)
        dy = yy[None] - y[:, None, None]
        rr = r[:, None, None]
        head_d2 = (dx**2 + dy**2) / rr**2  # (P, H, W)
        head = head_d2 < 1.0
        body_d2 = (dx / (1.2 * rr)) ** 2 + ((dy - 2.4 * rr) / (2.0 * rr)) ** 2
        body = (body_d2 < 1.0) & ~head
        covered = head | body
        rank = np.arange(1, len(x) + 1)[:, None, None]
        owner_rank = (covered * rank).max(0)  # (H, W); 0 = no person
        painted = owner_rank > 0
        owner = np.maximum(owner_rank - 1, 0)  # (H, W)
        py, px = np.nonzero(painted)
        o = owner[py, px]
        is_head = head[o, py, px]
        hair = rng.uniform(0.02, 0.3, (len(x), 1)) * rng.uniform(0.7, 1.2, (len(x), 3))
        cloth = rng.uniform(0.1, 0.95, (len(x), 3))
        striped = rng.uniform(size=len(x)) < 0.5
        stripe_phase = rng.uniform(0, 2 * math.pi, len(x))
        # head: shaded disc with a highlight toward the top-left
        hd2 = head_d2[o, py, px]
        hl = np.clip(1.15 - 0.45 * hd2 - 0.25 * (dx[o, py, px] + dy[o, py, px]) / r[o], 0.4, 1.3)
        head_rgb = hair[o] * hl[:, None]
        # body: clothing colour with optional horizontal stripes, darker at the edges
        stripes = 0.5 + 0.5 * np.sin(2 * math.pi * dy[o, py, px] / (0.9 * r[o]) + stripe_phase[o])
        tex = np.where(striped[o], 0.55 + 0.45 * stripes, 1.0)
        edge = 1.0 - 0.35 * body_d2[o, py, px]
        body_rgb = cloth[o] * (tex * np.clip(edge, 0.4, 1.0))[:, None]
        rgb = np.where(is_head[:, None], head_rgb, body_rgb)  # (m, 3)
        img[:, py, px] = rgb.T

    # Illumination gradient, gain, noise.
    angle = rng.uniform(0, 2 * math.pi)
    grad = 1.0 + 0.25 * ((xx / size - 0.5) * math.cos(angle) + (yy / size - 0.5) * math.sin(angle))
    img = img * grad[None] * rng.uniform(0.75, 1.15)
    img = img + rng.normal(0, noise, img.shape)
    pts = np.stack([x, y], 1) if len(x) else np.zeros((0, 2))
    return np.clip(img, 0.0, 1.0).astype(np.float32), pts, r, y_h


def _background(rng, size: int, y_h: float, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Perspective-tiled ground below the horizon; a wall with windows above it."""
    ground = rng.uniform(0.35, 0.75, 3) * rng.uniform(0.8, 1.0)
    s = np.clip((yy - y_h) / (size - y_h), 1e-3, None)  # perspective scale per row
    depth = 1.0 / s  # ground distance (units of the bottom row)
    cx = rng.uniform(0.2, 0.8) * size
    lateral = (xx - cx) / (s * size)  # ground coordinate across
    tile = rng.uniform(0.12, 0.3)
    amp = rng.uniform(0.05, 0.18) * np.clip(s * 3, 0, 1)  # fade far tiles (aliasing)
    lines = np.cos(2 * math.pi * depth * tile * 2) ** 8 + np.cos(2 * math.pi * lateral / tile) ** 8
    texture = rng.normal(0, 0.04, (size, size))
    shade = ground[:, None, None] * (1.0 - amp * lines + texture)[None]
    img = shade.copy()
    above = yy < y_h
    if above.any():  # a wall with rows of dark windows (head-like squares)
        wall = rng.uniform(0.45, 0.85, 3)
        period = rng.uniform(4, 8) * size / 64
        win = (np.mod(xx, period) < 0.5 * period) & (np.mod(yy, period * 1.3) < 0.6 * period)
        wall_img = wall[:, None, None] * np.where(win, 0.35, 1.0)[None]
        img = np.where(above[None], wall_img, img)
    return img
