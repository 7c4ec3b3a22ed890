"""Perspective crowd scenes: determinism, density maps that sum to the counts, perspective."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archlab.papers.dense.m_sfanet.data import (
    adaptive_sigmas,
    attention_mask,
    crowd_scenes,
    downsample_density,
    gaussian_density,
)


@pytest.fixture(scope="module")
def scenes():
    return crowd_scenes(60, size=64, seed=3)


def test_shapes_ranges_and_determinism(scenes):
    assert scenes.images.shape == (60, 3, 64, 64) and scenes.images.dtype == torch.float32
    assert scenes.density.shape == (60, 1, 64, 64)
    assert 0 <= scenes.images.min() and scenes.images.max() <= 1
    again = crowd_scenes(60, size=64, seed=3)
    assert torch.equal(again.images, scenes.images) and torch.equal(again.density, scenes.density)
    assert not torch.equal(crowd_scenes(60, size=64, seed=4).images, scenes.images)


@pytest.mark.parametrize("kernel", ["perspective", "adaptive", "fixed"])
def test_density_maps_sum_to_the_counts(kernel):
    s = crowd_scenes(20, size=48, seed=1, kernel=kernel)
    torch.testing.assert_close(s.density.sum((1, 2, 3)), s.counts, rtol=1e-4, atol=1e-3)
    assert (s.density >= 0).all()
    assert [len(p) for p in s.points] == s.counts.long().tolist()


def test_counts_vary_widely_and_heads_lie_inside(scenes):
    c = scenes.counts
    assert c.min() <= 5 and c.max() >= 60  # a few to crowded
    for p in scenes.points:
        assert ((p >= 0) & (p < 64)).all()


def test_perspective_heads_shrink_toward_the_horizon(scenes):
    """Head radius grows with the row (distance below the horizon), linearly."""
    ys = torch.cat([p[:, 1] for p in scenes.points])
    rs = torch.cat(scenes.head_radius)
    corr = np.corrcoef(ys.numpy(), rs.numpy())[0, 1]
    assert corr > 0.5
    for p, r, h in zip(scenes.points, scenes.head_radius, scenes.horizon, strict=True):
        if len(p) > 2:  # radius is proportional to (y - horizon) within an image
            ratio = r / (p[:, 1] - h)
            assert ratio.std() / ratio.mean() < 1e-4


def test_far_rows_are_denser(scenes):
    """Uniform people on the ground: more heads per image row near the horizon."""
    top = bottom = 0
    for p, h in zip(scenes.points, scenes.horizon, strict=True):
        s = (p[:, 1] - h) / (64 - h)
        top += int((s < 0.5).sum())
        bottom += int((s >= 0.5).sum())
    assert top > bottom


def test_gaussian_density_and_adaptive_sigmas():
    pts = np.array([[0.2, 0.3], [10.0, 10.0], [31.9, 5.0]])
    d = gaussian_density(pts, np.array([1.0, 2.0, 3.0]), 32, 32)
    assert d.shape == (32, 32) and abs(float(d.sum()) - 3.0) < 1e-4  # border kernels keep mass
    assert gaussian_density(np.zeros((0, 2)), np.zeros(0), 8, 8).sum() == 0
    with pytest.raises(ValueError, match="sigmas"):
        gaussian_density(pts, np.array([1.0, 0.0, 1.0]), 8, 8)
    sig = adaptive_sigmas(np.array([[0, 0], [3, 4], [6, 8]]), k=1, beta=0.3)
    np.testing.assert_allclose(sig, [1.5, 1.5, 1.5])
    assert adaptive_sigmas(np.array([[1.0, 1.0]]), fallback=2.5).tolist() == [2.5]


def test_downsample_density_keeps_counts_and_attention_mask(scenes):
    d2 = downsample_density(scenes.density, 2)
    assert d2.shape == (60, 1, 32, 32)
    torch.testing.assert_close(d2.sum((1, 2, 3)), scenes.density.sum((1, 2, 3)))
    att = attention_mask(scenes.density)
    assert set(att.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="divisible"):
        downsample_density(scenes.density[:, :, :63], 2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        crowd_scenes(2, size=8)
    with pytest.raises(ValueError, match="count_range"):
        crowd_scenes(2, count_range=(10, 5))
    with pytest.raises(ValueError, match="kernel"):
        crowd_scenes(2, kernel="box")
