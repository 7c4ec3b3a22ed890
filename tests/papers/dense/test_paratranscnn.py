"""ParaTransCNN: shapes and scales of the two branches, spatial-reduction attention, channel
attention fusion, the official layout's channel counts, and bad-input errors."""

from __future__ import annotations

import pytest
import torch

from archlab.papers.dense.paratranscnn import (
    VARIANTS,
    ParaTransCNN,
    ParaTransCNNConfig,
    PyramidTransformerLayer,
)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return ParaTransCNN(VARIANTS["tiny"]).eval()


def test_output_shape_any_size_divisible_by_16(tiny):
    for h, w in ((32, 32), (48, 64)):
        out = tiny(torch.rand(2, 1, h, w))
        assert out.shape == (2, 4, h, w) and torch.isfinite(out).all()


def test_branches_meet_at_the_same_scales(tiny):
    """Transformer stages at 1/4, 1/8, 1/16 (widths D, 2D, 4D) match the CNN's stages 2-4."""
    x = torch.rand(1, 1, 64, 64)
    cnn = tiny.cnn(x)
    v = x
    d = tiny.cfg.dim
    for i, (stage, feat) in enumerate(zip(tiny.vit, cnn[1:])):
        v = stage(v)
        assert v.shape[1] == d * 2**i and v.shape[-2:] == feat.shape[-2:]
    assert [f.shape[-1] for f in cnn] == [32, 16, 8, 4]


def test_official_channel_layout():
    """The decoder's channel counts of the official code at dim 320 and ResNet-34 widths."""
    cfg = ParaTransCNNConfig(depth=(1, 1, 1), cnn_depths=(1, 1, 1, 1))  # base is 245M params
    model = ParaTransCNN(cfg)
    D = 320
    assert model.se[0].fc1.in_channels == 4 * D + 512
    assert model.decoder2[0][0].in_channels == 4 * D + 512  # official DecoderBottleneckLayer
    assert model.decoder3[0][0].in_channels == D + 128 + 2 * D + 256
    assert model.up3.kernel_size == (4, 4) and model.up3.out_channels == D
    assert model.vit[0].embed.kernel_size == (4, 4)  # 2p with p = 2
    assert model.vit[2].layers[0].mlp.fc1.out_features == 2 * 4 * D  # mlp_dim = 8 dim


def test_spatial_reduction_attention_shrinks_keys_not_queries():
    torch.manual_seed(0)
    layer = PyramidTransformerLayer(16, 2, 32, sr_ratio=2, dropout=0.0, attn_dropout=0.0).eval()
    seen = {}
    layer.attn.register_forward_hook(lambda m, args, out: seen.update(q=args[0], kv=args[1]))
    x = torch.randn(2, 8 * 8, 16)
    y = layer(x, 8, 8)
    assert y.shape == x.shape
    assert seen["q"].shape[1] == 64 and seen["kv"].shape[1] == 16


def test_full_attention_layer_matches_a_plain_pre_norm_vit_block():
    """With sr = 1 the layer is the official ``TransformerModel`` block (pre-norm attention and
    GELU MLP, both residual)."""
    torch.manual_seed(0)
    layer = PyramidTransformerLayer(16, 4, 32, sr_ratio=1, dropout=0.0, attn_dropout=0.0).eval()
    x = torch.randn(2, 10, 16)
    a = layer.attn
    y = layer.norm1(x)
    q, k, v = (p(y).view(2, 10, 4, 4).transpose(1, 2) for p in (a.q_proj, a.k_proj, a.v_proj))
    att = (q @ k.transpose(-1, -2) / 2.0).softmax(-1)
    h = x + a.out_proj((att @ v).transpose(1, 2).reshape(2, 10, 16))
    ref = h + layer.mlp.fc2(torch.nn.functional.gelu(layer.mlp.fc1(layer.norm2(h))))
    torch.testing.assert_close(layer(x, 2, 5), ref, rtol=1e-5, atol=1e-5)


def test_channel_attention_only_rescales_channels(tiny):
    """SE fusion multiplies each channel by a gate in (0, 1), the same at every position."""
    se = tiny.se[2]
    x = torch.rand(2, se.fc1.in_channels, 4, 4) + 0.1
    ratio = se(x) / x
    assert ((ratio > 0) & (ratio < 1)).all()
    torch.testing.assert_close(ratio, ratio[..., :1, :1].expand_as(ratio))


def test_trains_one_step():
    model = ParaTransCNN(VARIANTS["tiny"])
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.rand(2, 1, 32, 32), torch.randint(0, 4, (2, 32, 32))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(1, 3, 32, 32), "expected 1 input channels"),
        (torch.rand(1, 1, 40, 32), "divisible by 16"),
        (torch.rand(1, 1, 8, 32, 32), "expected 2-D input"),
        (torch.full((1, 1, 32, 32), float("nan")), "NaN"),
    ],
)
def test_bad_input(tiny, x, match):
    with pytest.raises(ValueError, match=match):
        tiny(x)


def test_bad_config():
    with pytest.raises(ValueError, match="patch_size must be 2"):
        ParaTransCNNConfig(patch_size=4)
    with pytest.raises(ValueError, match="multiple of heads"):
        ParaTransCNNConfig(dim=30, heads=8)
    with pytest.raises(ValueError, match="sr_ratios"):
        ParaTransCNNConfig(sr_ratios=(1, 1))


def test_spatial_reduction_keys_are_the_normed_strided_conv_of_the_grid():
    """PVT's SRA: kv = LN(conv_{k=s=sr}(grid(norm1(x)))), the queries norm1(x) themselves."""
    torch.manual_seed(0)
    layer = PyramidTransformerLayer(8, 2, 16, sr_ratio=2, dropout=0.0, attn_dropout=0.0).eval()
    seen = {}
    layer.attn.register_forward_hook(lambda m, args, out: seen.update(q=args[0], kv=args[1]))
    x = torch.randn(1, 4 * 6, 8)
    with torch.no_grad():
        layer(x, 4, 6)
        y = layer.norm1(x)
        grid = y.transpose(1, 2).reshape(1, 8, 4, 6)
        kv = layer.sr_norm(layer.sr(grid).flatten(2).transpose(1, 2))
    torch.testing.assert_close(seen["q"], y)
    torch.testing.assert_close(seen["kv"], kv)


def test_parallel_fusion_and_decoder_follow_the_official_wiring():
    """From the two branches' outputs on fixed weights: f_s = SE(cat(transformer_s, CNN_s)) at
    1/16, 1/8, 1/4; h = up1(dec1(f16)); h = up2(dec2(cat(f8, h))); h = up3(dec3(cat(f4, h)));
    logits = head(h). Both branches reach the logits (dropping one fails this test)."""
    torch.manual_seed(0)
    model = ParaTransCNN(VARIANTS["tiny"]).eval()
    for m in model.modules():  # Kaiming: every scale's contribution well above the tolerance
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(m.weight)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        y = model(x)
        _, e2, e3, e4 = model.cnn(x)
        v1 = model.vit[0](x)
        v2 = model.vit[1](v1)
        v3 = model.vit[2](v2)
        f16, f8, f4 = (
            se(torch.cat([v, e], 1))
            for se, v, e in zip(model.se, (v3, v2, v1), (e4, e3, e2), strict=True)
        )
        h = model.up1(model.decoder1(f16))
        h = model.up2(model.decoder2(torch.cat([f8, h], 1)))
        h = model.up3(model.decoder3(torch.cat([f4, h], 1)))
        torch.testing.assert_close(y, model.head(h))
        hooks = [
            (model.cnn, lambda m, i, o, j=j: [t * 0 if k == j else t for k, t in enumerate(o)])
            for j in (1, 2, 3)
        ] + [(model.vit[2], lambda m, i, o: o * 0)]
        for module, fn in hooks:  # CNN stages 2-4 and the last transformer stage, one by one
            hook = module.register_forward_hook(fn)
            moved = model(x)
            hook.remove()
            assert (moved - y).abs().max() > 0.01


def test_cnn_only_ablation_drops_the_transformer_branch():
    """``use_transformer=False``: no transformer parameters, the fusions and the decoder see the
    CNN features alone (narrower by D, 2D, 4D), and the output equals the decoder applied to the
    CNN features."""
    import dataclasses

    cfg = dataclasses.replace(VARIANTS["tiny"], use_transformer=False)
    torch.manual_seed(0)
    model = ParaTransCNN(cfg).eval()
    w = cfg.cnn_widths
    assert len(model.vit) == 0
    assert [se.fc1.in_channels for se in model.se] == [w[3], w[2], w[1]]
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        y = model(x)
        _, e2, e3, e4 = model.cnn(x)
        h = model.up1(model.decoder1(model.se[0](e4)))
        h = model.up2(model.decoder2(torch.cat([model.se[1](e3), h], 1)))
        h = model.up3(model.decoder3(torch.cat([model.se[2](e2), h], 1)))
        torch.testing.assert_close(y, model.head(h))
    full = ParaTransCNN(VARIANTS["tiny"])
    assert sum(p.numel() for p in full.vit.parameters()) > 0


def test_quick_miniature_keeps_the_official_transformer_share():
    """The quick budget's ParaTransCNN gives the transformer about the official Synapse model's
    share of the parameters (22.7%), not the 2.8% of the first miniature."""
    from archlab.papers.dense.paratranscnn.experiment import (
        BUDGETS,
        OFFICIAL_TRANSFORMER_SHARE,
        transformer_share,
    )

    assert transformer_share(ParaTransCNN(ParaTransCNNConfig())) == pytest.approx(
        OFFICIAL_TRANSFORMER_SHARE, abs=5e-4
    )
    s = BUDGETS["quick"]
    lo, hi = s.share_range
    assert lo <= transformer_share(ParaTransCNN(s.paratranscnn)) <= hi
