"""SimpleNet invariants: the paper's configurations, parameter counts, layout and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import archlab
from archlab.lab.profiling import n_params
from archlab.papers.vision.simplenet import (
    CIFAR_5M,
    CIFAR_310K,
    CIFAR_460K,
    SimpleNet,
    SimpleNetConfig,
    parse_layer,
)


def reference_count(layers, n_channels: int = 3, n_classes: int = 10) -> int:
    """Parameters by hand: conv weight + bias, BN scale + shift per layer, then the linear head."""
    total, d_in = 0, n_channels
    for item in layers:
        if item == "p":
            continue
        width, kernel = (int(item[:-2]), 1) if item.endswith("k1") else (int(item), 3)
        total += d_in * width * kernel * kernel + width + 2 * width
        d_in = width
    return total + d_in * n_classes + n_classes


@pytest.mark.parametrize(
    "layers, expected",
    [
        # Counts of the official PyTorch builders (Coderx7/SimpleNet_Pytorch,
        # Cifar/models/simplenet.py: simplenet_cifar_5m / _310k / _460k) with num_classes=10.
        (CIFAR_5M, 5_498_378),  # the paper's "5.48M" network
        (CIFAR_310K, 312_362),  # the paper's slim "310k" network
        (CIFAR_460K, 385_790),  # named 460k in the official code; 0.39M with 10 classes
    ],
)
def test_parameter_counts_match_the_official_configurations(layers, expected):
    model = SimpleNet(SimpleNetConfig(layers=layers))
    assert n_params(model) == expected == reference_count(layers)


def test_cifar_100_count():
    assert n_params(SimpleNet(SimpleNetConfig(n_classes=100))) == 5_521_508


@pytest.mark.parametrize("layers", [CIFAR_5M, CIFAR_310K, CIFAR_460K])
def test_thirteen_layers_with_late_pooling_and_two_pointwise(layers):
    cfg = SimpleNetConfig(layers=layers)
    assert cfg.n_conv_layers == 13
    convs, pools_after = 0, []
    kernels = []
    for item in layers:
        parsed = parse_layer(item)
        if parsed is None:
            pools_after.append(convs)
        else:
            convs += 1
            kernels.append(parsed[1])
    assert pools_after == [4, 7, 9, 12]  # 2x2 max-pools after layers 4, 7, 9 and 12
    assert [i + 1 for i, k in enumerate(kernels) if k == 1] == [11, 12]  # 1x1 convs


def test_blocks_are_conv_bn_relu_with_official_bn_settings():
    model = SimpleNet(SimpleNetConfig(layers=CIFAR_310K))
    mods = list(model.features)
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            assert isinstance(mods[i + 1], nn.BatchNorm2d) and isinstance(mods[i + 2], nn.ReLU)
            assert mods[i + 1].momentum == 0.05 and mods[i + 1].eps == 1e-5
            assert m.bias is not None
    # official state-dict layout: features.0 is the first conv, the head is "classifier"
    keys = set(model.state_dict())
    assert {"features.0.weight", "features.1.running_mean", "classifier.weight"} <= keys


def test_xavier_init_with_relu_gain():
    torch.manual_seed(0)
    model = SimpleNet(SimpleNetConfig(layers=CIFAR_5M))
    conv = [m for m in model.features if isinstance(m, nn.Conv2d)][1]  # 64 -> 128, 3x3
    fan_in, fan_out = 64 * 9, 128 * 9
    bound = 2**0.5 * (6 / (fan_in + fan_out)) ** 0.5
    assert conv.weight.abs().max() <= bound
    assert conv.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)


def test_global_max_pool_and_shapes():
    model = SimpleNet(SimpleNetConfig(layers=CIFAR_310K)).eval()
    x = torch.rand(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (2, 64)
    with torch.no_grad():
        fmap = model.features(x)
        torch.testing.assert_close(feats, fmap.amax(dim=(2, 3)))
        assert model(x).shape == (2, 10)


def test_dropout_positions_follow_the_official_code():
    cfg = SimpleNetConfig(layers=CIFAR_310K, dropout=0.1)
    mods = list(SimpleNet(cfg).features)
    n_drop = sum(isinstance(m, nn.Dropout2d) for m in mods)
    # after each pool (4) and after each conv not followed by a pool and not last (13 - 4 - 1)
    assert n_drop == 4 + 8
    assert all(m.p == 0.1 for m in mods if isinstance(m, nn.Dropout2d))


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(2, 1, 32, 32), "3 channel"),
        (torch.rand(2, 3, 28, 28), "32x32"),
        (torch.rand(3, 32, 32), "shape"),
        (torch.randint(0, 255, (2, 3, 32, 32)), "dtype"),
        (torch.rand(2, 3, 32, 32, dtype=torch.float64), "dtype"),
    ],
)
def test_bad_input_is_one_clear_error(x, match):
    model = SimpleNet(SimpleNetConfig(layers=CIFAR_310K))
    with pytest.raises((ValueError, TypeError), match=match):
        model(x)


def test_bad_configs():
    with pytest.raises(ValueError, match="layer"):
        SimpleNetConfig(layers=("64", "q"))
    with pytest.raises(ValueError, match="last entry"):
        SimpleNetConfig(layers=("64", "p"))
    with pytest.raises(ValueError, match="too small"):
        SimpleNetConfig(layers=CIFAR_310K, image_size=8)


def test_build_by_name():
    model = archlab.build("simplenet/cifar_310k", n_classes=100)
    assert n_params(model) == reference_count(CIFAR_310K, n_classes=100)


def test_forward_matches_the_conv_bn_relu_maxpool_equations():
    """Each layer is ReLU(BN(conv(x))) (3x3 pad 1, 1x1 pad ``pointwise_padding``), "p" is a 2x2
    max-pool, then a global max-pool and the linear head; no shortcut anywhere."""
    F = torch.nn.functional
    torch.manual_seed(0)
    layers = ("8", "p", "8", "12k1", "p", "8")
    for pad in (1, 0):
        model = SimpleNet(SimpleNetConfig(layers=layers, image_size=8, pointwise_padding=pad))
        with torch.no_grad():
            for m in model.features:
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 1.5)
        model.eval()
        x = torch.rand(2, 3, 8, 8)
        convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
        bns = [m for m in model.features if isinstance(m, nn.BatchNorm2d)]
        h, c = x, 0
        with torch.no_grad():
            for item in layers:
                if item == "p":
                    h = F.max_pool2d(h, 2)
                    continue
                conv, bn = convs[c], bns[c]
                padding = pad if item.endswith("k1") else 1
                h = F.conv2d(h, conv.weight, conv.bias, padding=padding)
                h = F.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=1e-5)
                h, c = F.relu(h), c + 1
            assert h.shape[-1] == (3 if pad else 2)  # the official 1x1 padding grows the map
            expected = model.classifier(h.amax(dim=(2, 3)))
            torch.testing.assert_close(model(x), expected)


def test_module_order_of_a_small_layout():
    """Dropout2d after a conv unless a pool follows or it is the last layer; after every pool."""
    model = SimpleNet(SimpleNetConfig(layers=("8", "8", "p", "8"), image_size=8, dropout=0.1))
    names = [type(m).__name__ for m in model.features]
    conv = ["Conv2d", "BatchNorm2d", "ReLU"]
    assert names == conv + ["Dropout2d"] + conv + ["MaxPool2d", "Dropout2d"] + conv


def test_experiment_splits_are_disjoint_and_sized():
    from archlab.papers.vision.simplenet.experiment import BUDGETS, load_data

    s = BUDGETS["quick"]
    (xtr, ytr), (xva, yva), (xte, yte) = load_data(s, torch.Generator().manual_seed(0))
    assert len(yva) == s.n_val and len(yte) == s.n_test and len(ytr) == 1797 - s.n_val - s.n_test
    flat = [x.flatten(1) for x in (xtr, xva, xte)]
    for i, j in ((0, 1), (0, 2), (1, 2)):  # no image appears in two splits
        assert not (torch.cdist(flat[i], flat[j]) == 0).any()


def test_experiment_uses_the_official_pointwise_padding():
    from archlab.papers.vision.simplenet.experiment import BUDGETS

    assert SimpleNetConfig().pointwise_padding == 0
    assert all(s.pointwise_padding == 0 for s in BUDGETS.values())
