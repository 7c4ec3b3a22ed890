"""FFNet: torchvision ResNet parity of the backbone, the official up-head layouts, the ERF
measurement, and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archlab
from archlab.papers.dense.ffnet import (
    HEADS,
    VARIANTS,
    FFNet,
    FFNetConfig,
    erf_map,
    erf_radius,
    mini,
)

tv_models = pytest.importorskip("torchvision.models")


def _tv_features(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    out = []
    for i in range(1, 5):
        x = getattr(net, f"layer{i}")(x)
        out.append(x)
    return out


@pytest.mark.parametrize(
    "block, depths, builder",
    [("basic", (3, 4, 6, 3), "resnet34"), ("bottleneck", (3, 4, 6, 3), "resnet50")],
)
def test_backbone_equals_torchvision_resnet_on_copied_weights(block, depths, builder):
    """Stem A + BasicBlock stages is torchvision's ResNet-34 (bottlenecks: ResNet-50): with its
    weights copied, the four stage outputs (strides 4..32) match."""
    torch.manual_seed(0)
    tv = getattr(tv_models, builder)().eval()
    for m in tv.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model = FFNet(FFNetConfig(block=block, depths=depths)).eval()
    state = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    model.backbone.load_state_dict(state)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours, ref = model.backbone(x), _tv_features(tv, x)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert [f.shape[-1] for f in ours] == [16, 8, 4, 2]


@pytest.mark.parametrize("head", ["A", "B", "C"])
def test_up_head_presets_follow_the_official_code(head):
    """Adapters to the preset widths, branches to the preset widths, concat at stride 4."""
    adapters, branches, d_seg, kernel = HEADS[head]
    cfg = FFNetConfig(
        depths=(1, 1, 1, 1),
        adapter_widths=adapters,
        branch_widths=branches,
        d_seg_head=d_seg,
        seg_head_kernel=kernel,
    )
    model = FFNet(cfg).eval()
    assert [a[0].out_channels for a in model.head.adapter_conv] == list(adapters)
    ub = model.head.up_branch
    sm = [ub.fam_4, ub.fam_8_sm, ub.fam_16_sm, ub.fam_32_sm]
    assert [c[0].out_channels for c in sm] == list(branches)
    assert model.head.seg_head[0].in_channels == sum(branches)
    assert model.head.seg_head[0].out_channels == d_seg
    assert model.head.seg_head[3].kernel_size == (kernel, kernel)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert model.forward_stride4(x).shape == (1, 19, 16, 24)
        assert model(x).shape == (1, 19, 64, 96)


def test_official_presets_by_name():
    assert HEADS["A"][:2] == ((64, 128, 256, 512), (128, 128, 128, 128))
    assert HEADS["B"][:2] == ((64, 128, 128, 256), (96, 96, 64, 32))
    assert HEADS["C"][:2] == ((128, 128, 128, 128), (128, 16, 16, 16))
    assert VARIANTS["resnet50_AAA"].stage_channels == (256, 512, 1024, 2048)
    assert VARIANTS["base"].stage_channels == (64, 128, 256, 512)


def test_no_dilated_convolutions_anywhere():
    """FFNet's thesis: the receptive field comes from depth, not from dilation."""
    model = FFNet(VARIANTS["mini"])
    assert all(m.dilation == (1, 1) for m in model.modules() if isinstance(m, nn.Conv2d))


def test_erf_of_a_3x3_conv_is_its_kernel_footprint():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 2, 3, padding=1)
    e = erf_map(conv, torch.randn(2, 3, 15, 15))
    assert torch.isclose(e.sum(), torch.tensor(1.0))
    nz = (e > 0).nonzero()
    assert nz.min() >= 6 and nz.max() <= 8  # only the 3x3 neighbourhood of pixel (7, 7)
    assert erf_radius(e, 1.0) <= 2**0.5 + 1e-6


def test_erf_radius_of_a_delta_and_of_a_disc():
    e = torch.zeros(21, 21)
    e[10, 10] = 1.0
    assert erf_radius(e, 0.9) == 0.0
    yy, xx = torch.meshgrid(torch.arange(21), torch.arange(21), indexing="ij")
    disc = (((yy - 10) ** 2 + (xx - 10) ** 2) <= 36).float()
    assert 5.0 <= erf_radius(disc, 0.9) <= 6.0
    with pytest.raises(ValueError, match="fraction"):
        erf_radius(e, 0.0)


def test_erf_map_leaves_the_model_alone():
    """Only the input gradient is taken: no parameter ``.grad``, the training mode restored,
    the map back on the CPU."""
    model = FFNet(VARIANTS["tiny"]).train()
    e = erf_map(model, torch.rand(1, 3, 64, 64))
    assert model.training and e.device.type == "cpu" and e.shape == (64, 64)
    assert all(p.grad is None for p in model.parameters())


def test_basic_blocks_have_a_larger_erf_than_bottlenecks_at_init():
    """Same depths, one 3x3 conv per bottleneck block vs two per basic block: at
    initialisation the BasicBlock network already spreads its gradient wider."""
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))  # order-free
    radii = {}
    for block in ("basic", "bottleneck"):
        torch.manual_seed(0)
        radii[block] = erf_radius(erf_map(FFNet(mini(block)), x), 0.5)
    assert radii["basic"] > radii["bottleneck"]


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(1, 3, 48, 64), "divisible by 32"),
        (torch.rand(1, 4, 64, 64), "3 input channels"),
        (torch.rand(1, 3, 4, 64, 64), "2-D input"),
        (torch.full((1, 3, 64, 64), float("nan")), "NaN"),
    ],
)
def test_bad_input_is_one_clear_error(x, match):
    with pytest.raises(ValueError, match=match):
        FFNet(VARIANTS["tiny"])(x)


def test_config_validation():
    with pytest.raises(ValueError, match="block"):
        FFNetConfig(block="dense")
    with pytest.raises(ValueError, match="depths"):
        FFNetConfig(depths=(1, 1, 1))
    with pytest.raises(ValueError, match="seg_head_kernel"):
        FFNetConfig(seg_head_kernel=5)


def test_up_branch_follows_the_top_down_fusion():
    """UpBranch (FANet): x16 = up(fam_32_up(f32)) + f16, x8 = up(fam_16_up(x16)) + f8,
    sm4 = fam_4(up(fam_8_up(x8)) + f4), sm_s = fam_s_sm(x_s), recomputed on fixed weights;
    dropping a top-down addition or an upsample path fails it."""
    from archlab.papers.dense.ffnet.model import UpBranch

    torch.manual_seed(0)
    ub = UpBranch((3, 4, 5, 6), (2, 3, 4, 5)).eval()
    f4, f8, f16, f32 = (torch.randn(1, c, s, s) for c, s in ((3, 16), (4, 8), (5, 4), (6, 2)))

    def up(t, like):
        return F.interpolate(t, size=like.shape[-2:], mode="bilinear", align_corners=True)

    with torch.no_grad():
        out = ub([f4, f8, f16, f32])
        x16 = up(ub.fam_32_up(f32), f16) + f16
        x8 = up(ub.fam_16_up(x16), f8) + f8
        ref = [
            ub.fam_4(up(ub.fam_8_up(x8), f4) + f4),
            ub.fam_8_sm(x8),
            ub.fam_16_sm(x16),
            ub.fam_32_sm(f32),
        ]
    for o, r in zip(out, ref, strict=True):
        torch.testing.assert_close(o, r)


def test_every_scale_reaches_the_logits():
    """The head concatenates all four up-branch outputs: zeroing any one stage's feature map
    (the stride-32 one included, which reaches stride 4 only through the top-down path and the
    concatenation) changes the logits."""
    torch.manual_seed(0)
    model = archlab.build("ffnet/tiny").eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.backbone(x)
        ref = model.head(feats)
        for i in range(4):
            zeroed = [torch.zeros_like(f) if j == i else f for j, f in enumerate(feats)]
            assert not torch.allclose(model.head(zeroed), ref, atol=1e-5), f"stage {i}"
        # the stride-32 map reaches the stride-4 branch through the top-down path
        sm = model.head.up_branch(
            [a(f) for a, f in zip(model.head.adapter_conv, feats, strict=True)]
        )
        feats32 = feats[:3] + [feats[3] + 1.0]
        sm2 = model.head.up_branch(
            [a(f) for a, f in zip(model.head.adapter_conv, feats32, strict=True)]
        )
        assert not torch.allclose(sm[0], sm2[0])
        # the coarser branches reach the logits by the concatenation, not only via stride 4
        hook = model.head.up_branch.fam_4.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
        a, b = model.head(feats), model.head(feats32)
        hook.remove()
        assert not torch.allclose(a, b, atol=1e-5)
