"""PLS-Net invariants: the reference layout and parameter count, input reinforcement, DRDB
residual/dilations, full-resolution output at any size divisible by 8, and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archlab
from archlab.papers.dense.pls_net import DRDB, DSConv, PlsNet, PlsNetConfig, n_params


def reference_count(c: int = 1, k: int = 2, widths=(16, 64, 128), g: int = 12, n_drdb=(1, 2, 4)):
    """Parameters of the reference code (andreped/PLS-Net, PLS_pytorch.py), by hand: DSConv3D =
    depthwise 3x3x3 (no bias) + pointwise 1x1x1 (no bias) (its BatchNorm is never called and is
    not counted); DrdbBlock3D = four DSConvs of growth g + a 1x1x1 fusion conv with bias."""

    def ds(d_in, d_out):
        return 27 * d_in + d_in * d_out

    def drdb(ch):
        return sum(ds(ch + i * g, g) for i in range(4)) + (ch + 4 * g) * ch + ch

    w = [x + c for x in widths]
    total = ds(c, widths[0]) + ds(w[0], widths[1]) + ds(w[1], widths[2])
    total += sum(n * drdb(ch) for n, ch in zip(n_drdb, w))
    total += ds(w[1], 2 * k) + ds(w[0], 2 * k)  # bridges
    total += ds(w[2], 2 * k) + 2 * ds(4 * k, 2 * k)  # decoder blocks
    return total + 2 * k * k + k  # final 1x1x1 conv with bias


def test_parameter_count_matches_the_reference_code():
    model = PlsNet(PlsNetConfig())
    assert n_params(model) == reference_count() == 249_586  # "~0.25M" of the paper
    cfg = PlsNetConfig(widths=(8, 24, 48), growth_rate=6, n_classes=3)
    assert n_params(PlsNet(cfg)) == reference_count(k=3, widths=(8, 24, 48), g=6)


def test_dsconv_is_depthwise_then_pointwise_without_bias():
    conv = DSConv(5, 7, stride=2, dilation=1)
    assert conv.depthwise.groups == 5 and conv.depthwise.kernel_size == (3, 3, 3)
    assert conv.depthwise.bias is None and conv.pointwise.bias is None
    assert conv.pointwise.kernel_size == (1, 1, 1)
    assert conv(torch.rand(1, 5, 8, 8, 8)).shape == (1, 7, 4, 4, 4)
    assert (conv(torch.randn(1, 5, 8, 8, 8)) >= 0).all()  # ends in a ReLU


def test_drdb_dilations_dense_growth_and_residual():
    block = DRDB(6, growth_rate=3)
    assert [c.depthwise.dilation for c in block.convs] == [(d,) * 3 for d in (1, 2, 3, 4)]
    assert [c.depthwise.in_channels for c in block.convs] == [6, 9, 12, 15]
    assert block.fuse.in_channels == 18 and block.fuse.out_channels == 6
    nn.init.zeros_(block.fuse.weight)
    nn.init.zeros_(block.fuse.bias)
    x = torch.randn(2, 6, 8, 8, 8)
    torch.testing.assert_close(block(x), x)  # zero fusion -> identity (residual connection)


def test_input_reinforcement_concatenates_the_downsampled_input():
    cfg = PlsNetConfig(widths=(4, 6, 8), growth_rate=2, n_drdb=(0, 0, 0), n_channels=2)
    model = PlsNet(cfg).eval()
    x = torch.rand(1, 2, 16, 16, 16)
    feats = model.encode(x)
    for level, (f, w) in enumerate(zip(feats, cfg.widths), start=1):
        small = F.interpolate(x, scale_factor=0.5**level, mode="trilinear", align_corners=False)
        assert f.shape == (1, w + 2) + small.shape[2:]
        torch.testing.assert_close(f[:, w:], small)


@pytest.mark.parametrize("shape", [(16, 16, 16), (8, 24, 32)])
def test_full_resolution_logits_at_any_size_divisible_by_8(shape):
    model = archlab.build("pls_net/tiny").eval()
    x = torch.rand(2, 1, *shape)
    out = model(x)
    assert out.shape == (2, 2, *shape) and torch.isfinite(out).all()
    torch.testing.assert_close(model.predict_proba(x).sum(1), torch.ones(2, *shape))


def test_decoder_uses_both_bridges():
    model = PlsNet(PlsNetConfig(widths=(4, 8, 8), growth_rate=4, n_drdb=(1, 1, 1)))
    seen = []
    for name in ("ds_bridge_l1", "ds_bridge_l2", "decoder_l3"):
        getattr(model, name).register_forward_hook(lambda m, i, o, n=name: seen.append(n))
    model(torch.rand(1, 1, 16, 16, 16))
    assert sorted(seen) == ["decoder_l3", "ds_bridge_l1", "ds_bridge_l2"]


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(1, 1, 16, 16), "3-D input"),
        (torch.rand(1, 2, 16, 16, 16), "1 input channels"),
        (torch.rand(1, 1, 16, 12, 16), "divisible by 8"),
        (torch.full((1, 1, 8, 8, 8), float("nan")), "NaN"),
    ],
)
def test_bad_input_is_one_clear_error(x, match):
    model = archlab.build("pls_net/tiny")
    with pytest.raises(ValueError, match=match):
        model(x)


def test_config_validation():
    with pytest.raises(ValueError, match="widths"):
        PlsNetConfig(widths=(8, 16))
    with pytest.raises(ValueError, match="growth_rate"):
        PlsNetConfig(growth_rate=0)
    assert PlsNetConfig(n_classes=3).d_bridge == 6 and PlsNetConfig(bridge_width=5).d_bridge == 5


def test_drdb_follows_the_dense_residual_equations():
    """DRDB on fixed weights: c_1 = DS_1(x), c_i = DS_i([c_{i-1}, ..., c_1, x]) (dense
    concatenation, newest first as the reference), y = fuse([c_4, ..., c_1, x]) + x."""
    torch.manual_seed(0)
    block = DRDB(3, growth_rate=2)
    x = torch.randn(1, 3, 8, 8, 8)
    with torch.no_grad():
        feats = [x]
        for conv in block.convs:
            feats.insert(0, conv(torch.cat(feats, 1)))
        torch.testing.assert_close(block(x), block.fuse(torch.cat(feats, 1)) + x)


def test_light_decoder_follows_the_reference_wiring():
    """h = dec_l3(f3); h = dec_l2([h, bridge_l2(f2)]); h = dec_l1([h, bridge_l1(f1)]);
    logits = conv_l0(h), recomputed from the encoder features on fixed weights; each bridge's
    output reaches the logits."""
    torch.manual_seed(0)
    model = archlab.build("pls_net/tiny").eval()
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        y = model(x)
        f1, f2, f3 = model.encode(x)
        h = model.decoder_l3(f3)
        h = model.decoder_l2(torch.cat([h, model.ds_bridge_l2(f2)], 1))
        h = model.decoder_l1(torch.cat([h, model.ds_bridge_l1(f1)], 1))
        torch.testing.assert_close(y, model.decoder_l0(h))
        for name in ("ds_bridge_l1", "ds_bridge_l2"):
            hook = getattr(model, name).register_forward_hook(lambda m, i, o: o + 1.0)
            moved = model(x)
            hook.remove()
            assert not torch.allclose(moved, y), name


def test_experiment_lesions_span_the_total_stride_and_bins_follow_the_radius_range():
    import math

    from archlab.papers.dense.pls_net.data import lesion_volumes
    from archlab.papers.dense.pls_net.experiment import BUDGETS, equivalent_diameters

    for budget in ("quick", "standard"):
        s = BUDGETS[budget]
        assert 2 * s.radius_range[0] >= PlsNetConfig.multiple  # every lesion spans the stride
        lo, hi = s.radius_range
        r1, r2 = lo * (hi / lo) ** (1 / 3), lo * (hi / lo) ** (2 / 3)
        assert s.size_edges == (round(4 / 3 * math.pi * r1**3), round(4 / 3 * math.pi * r2**3))
    vols = lesion_volumes(6, seed=3, size=32, radius_range=BUDGETS["quick"].radius_range)
    d = equivalent_diameters(vols)
    assert len(d) == sum(len(v) for v in vols.lesion_voxels) > 0
    assert d.min() >= 0.9 * PlsNetConfig.multiple  # voxelised, so a little under 2 x radius
