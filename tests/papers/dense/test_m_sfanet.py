"""M-SFANet / M-SegNet / SFANet: ASPP parity with torchvision, official layouts, bad input."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.lab.profiling import n_params
from archlab.nn.conv import ASPP
from archlab.papers.dense.m_sfanet import (
    VARIANTS,
    ContextualModule,
    SFANet,
    SFANetConfig,
)
from archlab.papers.dense.m_sfanet.data import crowd_scenes
from archlab.papers.dense.m_sfanet.experiment import (
    BUDGETS,
    OFFICIAL_RATES,
    at_rates,
    crowd_batches,
    off_centre_change,
    off_centre_zeroed,
    sfanet_loss,
)

deeplabv3 = pytest.importorskip("torchvision.models.segmentation.deeplabv3")


def _randomise_bn(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_aspp_equals_torchvision_on_copied_weights():
    """M-SFANet's ASPP (1x1 + atrous 6/12/18 + image pooling, 1x1 projection, BN, ReLU,
    dropout) is torchvision's DeepLabV3 ASPP; with copied weights the outputs match."""
    torch.manual_seed(0)
    tv = deeplabv3.ASPP(64, [6, 12, 18], 32).eval()
    _randomise_bn(tv)
    ours = ASPP.from_torchvision(tv).eval()
    assert ours.rates == (6, 12, 18)
    x = torch.randn(2, 64, 16, 12)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), rtol=1e-5, atol=1e-5)


def test_aspp_inside_m_sfanet_matches_torchvision():
    """The ASPP the model uses on conv5_3 loads torchvision's state dict unchanged."""
    cfg = VARIANTS["tiny"]
    model = SFANet(cfg).eval()
    aspp = model.spm["aspp"]
    tv = deeplabv3.ASPP(cfg.widths[4], list(cfg.aspp_rates), cfg.d_aspp).eval()
    _randomise_bn(tv, seed=1)
    aspp.load_state_dict(tv.state_dict())
    x = torch.randn(1, cfg.widths[4], 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(aspp(x), tv(x), rtol=1e-5, atol=1e-5)


def official_param_count(arch: str) -> int:
    """Parameters of the official models (``models/M_SFANet.py`` / ``M_SegNet.py``), by hand.

    BaseConv = conv weight + bias + BN (2); the official conv_out also builds an unused BN
    (2 parameters) that is not counted here.
    """

    def base(i, o, k):
        return i * o * k * k + o + 2 * o

    vgg = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256)]
    vgg += [(256, 512), (512, 512), (512, 512)]
    if arch != "m_segnet":
        vgg += [(512, 512)] * 3
    total = sum(base(i, o, 3) for i, o in vgg)
    if arch == "m_segnet":
        back = [(768, 256, 1), (256, 256, 3), (384, 128, 1), (128, 128, 3), (192, 64, 1)]
    elif arch == "sfanet":
        back = [(1024, 256, 1), (256, 256, 3), (512, 128, 1), (128, 128, 3), (256, 64, 1)]
    else:
        back = [(768, 256, 1), (256, 256, 3), (768, 128, 1), (128, 128, 3), (256, 64, 1)]
    back += [(64, 64, 3), (64, 32, 3)]
    total += 2 * sum(base(i, o, k) for i, o, k in back)
    total += base(32, 1, 1) + (32 + 1)  # conv_att (conv + BN), conv_out (conv + bias)
    if arch == "m_sfanet":
        aspp = 512 * 256 + 3 * 512 * 256 * 9 + 512 * 256 + 5 * 256 * 256  # convs, no bias
        aspp += 2 * 256 * 6  # six BNs
        can = 4 * 512 * 512 + (1024 * 512 + 512) + (512 * 512 + 512)
        total += aspp + can
    return total


@pytest.mark.parametrize("arch", ["sfanet", "m_sfanet", "m_segnet"])
def test_parameter_counts_match_the_official_layout(arch):
    assert n_params(SFANet(VARIANTS[arch])) == official_param_count(arch)


@pytest.mark.parametrize("variant", ["tiny", "tiny_sfanet", "tiny_m_segnet"])
def test_outputs_at_stride_two_attention_in_unit_interval_count_is_sum(variant):
    model = SFANet(VARIANTS[variant]).eval()
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        density, attention = model(x)
        assert density.shape == attention.shape == (2, 1, 24, 32)
        assert 0 <= attention.min() and attention.max() <= 1
        torch.testing.assert_close(model.count(x), density.sum((1, 2, 3)))


def test_modules_per_architecture():
    sfa, msfa, seg = (SFANet(VARIANTS[v]) for v in ("tiny_sfanet", "tiny", "tiny_m_segnet"))
    assert sfa.spm is None and seg.spm is None
    assert isinstance(msfa.spm["can"], ContextualModule) and isinstance(msfa.spm["aspp"], ASPP)
    n_convs = {m: sum(1 for n, _ in m.vgg.named_children()) for m in (sfa, seg)}
    assert n_convs[sfa] == 13 and n_convs[seg] == 10  # VGG-16 to conv5_3 / to conv4_3
    # the two paths are separate modules with separate weights
    assert sfa.amp is not sfa.dmp
    assert sfa.amp.conv1[0].weight.data_ptr() != sfa.dmp.conv1[0].weight.data_ptr()


def test_m_segnet_unpools_with_the_encoder_indices():
    """Max-unpooling puts each value back where the encoder's max was: one non-zero per 2x2
    window, at the encoder's argmax."""
    model = SFANet(VARIANTS["tiny_m_segnet"]).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        enc = model.vgg.forward_with_indices(x)
        x4, i4, s4 = enc[3]
        up = F.max_unpool2d(x4, i4, 2, 2, 0, s4[-2:])
        windows = (up != 0).float().unfold(2, 2, 2).unfold(3, 2, 2).sum((-1, -2))
        assert windows.max() <= 1
        # the values sit at the positions of the maxima of conv4_3's output
        pre = model.vgg._stage(F.max_pool2d(enc[2][0], 1), 4)  # conv4_x on the pooled map
        torch.testing.assert_close(F.max_pool2d(pre, 2), x4)
        torch.testing.assert_close(up, pre * (up != 0))


def test_context_module_on_a_uniform_map_is_uniform():
    """CAN's scale features of a spatially constant map are constant, so is its output."""
    torch.manual_seed(0)
    can = ContextualModule(8, 6).eval()
    f = torch.randn(2, 8, 1, 1).expand(2, 8, 6, 6).contiguous()
    out = can(f)
    assert out.shape == (2, 6, 6, 6)
    torch.testing.assert_close(out, out[:, :, :1, :1].expand_as(out))


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(1, 3, 40, 64), "divisible by 16"),
        (torch.rand(1, 1, 64, 64), "3 input channels"),
        (torch.rand(3, 64, 64), "2-D input"),
        (torch.rand(1, 3, 8, 64, 64), "2-D input"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
    ],
)
def test_bad_input_is_one_clear_error(x, match):
    with pytest.raises(ValueError, match=match):
        SFANet(VARIANTS["tiny"])(x)


def test_config_validation():
    with pytest.raises(ValueError, match="arch"):
        SFANetConfig(arch="csrnet")
    with pytest.raises(ValueError, match="decoder_widths"):
        SFANetConfig(arch="m_segnet", decoder_widths=(128, 128, 64, 32))
    with pytest.raises(ValueError, match="widths"):
        SFANetConfig(widths=(64, 128, 256, 512))


def test_experiment_batches_keep_counts_and_the_loss_returns_tensors():
    """The training stream's stride-2 density targets keep each scene's count (x the density
    scale, flips included), and SFANet's loss reports its terms as tensors (no per-step sync)."""
    scenes = crowd_scenes(4, size=32, seed=0, count_range=(2, 20))
    x, dens, att = crowd_batches(scenes, density_scale=3.0)(8, torch.Generator().manual_seed(0))
    assert x.shape == (8, 3, 32, 32) and dens.shape == att.shape == (8, 1, 16, 16)
    totals = sorted(round(float(t), 2) for t in dens.sum((1, 2, 3)) / 3.0)
    assert set(totals) <= {round(float(c), 2) for c in scenes.counts}
    assert 0 <= att.min() and att.max() <= 1
    loss, metrics = sfanet_loss(0.1)(SFANet(VARIANTS["tiny"]), (x, dens, att))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(isinstance(v, torch.Tensor) for v in metrics.values())
    torch.testing.assert_close(loss, metrics["den"] + 0.1 * metrics["att"])


def _kaiming(model: nn.Module) -> nn.Module:
    """Kaiming-normal convolutions: activations O(1), unlike the official N(0, 0.01) init, so
    that a dropped term shows above the comparison tolerance."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
    return model


def test_density_is_the_attention_gated_density_path():
    """density = conv_out(A * dmp) with A = sigmoid(BN(conv(amp))), from the two paths' outputs
    on fixed weights; the density depends on the attention path."""
    torch.manual_seed(0)
    model = SFANet(VARIANTS["tiny"]).eval()
    _kaiming(model)
    x = torch.rand(1, 3, 32, 32)
    paths = {}
    hooks = [
        getattr(model, n).register_forward_hook(lambda m, i, o, n=n: paths.__setitem__(n, o))
        for n in ("amp", "dmp")
    ]
    with torch.no_grad():
        density, attention = model(x)
        for h in hooks:
            h.remove()
        a = torch.sigmoid(model.conv_att[1](model.conv_att[0](paths["amp"])))
        torch.testing.assert_close(attention, a)
        torch.testing.assert_close(density, model.conv_out(a * paths["dmp"]))
        hook = model.amp.register_forward_hook(lambda m, i, o: o * 2.0 + 1.0)
        moved, _ = model(x)
        hook.remove()
    assert not torch.allclose(moved, density)


def test_context_module_follows_the_can_equations():
    """CAN: S_s = up(conv(avgpool_s(f))), w_s = sigmoid(conv(f - S_s)),
    out = ReLU(conv([sum_s w_s S_s / sum_s w_s, f])), recomputed on fixed weights."""
    torch.manual_seed(0)
    can = ContextualModule(4, 5).eval()
    for p in can.parameters():  # larger than the N(0, 0.01) init, so the weights matter
        p.data.normal_(0, 0.5)
    f = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        s = [
            F.interpolate(conv(F.adaptive_avg_pool2d(f, k)), size=(6, 6), mode="bilinear")
            for k, conv in zip((1, 2, 3, 6), (st[1] for st in can.scales), strict=True)
        ]
        w = [torch.sigmoid(can.weight_net(f - si)) for si in s]
        ctx = sum(wi * si for wi, si in zip(w, s, strict=True)) / sum(w)
        ref = F.relu(can.bottleneck(torch.cat([ctx, f], 1)))
        torch.testing.assert_close(can(f), ref)


def test_m_sfanet_back_end_concatenates_the_aspp_map_at_stride_four():
    """M-SFANet's back end: x = up(conv2(conv1([up(c5), c4]))), then conv4(conv3([x, c3,
    up4(c5)])), up, [., c2], conv5..conv7 (official BackEnd), recomputed on fixed weights."""
    torch.manual_seed(0)
    model = _kaiming(SFANet(VARIANTS["tiny"]).eval())
    with torch.no_grad():
        c2, c3, c4, c5 = model.vgg(torch.rand(1, 3, 32, 32))
        c4, c5 = model.spm["can"](c4), model.spm["aspp"](c5)
        be = model.dmp
        assert be.extra_skip

        def up(t, k=2):
            return F.interpolate(t, scale_factor=k, mode="bilinear", align_corners=True)

        x = up(be.conv2(be.conv1(torch.cat([up(c5), c4], 1))))
        x = up(be.conv4(be.conv3(torch.cat([x, c3, up(c5, 4)], 1))))
        ref = be.conv7(be.conv6(be.conv5(torch.cat([x, c2], 1))))
        torch.testing.assert_close(be(c2, c3, c4, c5), ref)


def test_off_centre_zeroing_keeps_only_the_centre_tap_and_rates_are_swapped_in_a_copy():
    torch.manual_seed(0)
    aspp = ASPP(8, 4, (1, 2, 3))
    zeroed, moved = off_centre_zeroed(aspp), at_rates(aspp, OFFICIAL_RATES)
    for b, z, m in zip(aspp.convs[1:-1], zeroed.convs[1:-1], moved.convs[1:-1], strict=True):
        w, wz = b[0].weight, z[0].weight
        torch.testing.assert_close(wz[:, :, 1, 1], w[:, :, 1, 1])
        off = torch.ones(3, 3, dtype=torch.bool)
        off[1, 1] = False
        assert (wz[:, :, off] == 0).all() and (w[:, :, off] != 0).any()
        torch.testing.assert_close(m[0].weight, w)
    assert [b[0].dilation[0] for b in moved.convs[1:-1]] == list(OFFICIAL_RATES)
    assert [b[0].dilation[0] for b in aspp.convs[1:-1]] == [1, 2, 3]  # the original untouched


def test_official_rates_see_no_context_on_the_quick_map_and_the_budget_rates_do():
    """At 64 x 64 conv5_3 is 4 x 4: atrous rates 6/12/18 read only their centre tap (zeroing
    the other taps changes the ASPP output by exactly 0), the budget's 1/2/3 read context; at
    128 x 128 (8 x 8) the rate-6 branch starts to see context."""
    s = BUDGETS["quick"]
    torch.manual_seed(0)
    model = _kaiming(SFANet(replace(VARIANTS["tiny"], aspp_rates=s.aspp_rates))).eval()
    x = torch.rand(2, 3, s.size, s.size)
    assert off_centre_change(model, x, OFFICIAL_RATES) == 0.0
    assert off_centre_change(model, x) > 1e-2
    assert off_centre_change(model, torch.rand(2, 3, 128, 128), OFFICIAL_RATES) > 0.0
