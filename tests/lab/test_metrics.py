"""Dense metrics against reference implementations (scikit-image, scipy) and their edge cases."""

import math

import numpy as np
import pytest
import torch

from archlab.lab import metrics


def test_ssim_equals_skimage():
    skm = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 24, 20, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ours = metrics.ssim(y, x, per_image=True)
    for i in range(2):
        ref = skm.structural_similarity(
            y[i].numpy().astype(np.float64), x[i].numpy().astype(np.float64),
            channel_axis=0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=1.0,
        )  # fmt: skip
        assert abs(float(ours[i]) - ref) < 1e-10
    assert metrics.ssim(x, x) == pytest.approx(1.0)


def test_psnr_equals_skimage_and_masks():
    skm = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 16, 16, generator=g)
    y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ref = skm.peak_signal_noise_ratio(x[0].double().numpy(), y[0].double().numpy(), data_range=1)
    assert metrics.psnr(y, x) == pytest.approx(ref, abs=1e-9)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8, :] = 1
    err = (y - x)[..., :8, :].double().square().mean()
    assert metrics.psnr(y, x, mask=mask) == pytest.approx(float(-10 * torch.log10(err)))
    assert metrics.psnr(x, x) == math.inf
    with pytest.raises(ValueError, match="NaN"):
        metrics.psnr(torch.full_like(x, float("nan")), x)


def test_dice_and_iou():
    pred = torch.tensor([[0, 1, 1, 2]])
    target = torch.tensor([[0, 1, 2, 2]])
    d = metrics.dice(pred, target, n_classes=4)
    assert d.tolist() == pytest.approx([1.0, 2 / 3, 2 / 3, 1.0])  # class 3: both empty -> 1
    i = metrics.iou(pred, target, n_classes=4)
    assert i.tolist() == pytest.approx([1.0, 0.5, 0.5, 1.0])
    assert metrics.mean_iou(pred, target, n_classes=4) == pytest.approx(2 / 3)
    empty = torch.zeros(2, 5, dtype=torch.long)
    assert metrics.dice(empty, empty, 2).tolist() == [1.0, 1.0]
    assert metrics.dice(empty, empty + 1, 2, per_image=True).shape == (2, 2)
    with pytest.raises(ValueError, match="integer"):
        metrics.dice(pred.float(), target, 3)


def test_hausdorff_against_scipy_and_edge_cases():
    from scipy.spatial.distance import directed_hausdorff

    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[2:8, 2:8] = True
    b[5:15, 4:9] = True

    def surf(m):
        return np.argwhere(metrics._surface(m))

    ref = max(directed_hausdorff(surf(a), surf(b))[0], directed_hausdorff(surf(b), surf(a))[0])
    assert metrics.hausdorff(a, b) == pytest.approx(ref)
    assert metrics.hausdorff(a, b, percentile=95) <= metrics.hausdorff(a, b)
    assert metrics.hausdorff(np.zeros_like(a), np.zeros_like(a)) == 0.0
    assert metrics.hausdorff(a, np.zeros_like(a)) == math.inf


def test_components_and_holes():
    m = np.zeros((12, 12), bool)
    m[1:6, 1:6] = True
    m[3, 3] = False  # a hole
    m[8:11, 8:11] = True  # second component
    m[0, 11] = True  # touches the corner: still a component, no hole
    assert metrics.n_components(m) == 3
    assert metrics.n_holes(m) == 1
    ring = np.zeros((3, 3, 3), bool)
    assert metrics.n_components(ring) == 0 and metrics.n_holes(ring) == 0
    diag = np.eye(4, dtype=bool)  # 8-connected: one component
    assert metrics.n_components(torch.from_numpy(diag)) == 1


def test_count_errors():
    mae, rmse = metrics.count_errors([10, 20, 30], torch.tensor([12.0, 20.0, 26.0]))
    assert mae == pytest.approx(2.0)
    assert rmse == pytest.approx(math.sqrt((4 + 0 + 16) / 3))
    with pytest.raises(ValueError, match="3 predicted counts but 2"):
        metrics.count_errors([1, 2, 3], [1, 2])
