"""U-Net baseline: shapes in 2-D/3-D, skip connections matter, input validation."""

import pytest
import torch

import archlab
from archlab.baselines.unet import UNet, UNetConfig, n_params


@pytest.mark.parametrize("n_dims", [2, 3])
@pytest.mark.parametrize("block", ["double_conv", "residual"])
@pytest.mark.parametrize("upsample", ["transpose", "interp"])
def test_output_size_equals_input_size(n_dims, block, upsample):
    cfg = UNetConfig(
        n_channels=2, n_outputs=3, widths=(4, 8, 16), n_dims=n_dims, block=block, upsample=upsample
    )
    model = UNet(cfg).eval()
    x = torch.randn(2, 2, *(8,) * n_dims)
    assert model(x).shape == (2, 3, *(8,) * n_dims)
    assert [f.shape[-1] for f in model.features(x)] == [8, 4, 2]


def test_paper_channel_count():
    # Ronneberger et al.: 64..1024 channels, ~31M parameters (with 2 output classes)
    assert 30e6 < n_params(archlab.build("unet/paper")) < 32e6


def test_skip_connections_carry_fine_detail():
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=(4, 8, 16))).eval()
    x = torch.randn(1, 1, 16, 16)
    y = x.clone()
    y[..., 0, 0] += 1.0  # one pixel changes: the full-resolution skip must see it
    assert not torch.allclose(model(x)[..., 0, 0], model(y)[..., 0, 0])


def test_residual_output_adds_the_input():
    model = UNet(UNetConfig(n_channels=1, n_outputs=1, widths=(4, 8), residual_output=True))
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(model(x), x)


def test_bad_inputs():
    model = UNet(UNetConfig(widths=(4, 8, 16)))
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.randn(1, 1, 10, 8))
    with pytest.raises(ValueError, match="expected 2-D input"):
        model(torch.randn(1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match="expected 1 input channels"):
        model(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="residual_output"):
        UNetConfig(n_outputs=2, residual_output=True)


def test_monai_basic_unet_is_monai_as_is_and_checks_its_input():
    monai_nets = pytest.importorskip("monai.networks.nets")
    from archlab.baselines.unet import MonaiBasicUNet

    torch.manual_seed(0)
    ours = MonaiBasicUNet(2, 1, 3, features=(8, 8, 16, 32, 64, 8))
    ref = monai_nets.BasicUNet(
        spatial_dims=2, in_channels=1, out_channels=3, features=(8, 8, 16, 32, 64, 8),
        norm=("instance", {"affine": True}),
    )  # fmt: skip
    ref.load_state_dict(ours.net.state_dict())
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(ours(x), ref(x))
    with pytest.raises(ValueError, match="16"):
        ours(torch.randn(2, 1, 30, 32))
    with pytest.raises(ValueError, match="6 widths"):
        MonaiBasicUNet(2, 1, 3, features=(8, 16))
