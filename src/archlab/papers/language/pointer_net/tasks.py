"""Data of the Pointer Networks experiments: sorting numbers and planar convex hulls.

Every batch is a dict of padded tensors, the same for Ptr-Net and the seq2seq baseline:

- ``inputs``  (B, N, d_input): ``N = max(lengths)``; rows past an example's length are zeros.
- ``lengths`` (B,): the number of input elements ``n`` of each example.
- ``targets`` (B, T): the output sequence as *pointer positions*: ``END = 0`` is the end token
  and ``j >= 1`` points at input element ``j - 1``; steps after the end are ``IGNORE_INDEX``.

Convex hull targets follow the paper's canonical order: the hull's vertices starting from the
lowest input index, counter-clockwise, then the end token (the polygon is closed implicitly).
Training targets come from a batched gift wrapping (``convex_hull_orders``), which the tests
check against ``scipy.spatial.ConvexHull`` (``convex_hull_order``). The area measures
(``polygon_area``, ``is_simple_polygon``, ``area_coverage``, ``same_polygon``) live here too, so
training data and evaluation share one definition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

END = 0
IGNORE_INDEX = -100


def sample_lengths(
    batch_size: int, n_min: int, n_max: int, generator: torch.Generator
) -> torch.Tensor:
    """Uniform integer lengths in ``[n_min, n_max]``: (B,)."""
    if not 1 <= n_min <= n_max:
        raise ValueError(f"need 1 <= n_min <= n_max, got n_min={n_min}, n_max={n_max}")
    return torch.randint(n_min, n_max + 1, (batch_size,), generator=generator)


def bucketed_batch(
    make: Callable, batch_size: int, generator: torch.Generator, n_min: int, n_max: int
) -> dict[str, torch.Tensor]:
    """A batch of ``make`` whose examples share one length ``n ~ U{n_min..n_max}``.

    Length bucketing, as usual for seq2seq training: no compute is spent on padding. ``make`` is
    ``sorting_batch`` or ``convex_hull_batch``.
    """
    n = int(sample_lengths(1, n_min, n_max, generator))
    return make(batch_size, generator, n, n)


def _pad_targets(orders: Sequence[Sequence[int]]) -> torch.Tensor:
    """Input-index orders -> pointer targets ``[i + 1 ..., END, IGNORE ...]``: (B, T)."""
    t_out = max(len(o) for o in orders) + 1
    targets = torch.full((len(orders), t_out), IGNORE_INDEX, dtype=torch.long)
    for b, order in enumerate(orders):
        targets[b, : len(order)] = torch.as_tensor(order, dtype=torch.long) + 1
        targets[b, len(order)] = END
    return targets


def targets_to_indices(targets: torch.Tensor) -> torch.Tensor:
    """Pointer targets (B, T) -> input indices (B, T): ``j - 1`` before the end, ``-1`` after."""
    ended = (targets <= END).long().cumsum(1) > 0  # (B, T) at or after the end token
    return torch.where(ended, -1, targets - 1)


def _mask_padding(inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero the rows past each example's length: (B, N, d) -> (B, N, d)."""
    keep = torch.arange(inputs.shape[1])[None, :] < lengths[:, None]  # (B, N)
    return inputs * keep[..., None]


# ----------------------------------------------------------------------------- sorting
def sorting_batch(
    batch_size: int, generator: torch.Generator, n_min: int = 5, n_max: int = 10
) -> dict[str, torch.Tensor]:
    """Sort ``n ~ U{n_min..n_max}`` numbers drawn from U[0, 1]; the target is the argsort.

    Returns:
        ``inputs`` (B, N, 1), ``lengths`` (B,), ``targets`` (B, N + 1) (see the module doc).
    """
    lengths = sample_lengths(batch_size, n_min, n_max, generator)  # (B,)
    n = int(lengths.max())
    values = _mask_padding(torch.rand(batch_size, n, 1, generator=generator), lengths)
    keyed = values[..., 0].masked_fill(torch.arange(n)[None] >= lengths[:, None], float("inf"))
    order = keyed.argsort(dim=-1)  # (B, N) padding sorts last
    targets = torch.cat([order + 1, torch.zeros(batch_size, 1, dtype=torch.long)], 1)  # (B, N+1)
    steps = torch.arange(n + 1)[None]  # (1, N+1)
    targets = targets.masked_fill(steps == lengths[:, None], END)
    targets = targets.masked_fill(steps > lengths[:, None], IGNORE_INDEX)
    return {"inputs": values, "lengths": lengths, "targets": targets}


def sort_order(values: Sequence[float]) -> list[int]:
    """The input indices of ``values`` in increasing order (the sorting target)."""
    return np.argsort(np.asarray(values), kind="stable").tolist()


# ----------------------------------------------------------------------------- convex hull
def convex_hull_order(points: np.ndarray) -> list[int]:
    """Hull vertices of ``points`` (n, 2): lowest index first, then counter-clockwise.

    ``scipy.spatial.ConvexHull`` lists 2-D hull vertices counter-clockwise; the cycle is rotated
    so that it starts at its smallest input index, the paper's canonical order.
    """
    from scipy.spatial import ConvexHull

    vertices = ConvexHull(points).vertices.tolist()  # counter-clockwise
    start = vertices.index(min(vertices))
    return vertices[start:] + vertices[:start]


def convex_hull_orders(points: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Batched gift wrapping: ``convex_hull_order`` of every example at once.

    Vertex ``q`` follows ``p`` counter-clockwise when every other real point lies strictly left
    of the directed edge ``p -> q``; hull vertices are the points that have such a ``q``. In
    general position (no three collinear points, true almost surely for random points) this is
    exactly scipy's hull; the tests check it against ``scipy.spatial.ConvexHull``.

    Args:
        points: (B, N, 2) padded points.
        lengths: (B,) number of real points (>= 3).

    Returns:
        For each example, the hull's input indices, lowest index first, counter-clockwise.
    """
    p = points.double()  # (B, N, 2)
    b, n, _ = p.shape
    real = torch.arange(n)[None] < lengths[:, None]  # (B, N)
    d = p[:, None, :, :] - p[:, :, None, :]  # (B, N, N, 2) d[b, i, j] = p_j - p_i
    # cross[b, p, q, r] = (q - p) x (r - p)
    cross = d[:, :, :, None, 0] * d[:, :, None, :, 1] - d[:, :, :, None, 1] * d[:, :, None, :, 0]
    eye = torch.eye(n, dtype=torch.bool)
    ignore = ~real[:, None, None, :] | eye[None, :, None, :] | eye[None, None, :, :]  # r = p or q
    left = (cross > 0) | ignore  # (B, P, Q, R)
    is_next = left.all(-1) & real[:, :, None] & real[:, None, :] & ~eye  # (B, P, Q)
    nxt = is_next.float().argmax(-1)  # (B, P) the successor of p (if p is a hull vertex)
    on_hull = is_next.any(-1)  # (B, P)
    first = torch.where(on_hull, torch.arange(n)[None], n).min(-1).values  # (B,)
    walk = [first]
    for _ in range(int(on_hull.sum(-1).max()) - 1):  # follow the successors around the hull
        walk.append(nxt.gather(1, walk[-1][:, None])[:, 0])
    walk = torch.stack(walk, 1).tolist()  # (B, max hull size)
    orders = [row[: int(k)] for row, k in zip(walk, on_hull.sum(-1).tolist())]
    return orders


def convex_hull_batch(
    batch_size: int, generator: torch.Generator, n_min: int = 5, n_max: int = 20
) -> dict[str, torch.Tensor]:
    """Planar convex hull of ``n ~ U{n_min..n_max}`` points drawn uniformly from [0, 1]^2.

    Returns:
        ``inputs`` (B, N, 2), ``lengths`` (B,), ``targets`` (B, T) (see the module doc).
    """
    if n_min < 3:
        raise ValueError(f"a planar hull needs at least 3 points, got n_min={n_min}")
    lengths = sample_lengths(batch_size, n_min, n_max, generator)  # (B,)
    points = _mask_padding(
        torch.rand(batch_size, int(lengths.max()), 2, generator=generator), lengths
    )
    orders = convex_hull_orders(points, lengths)
    return {"inputs": points, "lengths": lengths, "targets": _pad_targets(orders)}


def polygon_area(points: np.ndarray) -> float:
    """Unsigned shoelace area of the polygon whose vertices are ``points`` (m, 2) in order."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def is_simple_polygon(points: np.ndarray) -> bool:
    """Whether the closed polygon ``points`` (m, 2) has >= 3 vertices and no self-intersection.

    Two edges that are not neighbours on the cycle must not touch; collinear overlaps count as
    intersections.
    """
    m = len(points)
    if m < 3:
        return False
    a, b = points, np.roll(points, -1, axis=0)  # edge k: a[k] -> b[k]

    def orient(p, q, r):  # sign of the turn p -> q -> r, broadcast over edge pairs
        return np.sign(
            (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1])
            - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0])
        )

    p1, q1 = a[:, None], b[:, None]  # (m, 1, 2)
    p2, q2 = a[None, :], b[None, :]  # (1, m, 2)
    o1, o2 = orient(p1, q1, p2), orient(p1, q1, q2)  # (m, m)
    o3, o4 = orient(p2, q2, p1), orient(p2, q2, q1)
    crossing = (o1 * o2 <= 0) & (o3 * o4 <= 0)
    # collinear edges intersect only if their bounding boxes overlap
    lo1, hi1 = np.minimum(p1, q1), np.maximum(p1, q1)
    lo2, hi2 = np.minimum(p2, q2), np.maximum(p2, q2)
    boxes = np.all((lo1 <= hi2) & (lo2 <= hi1), axis=-1)  # (m, m)
    k = np.arange(m)
    gap = (k[None, :] - k[:, None]) % m
    non_adjacent = (gap > 1) & (gap < m - 1)  # (m, m) excludes an edge and its two neighbours
    return not bool(np.any(crossing & boxes & non_adjacent))


def area_coverage(points: np.ndarray, predicted: Sequence[int], true_area: float) -> float:
    """Area of the predicted polygon over the true hull's area; 0 when the output is invalid.

    An output is valid when it names >= 3 distinct input indices (no repeats) and their polygon
    is simple. A simple polygon on the input points lies inside the true hull, so its area over
    the hull's area is the fraction of the hull it covers (the paper's "area coverage").
    """
    pred = list(predicted)
    if len(pred) < 3 or len(set(pred)) != len(pred) or min(pred) < 0 or max(pred) >= len(points):
        return 0.0
    polygon = points[pred]
    if not is_simple_polygon(polygon):
        return 0.0
    return polygon_area(polygon) / true_area


def same_polygon(predicted: Sequence[int], target: Sequence[int]) -> bool:
    """Whether two vertex cycles describe the same polygon (any rotation, either direction)."""
    pred, tgt = list(predicted), list(target)
    if len(pred) != len(tgt) or not pred:
        return False
    start = pred.index(min(pred))
    pred = pred[start:] + pred[:start]
    t0 = tgt.index(min(tgt))
    tgt = tgt[t0:] + tgt[:t0]
    return pred == tgt or pred == [tgt[0]] + tgt[:0:-1]
