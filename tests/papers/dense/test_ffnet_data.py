"""Context-dependent scenes: the lot's class is decided by the distant cue, not locally."""

from __future__ import annotations

import pytest
import torch

from archlab.papers.dense.ffnet.data import SCENE_CLASSES, context_scenes


@pytest.fixture(scope="module")
def scenes():
    return context_scenes(100, size=64, seed=5)


def test_shapes_labels_and_determinism(scenes):
    assert scenes.images.shape == (100, 3, 64, 64) and scenes.masks.shape == (100, 64, 64)
    assert 0 <= scenes.images.min() and scenes.images.max() <= 1
    assert scenes.masks.dtype == torch.int64 and scenes.masks.max() < len(SCENE_CLASSES)
    again = context_scenes(100, size=64, seed=5)
    assert torch.equal(again.images, scenes.images) and torch.equal(again.masks, scenes.masks)
    assert torch.equal(scenes.cue_class.bincount(minlength=3)[1:], torch.tensor([50, 50]))


def test_every_image_has_lots_of_exactly_its_cue_class(scenes):
    for m, c in zip(scenes.masks, scenes.cue_class, strict=True):
        present = set(m.unique().tolist())
        assert int(c) in present and (3 - int(c)) not in present


def test_lots_lie_at_the_cue_distance(scenes):
    """Lot pixels are far from the cue: no lot pixel within 6 px of it."""
    yy, xx = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    far = []
    for m, cue in zip(scenes.masks, scenes.cue_xy, strict=True):
        lot = (m == 1) | (m == 2)
        d = ((xx - cue[0]) ** 2 + (yy - cue[1]) ** 2).sqrt()[lot]
        assert d.min() > 6
        far.append(d.mean())
    assert torch.stack(far).mean() > 25  # the cue is tens of pixels away on average


def test_lot_texture_does_not_reveal_the_class(scenes):
    """Pixel statistics of class-1 and class-2 lots are the same (the cue decides)."""
    x = scenes.images.permute(0, 2, 3, 1)  # (n, H, W, 3)
    a, b = x[scenes.masks == 1], x[scenes.masks == 2]
    assert (a.mean(0) - b.mean(0)).abs().max() < 0.02
    assert (a.std(0) - b.std(0)).abs().max() < 0.02


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        context_scenes(2, size=16)
    with pytest.raises(ValueError, match="cue_distance"):
        context_scenes(2, cue_distance=(40, 30))
