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
