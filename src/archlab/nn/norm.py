"""Normalisation layers: LayerNorm (torch's) and RMSNorm, and a by-name constructor.

RMSNorm: Zhang and Sennrich, "Root Mean Square Layer Normalization", 2019, arXiv 1910.07467.
``y = x / sqrt(mean(x**2) + eps) * weight``; no mean subtraction and no bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LayerNorm = nn.LayerNorm
"""torch's ``nn.LayerNorm``, re-exported so that blocks import every norm from one place."""

NORMS = ("layernorm", "rmsnorm")


class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last dimension, with a learned gain.

    Computed in float32 and cast back to the input dtype, as LLaMA-style models do, so that half
    precision inputs do not lose the small mean square.

    Args:
        d_model: width of the last dimension.
        eps: added to the mean square before the square root.
    """

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.d_model = d_model
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:  # (..., D) -> (..., D)
        y = F.rms_norm(x.float(), (self.d_model,), eps=self.eps).to(x.dtype)
        return y * self.weight

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"


def make_norm(kind: str, d_model: int, eps: float = 1e-5) -> nn.Module:
    """A normalisation layer by name.

    Args:
        kind: ``"layernorm"`` (torch's LayerNorm, with bias) or ``"rmsnorm"``.
        d_model: normalised width.
        eps: numerical epsilon (BART/GPT-2 use 1e-5, BERT 1e-12, LLaMA 1e-6).

    Raises:
        ValueError: for an unknown ``kind``.
    """
    if kind == "layernorm":
        return nn.LayerNorm(d_model, eps=eps)
    if kind == "rmsnorm":
        return RMSNorm(d_model, eps=eps)
    raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {kind!r}")
