"""Synthetic chest X-ray phantoms: two lungs and a heart as landmark contours.

A stand-in for the JSRT / Montgomery / Shenzhen landmark datasets of HybridGNet (Gaggion et al.
2022, arXiv 2203.10977), which cannot be downloaded here. Each organ is a smooth closed contour
sampled at a fixed number of corresponding landmarks (JSRT's layout by default: 44 right lung,
50 left lung, 26 heart), so a shape model or a graph decoder over the landmark graph can be
trained exactly as on the real data.

Generation, per image (deterministic in ``(seed, index)``):

1. Shape. Mean contours are periodic cubic splines through anatomical control points, resampled
   at equal arc length (landmark ``i`` of an organ is always "the same" anatomical point). Each
   organ gets low-order Fourier modes of radial deformation (PCA-like modes: amplitude decays as
   ``1/k``), its own anisotropic scale and shift; then a smooth global displacement field and a
   global similarity transform (patient size, position, small rotation) move all organs together.
2. Image. Body ellipse (soft tissue), brighter mediastinum/spine band, dark lungs with low-pass
   "vessel" texture, bright heart, rib-like curved bands over the thorax, a Gaussian blur, a
   smooth multiplicative bias field, a random gamma and additive Gaussian noise.
3. Labels. Landmarks ``(n, N, 2)`` as ``(x, y)`` in [0, 1] (pixel index / image size, the
   official code's convention) and a rasterised mask: 0 background, 1 right lung, 2 left lung,
   3 heart (the heart is drawn last and wins where contours overlap, as in JSRT's masks where
   the lungs exclude the heart).
4. Occlusion (optional, test-time): constant-intensity rectangles and elliptical blobs placed
   inside the organs, covering a chosen fraction of the image; the labels stay the anatomy.

"Right lung" is the patient's right, on the left of the image (radiological convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

ORGANS = ("right_lung", "left_lung", "heart")
"""Organ order of landmarks and mask labels (label ``k + 1`` is ``ORGANS[k]``)."""

JSRT_LANDMARKS = (44, 50, 26)
"""Landmarks per organ in the JSRT/HybridGNet layout (right lung, left lung, heart)."""

N_CLASSES = 1 + len(ORGANS)
"""Mask classes: background + one per organ."""

# Control points of the mean shapes, (x, y) in [0, 1] with y downwards, clockwise on screen,
# starting at the apex (lungs) or the top of the heart.
_RIGHT_LUNG = (
    (0.330, 0.130), (0.385, 0.170), (0.410, 0.280), (0.420, 0.450), (0.405, 0.600),
    (0.390, 0.690), (0.320, 0.760), (0.200, 0.840), (0.130, 0.860), (0.130, 0.700),
    (0.150, 0.480), (0.200, 0.280), (0.260, 0.170),
)  # fmt: skip
_LEFT_LUNG = (
    (0.670, 0.130), (0.745, 0.170), (0.810, 0.280), (0.860, 0.480), (0.880, 0.700),
    (0.880, 0.860), (0.810, 0.840), (0.740, 0.790), (0.700, 0.640), (0.630, 0.560),
    (0.590, 0.450), (0.585, 0.280), (0.610, 0.170),
)  # fmt: skip
_HEART = tuple(
    (0.540 + 0.145 * np.cos(t) - 0.02 * np.sin(t), 0.685 + 0.115 * np.sin(t))
    for t in np.linspace(-np.pi / 2, 1.5 * np.pi, 12, endpoint=False)
)
_MEAN_CONTROL = (_RIGHT_LUNG, _LEFT_LUNG, _HEART)
_MEAN_SCALE = 0.88


@dataclass(frozen=True)
class PhantomConfig:
    """How the phantoms look.

    Attributes:
        image_size: side H = W in pixels.
        n_landmarks: landmarks per organ (right lung, left lung, heart); each >= 8.
        shape_variation: scale of all random shape changes (0 gives the mean shape, up to the
            global similarity transform which ``pose_variation`` controls).
        pose_variation: scale of the global scale / rotation / shift.
        rib_contrast: intensity of the rib bands (0 disables them).
        bias: strength of the smooth multiplicative bias field (0 disables it).
        noise: standard deviation of the additive Gaussian noise.
        blur: Gaussian blur sigma in pixels at 128 px (scaled with the image size).
    """

    image_size: int = 128
    n_landmarks: tuple[int, ...] = JSRT_LANDMARKS
    shape_variation: float = 1.0
    pose_variation: float = 1.0
    rib_contrast: float = 0.10
    bias: float = 0.25
    noise: float = 0.03
    blur: float = 0.8

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if len(self.n_landmarks) != len(ORGANS) or min(self.n_landmarks) < 8:
            raise ValueError(
                f"n_landmarks must give {len(ORGANS)} counts {ORGANS}, each >= 8, "
                f"got {self.n_landmarks}"
            )
        for name in ("shape_variation", "pose_variation", "rib_contrast", "bias", "noise", "blur"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def n_nodes(self) -> int:
        """Total landmarks N."""
        return sum(self.n_landmarks)


@dataclass(frozen=True)
class Phantoms:
    """A batch of phantoms.

    Attributes:
        images: (n, 1, H, W) float32 in [0, 1].
        masks: (n, H, W) int64 labels (0 background, 1 right lung, 2 left lung, 3 heart).
        landmarks: (n, N, 2) float32 ``(x, y)`` in [0, 1], organs concatenated in ``ORGANS``
            order.
        occluders: (n, H, W) bool, where an occluder replaced the image (all False if none).
    """

    images: Tensor
    masks: Tensor
    landmarks: Tensor
    occluders: Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, idx) -> Phantoms:
        return Phantoms(self.images[idx], self.masks[idx], self.landmarks[idx], self.occluders[idx])


# --- landmark graph -------------------------------------------------------------------------


def organ_slices(n_landmarks: tuple[int, ...] = JSRT_LANDMARKS) -> list[slice]:
    """The slice of the landmark axis belonging to each organ."""
    ends = np.cumsum(n_landmarks)
    return [slice(int(e - n), int(e)) for n, e in zip(n_landmarks, ends, strict=True)]


def landmark_adjacency(n_landmarks: tuple[int, ...] = JSRT_LANDMARKS) -> Tensor:
    """(N, N) symmetric 0/1 adjacency of the landmark graph: each organ is a cycle.

    The official code's ``genMatrixesLH`` (``mOrgan`` per organ on the block diagonal).
    """
    n = sum(n_landmarks)
    adj = torch.zeros(n, n)
    for s in organ_slices(n_landmarks):
        idx = torch.arange(s.start, s.stop)
        nxt = s.start + (idx - s.start + 1) % (s.stop - s.start)
        adj[idx, nxt] = 1.0
        adj[nxt, idx] = 1.0
    return adj


def landmark_edge_index(n_landmarks: tuple[int, ...] = JSRT_LANDMARKS) -> Tensor:
    """(2, E) edge list of ``landmark_adjacency`` (both directions), PyG's convention."""
    return landmark_adjacency(n_landmarks).nonzero().T.contiguous()


# --- contours -------------------------------------------------------------------------------


def _resample_closed(control: np.ndarray, n: int) -> np.ndarray:
    """A periodic cubic spline through ``control`` (m, 2), resampled at ``n`` points equally
    spaced in arc length, starting at the first control point."""
    from scipy.interpolate import CubicSpline

    pts = np.vstack([control, control[:1]])
    t = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    spline = CubicSpline(t, pts, bc_type="periodic")
    dense_t = np.linspace(0.0, t[-1], 40 * n, endpoint=False)
    dense = spline(dense_t)  # (40n, 2)
    seg = np.linalg.norm(np.diff(np.vstack([dense, dense[:1]]), axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])[:-1]
    target = np.linspace(0.0, arc[-1] + seg[-1], n, endpoint=False)
    return np.stack([np.interp(target, arc, dense[:, d]) for d in range(2)], axis=1)


def mean_shape(n_landmarks: tuple[int, ...] = JSRT_LANDMARKS) -> np.ndarray:
    """(N, 2) mean landmarks of the phantom shape model."""
    pts = np.concatenate(
        [
            _resample_closed(np.asarray(c, dtype=np.float64), n)
            for c, n in zip(_MEAN_CONTROL, n_landmarks, strict=True)
        ]
    )
    return 0.5 + _MEAN_SCALE * (pts - 0.5)  # margin for the pose variation


def _sample_shape(rng: np.random.Generator, cfg: PhantomConfig, mean: np.ndarray) -> np.ndarray:
    """One random landmark set (N, 2) around ``mean``: the first draw (of at most 50) whose
    contours are simple polygons inside [0.02, 0.98]^2."""
    for _ in range(50):
        out = _draw_shape(rng, cfg, mean)
        inside = (out > 0.02).all() and (out < 0.98).all()
        if inside and not any(
            polygon_self_intersects(out[sl]) for sl in organ_slices(cfg.n_landmarks)
        ):
            return out
    return np.clip(mean, 0.02, 0.98)  # pragma: no cover - not reached with the defaults


def _draw_shape(rng: np.random.Generator, cfg: PhantomConfig, mean: np.ndarray) -> np.ndarray:
    """One random landmark set (N, 2) around ``mean`` (may be invalid; see ``_sample_shape``)."""
    s, p = cfg.shape_variation, cfg.pose_variation
    out = np.empty_like(mean)
    for sl in organ_slices(cfg.n_landmarks):
        pts = mean[sl]
        n = len(pts)
        c = pts.mean(0)
        theta = 2 * np.pi * np.arange(n) / n
        factor = np.ones(n)
        for k in range(1, 5):  # radial Fourier modes, amplitude ~ 1/k
            a, b = rng.normal(0.0, 0.045 * s / k, size=2)
            factor += a * np.cos(k * theta) + b * np.sin(k * theta)
        scale = 1.0 + rng.normal(0.0, 0.08 * s, size=2)  # per-organ anisotropic scale
        shift = rng.normal(0.0, 0.015 * s, size=2)
        out[sl] = c + shift + (pts - c) * factor[:, None] * scale
    # Smooth global displacement field (two random low-frequency waves).
    for _ in range(2):
        freq = rng.normal(0.0, 1.0, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        amp = rng.normal(0.0, 0.012 * s, size=2)
        out += amp * np.sin(2 * np.pi * (out @ freq) + phase)[:, None]
    # Global similarity transform about the image centre.
    zoom = 1.0 + rng.normal(0.0, 0.07 * p)
    angle = np.deg2rad(rng.normal(0.0, 5.0 * p))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shift = rng.normal(0.0, 0.035 * p, size=2)
    return 0.5 + shift + ((out - 0.5) @ rot.T) * zoom


def rasterize_contours(
    landmarks: Tensor | np.ndarray,
    n_landmarks: tuple[int, ...] = JSRT_LANDMARKS,
    image_size: int = 128,
) -> Tensor:
    """Label masks of landmark contours: (n, N, 2) or (N, 2) in [0, 1] -> (n, H, W) int64.

    Each organ's polygon is filled with label ``k + 1`` in ``ORGANS`` order (later organs win
    where polygons overlap). Vertex ``(x, y)`` lies at pixel index ``(x * W, y * H)``.
    """
    from skimage.draw import polygon

    pts = landmarks.detach().cpu().numpy() if isinstance(landmarks, Tensor) else landmarks
    pts = np.asarray(pts, dtype=np.float64)
    single = pts.ndim == 2
    if single:
        pts = pts[None]
    if pts.ndim != 3 or pts.shape[1:] != (sum(n_landmarks), 2):
        raise ValueError(
            f"landmarks must be (n, {sum(n_landmarks)}, 2) or ({sum(n_landmarks)}, 2) for "
            f"n_landmarks={n_landmarks}, got {tuple(pts.shape)}"
        )
    masks = np.zeros((pts.shape[0], image_size, image_size), dtype=np.int64)
    for b in range(pts.shape[0]):
        for k, sl in enumerate(organ_slices(n_landmarks)):
            xy = np.nan_to_num(pts[b, sl]) * image_size
            rr, cc = polygon(xy[:, 1], xy[:, 0], shape=(image_size, image_size))
            masks[b, rr, cc] = k + 1
    out = torch.from_numpy(masks)
    return out[0] if single else out


def polygon_self_intersects(points: Tensor | np.ndarray) -> bool:
    """Whether the closed polygon through ``points`` (n, 2) crosses itself.

    Tests every pair of non-adjacent edges for a proper or touching intersection (orientation
    test); repeated vertices (zero-length edges) count as degenerate, i.e. invalid.
    """
    p = points.detach().cpu().numpy() if isinstance(points, Tensor) else np.asarray(points)
    p = p.astype(np.float64)
    n = len(p)
    if n < 3 or not np.isfinite(p).all():
        return True
    a, b = p, np.roll(p, -1, axis=0)  # edge i: a[i] -> b[i]
    if (np.linalg.norm(b - a, axis=1) < 1e-12).any():
        return True
    i, j = np.triu_indices(n, k=2)
    keep = ~((i == 0) & (j == n - 1))  # first and last edge share a vertex
    i, j = i[keep], j[keep]

    def orient(p1, p2, p3):
        return np.sign(
            (p2[:, 0] - p1[:, 0]) * (p3[:, 1] - p1[:, 1])
            - (p2[:, 1] - p1[:, 1]) * (p3[:, 0] - p1[:, 0])
        )

    o1, o2 = orient(a[i], b[i], a[j]), orient(a[i], b[i], b[j])
    o3, o4 = orient(a[j], b[j], a[i]), orient(a[j], b[j], b[i])
    proper = (o1 * o2 < 0) & (o3 * o4 < 0)
    if proper.any():
        return True

    def on_segment(p1, p2, q):  # q collinear with p1-p2 and inside its bounding box
        return (
            (np.minimum(p1[:, 0], p2[:, 0]) <= q[:, 0])
            & (q[:, 0] <= np.maximum(p1[:, 0], p2[:, 0]))
            & (np.minimum(p1[:, 1], p2[:, 1]) <= q[:, 1])
            & (q[:, 1] <= np.maximum(p1[:, 1], p2[:, 1]))
        )

    touch = (
        ((o1 == 0) & on_segment(a[i], b[i], a[j]))
        | ((o2 == 0) & on_segment(a[i], b[i], b[j]))
        | ((o3 == 0) & on_segment(a[j], b[j], a[i]))
        | ((o4 == 0) & on_segment(a[j], b[j], b[i]))
    )
    return bool(touch.any())


def contours_self_intersect(
    landmarks: Tensor | np.ndarray, n_landmarks: tuple[int, ...] = JSRT_LANDMARKS
) -> Tensor:
    """(n, N, 2) landmarks -> (n, n_organs) bool: whether each organ's contour crosses itself."""
    pts = landmarks.detach().cpu().numpy() if isinstance(landmarks, Tensor) else landmarks
    flags = [
        [polygon_self_intersects(pts[b, sl]) for sl in organ_slices(n_landmarks)]
        for b in range(pts.shape[0])
    ]
    return torch.tensor(flags, dtype=torch.bool).reshape(pts.shape[0], len(n_landmarks))


# --- image synthesis ------------------------------------------------------------------------


def _lowpass_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    z = gaussian_filter(rng.normal(size=(size, size)), sigma, mode="wrap")
    return z / (z.std() + 1e-8)


def _render(
    rng: np.random.Generator, cfg: PhantomConfig, mask: np.ndarray, landmarks: np.ndarray
) -> np.ndarray:
    """The phantom radiograph (H, W) in [0, 1] for one label mask."""
    from scipy.ndimage import gaussian_filter

    size = cfg.image_size
    coords = (np.arange(size) + 0.5) / size
    y, x = np.meshgrid(coords, coords, indexing="ij")
    cx = float(landmarks[:, 0].mean())  # body follows the organs' pose
    # Body: soft tissue inside a thorax ellipse, air outside.
    cy = float(landmarks[:, 1].mean()) + 0.04
    body_r = np.sqrt(((x - cx) / rng.uniform(0.42, 0.47)) ** 2 + ((y - cy) / 0.56) ** 2)
    body = 1.0 / (1.0 + np.exp((body_r - 1.0) / 0.02))
    tissue = rng.uniform(0.50, 0.60)
    img = 0.06 + (tissue - 0.06) * body
    # Mediastinum and spine: a brighter vertical band.
    img += rng.uniform(0.10, 0.18) * np.exp(-(((x - cx) / 0.06) ** 2)) * body
    # Lungs: dark, with low-pass "vessel" texture.
    lungs = (mask == 1) | (mask == 2)
    lung_level = rng.uniform(0.18, 0.28)
    texture = 0.04 * _lowpass_noise(rng, size, size / 48) + 0.02 * _lowpass_noise(
        rng, size, size / 128
    )
    img = np.where(lungs, lung_level + texture, img)
    # Heart: bright soft tissue.
    img = np.where(mask == 3, rng.uniform(0.62, 0.72) + 0.01 * texture, img)
    # Ribs: curved bright bands on each side, across lungs and soft tissue.
    if cfg.rib_contrast > 0:
        u = np.abs(x - cx)
        thick = rng.uniform(0.016, 0.022)
        first = float(landmarks[:, 1].min()) + rng.uniform(-0.02, 0.02)  # at the apices
        spacing = rng.uniform(0.066, 0.08)
        ribs = np.zeros_like(img)
        for j in range(9):
            y0 = first + j * spacing
            yc = y0 + 0.10 * u + 0.45 * (u - 0.28) ** 2 - 0.035
            ribs += np.exp(-(((y - yc) / thick) ** 2)) * ((u > 0.05) & (u < 0.47))
        img += cfg.rib_contrast * rng.uniform(0.7, 1.3) * ribs * body
    img = gaussian_filter(img, cfg.blur * size / 128)
    # Smooth multiplicative bias field and contrast (gamma).
    if cfg.bias > 0:
        c = rng.normal(0.0, cfg.bias, size=5)
        field = (
            c[0] * (x - 0.5)
            + c[1] * (y - 0.5)
            + c[2] * (x - 0.5) * (y - 0.5)
            + c[3] * ((x - 0.5) ** 2 - 1 / 12)
            + c[4] * ((y - 0.5) ** 2 - 1 / 12)
        )
        img = img * np.exp(field)
    img = np.clip(img, 0.0, 1.0) ** rng.uniform(0.8, 1.25)
    img = img + rng.normal(0.0, cfg.noise, size=img.shape)
    return np.clip(img, 0.0, 1.0)


def _occlude(
    rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cover about ``fraction`` of the image with 1-3 constant-intensity rectangles or
    elliptical blobs centred inside the organs."""
    size = img.shape[0]
    occ = np.zeros_like(mask, dtype=bool)
    n_occ = int(rng.integers(1, 4))
    area = fraction * size * size / n_occ
    ys, xs = np.nonzero(mask > 0)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(n_occ):
        k = int(rng.integers(len(ys))) if len(ys) else 0
        cy = ys[k] if len(ys) else size / 2
        cx = xs[k] if len(xs) else size / 2
        aspect = np.exp(rng.uniform(-0.6, 0.6))
        h = np.sqrt(area / aspect)
        w = area / h
        if rng.random() < 0.5:  # rectangle
            box = (np.abs(yy - cy) <= h / 2) & (np.abs(xx - cx) <= w / 2)
        else:  # elliptical blob with the same area
            ry, rx = h / np.sqrt(np.pi), w / np.sqrt(np.pi)
            box = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        level = rng.choice([rng.uniform(0.0, 0.08), rng.uniform(0.85, 1.0)])
        img = np.where(box, level, img)
        occ |= box
    return img, occ


def make_phantoms(
    n: int,
    seed: int = 0,
    config: PhantomConfig | None = None,
    occlusion: float = 0.0,
    start: int = 0,
) -> Phantoms:
    """``n`` phantoms; image ``i`` depends only on ``(seed, start + i)`` and the config.

    Args:
        n: number of images.
        seed: dataset seed.
        config: appearance (``PhantomConfig()`` by default).
        occlusion: fraction of the image area covered by occluders (0 = none), in [0, 0.6].
        start: index of the first image (so disjoint splits can share a seed).

    Returns:
        ``Phantoms`` (images, masks, landmarks, occluders).
    """
    cfg = config or PhantomConfig()
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0, got n={n}, start={start}")
    if not 0.0 <= occlusion <= 0.6:
        raise ValueError(f"occlusion is an image-area fraction in [0, 0.6], got {occlusion}")
    size = cfg.image_size
    mean = mean_shape(cfg.n_landmarks)
    images = np.empty((n, 1, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=np.int64)
    lms = np.empty((n, cfg.n_nodes, 2), dtype=np.float32)
    occs = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        rng = np.random.default_rng([seed, start + i])
        pts = _sample_shape(rng, cfg, mean)
        mask = rasterize_contours(pts, cfg.n_landmarks, size).numpy()
        img = _render(rng, cfg, mask, pts)
        if occlusion > 0:
            occ_rng = np.random.default_rng([seed, start + i, 1])
            img, occs[i] = _occlude(occ_rng, img, mask, occlusion)
        images[i, 0], masks[i], lms[i] = img, mask, pts
    return Phantoms(
        torch.from_numpy(images),
        torch.from_numpy(masks),
        torch.from_numpy(lms),
        torch.from_numpy(occs),
    )
