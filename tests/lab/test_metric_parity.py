"""Dense metrics against the field's implementations: Dice, IoU, Hausdorff and SSIM against
MONAI, PSNR against torchmetrics (both in the ``dense`` extra)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from archlab.lab import metrics

monai_metrics = pytest.importorskip("monai.metrics")
tm = pytest.importorskip("torchmetrics.functional.image")


def _one_hot(labels: torch.Tensor, k: int) -> torch.Tensor:  # (B, H, W) -> (B, K, H, W)
    return F.one_hot(labels, k).permute(0, 3, 1, 2).float()


@pytest.fixture
def labels():
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 3, (2, 20, 20), generator=g)
    target = torch.randint(0, 3, (2, 20, 20), generator=g)
    pred[1][pred[1] == 2] = 0  # class 2 empty in both maps of image 1: 1.0 by convention
    target[1][target[1] == 2] = 0
    return pred, target


def test_dice_and_iou_equal_monai_per_image_and_class(labels):
    pred, target = labels
    ref_dice = monai_metrics.compute_dice(
        _one_hot(pred, 3), _one_hot(target, 3), include_background=True, ignore_empty=False
    )
    ref_iou = monai_metrics.compute_iou(
        _one_hot(pred, 3), _one_hot(target, 3), include_background=True, ignore_empty=False
    )
    torch.testing.assert_close(metrics.dice(pred, target, 3, per_image=True).float(), ref_dice)
    torch.testing.assert_close(metrics.iou(pred, target, 3, per_image=True).float(), ref_iou)
    assert metrics.dice(pred, target, 3, per_image=True)[1, 2] == 1.0


@pytest.mark.parametrize("n_dims", [2, 3])
def test_hausdorff_equals_monai(n_dims):
    shape = (1, 1) + (20,) * n_dims
    a, b = torch.zeros(shape), torch.zeros(shape)
    a[(..., slice(3, 11), slice(4, 14)) + ((slice(2, 9),) if n_dims == 3 else ())] = 1
    b[(..., slice(6, 16), slice(2, 10)) + ((slice(5, 15),) if n_dims == 3 else ())] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = monai_metrics.compute_hausdorff_distance(a, b, include_background=True)
    assert metrics.hausdorff(a[0, 0] > 0, b[0, 0] > 0) == pytest.approx(ref.item(), rel=1e-6)


def test_psnr_equals_torchmetrics_per_image_mean():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 24, 20, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ref = tm.peak_signal_noise_ratio(y, x, data_range=1.0, dim=(1, 2, 3))
    assert metrics.psnr(y, x) == pytest.approx(ref.item(), abs=1e-4)


def test_ssim_equals_monai():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 32, 28, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ref = monai_metrics.SSIMMetric(
        spatial_dims=2, data_range=1.0, kernel_type="gaussian", win_size=11, kernel_sigma=1.5
    )(y, x)
    ours = metrics.ssim(y, x, per_image=True)
    torch.testing.assert_close(ours.float(), ref.flatten(), atol=1e-6, rtol=0)
