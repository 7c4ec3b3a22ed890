"""Invariants of AsCAN (arXiv 2411.04967): layouts as data, block structure, cost, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import archlab
from archlab.lab.profiling import count_flops
from archlab.nn import EncoderLayer
from archlab.papers.vision.ascan import (
    VARIANTS,
    AsCAN,
    AsCANConfig,
    FusedMBConv,
    TransformerBlock,
    is_asymmetric,
    parse_layout,
    reversed_layout,
    symmetric_layout,
)

TINY = VARIANTS["tiny"]


def test_layout_parsing():
    assert parse_layout("CC|CC|CT|TT") == ("CC", "CC", "CT", "TT")
    assert parse_layout(" cc | ct ") == ("CC", "CT")
    with pytest.raises(ValueError, match="stage 1 is empty"):
        parse_layout("CC||TT")
    with pytest.raises(ValueError, match="unknown block type"):
        parse_layout("CC|CX")
    with pytest.raises(TypeError, match="string"):
        parse_layout(["CC", "TT"])


def test_reversed_and_symmetric_layouts_of_the_paper():
    assert reversed_layout("CC|CC|CT|TT") == "TT|TC|CC|CC"
    assert reversed_layout(reversed_layout("CC|CCC|CT")) == "CC|CCC|CT"
    assert symmetric_layout("CC|CC|CT|TT") == "CT|CT|CT|CT"
    assert symmetric_layout("CCC|CCT|CTT|TTT") == "CCT|CCT|CCT|CCT"
    with pytest.raises(ValueError, match="equal depth"):
        symmetric_layout("CC|CCT")


def test_the_asymmetric_rule():
    assert is_asymmetric("CC|CC|CT|TT")
    assert is_asymmetric(AsCANConfig().layout)
    assert not is_asymmetric("CT|CT|CT|CT")  # C in the last stage, T in the first
    assert not is_asymmetric("TT|TC|CC|CC")  # reversed
    assert not is_asymmetric("CC|CC|TC|TT")  # T before C inside a stage
    assert not is_asymmetric("CC|CT|CC|TT")  # the C share rises again


def test_blocks_follow_the_layout():
    model = AsCAN(dataclasses.replace(TINY, layout="CT|TC|CC|TT"))
    kinds = [
        ["C" if isinstance(b, FusedMBConv) else "T" for b in stage.blocks] for stage in model.stages
    ]
    assert ["".join(k) for k in kinds] == ["CT", "TC", "CC", "TT"]
    t_block = model.stages[0].blocks[1]
    assert isinstance(t_block, TransformerBlock) and isinstance(t_block.layer, EncoderLayer)
    assert t_block.layer.norm_first and t_block.layer.self_attn.n_heads == 16 // TINY.d_head


def test_stage_resolutions_and_widths():
    model = AsCAN(TINY).eval()
    assert TINY.resolutions() == (16, 8, 4, 2)
    shapes = []
    x = model.stem(torch.rand(2, 3, 32, 32))
    for stage in model.stages:
        x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(16, 16, 16), (32, 8, 8), (48, 4, 4), (64, 2, 2)]


def test_fused_mbconv_starts_as_identity_and_expands_four_times():
    block = FusedMBConv(8, expansion=4.0).eval()
    assert block.conv_exp[0].out_channels == 32 and block.conv_exp[0].kernel_size == (3, 3)
    assert block.conv_pwl[0].kernel_size == (1, 1)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(block(x), x)


def test_same_blocks_and_widths_in_every_distribution():
    """Symmetric and reversed share the stem, widths and down-sampling with AsCAN."""
    a = AsCAN(VARIANTS["mini"])
    r = AsCAN(VARIANTS["mini_reversed"])
    assert VARIANTS["mini_reversed"].layout == reversed_layout(VARIANTS["mini"].layout)
    assert VARIANTS["mini_symmetric"].layout == symmetric_layout(VARIANTS["mini"].layout)
    for name in ("stem", "norm", "head"):
        assert sum(p.numel() for p in getattr(a, name).parameters()) == sum(
            p.numel() for p in getattr(r, name).parameters()
        )
    for sa, sr in zip(a.stages, r.stages):
        assert [p.shape for p in sa.downsample.parameters()] == [
            p.shape for p in sr.downsample.parameters()
        ]


def _flops(cfg: AsCANConfig) -> int:
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]):
        image = torch.rand(1, cfg.n_channels, cfg.image_size, cfg.image_size)
        return count_flops(AsCAN(cfg).eval(), image)


def test_attention_at_high_resolution_is_what_costs():
    """In the miniature's first stage (256 positions, 8 channels) a T block costs more than a
    C block: FLOPs rise from AsCAN to symmetric to reversed."""
    a, s, r = (_flops(VARIANTS[v]) for v in ("mini", "mini_symmetric", "mini_reversed"))
    assert a < s < r and a < 0.8 * r


def test_attention_flops_of_a_t_block():
    block = TransformerBlock(16, d_head=16, mlp_ratio=4.0).eval()
    x = torch.rand(1, 16, 8, 8)
    n, d = 64, 16
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]):
        flops = count_flops(block, x)
    assert flops == 2 * n * (4 * d * d + 2 * d * 4 * d) + 2 * 2 * n * n * d


def test_config_errors():
    with pytest.raises(ValueError, match="one width per stage"):
        AsCANConfig(layout="CC|TT", widths=(8, 16, 32))
    with pytest.raises(ValueError, match="divisible by d_head"):
        AsCANConfig(image_size=32, layout="CC|CT", widths=(16, 24), stem_stride=1, d_head=16)
    with pytest.raises(ValueError, match="total stride"):
        AsCANConfig(image_size=36, layout="CC|CC|CT|TT", widths=(8, 16, 32, 32), d_head=8)
    with pytest.raises(ValueError, match="power of two"):
        AsCANConfig(stem_stride=3)


def test_bad_inputs_raise_one_clear_error():
    model = archlab.build("ascan/tiny")
    with pytest.raises(ValueError, match="32x32"):
        model(torch.randn(2, 3, 64, 64))
    with pytest.raises(ValueError, match="channel"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(TypeError, match="dtype"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model(torch.randn(3, 32, 32))


def test_fused_mbconv_matches_its_equation():
    """x + BN(Conv1x1(GELU(BN(Conv3x3(x))))) on fixed weights and non-trivial BN statistics."""
    F = torch.nn.functional
    torch.manual_seed(0)
    block = FusedMBConv(4, expansion=2.0)
    for bn in (block.conv_exp[1], block.conv_pwl[1]):
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
    block.eval()
    x = torch.randn(2, 4, 5, 5)

    def bn(t, m):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    with torch.no_grad():
        h = F.gelu(bn(F.conv2d(x, block.conv_exp[0].weight, padding=1), block.conv_exp[1]))
        expected = x + bn(F.conv2d(h, block.conv_pwl[0].weight), block.conv_pwl[1])
        torch.testing.assert_close(block(x), expected)


def test_t_block_is_an_encoder_layer_over_positions_without_position_embedding():
    """The T block runs the encoder layer on the H*W tokens (row-major) and, with no position
    embedding, commutes with any permutation of the positions."""
    torch.manual_seed(0)
    block = TransformerBlock(16, d_head=8).eval()
    x = torch.randn(2, 16, 4, 4)
    with torch.no_grad():
        tokens = x.flatten(2).transpose(1, 2)
        expected = block.layer(tokens).transpose(1, 2).reshape(2, 16, 4, 4)
        torch.testing.assert_close(block(x), expected)
        perm = torch.randperm(16)
        out = block(x).flatten(2)[..., perm]
        permuted = x.flatten(2)[..., perm].reshape(2, 16, 4, 4)
        torch.testing.assert_close(block(permuted).flatten(2), out)


def test_t_block_attends_globally_and_c_block_locally():
    """A change at one corner moves the opposite corner's output after a T block (attention
    over all positions), never after a C block (3x3 receptive field)."""
    torch.manual_seed(0)
    t_block = TransformerBlock(8, d_head=8).eval()
    c_block = FusedMBConv(8)
    torch.nn.init.ones_(c_block.conv_pwl[1].weight)
    c_block.eval()
    x = torch.randn(1, 8, 6, 6)
    far = x.clone()
    far[..., 0, 0] += 3.0 * torch.randn(8)  # not a constant over channels: LN removes that
    with torch.no_grad():
        assert (t_block(far)[..., -1, -1] - t_block(x)[..., -1, -1]).abs().max() > 1e-4
        torch.testing.assert_close(c_block(far)[..., -1, -1], c_block(x)[..., -1, -1])
        assert (c_block(far)[..., 0, 0] - c_block(x)[..., 0, 0]).abs().max() > 1e-4


def test_head_is_layernorm_of_global_average_pool():
    F = torch.nn.functional
    torch.manual_seed(0)
    model = AsCAN(TINY).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x).mean((2, 3))
        d = TINY.widths[-1]
        pooled = F.layer_norm(feats, (d,), model.norm.weight, model.norm.bias, TINY.norm_eps)
        torch.testing.assert_close(model(x), model.head(pooled))


def test_cluttered_digits_paste_the_digit_among_fragments():
    from archlab.papers.vision.ascan.data import cluttered_digits

    digits = torch.zeros(3, 1, 28, 28)
    digits[:, :, 4:24, 4:24] = 1.0  # a solid square stands in for a digit
    plain = cluttered_digits(digits, torch.Generator().manual_seed(0), digit_size=20,
                             n_clutter=0, noise=0.0)  # fmt: skip
    assert plain.shape == (3, 1, 32, 32)
    # the resized square (about 14 x 14 of the 20 x 20 digit) appears once per image
    assert ((plain > 0.5).sum((1, 2, 3)) - 14 * 14).abs().max() <= 2 * 14 + 4
    a = cluttered_digits(digits, torch.Generator().manual_seed(1), n_clutter=3, noise=0.1)
    b = cluttered_digits(digits, torch.Generator().manual_seed(1), n_clutter=3, noise=0.1)
    assert torch.equal(a, b) and 0.0 <= a.min() and a.max() <= 1.0
    with pytest.raises(ValueError, match="digit_size"):
        cluttered_digits(digits, torch.Generator(), digit_size=40)
