"""Encoder/decoder layers against torch.nn.Transformer{Encoder,Decoder}Layer; stacks and caches."""

import pytest
import torch
from torch import nn

from archlab.nn import (
    Decoder,
    DecoderLayer,
    Encoder,
    EncoderLayer,
    MultiHeadAttention,
    RMSNorm,
    RotaryEmbedding,
)

D, NH, FF = 16, 4, 32


def _copy_attention(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    wq, wk, wv = ref.in_proj_weight.chunk(3)
    bq, bk, bv = ref.in_proj_bias.chunk(3)
    for proj, w, b in [(ours.q_proj, wq, bq), (ours.k_proj, wk, bk), (ours.v_proj, wv, bv)]:
        proj.weight.copy_(w)
        proj.bias.copy_(b)
    ours.out_proj.load_state_dict(ref.out_proj.state_dict())


def _perturb(module: nn.Module) -> None:
    """Random norms and biases, so that a misplaced one shows."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.3)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch(norm_first):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(
        D, NH, FF, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first
    ).eval()
    _perturb(ref)
    ours = EncoderLayer(D, NH, FF, activation="gelu", norm_first=norm_first).eval()
    with torch.no_grad():
        _copy_attention(ours.self_attn, ref.self_attn)
        ours.ffn.fc1.load_state_dict(ref.linear1.state_dict())
        ours.ffn.fc2.load_state_dict(ref.linear2.state_dict())
        ours.self_attn_norm.load_state_dict(ref.norm1.state_dict())
        ours.ffn_norm.load_state_dict(ref.norm2.state_dict())
    x = torch.randn(2, 6, D)
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[1, 4:] = False
    expected = ref(x, src_key_padding_mask=~keep)
    torch.testing.assert_close(ours(x, padding_mask=keep)[keep], expected[keep], atol=1e-5, rtol=0)
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    expected = ref(x, src_mask=causal, is_causal=True)
    torch.testing.assert_close(ours(x, is_causal=True), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first):
    torch.manual_seed(0)
    ref = nn.TransformerDecoderLayer(
        D, NH, FF, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first
    ).eval()
    _perturb(ref)
    ours = DecoderLayer(D, NH, FF, activation="relu", norm_first=norm_first).eval()
    with torch.no_grad():
        _copy_attention(ours.self_attn, ref.self_attn)
        _copy_attention(ours.cross_attn, ref.multihead_attn)
        ours.ffn.fc1.load_state_dict(ref.linear1.state_dict())
        ours.ffn.fc2.load_state_dict(ref.linear2.state_dict())
        ours.self_attn_norm.load_state_dict(ref.norm1.state_dict())
        ours.cross_attn_norm.load_state_dict(ref.norm2.state_dict())
        ours.ffn_norm.load_state_dict(ref.norm3.state_dict())
    x, memory = torch.randn(2, 5, D), torch.randn(2, 7, D)
    memory_keep = torch.ones(2, 7, dtype=torch.long)
    memory_keep[0, 5:] = 0
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    expected = ref(
        x, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=memory_keep == 0
    )
    out = ours(x, memory, memory_padding_mask=memory_keep)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_pre_and_post_norm_differ_as_expected():
    torch.manual_seed(0)
    post = EncoderLayer(D, NH, FF, norm_first=False).eval()
    pre = EncoderLayer(D, NH, FF, norm_first=True).eval()
    pre.load_state_dict(post.state_dict())
    x = torch.randn(2, 5, D) * 5 + 3
    y_post, y_pre = post(x), pre(x)
    # post-norm ends with a fresh LayerNorm (weight 1, bias 0): every token is standardised
    torch.testing.assert_close(y_post.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y_post.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3, rtol=0)
    # pre-norm keeps the residual stream: the input's scale and offset survive
    assert y_pre.mean() > 1.0 and not torch.allclose(y_pre, y_post)
    attn = pre.self_attn(pre.self_attn_norm(x))
    h = x + attn
    torch.testing.assert_close(y_pre, h + pre.ffn(pre.ffn_norm(h)))


def test_parameter_names():
    names = set(DecoderLayer(D, NH, FF, norm_first=True).state_dict())
    for expected in [
        "self_attn.q_proj.weight",
        "self_attn.k_proj.bias",
        "self_attn.out_proj.weight",
        "self_attn_norm.weight",
        "cross_attn.v_proj.weight",
        "cross_attn_norm.bias",
        "ffn.fc1.weight",
        "ffn.fc2.bias",
        "ffn_norm.weight",
    ]:
        assert expected in names
    gpt_block = DecoderLayer(D, NH, FF, cross_attention=False)
    assert gpt_block.cross_attn is None and not any("cross" in n for n in gpt_block.state_dict())
    llama = EncoderLayer(D, NH, FF, glu=True, activation="silu", norm="rmsnorm", bias=False)
    assert {"ffn.gate_proj.weight", "ffn.up_proj.weight", "ffn.down_proj.weight"} <= set(
        llama.state_dict()
    )
    assert isinstance(llama.ffn_norm, RMSNorm) and llama.self_attn.q_proj.bias is None


def test_encoder_padding_does_not_leak():
    torch.manual_seed(0)
    enc = Encoder([EncoderLayer(D, NH, FF) for _ in range(2)], norm=nn.LayerNorm(D)).eval()
    x = torch.randn(1, 4, D)
    padded = torch.cat([x, torch.randn(1, 3, D)], dim=1)
    keep = torch.tensor([[1, 1, 1, 1, 0, 0, 0]])
    torch.testing.assert_close(enc(padded, padding_mask=keep)[:, :4], enc(x), atol=1e-5, rtol=0)


def _decoder(modern: bool) -> Decoder:
    torch.manual_seed(0)
    if modern:  # RoPE, GQA, RMSNorm, SwiGLU, pre-norm, attention width != D
        rope = RotaryEmbedding(8)
        layers = [
            DecoderLayer(
                D,
                NH,
                FF,
                d_memory=12,
                n_kv_heads=2,
                d_head=8,
                glu=True,
                activation="silu",
                norm="rmsnorm",
                norm_first=True,
                bias=False,
                rotary=rope,
            )
            for _ in range(2)
        ]
        return Decoder(layers, norm=RMSNorm(D)).eval()
    layers = [DecoderLayer(D, NH, FF, d_memory=12) for _ in range(2)]
    return Decoder(layers).eval()


@pytest.mark.parametrize("modern", [False, True])
def test_decoder_cache_and_reorder_equal_full_forward(modern):
    dec = _decoder(modern)
    x, memory = torch.randn(3, 6, D), torch.randn(3, 5, 12)
    memory_keep = torch.ones(3, 5, dtype=torch.long)
    memory_keep[2, 3:] = 0
    full = dec(x, memory, memory_padding_mask=memory_keep)
    cache = dec.new_cache()
    steps = [dec(x[:, :3], memory, memory_padding_mask=memory_keep, cache=cache)]
    for t in range(3, 6):
        steps.append(dec(x[:, t : t + 1], memory, memory_padding_mask=memory_keep, cache=cache))
    assert cache.length == 6
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)

    # beam search: reorder the rows, then continue; equals the full forward of the new rows
    order = torch.tensor([2, 0, 0])
    cache = dec.new_cache()
    dec(x[:, :4], memory, memory_padding_mask=memory_keep, cache=cache)
    cache.reorder(order)
    step = dec(x[order, 4:], memory[order], memory_padding_mask=memory_keep[order], cache=cache)
    expected = dec(x[order], memory[order], memory_padding_mask=memory_keep[order])[:, 4:]
    torch.testing.assert_close(step, expected, atol=1e-5, rtol=1e-5)


def test_decoder_layer_needs_memory():
    with pytest.raises(ValueError, match="pass memory"):
        DecoderLayer(D, NH, FF)(torch.randn(1, 2, D))


def test_training_gradients_are_finite_with_padding_and_dropout():
    torch.manual_seed(0)
    layers = [
        DecoderLayer(D, NH, FF, dropout=0.1, attn_dropout=0.1, activation_dropout=0.1)
        for _ in range(2)
    ]
    dec = Decoder(layers, norm=nn.LayerNorm(D)).train()
    x, memory = torch.randn(2, 5, D, requires_grad=True), torch.randn(2, 4, D)
    keep = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # left padding: fully masked rows
    y = dec(x, memory, padding_mask=keep, memory_padding_mask=torch.ones(2, 4))
    y[keep.bool()].sum().backward()
    for name, p in dec.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert torch.isfinite(x.grad).all()
