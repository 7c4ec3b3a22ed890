"""ResNet baseline: the paper's sizes, shapes of both stems, input errors."""

from __future__ import annotations

import pytest
import torch

from archlab.baselines.resnet import VARIANTS, ResNet, ResNetConfig


def test_paper_sizes():
    """ResNet-20 / 56 (CIFAR) have 0.27M / 0.85M parameters; ResNet-18 has 11.7M."""
    expected = {"resnet20": 0.27e6, "resnet56": 0.85e6, "resnet18": 11.69e6}
    for name, n in expected.items():
        with torch.device("meta"):
            model = ResNet(VARIANTS[name])
        count = sum(p.numel() for p in model.parameters())
        assert abs(count - n) / n < 0.03, (name, count)


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_shapes_and_any_image_size(stem):
    model = ResNet(ResNetConfig(n_channels=1, n_classes=7, widths=(4, 8), depths=(1, 2), stem=stem))
    for size in (28, 32, 40):
        assert model(torch.randn(2, 1, size, size)).shape == (2, 7)


def test_zero_init_residual_makes_blocks_identity_on_the_residual_branch():
    model = ResNet(ResNetConfig(widths=(8,), depths=(2,), zero_init_residual=True)).eval()
    block = model.layers[0][1]
    x = torch.relu(torch.randn(2, 8, 8, 8))
    torch.testing.assert_close(block(x), x)


def test_bad_inputs_and_configs():
    model = ResNet(VARIANTS["tiny"])
    with pytest.raises(ValueError, match="3 channel"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="one entry per stage"):
        ResNetConfig(widths=(8, 16), depths=(1,))
