"""FIT invariants: layout parsing, locality of local layers and read/write, far reach through the
latents, the (G*m)^2 global cost, shapes and bad input."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import archlab
from archlab.papers.vision.fit import FIT, FITConfig, parse_layout
from archlab.papers.vision.fit.experiment import (
    N_FILLERS,
    loglog_slope,
    pair_task,
    saved_activation_bytes,
    vocab_size,
)


def small(layout: str = "(1)1(1)", n_groups: int = 4, n_latents: int = 2, **kw) -> FITConfig:
    base = dict(
        layout=layout, n_groups=n_groups, group_size=8, n_latents=n_latents, d_input=6,
        d_model=16, d_latent=24, n_heads=2, n_latent_heads=4, n_classes=3,
    )  # fmt: skip
    base.update(kw)
    return FITConfig(**base)


@pytest.mark.parametrize(
    "layout, blocks",
    [
        ("(2)4(2)", ((2, 4), (2, 0))),
        ("(2)4(2)0", ((2, 4), (2, 0))),
        ("(2)4(2)4", ((2, 4), (2, 4))),
        ("(1)2(1)2(1)", ((1, 2), (1, 2), (1, 0))),
        ("(4)", ((4, 0),)),
        ("(0)3", ((0, 3),)),
        (" (2)4 (2) ", ((2, 4), (2, 0))),
    ],
)
def test_parse_layout(layout, blocks):
    assert parse_layout(layout) == blocks


@pytest.mark.parametrize("layout", ["", "2)4(2)", "(2)(2)", "(2)0(2)", "(a)4", "(2)4(", "(0)"])
def test_bad_layouts(layout):
    with pytest.raises(ValueError, match="layout"):
        parse_layout(layout)


def test_module_counts_follow_the_layout():
    model = FIT(small("(2)3(1)1(2)"))
    assert [len(x) for x in model.local_layers] == [2, 1, 2]
    assert [len(x) for x in model.global_layers] == [3, 1, 0]
    # read in every block with global layers; write in every such block but the last
    assert [type(m).__name__ for m in model.read] == ["CrossAttention"] * 2 + ["Identity"]
    assert [type(m).__name__ for m in model.write] == ["CrossAttention"] * 2 + ["Identity"]
    assert model.latent_pos_emb.shape == (4 * 2, 24)  # G*m latents of width D_l


def test_read_write_width_and_heads_follow_the_official_code():
    model = FIT(small())
    read, write = model.read[0].attn, model.write[0].attn
    assert read.n_heads == write.n_heads == 2  # min(n_heads, n_latent_heads)
    assert read.n_heads * read.d_head == 16  # min(d_model, d_latent)
    assert read.q_proj.in_features == 24 and read.k_proj.in_features == 16  # latents <- tokens
    assert write.q_proj.in_features == 16 and write.k_proj.in_features == 24  # tokens <- latents


def perturb_group(x: torch.Tensor, group: int, n: int) -> torch.Tensor:
    y = x.clone()
    y[:, group * n : (group + 1) * n] += torch.randn_like(y[:, group * n : (group + 1) * n])
    return y


def test_local_layer_outputs_of_a_group_do_not_depend_on_other_groups():
    torch.manual_seed(0)
    model = FIT(small("(2)1(1)")).eval()
    outs = []
    hook = model.local_layers[0][1].register_forward_hook(lambda m, i, o: outs.append(o))
    x = torch.randn(2, 32, 6)
    with torch.no_grad():
        model(x)
        model(perturb_group(x, 2, 8))
    hook.remove()
    a, b = (o.view(2, 4, 8, 16) for o in outs)  # (B, G, n, D)
    for g in (0, 1, 3):
        torch.testing.assert_close(a[:, g], b[:, g], rtol=0, atol=0)
    assert not torch.allclose(a[:, 2], b[:, 2])


def test_read_gives_each_group_latents_only_their_group():
    torch.manual_seed(0)
    model = FIT(small("(1)1(1)")).eval()
    outs = []
    hook = model.read[0].register_forward_hook(lambda m, i, o: outs.append(o))
    x = torch.randn(2, 32, 6)
    with torch.no_grad():
        model(x)
        model(perturb_group(x, 1, 8))
    hook.remove()
    a, b = (o.view(2, 4, 2, 24) for o in outs)  # (B, G, m, D_l)
    for g in (0, 2, 3):
        torch.testing.assert_close(a[:, g], b[:, g], rtol=0, atol=0)
    assert not torch.allclose(a[:, 1], b[:, 1])


def test_local_only_is_blind_to_other_groups_but_fit_reaches_them():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 6)
    y = perturb_group(x, 3, 8)
    local = FIT(small("(3)", pool="first")).eval()
    fit = FIT(small("(1)1(1)", pool="first")).eval()
    with torch.no_grad():
        torch.testing.assert_close(local(x), local(y), rtol=0, atol=0)
        assert not torch.allclose(fit(x), fit(y))
        tokens_x, _ = fit.encode(x)
        tokens_y, _ = fit.encode(y)
        assert not torch.allclose(tokens_x[:, :8], tokens_y[:, :8])  # group 0 sees group 3


def test_one_group_without_latents_is_full_attention():
    torch.manual_seed(0)
    full = FIT(small("(2)", n_groups=1, group_size=32, pool="first")).eval()
    assert full.latent_pos_emb is None
    x = torch.randn(1, 32, 6)
    with torch.no_grad():
        assert not torch.allclose(full(x), full(perturb_group(x, 3, 8)))


def attention_score_flops(model: FIT, x: torch.Tensor, part: str) -> int:
    """FLOPs of the attention matmuls (q k^T and weights @ v) inside modules named ``part``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    counter = FlopCounterMode(display=False)
    with sdpa_kernel([SDPBackend.MATH]), counter:
        model(x)
    total = 0
    for name, ops in counter.get_flop_counts().items():
        if part in name and name.endswith("self_attn"):
            total += sum(v for op, v in ops.items() if "bmm" in str(op) or "matmul" in str(op))
    return total


def test_global_attention_cost_scales_as_g_times_m_squared():
    costs = {}
    for G, m in [(4, 2), (4, 4), (8, 2), (8, 4)]:
        model = FIT(small("(1)1(1)", n_groups=G, n_latents=m))
        costs[G * m] = attention_score_flops(model, torch.randn(1, G * 8, 6), "global_layers")
    assert costs[8] > 0
    assert costs[16] == 4 * costs[8]  # (2 G m)^2 = 4 (G m)^2: doubling m or G
    assert costs[32] == 16 * costs[8]


def test_local_attention_cost_is_linear_in_the_number_of_groups():
    a = attention_score_flops(FIT(small("(1)", n_groups=4)), torch.randn(1, 32, 6), "local")
    b = attention_score_flops(FIT(small("(1)", n_groups=8)), torch.randn(1, 64, 6), "local")
    assert a > 0 and b == 2 * a  # G n^2, not (G n)^2


def test_encode_shapes_and_pools():
    x = torch.randn(3, 32, 6)
    model = FIT(small()).eval()
    tokens, latents = model.encode(x)
    assert tokens.shape == (3, 32, 16) and latents.shape == (3, 8, 24)
    for pool in ("first", "mean", "latents"):
        assert FIT(small(pool=pool))(x).shape == (3, 3)


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.randn(2, 30, 6), ValueError, "not divisible by group_size n=8"),
        (torch.randn(2, 40, 6), ValueError, "n_groups"),
        (torch.randn(2, 32, 5), ValueError, "C=6"),
        (torch.randn(32, 6), ValueError, "shape"),
        (torch.randn(2, 32, 6, dtype=torch.float64), TypeError, "dtype"),
        (torch.zeros(2, 32, 6, dtype=torch.long), TypeError, "dtype"),
    ],
)
def test_bad_input_is_one_clear_error(x, error, match):
    with pytest.raises(error, match=match):
        FIT(small())(x)


def test_bad_configs():
    with pytest.raises(ValueError, match="divisible"):
        small(d_model=15)
    with pytest.raises(ValueError, match="latents"):
        small("(2)", pool="latents")


def test_pair_task_needs_two_other_groups():
    x, y = pair_task(64, torch.Generator().manual_seed(0), 64, 4, 2)
    assert x.shape == (64, 64, vocab_size(2)) and y.max() < 4
    assert (x[:, 0].argmax(-1) == 0).all()  # the reader token
    marked = (x.argmax(-1) > N_FILLERS).nonzero()  # key and value tokens
    assert len(marked) == 2 * 64
    groups = (marked[:, 1] // 16).view(64, 2)
    assert (groups >= 1).all() and (groups[:, 0] != groups[:, 1]).all()


def test_memory_probe_sees_the_attention_matrix():
    torch.manual_seed(0)
    L = 512
    full = FIT(small("(2)", n_groups=1, group_size=L, pool="first"))
    fit = FIT(small("(1)1(1)", n_groups=L // 8, pool="first"))
    x = torch.randn(1, L, 6)
    full_bytes = saved_activation_bytes(full, x, materialize=True)
    assert full_bytes >= 2 * (2 * L * L * 4)  # two layers' (B, nh=2, L, L) float32 weights
    assert saved_activation_bytes(full, x, materialize=False) < full_bytes / 4  # fused: O(L)
    assert saved_activation_bytes(fit, x, materialize=True) < full_bytes / 2


def test_loglog_slope():
    assert loglog_slope([1, 2, 4, 8], [3, 12, 48, 192]) == pytest.approx(2.0)


def test_build_by_name():
    model = archlab.build("fit/tiny", n_latents=3)
    assert model.latent_pos_emb.shape[0] == 4 * 3


def test_cross_attention_matches_its_equation():
    """read/write: q + out(softmax(W_q LN(q) (W_k LN(kv))^T / sqrt(hd)) W_v LN(kv)), with the
    LayerNorm on the keys/values side too (the official use_enc_ln) and no MLP."""
    F = torch.nn.functional
    torch.manual_seed(0)
    model = FIT(small())
    read = model.read[0]
    with torch.no_grad():
        for norm in (read.query_norm, read.kv_norm):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    q, kv = torch.randn(3, 2, 24), torch.randn(3, 8, 16)
    a = read.attn
    with torch.no_grad():
        qn = F.layer_norm(q, (24,), read.query_norm.weight, read.query_norm.bias, 1e-6)
        kn = F.layer_norm(kv, (16,), read.kv_norm.weight, read.kv_norm.bias, 1e-6)

        def heads(t):
            return t.view(3, -1, 2, 8).transpose(1, 2)  # 2 heads of width 8

        Q, K, V = heads(a.q_proj(qn)), heads(a.k_proj(kn)), heads(a.v_proj(kn))
        att = (Q @ K.transpose(-2, -1) / 8**0.5).softmax(-1) @ V
        expected = q + a.out_proj(att.transpose(1, 2).reshape(3, 2, 16))
        torch.testing.assert_close(read(q, kv), expected, rtol=1e-5, atol=1e-5)


def test_write_gives_each_group_tokens_only_their_latents():
    """Perturb group 1's latents after the global layers: after write only group 1's tokens move."""
    torch.manual_seed(0)
    model = FIT(small("(1)1(1)")).eval()

    def bump(module, inputs, out):  # (B, G*m, D_l): latents 2..3 belong to group 1
        out = out.clone()
        out[:, 2:4] += torch.randn_like(out[:, 2:4])
        return out

    outs = []
    hook = model.write[0].register_forward_hook(lambda m, i, o: outs.append(o))
    x = torch.randn(2, 32, 6)
    with torch.no_grad():
        model(x)
        bumper = model.global_layers[0][-1].register_forward_hook(bump)
        model(x)
        bumper.remove()
    hook.remove()
    a, b = (o.view(2, 4, 8, 16) for o in outs)  # (B, G, n, D)
    for g in (0, 2, 3):
        torch.testing.assert_close(a[:, g], b[:, g], rtol=0, atol=0)
    assert not torch.allclose(a[:, 1], b[:, 1])


def test_pair_task_filler_ids_and_vocabulary():
    x, y = pair_task(32, torch.Generator().manual_seed(1), 64, 4, 3, n_fillers=4)
    assert x.shape == (32, 64, vocab_size(3, 4)) and y.max() < 9
    ids = x.argmax(-1)
    fillers = ids[(ids >= 1) & (ids <= 4)]
    assert len(fillers.unique()) == 4  # all four filler ids are used
    assert ((ids > 4).sum(1) == 2).all()  # one key and one value per sequence
