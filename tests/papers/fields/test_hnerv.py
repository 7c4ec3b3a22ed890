"""HNeRV: encoder/embedding shapes, stored size and its budget solver, ConvNeXt pieces against
the official formulas, embedding interpolation, quantised evaluation, bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab.errors import ArchlabError
from archlab.papers.fields.hnerv import (
    VARIANTS,
    ConvNeXtBlock,
    HNeRV,
    HNeRVConfig,
    LayerNorm2d,
    interpolate_embeddings,
)
from archlab.papers.fields.hnerv import evaluation as ev


def tiny():
    torch.manual_seed(0)
    return archlab.build("hnerv/tiny").eval()


def test_shapes_embedding_and_decoder():
    model = tiny()
    x = torch.rand(3, 3, 16, 16)
    z = model.encode(x)
    assert z.shape == (3, 8, 2, 2)  # 16 / (4 * 2)
    out = model.decode(z)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    torch.testing.assert_close(model(x), out)
    base = HNeRV(HNeRVConfig())
    assert base.encode(torch.rand(1, 3, 64, 64)).shape == (1, 16, 2, 2)
    assert base.cfg.fc_hw == (1, 1) and base.decoder.widths[0] == base.cfg.fc_dim


def test_stored_size_is_decoder_plus_embeddings_not_encoder():
    cfg = HNeRVConfig(n_frames=10)
    model = HNeRV(cfg)
    decoder = sum(p.numel() for p in model.decoder.parameters())
    assert cfg.stored_size() == decoder + 10 * 16 * 2 * 2
    assert sum(p.numel() for p in model.parameters()) > cfg.stored_size()  # the encoder is extra


@pytest.mark.parametrize("target", [30_000, 40_000, 90_000])
def test_budget_solver_hits_the_target(target):
    cfg = HNeRVConfig(n_frames=48, lower_width=4).at_size(target)
    assert (
        cfg.stored_size() <= target < dataclasses.replace(cfg, fc_dim=cfg.fc_dim + 1).stored_size()
    )


def test_bunny_variant_is_the_official_1_5m_geometry():
    v = VARIANTS["bunny"]
    assert v.embed_hw == (2, 4) and v.n_embedding == 132 * 16 * 2 * 4  # 16x2x4 per frame
    assert dataclasses.replace(v, fc_dim=1).at_size(1_500_000) == v


def test_layernorm2d_is_the_official_channels_first_formula():
    torch.manual_seed(0)
    ln = LayerNorm2d(5)
    ln.weight.data.uniform_(0.5, 1.5)
    ln.bias.data.uniform_(-1, 1)
    x = torch.randn(2, 5, 3, 4)
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    ref = ln.weight[:, None, None] * (x - u) / torch.sqrt(s + 1e-6) + ln.bias[:, None, None]
    torch.testing.assert_close(ln(x), ref, rtol=1e-5, atol=1e-5)


def test_convnext_block_by_hand_and_layer_scale_init():
    torch.manual_seed(0)
    blk = ConvNeXtBlock(4)
    x = torch.randn(1, 4, 6, 6)
    assert (blk(x) - x).abs().max() < 1e-4  # layer scale 1e-6: identity at initialisation
    blk.gamma.data.fill_(0.7)
    y = F.conv2d(x, blk.dwconv.weight, blk.dwconv.bias, padding=3, groups=4).permute(0, 2, 3, 1)
    y = F.layer_norm(y, (4,), blk.norm.weight, blk.norm.bias, 1e-6)
    y = F.linear(F.gelu(F.linear(y, blk.pw1.weight, blk.pw1.bias)), blk.pw2.weight, blk.pw2.bias)
    torch.testing.assert_close(blk(x), x + 0.7 * y.permute(0, 3, 1, 2))


def test_embeddings_are_content_adaptive():
    model = tiny()
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    assert not torch.allclose(model.encode(a), model.encode(b))


def test_interpolate_embeddings_is_linear_between_neighbours():
    e = torch.arange(4.0).view(4, 1, 1, 1) * torch.ones(4, 2, 1, 1)
    torch.testing.assert_close(interpolate_embeddings(e, 1.5), torch.full((2, 1, 1), 1.5))
    torch.testing.assert_close(interpolate_embeddings(e, 3), e[3])
    torch.testing.assert_close(interpolate_embeddings(e, 0.25), torch.full((2, 1, 1), 0.25))
    with pytest.raises(ArchlabError, match="outside"):
        interpolate_embeddings(e, 3.5)


def test_held_out_frames_decode_the_mean_of_neighbour_embeddings_never_the_frame():
    model = tiny()
    frames = torch.rand(5, 3, 16, 16)
    seen, held = torch.tensor([0, 1, 3, 4]), torch.tensor([2])
    out = ev.interpolate(model, frames, seen, held)
    with torch.no_grad():
        ref = model.decode((model.encode(frames[1:2]) + model.encode(frames[3:4])) / 2)
    torch.testing.assert_close(out, ref)
    corrupted = frames.clone()
    corrupted[2] = 0.0
    torch.testing.assert_close(ev.interpolate(model, corrupted, seen, held), out)


def test_quantized_evaluation_counts_weights_and_embeddings():
    model = tiny()
    frames = torch.rand(5, 3, 16, 16)
    seen = torch.tensor([0, 1, 3, 4])
    q = ev.quantized(model, frames, seen)
    recon = ev.reconstruct(model, frames, seen)
    assert abs(q["psnr"] - archlab.lab.metrics.psnr(recon, frames[seen])) < 0.5
    n_symbols = sum(p.numel() for p in model.decoder.state_dict().values()) + 4 * 8 * 2 * 2
    assert 0 < q["bits"] < 8 * n_symbols + 16 * 1000
    assert q["bpp"] == pytest.approx(q["bits"] / (5 * 16 * 16))


def test_steps_to_reach():
    hist = [{"step": 10, "psnr": 20.0}, {"step": 20, "psnr": 25.0}]
    assert ev.steps_to_reach(hist, "psnr", 24.0) == 20
    assert ev.steps_to_reach(hist, "psnr", 30.0) == float("inf")


def test_bad_input_is_one_line():
    model = tiny()
    with pytest.raises(ArchlabError, match=r"expects frames \(B, 3, 16, 16\)") as e:
        model(torch.rand(1, 3, 16, 20))
    assert "\n" not in str(e.value)
    with pytest.raises(ArchlabError, match="divisible"):
        HNeRVConfig(frame_size=(60, 64))
    with pytest.raises(ArchlabError, match="multiple"):
        HNeRVConfig(enc_strides=(4, 2, 2, 2), dec_strides=(4, 4, 2, 2))
