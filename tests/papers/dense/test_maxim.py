"""MAXIM: partition parity with timm, official parameter counts, block invariants, any-size
forward and bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import archlab
from archlab.papers.dense.maxim import (
    S1,
    VARIANTS,
    CrossGatingBlock,
    Maxim,
    MaximConfig,
    MultiAxisGmlpBlock,
    block_partition,
    block_reverse,
    grid_partition,
    grid_reverse,
)
from archlab.papers.dense.maxim.model import SpatialGatingUnit, n_params, partition

maxxvit = pytest.importorskip("timm.models.maxxvit")


@pytest.mark.parametrize("shape, size", [((2, 8, 12, 5), (4, 4)), ((3, 16, 8, 7), (4, 2)),
                                         ((1, 6, 6, 3), (3, 3))])  # fmt: skip
def test_partitions_equal_timm(shape, size):
    x = torch.randn(shape)
    H, W = shape[1:3]
    torch.testing.assert_close(block_partition(x, size), maxxvit.window_partition(x, list(size)))
    torch.testing.assert_close(grid_partition(x, size), maxxvit.grid_partition(x, list(size)))
    wins = maxxvit.window_partition(x, list(size))
    grids = maxxvit.grid_partition(x, list(size))
    torch.testing.assert_close(
        block_reverse(wins, size, (H, W)), maxxvit.window_reverse(wins, list(size), [H, W])
    )
    torch.testing.assert_close(
        grid_reverse(grids, size, (H, W)), maxxvit.grid_reverse(grids, list(size), [H, W])
    )
    assert torch.equal(block_reverse(block_partition(x, size), size, (H, W)), x)
    assert torch.equal(grid_reverse(grid_partition(x, size), size, (H, W)), x)


def test_grid_windows_are_dilated_and_span_the_image():
    """A grid window holds pixels H/d apart (global); a block window a contiguous b x b patch."""
    H = W = 8
    idx = torch.arange(H * W, dtype=torch.float32).view(1, H, W, 1)
    grid = grid_partition(idx, (4, 4))[0, ..., 0]  # window 0: offset (0, 0) of every cell
    assert grid.tolist()[0] == [0, 2, 4, 6] and grid[1, 0] == 2 * W
    block = block_partition(idx, (4, 4))[0, ..., 0]
    assert block.tolist()[0] == [0, 1, 2, 3] and block[1, 0] == W


def test_official_parameter_counts():
    """The official file's comments: MAXIM-S-1 6.108515M and M-1 19.361219M parameters (one
    supervision scale, the ``MAXIM`` default)."""
    assert n_params(Maxim(dataclasses.replace(S1, n_supervision_scales=1))) == 6_108_515
    m1 = MaximConfig(d_features=64, n_supervision_scales=1)
    assert n_params(Maxim(m1)) == 19_361_219


def test_spatial_gating_mixes_only_along_tokens():
    """u * (W LN(v) + b + 1): with W = 0, b = 0 the gate is the identity on u."""
    gate = SpatialGatingUnit(8, 4)
    torch.nn.init.zeros_(gate.spatial.weight)
    x = torch.randn(3, 4, 8)
    torch.testing.assert_close(gate(x), x[..., :4])


def test_local_head_is_local_and_grid_head_is_global():
    """A change in one block changes only that block in the local-only block, but reaches
    other blocks through the grid head."""
    torch.manual_seed(0)
    x = torch.randn(1, 8, 8, 4)
    y = x.clone()
    y[0, 0, 0, 0] += 1.0  # one channel of a pixel inside block (0, 0)
    for use_grid, leaks in ((False, False), (True, True)):
        torch.manual_seed(0)
        mab = MultiAxisGmlpBlock(4, (4, 4), (2, 2), use_grid=use_grid).eval()
        with torch.no_grad():
            diff = (mab(x) - mab(y)).abs().sum(-1)[0]  # (8, 8)
        outside = diff.clone()
        outside[:4, :4] = 0
        assert (outside.max() > 1e-6) == leaks


def test_local_ablation_keeps_the_size():
    a, b = Maxim(VARIANTS["mini"]), Maxim(VARIANTS["mini-local"])
    assert n_params(a) == n_params(b)


def test_cross_gating_shapes():
    cgb = CrossGatingBlock(12, 16, 8, (2, 2), (2, 2), upsample_y=True)
    x, y = cgb(torch.randn(2, 12, 8, 8), torch.randn(2, 16, 4, 4))
    assert x.shape == y.shape == (2, 8, 8, 8)


@pytest.mark.parametrize("hw", [(8, 8), (16, 24), (24, 40)])
def test_runs_at_any_size_divisible_by_the_multiple(hw):
    model = Maxim(dataclasses.replace(VARIANTS["tiny"], n_supervision_scales=2)).eval()
    assert model.cfg.multiple == (8, 8)
    x = torch.rand(2, 3, *hw)
    with torch.no_grad():
        outs = model.forward_scales(x)
    assert [o.shape[-2:] for o in outs] == [
        torch.Size([hw[0] // 2, hw[1] // 2]),
        torch.Size(hw),
    ]
    assert model(x).shape == x.shape


def test_mini_runs_at_two_sizes():
    model = Maxim(VARIANTS["mini"]).eval()
    with torch.no_grad():
        for hw in ((32, 32), (64, 96)):
            assert model(torch.rand(1, 3, *hw)).shape == (1, 3, *hw)


def test_residual_output_at_init_is_near_identity_plus_correction():
    """The output conv's result is added to the input (MAXIM predicts a correction)."""
    model = Maxim(VARIANTS["tiny"]).eval()
    for conv in model.output_convs.values():
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(1, 3, 12, 16), "divisible by"),
        (torch.rand(1, 3, 16, 20), "divisible by"),
        (torch.rand(1, 1, 16, 16), "3 input channels"),
        (torch.rand(3, 16, 16), "expected 2-D input"),
        (torch.rand(1, 3, 4, 16, 16), "expected 2-D input"),
        (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
    ],
)
def test_bad_input_is_one_clear_error(x, match):
    model = Maxim(VARIANTS["tiny"])
    with pytest.raises(ValueError, match=match):
        model(x)


def test_bad_configs():
    with pytest.raises(ValueError, match="n_supervision_scales"):
        MaximConfig(depth=2, n_supervision_scales=3)
    with pytest.raises(ValueError, match="block_size_hr"):
        MaximConfig(block_size_hr=(0, 4))


def test_partition_error_names_the_sizes():
    with pytest.raises(ValueError, match="6x8 is not divisible by 4x4"):
        partition(torch.randn(1, 6, 8, 2), (4, 4), "grid")


def test_build_by_name():
    model = archlab.build("maxim/tiny", use_grid=False)
    assert isinstance(model, Maxim) and not model.cfg.use_grid


def test_cross_gating_follows_the_papers_equations():
    """CGB (Fig. 4): X' = X * G(Y), Y' = Y * G(X) with G the multi-axis gating weights of the
    other stream, computed here from the block's own sub-layers on fixed weights; each output
    depends on the other stream. Swapping or dropping a gate fails this test."""
    from archlab.papers.dense.maxim.model import CrossGatingBlock, _gelu

    torch.manual_seed(0)
    cgb = CrossGatingBlock(6, 10, 8, (2, 2), (2, 2), upsample_y=True).eval()
    x, y = torch.randn(2, 6, 8, 8), torch.randn(2, 10, 4, 4)
    with torch.no_grad():
        out_x, out_y = cgb(x, y)
        x0 = cgb.conv_x(x).permute(0, 2, 3, 1)  # (B, H, W, d)
        y0 = cgb.conv_y(cgb.up_y(y)).permute(0, 2, 3, 1)
        xa = _gelu(cgb.in_project_x(cgb.norm_x(x0)))
        ya = _gelu(cgb.in_project_y(cgb.norm_y(y0)))
        gx, gy = cgb.gating_x(xa), cgb.gating_y(ya)
        y1 = y0 + cgb.out_project_y(ya * gx)  # Y gated by weights from X
        x1 = x0 + y1 + cgb.out_project_x(xa * gy)  # X gated by weights from Y, + Y'
        torch.testing.assert_close(out_y, y1.permute(0, 3, 1, 2))
        torch.testing.assert_close(out_x, x1.permute(0, 3, 1, 2))
        # cross dependence: Y' changes with X alone, X' with Y alone
        out_x2, out_y2 = cgb(x, y + 1.0)
        assert not torch.allclose(out_x2, out_x)
        out_x3, out_y3 = cgb(x + 1.0, y)
        assert not torch.allclose(out_y3, out_y)


def test_maxim_routes_its_skips_through_cross_gating():
    """With ``use_cross_gating`` every skip fuser is a CGB that the forward pass calls, and its
    output reaches the restored image (zeroing one CGB's output changes the result)."""
    from archlab.papers.dense.maxim.model import CrossGatingBlock

    torch.manual_seed(0)
    model = archlab.build("maxim/tiny").eval()
    cgbs = [m for m in model.modules() if isinstance(m, CrossGatingBlock)]
    assert cgbs, "the tiny MAXIM has no cross-gating block"
    calls = []
    hooks = [c.register_forward_hook(lambda m, i, o: calls.append(m)) for c in cgbs]
    x = torch.rand(1, model.cfg.n_channels, 16, 16)
    with torch.no_grad():
        ref = model(x)
    for h in hooks:
        h.remove()
    assert len(calls) == len(cgbs)
    hook = cgbs[0].register_forward_hook(lambda m, i, o: tuple(torch.zeros_like(t) for t in o))
    with torch.no_grad():
        zeroed = model(x)
    hook.remove()
    assert not torch.allclose(ref, zeroed)


def test_quick_miniature_grid_and_block_partitions_differ_everywhere():
    """At the quick budget's crop size, the grid and block partitions group different tokens at
    every scale where the grid branch acts (with b = d = 4 at 32x32 the 4x4 bottleneck is one
    block and one grid window: the two heads would see the same tokens)."""
    from archlab.papers.dense.maxim.experiment import BUDGETS, grid_block_sites, same_partition
    from archlab.papers.dense.maxim.model import MINI

    assert same_partition(4, (4, 4), (4, 4)) and not same_partition(8, (4, 4), (4, 4))
    assert not same_partition(4, (2, 2), (2, 2)) and same_partition(4, (1, 1), (1, 1))
    s = BUDGETS["quick"]
    sites = grid_block_sites(s.maxim, s.size)
    assert len(sites) == s.maxim.depth + 1
    assert not any(same_partition(side, b, g) for _, side, b, g in sites)
    assert any(same_partition(side, b, g) for _, side, b, g in grid_block_sites(MINI, 32))
