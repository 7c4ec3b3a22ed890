"""Metrics of dense prediction: overlap (Dice, IoU), boundary distance (Hausdorff), topology
(connected components, holes), counting (MAE, RMSE) and image quality (PSNR, SSIM).

Conventions, documented once here:
- Label maps are integer tensors ``(B, *S)`` or ``(*S)``; binary masks are bool/0-1 arrays.
- Dice/IoU of a class absent from both prediction and target is 1.0 (perfect agreement on
  "nothing there"); absent from one of them it is 0.0.
- Hausdorff distance of two empty masks is 0.0, of one empty and one non-empty mask ``inf``.
- NaN inputs raise ``ValueError``: a metric of undefined pixels is not a number to report.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def _check_labels(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError("expected integer label maps (take logits.argmax(1) first)")


def _overlap(pred: Tensor, target: Tensor, n_classes: int, per_image: bool):
    _check_labels(pred, target)
    p = F.one_hot(pred.long(), n_classes).bool()  # (B, *S, K)
    t = F.one_hot(target.long(), n_classes).bool()
    dims = tuple(range(1 if per_image else 0, p.ndim - 1))
    inter = (p & t).sum(dims).double()  # (B, K) or (K,)
    return inter, p.sum(dims).double(), t.sum(dims).double()


def dice(pred: Tensor, target: Tensor, n_classes: int, *, per_image: bool = False) -> Tensor:
    """Dice ``2|P & T| / (|P| + |T|)`` per class: ``(K,)``, or ``(B, K)`` with ``per_image``.

    Both empty -> 1.0. Class 0 (background) is included; average ``[1:]`` for the foreground.
    """
    inter, n_p, n_t = _overlap(pred, target, n_classes, per_image)
    denom = n_p + n_t
    return torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.ones_like(denom))


def iou(pred: Tensor, target: Tensor, n_classes: int, *, per_image: bool = False) -> Tensor:
    """Intersection over union per class (``(K,)`` or ``(B, K)``); both empty -> 1.0."""
    inter, n_p, n_t = _overlap(pred, target, n_classes, per_image)
    union = n_p + n_t - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def mean_iou(pred: Tensor, target: Tensor, n_classes: int) -> float:
    """mIoU over classes present in the prediction or the target (Cityscapes/VOC convention:
    dataset-level IoU per class, then the mean over classes that occur)."""
    inter, n_p, n_t = _overlap(pred, target, n_classes, per_image=False)
    union = n_p + n_t - inter
    present = union > 0
    if not present.any():
        return 1.0
    return float((inter[present] / union[present]).mean())


def _np_mask(mask) -> np.ndarray:
    if isinstance(mask, Tensor):
        if mask.is_floating_point() and torch.isnan(mask).any():
            raise ValueError("mask contains NaN")
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask).astype(bool)


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, structure=np.ones((3,) * mask.ndim), border_value=0)


def hausdorff(pred_mask, target_mask, percentile: float = 100.0, spacing=None) -> float:
    """Symmetric Hausdorff distance between the surfaces of two binary masks (pixels, or the
    units of ``spacing``). ``percentile=95`` gives HD95 (percentile of both directed surface
    distances pooled, as MedPy; MONAI's ``compute_hausdorff_distance`` takes the larger of the
    two directed percentiles instead, so the two agree at 100 only). Both empty -> 0.0; exactly
    one empty -> ``inf``."""
    from scipy import ndimage

    a, b = _np_mask(pred_mask), _np_mask(target_mask)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return math.inf
    sa, sb = _surface(a), _surface(b)
    d_ab = ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]
    d_ba = ndimage.distance_transform_edt(~sa, sampling=spacing)[sb]
    return float(np.percentile(np.concatenate([d_ab, d_ba]), percentile))


def n_components(mask) -> int:
    """Connected components of a binary mask (full connectivity: 8 in 2-D, 26 in 3-D)."""
    from scipy import ndimage

    m = _np_mask(mask)
    return int(ndimage.label(m, structure=np.ones((3,) * m.ndim))[1])


def n_holes(mask) -> int:
    """Holes of a binary mask: background components (4-/6-connected, the dual of the
    foreground's full connectivity) that do not touch the image border."""
    from scipy import ndimage

    m = _np_mask(mask)
    labels, n = ndimage.label(~m)  # default structure: face connectivity
    if n == 0:
        return 0
    border = np.zeros_like(m)
    for axis in range(m.ndim):
        index = [slice(None)] * m.ndim
        index[axis] = 0
        border[tuple(index)] = True
        index[axis] = -1
        border[tuple(index)] = True
    touching = set(np.unique(labels[border & ~m]).tolist()) - {0}
    return n - len(touching)


def count_errors(pred_counts, true_counts) -> tuple[float, float]:
    """Crowd-counting errors over images: ``(MAE, RMSE)`` of the counts (the field's "MSE" is
    the root mean squared error)."""
    p = torch.as_tensor(pred_counts, dtype=torch.float64).flatten()
    t = torch.as_tensor(true_counts, dtype=torch.float64).flatten()
    if p.shape != t.shape:
        raise ValueError(f"{p.numel()} predicted counts but {t.numel()} true counts")
    if torch.isnan(p).any():
        raise ValueError("predicted counts contain NaN")
    err = p - t
    return float(err.abs().mean()), float(err.square().mean().sqrt())


def _check_images(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if not torch.isfinite(pred).all() or not torch.isfinite(target).all():
        raise ValueError("images contain NaN or Inf")


def psnr(
    pred: Tensor, target: Tensor, data_range: float = 1.0, mask: Tensor | None = None
) -> float:
    """Peak signal-to-noise ratio in dB, averaged over images ``(B, C, H, W)`` (or one image).

    With ``mask`` (broadcastable to the images, 1 = counted), the MSE runs over the masked pixels
    only (in-hole PSNR of inpainting). Identical images give ``inf``.
    """
    _check_images(pred, target)
    if pred.ndim == 3:
        pred, target = pred[None], target[None]
        mask = None if mask is None else mask[None] if mask.ndim == 3 else mask
    sq = (pred.double() - target.double()).square()
    if mask is None:
        mse = sq.flatten(1).mean(1)
    else:
        m = mask.to(sq.dtype).expand_as(sq)
        mse = (sq * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)
    values = 10 * torch.log10(data_range**2 / mse)
    return float(values.mean())


def _gaussian_window(sigma: float, truncate: float, dtype) -> Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=dtype)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def ssim(
    pred: Tensor,
    target: Tensor,
    data_range: float = 1.0,
    sigma: float = 1.5,
    per_image: bool = False,
) -> float | Tensor:
    """Structural similarity (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5),
    K1 = 0.01, K2 = 0.03, population covariances, averaged over channels and the valid interior
    — equal to ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=...)`` per channel.

    Args:
        pred, target: ``(B, C, H, W)`` (or ``(C, H, W)``), H and W >= 11.
        per_image: return a ``(B,)`` tensor instead of the mean.
    """
    _check_images(pred, target)
    if pred.ndim == 3:
        pred, target = pred[None], target[None]
    x, y = pred.double(), target.double()
    B, C, H, W = x.shape
    w = _gaussian_window(sigma, 3.5, x.dtype)
    if H < len(w) or W < len(w):
        raise ValueError(f"SSIM needs images of at least {len(w)}x{len(w)}, got {H}x{W}")

    def filt(z: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H - 2r, W - 2r), valid region
        z = z.reshape(B * C, 1, H, W)
        z = F.conv2d(z, w.view(1, 1, 1, -1))
        z = F.conv2d(z, w.view(1, 1, -1, 1))
        return z.reshape(B, C, *z.shape[-2:])

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ux, uy = filt(x), filt(y)
    vx = filt(x * x) - ux * ux
    vy = filt(y * y) - uy * uy
    vxy = filt(x * y) - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    values = s.mean(dim=(1, 2, 3))  # (B,)
    return values if per_image else float(values.mean())


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of rows whose arg-max equals the label: logits (B, K), labels (B,)."""
    return (logits.argmax(-1) == labels).float().mean().item()
