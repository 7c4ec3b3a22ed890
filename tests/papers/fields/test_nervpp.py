"""NeRV++: the SCRB residual, the bilinear skip, the block's composition, stored size and its
budget solver, the ablation switches, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab.errors import ArchlabError
from archlab.papers.fields.hnerv import HNeRVConfig
from archlab.papers.fields.nervpp import SCRB, BilinearSkip, NeRVPP, NeRVPPBlock, NeRVPPConfig


def test_scrb_is_x_plus_gelu_pointwise_depthwise():
    torch.manual_seed(0)
    blk = SCRB(4, 3)
    x = torch.randn(2, 4, 5, 5)
    dw = F.conv2d(x, blk.depthwise.weight, blk.depthwise.bias, padding=1, groups=4)
    ref = x + F.gelu(F.conv2d(dw, blk.pointwise.weight, blk.pointwise.bias))
    torch.testing.assert_close(blk(x), ref)
    assert blk.depthwise.weight.shape == (4, 1, 3, 3)  # depthwise: one filter per channel
    blk.pointwise.weight.data.zero_()
    blk.pointwise.bias.data.zero_()
    torch.testing.assert_close(blk(x), x)  # the residual path


def test_bilinear_skip_is_bilinear_upsampling_then_projection():
    torch.manual_seed(0)
    skip = BilinearSkip(3, 5, 2)
    x = torch.randn(1, 3, 4, 6)
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(skip(x), F.conv2d(up, skip.proj.weight, skip.proj.bias))
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 3, 2, 4)
    vals = F.interpolate(ramp, scale_factor=2, mode="bilinear", align_corners=False)
    assert vals.unique().numel() > 4  # in-between values: bilinear, not nearest


def test_block_output_is_sandwiched_ub_plus_skip():
    torch.manual_seed(0)
    blk = NeRVPPBlock(6, 4, 3, 2)
    x = torch.randn(2, 6, 3, 3)
    out = blk(x)
    assert out.shape == (2, 4, 6, 6)
    torch.testing.assert_close(out, blk.post(blk.up(blk.pre(x))) + blk.skip(x))
    assert isinstance(blk.pre, SCRB) and isinstance(blk.post, SCRB)
    assert blk.pre.depthwise.in_channels == 6 and blk.post.depthwise.in_channels == 4


def test_ablation_switches_remove_the_mechanisms():
    no_skip = NeRVPPBlock(6, 4, 3, 2, bilinear_skip=False)
    assert no_skip.skip is None
    x = torch.randn(1, 6, 3, 3)
    torch.testing.assert_close(no_skip(x), no_skip.post(no_skip.up(no_skip.pre(x))))
    plain = NeRVPPBlock(6, 4, 3, 2, scrb=False, bilinear_skip=False)
    torch.testing.assert_close(plain(x), plain.up(x))  # HNeRV's block


def test_decoder_uses_the_nervpp_block_everywhere():
    model = archlab.build("nervpp/tiny")
    assert all(isinstance(b, NeRVPPBlock) for b in model.decoder.blocks)
    x = torch.rand(2, 3, 16, 16)
    assert model.encode(x).shape == (2, 8, 2, 2)
    assert model(x).shape == (2, 3, 16, 16)


@pytest.mark.parametrize("skip", [True, False])
def test_budget_solver_hits_the_target(skip):
    cfg = NeRVPPConfig(hnerv=HNeRVConfig(n_frames=48, lower_width=4), bilinear_skip=skip)
    solved = cfg.at_size(40_000)
    assert solved.stored_size() <= 40_000 < solved.with_fc_dim(solved.fc_dim + 1).stored_size()
    decoder = sum(p.numel() for p in NeRVPP(solved).decoder.parameters())
    assert solved.stored_size() == decoder + 48 * 16 * 2 * 2


def test_bad_input_is_one_line():
    model = archlab.build("nervpp/tiny")
    with pytest.raises(ArchlabError, match=r"expects frames \(B, 3, 16, 16\)"):
        model(torch.rand(1, 3, 32, 16))
    with pytest.raises(ArchlabError, match="odd"):
        NeRVPPConfig(scrb_kernel=4)
