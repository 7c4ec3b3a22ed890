"""Shared convolution blocks: ASPP parity with torchvision, block shapes, input validation."""

import pytest
import torch

from archlab.nn.conv import (
    ASPP,
    ConvNormAct,
    DoubleConv,
    ResidualBlock,
    SqueezeExcite,
    check_dense_input,
)


def _randomise_bn(module: torch.nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


@pytest.mark.parametrize("rates", [(12, 24, 36), (1, 2), (6, 12, 18)])
def test_aspp_equals_torchvision(rates):
    tv = pytest.importorskip("torchvision.models.segmentation.deeplabv3")
    torch.manual_seed(0)
    ref = tv.ASPP(16, list(rates), out_channels=24)
    _randomise_bn(ref)
    ours = ASPP.from_torchvision(ref)
    assert ours.rates == tuple(rates)
    ref.eval(), ours.eval()
    x = torch.randn(2, 16, 13, 11)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)
    # the state dicts are the same layout both ways
    ref.load_state_dict(ours.state_dict())


def test_conv_norm_act_layout_and_same_padding():
    block = ConvNormAct(3, 8, 3, dilation=2)
    assert [type(m).__name__ for m in block] == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert block[0].bias is None
    assert block(torch.randn(1, 3, 9, 7)).shape == (1, 8, 9, 7)
    plain = ConvNormAct(3, 8, 1, norm=None, act=None)
    assert len(plain) == 1 and plain[0].bias is not None


@pytest.mark.parametrize("n_dims", [2, 3])
def test_blocks_in_2d_and_3d(n_dims):
    x = torch.randn(2, 4, *(8,) * n_dims)
    assert DoubleConv(4, 6, n_dims=n_dims)(x).shape == (2, 6, *(8,) * n_dims)
    assert ResidualBlock(4, 6, stride=2, n_dims=n_dims)(x).shape == (2, 6, *(4,) * n_dims)
    assert SqueezeExcite(4, reduction=2, n_dims=n_dims)(x).shape == x.shape
    for norm in ("instance", "group", None):
        assert ConvNormAct(4, 8, n_dims=n_dims, norm=norm, act="gelu")(x).shape[1] == 8


def test_residual_block_identity_shortcut_when_shapes_match():
    block = ResidualBlock(4, 4)
    assert isinstance(block.shortcut, torch.nn.Identity)


def test_unknown_norm_and_act_are_errors():
    with pytest.raises(ValueError, match="unknown norm"):
        ConvNormAct(1, 1, norm="weird")
    with pytest.raises(ValueError, match="unknown activation"):
        ConvNormAct(1, 1, act="weird")
    with pytest.raises(ValueError, match="n_dims"):
        ConvNormAct(1, 1, n_dims=4)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.randn(1, 1, 8, 8, 8), "expected 2-D input"),
        (torch.randn(1, 3, 8, 8), "expected 1 input channels"),
        (torch.randn(1, 1, 12, 8), "divisible by 8"),
        (torch.ones(1, 1, 8, 8, dtype=torch.long), "floating-point"),
        (torch.full((1, 1, 8, 8), float("nan")), "NaN"),
    ],
)
def test_check_dense_input_errors(x, match):
    with pytest.raises(ValueError, match=match):
        check_dense_input(x, n_channels=1, n_dims=2, multiple=8, name="M")


def test_check_dense_input_accepts_valid():
    check_dense_input(torch.randn(2, 1, 4, 8, 8), n_channels=1, n_dims=3, multiple=4)


def test_check_dense_input_names_the_models_dtype():
    model = torch.nn.Conv2d(1, 2, 3)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"expected float32 input \(the model's dtype\), got float64"
    ):
        check_dense_input(x, n_channels=1, name="M", like=model)
    check_dense_input(x, n_channels=1, name="M", like=model.double())  # a float64 model: fine


@pytest.mark.parametrize("slug", [
    "unet", "ffnet", "guided_attention_seg", "hybridgnet", "m_sfanet", "maxim", "medfe",
    "medusa_med", "paratranscnn", "pls_net",
])  # fmt: skip
def test_dense_models_refuse_float64_images_with_one_line(slug):
    import archlab
    from archlab.registry import spec

    s = spec(slug)
    model = archlab.build(f"{slug}/tiny").eval()
    args = s.example_input(model, 1)
    bad = (args[0].double(),) + tuple(args[1:])
    with pytest.raises(ValueError, match="float32") as e:
        model(*bad)
    assert "\n" not in str(e.value)
