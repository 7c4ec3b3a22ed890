"""Restoration data: natural crops split by photo, irregular masks, noise, batch streams."""

from __future__ import annotations

import pytest
import torch

from archlab.data.restoration import (
    DEFAULT_TEST,
    RGB_PHOTOS,
    add_gaussian_noise,
    denoising_batches,
    fill_holes,
    inpainting_batches,
    irregular_masks,
    natural_crops,
    photo,
    split_photos,
)

pytest.importorskip("skimage")
pytest.importorskip("sklearn")


def test_photos_load_offline_in_range():
    for name in RGB_PHOTOS:
        im = photo(name, 3, downscale=2)
        assert im.ndim == 3 and im.shape[0] == 3 and min(im.shape[1:]) >= 64
        assert 0.0 <= im.min() and im.max() <= 1.0
    assert photo("camera", 1).shape == (1, 512, 512)
    assert photo("astronaut", 1).shape == (1, 512, 512)  # RGB converted to grey
    with pytest.raises(ValueError, match="grey"):
        photo("camera", 3)
    with pytest.raises(ValueError, match="unknown photo"):
        photo("lena", 3)


def test_split_is_by_source_photo():
    train, test = split_photos(3)
    assert set(test) == set(DEFAULT_TEST) and not set(train) & set(test)
    train1, _ = split_photos(1)
    assert "camera" in train1 and "camera" not in train
    with pytest.raises(ValueError, match="not available"):
        split_photos(3, test=("camera",))


def test_crops_are_deterministic_and_in_range():
    a = natural_crops(20, 32, seed=3)
    b = natural_crops(20, 32, seed=3)
    assert a.shape == (20, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, natural_crops(20, 32, seed=4))
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert (a.flatten(1).std(1) >= 0.04).all()  # flat crops are redrawn
    g = natural_crops(5, 24, n_channels=1, split="test", seed=0)
    assert g.shape == (5, 1, 24, 24)


def test_test_crops_come_only_from_held_out_photos():
    """Every test crop appears verbatim in a held-out photo and in no training photo."""
    crops = natural_crops(3, 8, split="test", seed=1, downscale=8)
    for crop in crops:
        found = []
        for name in RGB_PHOTOS:
            im = torch.from_numpy(photo(name, 3, 8))
            win = im.unfold(1, 8, 1).unfold(2, 8, 1)  # (3, h', w', 8, 8)
            hit = (win - crop[:, None, None]).abs().amax(dim=(0, 3, 4)) < 1e-6
            if hit.any():
                found.append(name)
        assert found and set(found) <= set(DEFAULT_TEST)


def test_structure_crops_are_aligned_and_smoother():
    crops, smooth = natural_crops(16, 32, split="test", seed=0, structure_weight=0.1)
    assert smooth.shape == crops.shape
    tv = lambda x: (x[..., 1:, :] - x[..., :-1, :]).abs().mean()  # noqa: E731
    assert tv(smooth) < 0.8 * tv(crops)
    assert (smooth - crops).abs().mean() < 0.1  # same positions


@pytest.mark.parametrize("kind", ["strokes", "blobs", "mixed"])
def test_masks_respect_the_ratio_range(kind):
    m = irregular_masks(40, 32, hole_range=(0.2, 0.4), kind=kind, seed=0)
    assert m.shape == (40, 1, 32, 32) and m.dtype == torch.float32
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    ratio = m.mean(dim=(1, 2, 3))
    assert ratio.min() >= 0.2 - 1 / 1024 and ratio.max() <= 0.4
    assert torch.equal(m, irregular_masks(40, 32, hole_range=(0.2, 0.4), kind=kind, seed=0))
    assert ratio.std() > 0.02  # targets spread over the range


def test_masks_bad_arguments():
    with pytest.raises(ValueError, match="hole_range"):
        irregular_masks(2, 16, hole_range=(0.5, 0.2))
    with pytest.raises(ValueError, match="kind"):
        irregular_masks(2, 16, kind="squares")
    assert irregular_masks(2, (16, 24), seed=0).shape == (2, 1, 16, 24)


def test_gaussian_noise_statistics_and_determinism():
    x = torch.full((4, 3, 32, 32), 0.5)
    g = torch.Generator().manual_seed(0)
    y = add_gaussian_noise(x, 25 / 255, g)
    assert abs((y - x).std().item() - 25 / 255) < 0.005
    y2 = add_gaussian_noise(x, 25 / 255, torch.Generator().manual_seed(0))
    assert torch.equal(y, y2)
    assert add_gaussian_noise(x, 1.0, g, clip=True).max() <= 1.0
    with pytest.raises(ValueError, match="sigma"):
        add_gaussian_noise(x, -0.1)


def test_batch_streams():
    crops, smooth = natural_crops(32, 16, seed=0, structure_weight=0.1)
    masks = irregular_masks(16, 16, seed=0)
    batch = inpainting_batches(crops, masks, smooth, fill=0.0)
    masked, holes, target, struct = batch(8, torch.Generator().manual_seed(0))
    assert masked.shape == target.shape == struct.shape == (8, 3, 16, 16)
    assert holes.shape == (8, 1, 16, 16)
    torch.testing.assert_close(masked, fill_holes(target, holes, 0.0))
    again = batch(8, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip((masked, holes, target, struct), again))
    noisy, clean = denoising_batches(crops, 0.1)(8, torch.Generator().manual_seed(0))
    assert noisy.shape == clean.shape == (8, 3, 16, 16)
    assert 0.05 < (noisy - clean).std() < 0.15
    with pytest.raises(ValueError, match="mask size"):
        inpainting_batches(crops, irregular_masks(2, 8, seed=0))
