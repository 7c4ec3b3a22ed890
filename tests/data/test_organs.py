"""The synthetic abdominal multi-organ slices (``archlab.data.organs``)."""

from __future__ import annotations

import pytest
import torch

from archlab.data.organs import (
    CHAOS_CLASSES,
    N_ORGAN_CLASSES,
    ORGAN_CLASSES,
    SMALL_ORGANS,
    class_fractions,
    organ_batches,
    organ_slices,
    to_chaos,
)


@pytest.fixture(scope="module")
def slices():
    return organ_slices(24, size=64, seed=3)


def test_shapes_types_ranges(slices):
    x, y = slices
    assert x.shape == (24, 1, 64, 64) and x.dtype == torch.float32
    assert y.shape == (24, 64, 64) and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() <= 1
    assert y.min() >= 0 and y.max() < N_ORGAN_CLASSES == len(ORGAN_CLASSES)


def test_deterministic_in_the_seed():
    a, b = organ_slices(4, size=48, seed=7), organ_slices(4, size=48, seed=7)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    c = organ_slices(4, size=48, seed=8)
    assert not torch.equal(a.masks, c.masks)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(organ_slices(3, generator=g1).images, organ_slices(3, generator=g2).images)


def test_every_organ_in_every_slice_and_small_organs_are_small(slices):
    for k in range(N_ORGAN_CLASSES):
        assert (slices.masks == k).flatten(1).any(1).all(), ORGAN_CLASSES[k]
    frac = class_fractions(slices.masks)
    assert frac[1] > 0.05  # the liver is large
    for k in SMALL_ORGANS:
        assert 0 < frac[k] < 0.015
    assert frac[1] > 5 * frac[2]  # liver >> spleen


def test_appearance_overlaps_so_context_matters():
    """The two kidneys look alike, and so do the liver and spleen (position decides)."""
    s = organ_slices(32, size=96, seed=0, noise=0.0, bias=0.0)
    x, y = s.images[:, 0], s.masks
    mean = [x[y == k].mean().item() for k in range(N_ORGAN_CLASSES)]
    assert abs(mean[3] - mean[4]) < 0.02  # right vs left kidney
    assert abs(mean[1] - mean[2]) < 0.06  # liver vs spleen
    # dark bowel loops (background inside the body) as dark as the gallbladder
    dark_bg = ((y == 0) & (x < mean[5] + 0.05) & (x > 0.1)).sum()
    assert dark_bg > (y == 5).sum()


def test_kidney_side(slices):
    """Right kidney (class 3) on the image's left of the left kidney (class 4)."""
    cols = torch.arange(64).float()
    for i in range(len(slices.masks)):
        c3 = cols.expand(64, 64)[slices.masks[i] == 3].mean()
        c4 = cols.expand(64, 64)[slices.masks[i] == 4].mean()
        assert c3 < c4


def test_batches_and_chaos_labels():
    draw = organ_batches(size=32)
    x, y = draw(2, torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 32, 32) and y.shape == (2, 32, 32)
    masks = torch.arange(N_ORGAN_CLASSES).view(1, -1)
    chaos = to_chaos(masks)[0].tolist()
    names = [CHAOS_CLASSES[c] for c in chaos]
    assert names == ["background", "liver", "spleen", "right_kidney", "left_kidney"] + [
        "background",
        "background",
    ]
    with pytest.raises(ValueError, match="integer organ masks"):
        to_chaos(torch.zeros(2, 2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "n must be"),
        ({"n": 1, "size": 16}, "size must be"),
        ({"n": 1, "noise": -1}, "noise"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        organ_slices(**kwargs)


def test_mirror_flips_image_and_mask_without_swapping_labels():
    a = organ_slices(3, size=48, seed=4)
    b = organ_slices(3, size=48, seed=4, mirror=1.0)
    assert torch.equal(b.masks, a.masks.flip(-1)) and torch.equal(b.images, a.images.flip(-1))
    cols = torch.arange(48).float().expand(48, 48)
    assert cols[b.masks[0] == 3].mean() > cols[b.masks[0] == 4].mean()  # right kidney on the right
    with pytest.raises(ValueError, match="mirror"):
        organ_slices(1, mirror=2.0)
