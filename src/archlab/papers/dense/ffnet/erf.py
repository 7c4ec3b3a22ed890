"""Effective receptive field (Luo, Li, Urtasun, Zemel 2016, arXiv 1701.04128).

The ERF of an output pixel is the map of |d y_centre / d x| over the input: how much each input
pixel actually moves that output. Luo et al. show it is roughly Gaussian and much smaller than the
theoretical receptive field. Here its size is summarised by the radius (around the centre) of
the smallest disc that holds a given fraction of the gradient mass.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from archlab.lab.inference import model_device


def erf_map(model: nn.Module, images: Tensor) -> Tensor:
    """Mean |d (sum over classes of the centre output) / d input| over images, summed over
    input channels: (B, C, H, W) -> (H, W), normalised to sum 1, on the CPU.

    The model must map (B, C, H, W) to (B, K, H, W); it is run in eval mode (restored after) on
    its own device. Only the input gradient is computed (the parameters' ``.grad`` is untouched).
    """
    was_training = model.training
    model.eval()
    try:
        x = images.detach().to(model_device(model)).requires_grad_(True)
        out = model(x)  # (B, K, H, W)
        h, w = out.shape[-2:]
        (grad,) = torch.autograd.grad(out[:, :, h // 2, w // 2].sum(), x)  # (B, C, H, W)
    finally:
        model.train(was_training)
    grad = grad.abs().sum(1).mean(0).float().cpu()  # (H, W)
    return grad / grad.sum().clamp_min(1e-30)


def erf_radius(erf: Tensor, fraction: float = 0.9) -> float:
    """Radius (pixels, around the map's centre pixel) holding ``fraction`` of the ERF mass."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    h, w = erf.shape
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    r = ((yy - h // 2) ** 2 + (xx - w // 2) ** 2).double().sqrt().flatten()
    order = torch.argsort(r)
    mass = erf.double().flatten()[order].cumsum(0) / erf.double().sum()
    k = int(torch.searchsorted(mass, torch.tensor([fraction], dtype=torch.float64))[0])
    return float(r[order][min(k, len(r) - 1)])
