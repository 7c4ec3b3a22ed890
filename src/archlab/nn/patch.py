"""Patch embedding of images and the image-batch check shared by vision models.

Dosovitskiy et al., "An Image is Worth 16x16 Words", 2020, arXiv 2010.11929: the image is cut
into non-overlapping ``P x P`` patches, each linearly projected to width D, which is a
convolution with kernel = stride = P. The projection is named ``proj`` as in timm, so timm's
``patch_embed.proj`` weights copy one to one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def check_images(x: Tensor, n_channels: int, image_size: int | None, dtype: torch.dtype) -> None:
    """Raise one clear error if ``x`` is not a (B, C, H, W) float batch the model accepts.

    Args:
        x: the batch.
        n_channels: the expected channel count C.
        image_size: the expected H = W, or None for any size.
        dtype: the model's parameter dtype; x must have it (unless autocast is on).

    Raises:
        TypeError: for a non-tensor, a non-floating-point dtype or one that differs from the
            model's.
        ValueError: for a wrong rank, channel count or image size.
    """
    size = "H, W" if image_size is None else f"{image_size}, {image_size}"
    expected = f"images (B, {n_channels}, {size})"
    if not isinstance(x, Tensor):
        raise TypeError(f"expected {expected} as a torch.Tensor; got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"expected {expected}; got a tensor of shape {tuple(x.shape)}")
    if x.shape[1] != n_channels:
        raise ValueError(
            f"expected {expected} with {n_channels} channel(s); got shape {tuple(x.shape)}"
        )
    if image_size is not None and tuple(x.shape[2:]) != (image_size, image_size):
        raise ValueError(
            f"expected {expected} of size {image_size}x{image_size}; got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"expected {expected} of dtype {dtype} (floating point); got {x.dtype}")
    if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"expected {expected} of dtype {dtype} (the model's); got {x.dtype}")


class PatchEmbed(nn.Module):
    """Split a square image into ``P x P`` patches and project each to width D.

    Args:
        image_size: input height = width (H = W).
        patch_size: patch side P; must divide ``image_size``.
        n_channels: input channels C.
        d_model: output width D.
        bias: whether the projection has a bias.

    Attributes:
        grid_size: patches per side, ``image_size // patch_size``.
        n_patches: N = grid_size ** 2, ordered row by row (patch ``n`` is at row ``n // grid``,
            column ``n % grid``).
    """

    def __init__(
        self, image_size: int, patch_size: int, n_channels: int, d_model: int, bias: bool = True
    ):
        super().__init__()
        if min(image_size, patch_size, n_channels, d_model) < 1:
            raise ValueError(
                "image_size, patch_size, n_channels and d_model must be >= 1; got "
                f"{image_size}, {patch_size}, {n_channels}, {d_model}"
            )
        if image_size % patch_size:
            raise ValueError(
                f"patch_size={patch_size} must divide image_size={image_size} "
                f"(remainder {image_size % patch_size})"
            )
        self.image_size = image_size
        self.patch_size = patch_size
        self.n_channels = n_channels
        self.grid_size = image_size // patch_size
        self.n_patches = self.grid_size**2
        self.proj = nn.Conv2d(n_channels, d_model, patch_size, stride=patch_size, bias=bias)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, N, D)
        check_images(x, self.n_channels, self.image_size, self.proj.weight.dtype)
        x = self.proj(x)  # (B, D, H/P, W/P)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, patch_size={self.patch_size}"
