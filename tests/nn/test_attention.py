"""MultiHeadAttention against torch.nn.MultiheadAttention; GQA, KV cache, attention weights."""

import pytest
import torch
from torch import nn

from archlab.nn import (
    KVCache,
    MultiHeadAttention,
    RotaryEmbedding,
    attention_with_weights,
    make_attention_mask,
)

D, NH = 16, 4


def _copy_from_torch(ref: nn.MultiheadAttention, d_kv_input: int | None = None):
    mha = MultiHeadAttention(D, NH, d_kv_input=d_kv_input).eval()
    with torch.no_grad():
        if ref.in_proj_weight is not None:
            wq, wk, wv = ref.in_proj_weight.chunk(3)
        else:
            wq, wk, wv = ref.q_proj_weight, ref.k_proj_weight, ref.v_proj_weight
        bq, bk, bv = ref.in_proj_bias.chunk(3)
        for proj, w, b in [(mha.q_proj, wq, bq), (mha.k_proj, wk, bk), (mha.v_proj, wv, bv)]:
            proj.weight.copy_(w)
            proj.bias.copy_(b)
        mha.out_proj.load_state_dict(ref.out_proj.state_dict())
    return mha


def _torch_mha(kdim=None):
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(D, NH, batch_first=True, kdim=kdim, vdim=kdim).eval()
    with torch.no_grad():
        ref.in_proj_bias.normal_()
        ref.out_proj.bias.normal_()
    return ref


def test_self_attention_matches_torch_with_causal_and_padding():
    ref = _torch_mha()
    mha = _copy_from_torch(ref)
    x = torch.randn(3, 7, D)
    keep = torch.ones(3, 7, dtype=torch.long)
    keep[1, 5:] = 0  # right padding
    keep[2, :2] = 0  # left padding
    causal = torch.ones(7, 7, dtype=torch.bool).triu(1)  # torch: True = masked
    cases = [
        ({}, {}),
        ({"is_causal": True}, {"attn_mask": causal}),
        ({"padding_mask": keep}, {"key_padding_mask": keep == 0}),
        ({"padding_mask": keep, "is_causal": True}, {"key_padding_mask": keep == 0}),
    ]
    for ours, theirs in cases:
        if "padding_mask" in ours and "is_causal" in ours:
            theirs = {**theirs, "attn_mask": causal}
        expected, weights = ref(x, x, x, average_attn_weights=False, **theirs)
        valid = ~weights.isnan().any(-1).any(1)  # torch gives NaN rows where all keys are masked
        torch.testing.assert_close(mha(x, **ours)[valid], expected[valid], atol=1e-5, rtol=1e-5)
        out, ours_w = mha(x, need_weights=True, **ours)
        torch.testing.assert_close(out[valid], expected[valid], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours_w.transpose(1, 2)[valid], weights.transpose(1, 2)[valid])


def test_cross_attention_from_another_width_matches_torch():
    ref = _torch_mha(kdim=24)
    mha = _copy_from_torch(ref, d_kv_input=24)
    x, memory = torch.randn(2, 5, D), torch.randn(2, 9, 24)
    keep = torch.ones(2, 9, dtype=torch.bool)
    keep[0, 6:] = False
    expected, _ = ref(x, memory, memory, key_padding_mask=~keep)
    torch.testing.assert_close(mha(x, memory, padding_mask=keep), expected, atol=1e-5, rtol=1e-5)


def _gqa_pair(rotary=None):
    torch.manual_seed(0)
    gqa = MultiHeadAttention(D, NH, n_kv_heads=2, rotary=rotary).eval()
    mha = MultiHeadAttention(D, NH, rotary=rotary).eval()
    hd = D // NH
    state = dict(gqa.state_dict())
    for name in ["k_proj", "v_proj"]:  # query head h reads kv head h // 2
        w = state[f"{name}.weight"].view(2, hd, D).repeat_interleave(2, 0)
        state[f"{name}.weight"] = w.reshape(NH * hd, D)
        state[f"{name}.bias"] = state[f"{name}.bias"].view(2, hd).repeat_interleave(2, 0).flatten()
    mha.load_state_dict(state)
    return gqa, mha


@pytest.mark.parametrize("rotary", [None, RotaryEmbedding(D // NH)])
def test_grouped_query_equals_repeated_kv_heads(rotary):
    gqa, mha = _gqa_pair(rotary)
    assert gqa.k_proj.weight.shape == (2 * D // NH, D)
    x = torch.randn(2, 6, D)
    torch.testing.assert_close(gqa(x, is_causal=True), mha(x, is_causal=True), atol=1e-5, rtol=0)
    out, w = gqa(x, is_causal=True, need_weights=True)
    torch.testing.assert_close(out, mha(x, is_causal=True), atol=1e-5, rtol=0)


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_cached_incremental_decoding_equals_full_causal(n_kv_heads):
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, NH, n_kv_heads, rotary=RotaryEmbedding(D // NH)).eval()
    x = torch.randn(2, 8, D)
    keep = torch.ones(2, 8, dtype=torch.long)
    keep[1, :3] = 0  # left padding
    positions = (keep.cumsum(-1) - 1).clamp(min=0)
    full = mha(x, padding_mask=keep, is_causal=True, positions=positions)
    cache = KVCache()
    chunks = [(0, 4), (4, 5), (5, 6), (6, 8)]  # a prompt of 4, steps of 1, a chunk of 2
    outs = []
    for a, b in chunks:
        outs.append(
            mha(
                x[:, a:b],
                padding_mask=keep[:, :b],
                is_causal=True,
                positions=positions[:, a:b],
                cache=cache,
            )
        )
    assert cache.length == 8
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(full).all()  # fully masked padding queries give zeros, not NaN


def test_cross_attention_cache_is_filled_once():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, NH, d_kv_input=8).eval()
    x, memory = torch.randn(2, 3, D), torch.randn(2, 5, 8)
    cache = KVCache()
    first = mha(x, memory, cache=cache)
    k = cache.k
    again = mha(x, memory, cache=cache)
    assert cache.k is k and cache.length == 5
    torch.testing.assert_close(first, again)
    torch.testing.assert_close(first, mha(x, memory))


def test_kv_cache_reorder():
    cache = KVCache()
    k = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 2, 4, 5)
    cache.update(k, k + 10)
    cache.reorder(torch.tensor([2, 2, 0]))
    assert cache.k[:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0]
    assert cache.v[:, 0, 0, 0].tolist() == [12.0, 12.0, 10.0]


def test_weights_path_equals_sdpa_path():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    mask = torch.rand(2, 1, 5, 7) > 0.3
    mask[0, 0, 1] = False  # a query with no key at all
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, mask, enable_gqa=True)
    out, w = attention_with_weights(q, k, v, mask)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert w[0, :, 1].abs().sum() == 0 and out[0, :, 1].abs().sum() == 0
    torch.testing.assert_close(w.sum(-1)[1], torch.ones(4, 5))
    additive = torch.zeros(2, 1, 5, 7).masked_fill(~mask, float("-inf"))
    additive[0, 0, 1] = 0.0
    q2, k2 = q[:, :2], k[:, :2]
    expected = torch.nn.functional.scaled_dot_product_attention(q2, k2, k2, additive, scale=0.3)
    out, _ = attention_with_weights(q2, k2, k2, additive, scale=0.3)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    k5, v5 = k[:, :, :5], v[:, :, :5]  # square: is_causal has the same meaning as in SDPA
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k5, v5, is_causal=True, enable_gqa=True
    )
    out, w = attention_with_weights(q, k5, v5, is_causal=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert (w.triu(1) == 0).all()


def test_make_attention_mask_is_bottom_right_causal():
    mask, sdpa_causal = make_attention_mask(2, 5, is_causal=True)
    assert not sdpa_causal
    assert mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert make_attention_mask(4, 4, is_causal=True) == (None, True)  # SDPA's fast path
    assert make_attention_mask(1, 9, is_causal=True) == (None, False)  # one query sees all
    keep = torch.tensor([[0, 1, 1]])
    mask, _ = make_attention_mask(3, 3, keep, is_causal=True)
    assert mask.shape == (1, 1, 3, 3)
    assert mask[0, 0].int().tolist() == [[0, 0, 0], [0, 1, 0], [0, 1, 1]]
    with pytest.raises(ValueError, match=r"padding_mask must have shape \(B, S\) with S = 4"):
        make_attention_mask(1, 4, keep)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_kv_heads must be a positive divisor"):
        MultiHeadAttention(16, 4, n_kv_heads=3)
    with pytest.raises(ValueError, match="divisible by n_heads"):
        MultiHeadAttention(18, 4)
    mha = MultiHeadAttention(16, 4, d_head=8)  # attention width 32 != d_model
    assert mha(torch.randn(1, 2, 16)).shape == (1, 2, 16)
    with pytest.raises(ValueError, match="self-attention only"):
        mha(torch.randn(1, 2, 16), torch.randn(1, 3, 16), is_causal=True)


def test_fused_inference_path_tracks_weight_updates():
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 4, n_kv_heads=2)
    x = torch.randn(2, 5, 16)
    with torch.enable_grad():
        ref = attn(x, is_causal=True)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, is_causal=True), ref, rtol=1e-5, atol=1e-6)
        attn.k_proj.weight.add_(0.5)  # in-place update must invalidate the fused weight
        fused = attn(x, is_causal=True)
    with torch.enable_grad():
        unfused = attn(x, is_causal=True)
    torch.testing.assert_close(fused, unfused.detach(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(fused, ref.detach())
