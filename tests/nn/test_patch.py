"""Patch embedding: patch order, divisibility and the image-batch errors."""

from __future__ import annotations

import pytest
import torch

from archlab.nn.patch import PatchEmbed, check_images


def test_patches_are_projected_row_by_row():
    embed = PatchEmbed(image_size=8, patch_size=4, n_channels=2, d_model=5)
    x = torch.randn(3, 2, 8, 8)
    out = embed(x)  # (B, N, D)
    assert out.shape == (3, 4, 5) and embed.n_patches == 4 and embed.grid_size == 2
    w = embed.proj.weight.flatten(1)  # (D, C * P * P)
    for n in range(4):
        r, c = divmod(n, 2)
        patch = x[:, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4].flatten(1)
        torch.testing.assert_close(out[:, n], patch @ w.T + embed.proj.bias)


def test_patch_size_must_divide_the_image():
    with pytest.raises(ValueError, match="patch_size=3 must divide image_size=8"):
        PatchEmbed(8, 3, 1, 4)


def test_errors_name_what_was_expected():
    embed = PatchEmbed(8, 4, 3, 4)
    with pytest.raises(ValueError, match=r"expected images \(B, 3, 8, 8\) with 3 channel"):
        embed(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="of size 8x8"):
        embed(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="shape"):
        embed(torch.randn(3, 8, 8))
    with pytest.raises(TypeError, match="floating point"):
        embed(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_images([[1.0]], 3, 8, torch.float32)
    check_images(torch.randn(2, 3, 5, 7), 3, None, torch.float32)  # any size
