"""NeRV baseline and the shared NeRV-family pieces: encoding, stem layout, PixelShuffle blocks,
width/kernel schedules, the parameter-budget solver, quantisation and bit counting."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab.baselines.nerv import (
    VARIANTS,
    NeRV,
    NeRVConfig,
    NeRVDecoder,
    PositionalEncoding,
    Stem,
    UpBlock,
    coded_bits,
    count_params,
    decoder_widths,
    huffman_code_lengths,
    kernel_sizes,
    quantize_module,
    quantize_tensor,
)
from archlab.errors import ArchlabError


def test_positional_encoding_by_hand():
    pe = PositionalEncoding(1.25, 4)
    t = torch.tensor([0.0, 0.3])
    out = pe(t)
    assert out.shape == (2, 8, 1, 1)
    for l in range(4):
        arg = 1.25**l * math.pi * 0.3
        assert out[1, l, 0, 0].item() == pytest.approx(math.sin(arg), abs=1e-6)
        assert out[1, 4 + l, 0, 0].item() == pytest.approx(math.cos(arg), abs=1e-6)
    assert torch.equal(out[0, :4].flatten(), torch.zeros(4))


def test_stem_reshape_matches_the_official_view_permute():
    """``B (C fh fw) h w -> B C (h fh) (w fw)``, as ``model_all.py``'s view/permute/reshape."""
    torch.manual_seed(0)
    stem = Stem(5, 3, (2, 4))
    z = torch.randn(2, 5, 3, 2)
    x = F.gelu(stem.proj(z))
    n, _, h, w = x.shape
    official = x.view(n, -1, 2, 4, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, -1, 2 * h, 4 * w)
    torch.testing.assert_close(stem(z), official)


def test_upblock_is_conv_pixelshuffle_gelu():
    torch.manual_seed(0)
    blk = UpBlock(4, 3, 3, 2)
    x = torch.randn(1, 4, 5, 6)
    assert blk(x).shape == (1, 3, 10, 12)
    ref = F.gelu(F.pixel_shuffle(F.conv2d(x, blk.conv.weight, blk.conv.bias, padding=1), 2))
    torch.testing.assert_close(blk(x), ref)


def test_schedules_are_the_official_ones():
    assert kernel_sizes((1, 5), 5) == [1, 3, 5, 5, 5]  # HNeRV ks 0_1_5
    assert kernel_sizes((3, 3), 4) == [3, 3, 3, 3]  # NeRV ks 0_3_3
    assert decoder_widths(67, 5, 1.2, 12) == [67, 56, 47, 39, 32, 27]
    assert decoder_widths(53, 4, 2.0, 12) == [53, 26, 13, 12, 12]


def test_decoder_output_size_is_grid_times_strides():
    dec = NeRVDecoder(8, 6, (2, 3), (2, 4), (1, 3), 1.5, 2)
    out = dec(torch.randn(2, 8, 1, 2))
    assert out.shape == (2, 3, 1 * 2 * 8, 2 * 3 * 8)
    assert 0 <= out.min() and out.max() <= 1


def test_nerv_forward_shapes_and_times():
    model = archlab.build("nerv/tiny")
    t = NeRV.frame_times(4)
    assert torch.equal(t, torch.tensor([0.0, 0.25, 0.5, 0.75]))
    assert model(t).shape == (4, 3, 16, 16)


@pytest.mark.parametrize("target", [20_000, 37_000, 61_000])
def test_budget_solver_hits_the_target(target):
    cfg = NeRVConfig(lower_width=4).at_size(target)
    size = cfg.n_params()
    assert size <= target < dataclasses.replace(cfg, fc_dim=cfg.fc_dim + 1).n_params()
    assert size == sum(p.numel() for p in NeRV(cfg).parameters())


def test_bunny_variant_is_the_1_5m_solution():
    v = VARIANTS["bunny"]
    assert dataclasses.replace(v, fc_dim=1).at_size(1_500_000) == v
    assert count_params(lambda: NeRV(v)) <= 1_500_000


def test_budget_below_the_smallest_model_is_an_error():
    with pytest.raises(ArchlabError, match="below the smallest model"):
        NeRVConfig().at_size(100)


def test_bad_geometry_and_input():
    with pytest.raises(ArchlabError, match="expected 64x64"):
        NeRVConfig(fc_hw=(3, 3))
    with pytest.raises(ArchlabError, match="shape \\(B,\\)"):
        archlab.build("nerv/tiny")(torch.zeros(2, 1))


def test_quantisation_round_trip_within_half_a_step():
    torch.manual_seed(0)
    for t in (torch.randn(7, 9), torch.randn(100, 3) * torch.linspace(0.1, 5, 3)):
        q = quantize_tensor(t, 8)
        assert q.symbols.dtype == torch.uint8 and int(q.symbols.max()) <= 255
        err = (q.dequantize() - t).abs()
        bound = q.scale.float().expand_as(t) / 2 + 1e-3 * t.abs().max()  # + float16 stats
        assert (err <= bound).all()
    const = torch.full((4, 4), 2.5)
    torch.testing.assert_close(quantize_tensor(const, 6).dequantize(), const)


def test_per_axis_statistics_win_when_rows_differ_in_scale():
    """A tensor with long rows of very different ranges: the per-row candidate is kept."""
    t = torch.randn(4, 200) * torch.tensor([[0.01], [1.0], [10.0], [100.0]])
    q = quantize_tensor(t, 6)
    assert q.t_min.numel() == 4
    per_tensor_err = (t - t.min()).div((t.max() - t.min()) / 63).round() * (
        (t.max() - t.min()) / 63
    ) + t.min()
    assert (q.dequantize() - t).abs().mean() < (per_tensor_err - t).abs().mean()


def test_huffman_lengths_and_bits():
    lengths = huffman_code_lengths({0: 5, 1: 2, 2: 1, 3: 1})
    assert lengths == {0: 1, 1: 2, 2: 3, 3: 3}
    assert sum(2.0**-n for n in lengths.values()) == 1.0  # a complete prefix code
    q = quantize_tensor(torch.randn(50, 60), 8)
    bits = coded_bits([q])
    assert bits["n_symbols"] == 3000
    assert bits["entropy_bits"] <= bits["huffman_bits"] <= bits["entropy_bits"] + 3000 + 16 * 2
    assert bits["huffman_bits"] < 8 * 3000 + 16 * q.n_stats  # a Gaussian codes below 8 bits


def test_quantize_module_keeps_the_output_close():
    model = archlab.build("nerv/tiny").eval()
    qmodel, tensors = quantize_module(model, 8)
    t = NeRV.frame_times(4)
    assert len(tensors) == len([p for p in model.state_dict().values() if p.is_floating_point()])
    assert (qmodel(t) - model(t)).abs().max() < 0.05


def test_closest_solver_takes_the_nearer_width():
    from archlab.baselines.nerv import solve_fc_dim

    sizes = {d: 100 * d for d in range(1, 50)}
    assert solve_fc_dim(sizes.__getitem__, 1_040, max_dim=49) == 10
    assert solve_fc_dim(sizes.__getitem__, 1_060, max_dim=49, closest=True) == 11
    assert solve_fc_dim(sizes.__getitem__, 1_040, max_dim=49, closest=True) == 10
