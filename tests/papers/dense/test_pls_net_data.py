"""Synthetic lesion volumes and lesion-wise scores (Dice per lesion, detection F1, size bins)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import label

from archlab.papers.dense.pls_net.data import (
    LesionScores,
    detection_f1,
    dice_by_size,
    lesion_scores,
    lesion_volumes,
    size_bin,
    volume_batches,
)


@pytest.fixture(scope="module")
def vols():
    return lesion_volumes(12, seed=3, size=24)


def test_shapes_ranges_and_annotations(vols):
    assert vols.images.shape == (12, 1, 24, 24, 24) and vols.images.dtype == torch.float32
    assert 0 <= vols.images.min() and vols.images.max() <= 1
    assert vols.masks.shape == vols.instances.shape == (12, 24, 24, 24)
    assert torch.equal(vols.masks, (vols.instances > 0).long())
    for i, voxels in enumerate(vols.lesion_voxels):
        counts = torch.bincount(vols.instances[i].flatten(), minlength=len(voxels) + 1)
        assert counts[1:].tolist() == voxels and len(counts) == len(voxels) + 1


def test_each_lesion_is_one_component_and_lesions_do_not_touch(vols):
    for inst in vols.instances.numpy():
        comps, n = label(inst > 0, structure=np.ones((3, 3, 3)))
        assert n == inst.max()
        for k in range(1, inst.max() + 1):
            assert len(np.unique(comps[inst == k])) == 1


def test_lesions_are_brighter_than_tissue_and_sizes_vary():
    v = lesion_volumes(30, seed=0, size=32)
    fg = v.images[:, 0][v.masks.bool()].mean()
    brain = v.images[:, 0][(v.masks == 0) & (v.images[:, 0] > 0.2)].mean()
    assert fg > brain + 0.2
    bins = {size_bin(x) for vox in v.lesion_voxels for x in vox}
    assert bins == {0, 1, 2}  # small, medium and large lesions all occur


def test_deterministic_and_prefix_stable():
    a = lesion_volumes(5, seed=7, size=16)
    b = lesion_volumes(3, seed=7, size=16)
    assert torch.equal(a.images[:3], b.images) and torch.equal(a.instances[:3], b.instances)
    assert not torch.equal(a.images, lesion_volumes(5, seed=8, size=16).images)


def test_bad_arguments():
    with pytest.raises(ValueError, match="size >= 16"):
        lesion_volumes(2, size=8)
    with pytest.raises(ValueError, match="radius_range"):
        lesion_volumes(2, radius_range=(3.0, 1.0))


def test_size_bins():
    assert [size_bin(v) for v in (1, 99, 100, 499, 500, 10**5)] == [0, 0, 1, 1, 2, 2]


def test_perfect_prediction_scores_one(vols):
    scores = [lesion_scores(m, inst) for m, inst in zip(vols.masks, vols.instances)]
    assert all(d == 1.0 for s in scores for d in s.dice)
    assert detection_f1(scores) == (1.0, 1.0, 1.0)


def _one_lesion() -> torch.Tensor:
    inst = torch.zeros(16, 16, 16, dtype=torch.long)
    inst[4:8, 4:8, 4:8] = 1  # 64 voxels
    inst[10:14, 10:14, 10:14] = 2
    return inst


def test_missed_lesion_false_positive_and_partial_overlap():
    inst = _one_lesion()
    pred = torch.zeros_like(inst)
    pred[4:8, 4:8, 4:6] = 1  # half of lesion 1: Dice 2*32/(32+64) = 2/3
    pred[0:2, 12:14, 0:2] = 1  # a false-positive component far from both lesions
    s = lesion_scores(pred, inst)
    assert s.dice[0] == pytest.approx(2 / 3) and s.dice[1] == 0.0
    assert s.detected == [True, False] and s.n_components == 2 and s.n_true_components == 1
    precision, recall, f1 = detection_f1([s])
    assert (precision, recall) == (0.5, 0.5) and f1 == pytest.approx(0.5)


def test_detection_needs_dice_at_least_min_dice():
    inst = _one_lesion()
    pred = torch.zeros_like(inst)
    pred[4:8, 4:8, 4:8] = 1  # lesion 1 exactly
    pred[0:16, 0:3, 0:16] = 1  # a separate slab (one voxel gap): a false positive only
    s = lesion_scores(pred, inst, min_dice=0.1)
    assert s.detected == [True, False] and s.dice[0] == 1.0
    assert s.n_components == 2 and s.n_true_components == 1
    blob = torch.zeros_like(inst)
    blob[2:16, 2:16, 2:16] = 1  # one huge component covering both lesions
    s = lesion_scores(blob, inst, min_dice=0.1)
    # 128 lesion voxels inside a 2744-voxel component: Dice 2*64/(2744+64) < 0.1 each
    assert s.detected == [False, False] and s.n_true_components == 0


def test_empty_cases_are_well_defined():
    empty = torch.zeros(8, 8, 8, dtype=torch.long)
    s = lesion_scores(empty, empty)
    assert s.dice == [] and s.n_components == 0
    assert detection_f1([s]) == (1.0, 1.0, 1.0)  # nothing to find, nothing predicted
    fp = empty.clone()
    fp[0, 0, 0] = 1
    assert detection_f1([lesion_scores(fp, empty)])[2] == 0.0
    with pytest.raises(ValueError, match="equal shape"):
        lesion_scores(empty[0], empty)


def test_dice_by_size_groups_lesions():
    s = LesionScores([0.2, 0.9, 0.5], [50, 800, 60], [True] * 3, 3, 3)
    out = dice_by_size([s])
    assert out[0] == (pytest.approx(0.35), 2) and out[2] == (0.9, 1) and 1 not in out


def test_volume_batches_flip_image_and_mask_together(vols):
    stream = volume_batches(vols)
    x, y = stream(16, torch.Generator().manual_seed(0))
    assert x.shape == (16, 1, 24, 24, 24) and y.shape == (16, 24, 24, 24)
    # each (image, mask) pair is some flip of a stored pair
    for xb, yb in zip(x, y):
        found = False
        for i in range(len(vols)):
            for dims in ([], [0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]):
                img = vols.images[i, 0].flip(dims) if dims else vols.images[i, 0]
                if torch.equal(img, xb[0]):
                    msk = vols.masks[i].flip(dims) if dims else vols.masks[i]
                    found = torch.equal(msk, yb)
        assert found
