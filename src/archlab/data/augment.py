"""Batch image augmentation as tensor ops, driven by an explicit ``torch.Generator``.

Every function takes a batch (B, C, H, W) and a generator and draws one independent transform
per image, so a training stream that owns the generator is reproducible and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop(
    x: Tensor, padding: int, generator: torch.Generator, mode: str = "constant"
) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
    """Pad by ``padding`` pixels on each side, then crop back to H x W at a random offset.

    Args:
        x: images (B, C, H, W).
        padding: pixels added on every side (0: no-op).
        generator: source of the offsets.
        mode: ``F.pad`` mode: ``constant`` (zeros, as torchvision's ``RandomCrop``),
            ``reflect`` or ``replicate``.
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0:
        return x
    B, C, H, W = x.shape
    padded = F.pad(x, (padding,) * 4, mode=mode)  # (B, C, H + 2p, W + 2p)
    off = torch.randint(0, 2 * padding + 1, (2, B), generator=generator).to(x.device)
    rows = off[0, :, None] + torch.arange(H, device=x.device)  # (B, H)
    cols = off[1, :, None] + torch.arange(W, device=x.device)  # (B, W)
    b = torch.arange(B, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def random_flip(x: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image left-right with probability ``p``."""  # (B, C, H, W)
    flip = torch.rand(x.shape[0], generator=generator).to(x.device) < p  # (B,)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@dataclass(frozen=True)
class Augment:
    """Random crop with padding, then an optional horizontal flip.

    Use ``flip=False`` for data that is not mirror-symmetric (digits, text).

    Attributes:
        crop_padding: padding of ``random_crop`` (0: no crop).
        flip: mirror half of the images left-right.
        pad_mode: ``F.pad`` mode of the crop.
    """

    crop_padding: int = 0
    flip: bool = False
    pad_mode: str = "constant"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        x = random_crop(x, self.crop_padding, generator, self.pad_mode)
        if self.flip:
            x = random_flip(x, generator)
        return x
