"""Dense-prediction figures: they draw label maps, heatmaps and image rows without errors."""

import pytest
import torch

from archlab.lab.plots import image_grid, labels_from_logits, overlay_grid


def test_overlay_and_image_grids():
    images = torch.rand(3, 1, 8, 8)
    labels = torch.randint(0, 3, (3, 8, 8))
    fig = overlay_grid(images, {"target": labels, "heat": torch.rand(3, 8, 8)}, titles="abc")
    assert len(fig.axes) == 6
    vol = overlay_grid(torch.rand(2, 1, 4, 8, 8), {"seg": torch.randint(0, 2, (2, 4, 8, 8))})
    assert len(vol.axes) == 2
    grid = image_grid({"noisy": torch.rand(2, 3, 8, 8), "clean": torch.rand(2, 3, 8, 8)})
    assert len(grid.axes) == 4
    with pytest.raises(ValueError, match="has 2 maps for 3 images"):
        overlay_grid(images, {"x": labels[:2]})


def test_labels_from_logits():
    assert labels_from_logits(torch.tensor([[[[1.0]], [[2.0]]]])).item() == 1
    assert labels_from_logits(torch.tensor([[[[-1.0]]]])).item() == 0
