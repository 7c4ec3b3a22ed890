"""Lesion-count images (label = at least 2 lesions), masks, attention scores and ROC AUC."""

from __future__ import annotations

import pytest
import torch

from archlab.papers.dense.medusa_med.data import (
    attention_scores,
    lesion_batches,
    lesion_images,
    roc_auc,
)


@pytest.fixture(scope="module")
def data():
    return lesion_images(60, seed=1)


def test_shapes_labels_and_masks(data):
    assert data.images.shape == (60, 1, 64, 64) and data.images.dtype == torch.float32
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert torch.equal(data.labels, (data.n_lesions >= 2).long())
    assert set(data.n_lesions.tolist()) <= {0, 1, 2, 3} and 0 < data.labels.float().mean() < 1
    assert not (data.lesion_masks.bool() & data.distractor_masks.bool()).any()
    assert torch.equal(data.lesion_masks.flatten(1).any(1), data.n_lesions > 0)


def test_lesions_are_separate_components_counted_by_n_lesions(data):
    from scipy.ndimage import label

    for mask, n in zip(data.lesion_masks.numpy(), data.n_lesions.tolist()):
        assert label(mask)[1] == n


def test_lesions_are_brighter_than_their_surroundings():
    d = lesion_images(40, seed=2, noise=0.0, max_distractors=0)
    img, m = d.images[:, 0], d.lesion_masks.bool()
    # lesion pixels are brighter on average than the lung around them
    assert img[m].mean() > img[~m].mean()


def test_deterministic():
    a, b = lesion_images(4, seed=5), lesion_images(4, seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, lesion_images(4, seed=6).images)


def test_bad_arguments():
    with pytest.raises(ValueError, match="threshold"):
        lesion_images(2, threshold=5)
    with pytest.raises(ValueError, match="size >= 32"):
        lesion_images(2, size=16)


def test_batches_keep_labels(data):
    x, y = lesion_batches(data)(8, torch.Generator().manual_seed(0))
    assert x.shape == (8, 1, 64, 64) and y.shape == (8,)


def test_attention_scores_uniform_peaked_and_empty():
    masks = torch.zeros(3, 10, 10, dtype=torch.long)
    masks[0, 2:4, 2:4] = 1
    masks[1, 2:4, 2:4] = 1  # image 2 has no lesion
    att = torch.ones(3, 10, 10)
    att[1] = 0.0
    att[1, 2:4, 2:4] = 1.0  # all mass on the lesion
    s = attention_scores(att, masks, tolerance=0)
    assert s["enrichment"][0] == pytest.approx(1.0)  # uniform map: no preference
    assert s["enrichment"][1] == pytest.approx(25.0)  # 1 / (4 / 100)
    assert s["pointing"][1] == 1.0 and s["chance"][1] == pytest.approx(0.04)
    assert s["enrichment"][2].isnan() and s["pointing"][2].isnan()
    with pytest.raises(ValueError, match="non-negative"):
        attention_scores(-att, masks)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        attention_scores(att[0], masks[0])


def test_roc_auc():
    y = torch.tensor([0, 0, 1, 1])
    assert roc_auc(torch.tensor([0.1, 0.2, 0.8, 0.9]), y) == 1.0
    assert roc_auc(torch.tensor([0.9, 0.8, 0.2, 0.1]), y) == 0.0
    assert roc_auc(torch.tensor([0.5, 0.5, 0.5, 0.5]), y) == 0.5
    assert roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), y) == 0.75  # sklearn's value
    assert roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1])) != roc_auc(
        torch.tensor([0.1, 0.2]), torch.tensor([1, 1])
    )  # NaN with one class
