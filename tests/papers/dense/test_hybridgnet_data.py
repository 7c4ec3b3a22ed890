"""Chest X-ray phantoms: determinism, label consistency, valid anatomy, occlusion, the graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archlab.lab.metrics import n_components, n_holes
from archlab.papers.dense.hybridgnet.data import (
    JSRT_LANDMARKS,
    N_CLASSES,
    PhantomConfig,
    contours_self_intersect,
    landmark_adjacency,
    landmark_edge_index,
    make_phantoms,
    mean_shape,
    organ_slices,
    polygon_self_intersects,
    rasterize_contours,
)

SMALL = PhantomConfig(image_size=64)


def test_shapes_ranges_and_determinism():
    p = make_phantoms(6, seed=3, config=SMALL)
    assert p.images.shape == (6, 1, 64, 64) and p.images.dtype == torch.float32
    assert p.masks.shape == (6, 64, 64) and p.masks.dtype == torch.int64
    assert p.landmarks.shape == (6, sum(JSRT_LANDMARKS), 2) and len(p) == 6
    assert 0 <= p.images.min() and p.images.max() <= 1
    assert 0 < p.landmarks.min() and p.landmarks.max() < 1
    assert set(p.masks.unique().tolist()) == set(range(N_CLASSES))
    assert not p.occluders.any()
    q = make_phantoms(6, seed=3, config=SMALL)
    assert torch.equal(p.images, q.images) and torch.equal(p.landmarks, q.landmarks)
    assert not torch.equal(make_phantoms(6, seed=4, config=SMALL).landmarks, p.landmarks)
    # Image i depends only on (seed, start + i): splits can share a seed.
    tail = make_phantoms(3, seed=3, config=SMALL, start=3)
    assert torch.equal(tail.images, p.images[3:]) and torch.equal(tail.masks, p.masks[3:])
    assert len(p[1:3]) == 2


def test_masks_are_the_rasterised_landmarks_and_anatomy_is_valid():
    p = make_phantoms(60, seed=0, config=SMALL)
    assert torch.equal(rasterize_contours(p.landmarks, JSRT_LANDMARKS, 64), p.masks)
    assert not contours_self_intersect(p.landmarks).any()
    for mask in p.masks[:20]:
        for k in range(1, N_CLASSES):
            organ = (mask == k).numpy()
            assert n_components(organ) == 1 and n_holes(organ) == 0
    # The lungs are on their sides, the heart between and below the lung apices.
    sl = organ_slices()
    cx = [p.landmarks[:, s, 0].mean() for s in sl]
    assert cx[0] < 0.5 < cx[1] and cx[0] < cx[2] < cx[1]


def test_shapes_vary_but_landmarks_correspond():
    p = make_phantoms(100, seed=1, config=SMALL)
    spread = p.landmarks.std(0).norm(dim=-1) * 64  # (N,) px
    assert spread.min() > 0.5 and spread.mean() > 1.5
    mean = torch.from_numpy(mean_shape()).float()
    assert (p.landmarks.mean(0) - mean).norm(dim=-1).max() < 0.05
    still = make_phantoms(
        3, seed=1, config=PhantomConfig(image_size=64, shape_variation=0, pose_variation=0)
    )
    torch.testing.assert_close(still.landmarks[0], still.landmarks[1])


def test_occlusion_covers_organs_and_keeps_labels():
    clean = make_phantoms(20, seed=2, config=SMALL)
    occ = make_phantoms(20, seed=2, config=SMALL, occlusion=0.25)
    assert torch.equal(clean.masks, occ.masks) and torch.equal(clean.landmarks, occ.landmarks)
    frac = occ.occluders.float().mean((1, 2))
    assert 0.08 < frac.mean() < 0.35 and (frac > 0).all()
    outside = ~occ.occluders[:, None]
    assert torch.equal(clean.images[outside], occ.images[outside])
    assert (occ.occluders & (occ.masks > 0)).any((1, 2)).all()  # every image hides some organ
    for i in range(5):  # constant intensity per occluder (black or white levels)
        vals = occ.images[i, 0][occ.occluders[i]]
        assert ((vals < 0.1) | (vals > 0.8)).all()


def test_landmark_graph_is_one_cycle_per_organ():
    adj = landmark_adjacency(JSRT_LANDMARKS)
    n = sum(JSRT_LANDMARKS)
    assert adj.shape == (n, n) and torch.equal(adj, adj.T) and adj.diagonal().sum() == 0
    assert torch.equal(adj.sum(1), torch.full((n,), 2.0))
    for s in organ_slices():
        block = adj[s, s]
        assert block.sum() == 2 * (s.stop - s.start)  # a cycle
        assert adj[s].sum() == block.sum()  # no edge leaves the organ
    assert adj[0, 43] == 1 and adj[43, 44] == 0  # right lung closes on itself
    ei = landmark_edge_index()
    assert ei.shape == (2, 2 * n) and adj[ei[0], ei[1]].all()


def test_polygon_self_intersection():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    assert not polygon_self_intersects(square)
    assert polygon_self_intersects(square[[0, 2, 1, 3]])  # bow tie
    assert polygon_self_intersects(np.array([[0, 0], [1, 0], [1, 0], [0, 1]], dtype=float))
    assert polygon_self_intersects(np.array([[0, 0], [1, 0], [np.nan, 1]]))
    t = np.linspace(0, 2 * np.pi, 30, endpoint=False)
    circle = np.stack([np.cos(t), np.sin(t)], 1)
    assert not polygon_self_intersects(circle)
    assert polygon_self_intersects(np.stack([np.cos(2 * t), np.sin(t)], 1))  # figure eight


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_landmarks"):
        PhantomConfig(n_landmarks=(44, 50))
    with pytest.raises(ValueError, match="image_size"):
        PhantomConfig(image_size=8)
    with pytest.raises(ValueError, match="occlusion"):
        make_phantoms(2, occlusion=0.9)
    with pytest.raises(ValueError, match="landmarks must be"):
        rasterize_contours(torch.rand(2, 10, 2), JSRT_LANDMARKS, 32)
