"""Losses of the dense-prediction papers: segmentation (cross-entropy, Dice), counting (density
MSE) and restoration (L1, Charbonnier).

Shapes: logits ``(B, K, *S)`` with ``S`` the spatial dims (``H, W`` or ``D, H, W``), integer
targets ``(B, *S)`` in ``[0, K)``; images/density maps ``(B, C, *S)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_seg(logits: Tensor, target: Tensor) -> None:
    if logits.ndim < 3 or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"expected logits (B, K, *S) and integer target (B, *S), got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )
    if target.is_floating_point():
        raise ValueError(f"target must hold integer class indices, got {target.dtype}")


def dice_loss(
    logits: Tensor,
    target: Tensor,
    *,
    include_background: bool = False,
    eps: float = 1.0,
) -> Tensor:
    """Soft Dice loss ``1 - mean_k (2 |P_k T_k| + eps) / (|P_k| + |T_k| + eps)``.

    Probabilities are the softmax over ``K`` classes (``K == 1``: a sigmoid, foreground only).
    Sums run over the batch and space ("batch Dice", as nnU-Net), so a class absent from one
    image does not dominate; ``eps`` smooths empty classes (empty prediction of an empty class
    scores 1). ``include_background`` keeps class 0 in the mean.
    """
    if logits.shape[1] == 1:
        probs = torch.sigmoid(logits)
        onehot = target.unsqueeze(1).to(probs.dtype)
        include_background = True
    else:
        _check_seg(logits, target)
        probs = logits.softmax(dim=1)  # (B, K, *S)
        onehot = F.one_hot(target.long(), logits.shape[1]).movedim(-1, 1).to(probs.dtype)
    if not include_background:
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    dims = (0,) + tuple(range(2, probs.ndim))
    inter = (probs * onehot).sum(dims)  # (K,)
    denom = probs.sum(dims) + onehot.sum(dims)
    return 1.0 - ((2.0 * inter + eps) / (denom + eps)).mean()


def ce_dice_loss(logits: Tensor, target: Tensor, dice_weight: float = 1.0) -> Tensor:
    """Cross-entropy + ``dice_weight`` x Dice loss (the usual medical segmentation loss)."""
    _check_seg(logits, target)
    return F.cross_entropy(logits, target.long()) + dice_weight * dice_loss(logits, target)


def charbonnier(pred: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """Charbonnier loss ``mean(sqrt((pred - target)^2 + eps^2))``, a smooth L1 (MAXIM, MPRNet)."""
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    return torch.sqrt((pred - target).square() + eps * eps).mean()


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error over the pixels where ``mask`` is 1 (e.g. the holes of inpainting).

    ``mask`` broadcasts against ``pred``; an all-zero mask gives 0 (nothing to reconstruct).
    """
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    mask = mask.to(pred.dtype).expand_as(pred)
    return ((pred - target).abs() * mask).sum() / mask.sum().clamp_min(1.0)


def density_mse(pred: Tensor, target: Tensor, reduction: str = "sum_per_image") -> Tensor:
    """Density-map regression loss of crowd counting.

    ``sum_per_image`` (default): the squared error summed over pixels and averaged over images
    (the Euclidean loss of MCNN/CSRNet/SFANet, ``1/2N sum ||D - D_gt||^2`` up to the 1/2);
    ``mean``: the plain per-pixel mean.
    """
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if reduction == "mean":
        return F.mse_loss(pred, target)
    if reduction == "sum_per_image":
        return (pred - target).square().flatten(1).sum(1).mean()
    raise ValueError(f"reduction must be 'sum_per_image' or 'mean', got {reduction!r}")


def classification_loss(model: nn.Module, batch: tuple[Tensor, Tensor]):
    """Engine loss of a classifier: cross-entropy of ``model(x)`` (B, K) against ``y`` (B,),
    with the batch accuracy as metric (a tensor: the engine reads it at its logging interval,
    so no host sync happens per step)."""
    x, y = batch
    logits = model(x)
    acc = (logits.detach().argmax(-1) == y).float().mean()
    return F.cross_entropy(logits, y), {"acc": acc}
