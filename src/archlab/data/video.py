"""Short videos for neural video representations: synthetic clips and a reader for real ones.

``synthetic_video`` renders a clip from the photos that ship with scikit-image (nothing is
downloaded): a camera that pans across a photo while it zooms in or out, with textured disc
sprites cut from another photo moving in straight lines over it. Every random choice (photo,
path of the camera, zoom, sprites) comes from the ``torch.Generator`` passed in, so a clip is a
pure function of its stream. ``read_frames`` loads a user's own clip (a folder of images, a
list of image files or a video/GIF file that ``imageio`` reads).

Both return float32 tensors ``(T, 3, H, W)`` in [0, 1].
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from archlab.errors import ArchlabError

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
"""The RGB photos of ``skimage.data`` that ship in the wheel (backgrounds and sprite textures)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class FrameSizeError(ArchlabError, ValueError):
    """The frames of a clip differ in size (a clip is one ``(T, 3, H, W)`` tensor)."""


@functools.lru_cache(maxsize=len(PHOTOS))
def photo(name: str) -> Tensor:
    """A bundled ``skimage.data`` RGB photo as a float tensor ``(3, H, W)`` in [0, 1]."""
    if name not in PHOTOS:
        raise ArchlabError(f"unknown photo {name!r} (valid: {', '.join(PHOTOS)})")
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())[..., :3]
    return torch.from_numpy(image.copy()).permute(2, 0, 1).float().div_(255.0)


def _uniform(g: torch.Generator, lo: float, hi: float, n: int = 1) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def synthetic_video(
    n_frames: int,
    size: tuple[int, int] = (64, 64),
    generator: torch.Generator | None = None,
    *,
    n_sprites: int = 2,
    zoom: float = 1.6,
) -> Tensor:
    """A clip of a camera panning and zooming over a photo, with moving textured sprites.

    Args:
        n_frames: frames T (>= 2).
        size: ``(H, W)`` of a frame.
        generator: the random stream (photo, camera path, zoom direction, sprites); None uses
            a fresh generator seeded 0.
        n_sprites: textured disc sprites moving in straight lines over the background.
        zoom: ratio of the camera window's side at one end of the clip to the other (the
            direction, in or out, is drawn).

    Returns:
        ``(T, 3, H, W)`` float32 in [0, 1].
    """
    if n_frames < 2:
        raise ArchlabError(f"a video needs n_frames >= 2, got {n_frames}")
    h, w = size
    if h < 8 or w < 8:
        raise ArchlabError(f"video frames must be at least 8x8, got {h}x{w}")
    if zoom < 1 or n_sprites < 0:
        raise ArchlabError(f"zoom must be >= 1 and n_sprites >= 0, got {zoom}, {n_sprites}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    order = torch.randperm(len(PHOTOS), generator=g).tolist()
    background = photo(PHOTOS[order[0]])
    s = torch.linspace(0.0, 1.0, n_frames)  # (T,) progress through the clip
    # camera window: half-side (normalised to the photo, [-1, 1] coordinates) and centre path
    big, small = 0.55, 0.55 / zoom
    start, end = (big, small) if float(_uniform(g, 0, 1)) < 0.5 else (small, big)
    half = start + (end - start) * s  # (T,)
    aspect = (w / h) * background.shape[1] / background.shape[2]  # keeps pixels square
    half_x, half_y = half * min(1.0, aspect), half / max(1.0, aspect)
    angle = float(_uniform(g, 0, 2 * math.pi))
    travel = 1.0 - big  # the window never leaves the photo
    cx = travel * math.cos(angle) * (2 * s - 1)
    cy = travel * math.sin(angle) * (2 * s - 1)
    theta = torch.zeros(n_frames, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = half_x, cx
    theta[:, 1, 1], theta[:, 1, 2] = half_y, cy
    grid = F.affine_grid(theta, [n_frames, 3, h, w], align_corners=False)  # (T, H, W, 2)
    frames = F.grid_sample(background.expand(n_frames, -1, -1, -1), grid, mode="bilinear",
                           padding_mode="border", align_corners=False)  # fmt: skip
    ys = torch.linspace(-1, 1, h).view(1, h, 1)
    xs = torch.linspace(-1, 1, w).view(1, 1, w)
    for k in range(n_sprites):
        texture = photo(PHOTOS[order[1 + k % (len(PHOTOS) - 1)]])
        radius = float(_uniform(g, 0.18, 0.3))  # of the frame's half-height
        p0, p1 = _uniform(g, -0.8, 0.8, 2), _uniform(g, -0.8, 0.8, 2)
        px = (p0[0] + (p1[0] - p0[0]) * s).view(-1, 1, 1)  # (T, 1, 1)
        py = (p0[1] + (p1[1] - p0[1]) * s).view(-1, 1, 1)
        dx = ((xs - px) * (w / h)).expand(n_frames, h, w)  # (T, H, W), in half-heights
        dy = (ys - py).expand(n_frames, h, w)
        dist = (dx.square() + dy.square()).sqrt()
        mask = ((radius - dist) * h / 2 + 0.5).clamp(0, 1)[:, None]  # anti-aliased edge
        tex_centre = _uniform(g, -0.5, 0.5, 2)
        local = torch.stack([dx, dy], dim=-1) * 0.5 + tex_centre  # texture moves with it
        sprite = F.grid_sample(texture.expand(n_frames, -1, -1, -1), local, mode="bilinear",
                               padding_mode="reflection", align_corners=False)  # fmt: skip
        frames = frames * (1 - mask) + sprite * mask
    return frames.clamp_(0.0, 1.0).contiguous()


def _to_frames(array: np.ndarray) -> Tensor:
    """``(T, H, W[, C])`` integer or float pixels -> ``(T, 3, H, W)`` float in [0, 1]."""
    if array.ndim == 3:
        array = array[..., None]
    array = array[..., :3]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if np.issubdtype(array.dtype, np.integer):
        t = torch.from_numpy(array.astype(np.float32) / float(np.iinfo(array.dtype).max))
    elif array.dtype == np.bool_:
        t = torch.from_numpy(array.astype(np.float32))
    else:
        t = torch.from_numpy(array.astype(np.float32)).clamp(0, 1)
    return t.permute(0, 3, 1, 2).contiguous()


def read_frames(source: str | Path | Sequence[str | Path]) -> Tensor:
    """A user's clip as ``(T, 3, H, W)`` float32 in [0, 1].

    Args:
        source: a folder of images (read in sorted file-name order), a list of image files (in
            the order given) or one video/animated file that ``imageio`` reads (GIF, and MP4
            etc. when imageio's ffmpeg/pyav plugin is installed). Grey frames are repeated to 3
            channels; an alpha channel is dropped.

    Raises:
        FrameSizeError: the frames differ in size (names the first frame's size).
        ArchlabError: the source is missing, holds no images or cannot be decoded.
    """
    import imageio.v3 as iio

    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ArchlabError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {path}")
        elif path.is_file():
            try:
                array = np.asarray(iio.imread(path, index=None))
            except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file
                raise ArchlabError(f"cannot read video {path}: {e}") from None
            if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4)):
                array = array[None]  # one still image
            return _to_frames(array)
        else:
            raise ArchlabError(f"no such file or folder: {path}")
    else:
        files = [Path(p) for p in source]
        if not files:
            raise ArchlabError("read_frames needs at least one image file")
    frames, expected = [], None
    for f in files:
        try:
            array = np.asarray(iio.imread(f))
        except Exception as e:  # noqa: BLE001
            raise ArchlabError(f"cannot read image {f}: {e}") from None
        if array.ndim == 3 and array.shape[-1] not in (1, 3, 4):
            array = array[0]  # a multi-frame file inside a list: its first frame
        hw = tuple(array.shape[:2])
        if expected is None:
            expected = hw
        elif hw != expected:
            raise FrameSizeError(
                f"frame {f.name} is {hw[0]}x{hw[1]}, expected {expected[0]}x{expected[1]} "
                f"(the size of {files[0].name}; every frame of a clip has one size)"
            )
        frames.append(_to_frames(array[None])[0])
    return torch.stack(frames)


__all__ = ["PHOTOS", "FrameSizeError", "photo", "read_frames", "synthetic_video"]
