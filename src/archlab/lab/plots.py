"""Figures of dense predictions, so a person can see what the models do.

``overlay_grid`` draws inputs with label maps or heatmaps overlaid (one row per model, one column
per example); ``image_grid`` draws image rows side by side (restoration: input / outputs /
target). Both return a matplotlib ``Figure`` to put in ``Result.figures``. Figures are built
as ``matplotlib.figure.Figure`` objects without pyplot: no global figure state and no backend
switch (a notebook user's backend is left alone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor


def new_figure(figsize: tuple[float, float] = (6.4, 4.4)):
    """A ``matplotlib.figure.Figure`` that belongs to no pyplot state (nothing to close)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _figure(n_rows: int, n_cols: int, scale: float = 1.6):
    fig = new_figure(figsize=(scale * n_cols, scale * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def _as_image(x: Tensor) -> np.ndarray:
    """(C, H, W) -> (H, W) gray or (H, W, 3) RGB in [0, 1]; 3-D volumes show their middle slice."""
    x = x.detach().float().cpu()
    if x.ndim == 4:  # (C, D, H, W)
        x = x[:, x.shape[1] // 2]
    if x.ndim == 2:
        x = x[None]
    x = x[0] if x.shape[0] != 3 else x.permute(1, 2, 0)
    return x.clamp(0, 1).numpy()


def _as_map(m: Tensor) -> np.ndarray:
    m = m.detach().cpu()
    if m.ndim == 3:  # (D, H, W): middle slice
        m = m[m.shape[0] // 2]
    return m.numpy()


def overlay_grid(
    images: Tensor,
    rows: Mapping[str, Tensor],
    n_classes: int | None = None,
    titles: Sequence[str] | None = None,
    alpha: float = 0.45,
):
    """Inputs with overlays: one row per entry of ``rows``, one column per image.

    Args:
        images: ``(N, C, H, W)`` in [0, 1] (or ``(N, C, D, H, W)``: the middle slice is shown).
        rows: name -> ``(N, H, W)`` integer label maps (drawn with a qualitative colour map,
            background 0 transparent) or float heatmaps (drawn with ``inferno``).
        n_classes: colour range of label maps (default: the largest label + 1).
        titles: optional per-column titles (e.g. "count 41").
    """
    import matplotlib

    n = images.shape[0]
    fig, axes = _figure(len(rows), n)
    cmap = matplotlib.colormaps["tab10"]
    for r, (name, maps) in enumerate(rows.items()):
        if maps.shape[0] != n:
            raise ValueError(f"row {name!r} has {maps.shape[0]} maps for {n} images")
        is_labels = not maps.is_floating_point()
        k = n_classes or (int(maps.max()) + 1 if is_labels else 0)
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(_as_image(images[c]), cmap="gray", vmin=0, vmax=1)
            m = _as_map(maps[c])
            if is_labels:
                rgba = np.zeros(m.shape + (4,))
                for label in range(1, max(k, 2)):
                    rgba[m == label] = (*cmap((label - 1) % 10)[:3], alpha)
                ax.imshow(rgba)
            else:
                ax.imshow(m, cmap="inferno", alpha=0.6)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0 and titles is not None:
                ax.set_title(titles[c], fontsize=8)
    fig.tight_layout()
    return fig


def image_grid(rows: Mapping[str, Tensor], titles: Sequence[str] | None = None):
    """Image rows side by side: name -> ``(N, C, H, W)`` in [0, 1] (restoration results)."""
    n = next(iter(rows.values())).shape[0]
    fig, axes = _figure(len(rows), n)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(_as_image(images[c]), cmap="gray", vmin=0, vmax=1)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0 and titles is not None:
                ax.set_title(titles[c], fontsize=8)
    fig.tight_layout()
    return fig


def labels_from_logits(logits: Tensor) -> Tensor:
    """``(N, K, *S)`` logits -> ``(N, *S)`` int64 label maps (``K == 1``: threshold at 0)."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(1)


__all__ = ["image_grid", "labels_from_logits", "overlay_grid"]


def learning_curves(curves: Mapping[str, Sequence[Sequence[float]]], title: str = ""):
    """Training loss against step, one line per arm (log-scaled loss when it spans a decade)."""
    fig = new_figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    lows, highs = [], []
    for arm, points in curves.items():
        if not points:
            continue
        steps = [p[0] for p in points]
        losses = [p[1] for p in points]
        ax.plot(steps, losses, label=arm, lw=1.4)
        finite = [v for v in losses if v is not None and np.isfinite(v)]
        if finite:
            lows.append(min(finite))
            highs.append(max(finite))
    if lows and min(lows) > 0 and max(highs) / min(lows) > 10:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean over each interval)")
    ax.set_title(title or "learning curves")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
