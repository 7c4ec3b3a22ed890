"""Invariants of Return of the Encoder (arXiv 2501.16273): models, KV caches, parameter matching,
the distillation loss and the keyword-extraction data."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.engine import seed_everything
from archlab.generate import generate
from archlab.papers.language.return_of_encoder import (
    DecoderOnlyLM,
    EncoderDecoderLM,
    KeywordTask,
    KeywordTaskConfig,
    MuConfig,
    build,
    count_parameters,
    distillation_loss,
    kd_objective,
    matched_decoder_only,
    n_parameters,
)
from archlab.papers.language.return_of_encoder.data import (
    BOS,
    EOS,
    N_SPECIAL,
    SEP,
    causal_logits_on_target,
    decoder_input,
)
from archlab.papers.language.return_of_encoder.experiment import BUDGETS, alternate
from archlab.papers.language.return_of_encoder.model import BASE, TINY, VARIANTS

QUICK, SMOKE = BUDGETS["quick"], BUDGETS["smoke"]


def _models(seed: int = 0) -> tuple[EncoderDecoderLM, DecoderOnlyLM]:
    seed_everything(seed)
    encdec = EncoderDecoderLM(TINY).eval()
    deconly = DecoderOnlyLM(matched_decoder_only(TINY)).eval()
    return encdec, deconly


def _source(B: int = 3, S: int = 20, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(N_SPECIAL, TINY.vocab_size, (B, S), generator=g)


# ---------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("name", ["tiny", "tiny_decoder_only"])
def test_analytic_parameter_count_matches_the_built_model(name):
    cfg = VARIANTS[name]
    assert n_parameters(cfg) == count_parameters(build(cfg))


@pytest.mark.parametrize(
    "cfg", [TINY, BASE, QUICK.student, SMOKE.student], ids=["tiny", "base", "quick", "smoke"]
)
def test_matched_decoder_only_has_the_same_parameter_count(cfg):
    dec = matched_decoder_only(cfg)
    assert dec.is_decoder_only
    assert dec.n_decoder_layers == cfg.n_encoder_layers + cfg.n_decoder_layers
    assert (dec.d_model, dec.d_attn, dec.n_heads, dec.n_kv_heads) == (
        cfg.d_model,
        cfg.d_attn,
        cfg.n_heads,
        cfg.n_kv_heads,
    )
    gap = abs(n_parameters(dec) - n_parameters(cfg)) / n_parameters(cfg)
    assert gap < 0.01
    # less than one MLP unit per layer apart
    assert abs(n_parameters(dec) - n_parameters(cfg)) <= dec.n_decoder_layers * (
        2 * cfg.d_model + 1
    )


def test_base_is_the_papers_330m_model():
    assert BASE.n_encoder_layers == 2 * BASE.n_decoder_layers  # the 2/3 : 1/3 split
    assert 325e6 < n_parameters(BASE) < 340e6


def test_experiment_models_are_matched_when_built():
    seed_everything(0)
    a = count_parameters(EncoderDecoderLM(QUICK.student))
    b = count_parameters(DecoderOnlyLM(matched_decoder_only(QUICK.student)))
    assert abs(a - b) / b < 0.01
    assert count_parameters(DecoderOnlyLM(QUICK.teacher)) > 2 * a  # a larger teacher


def test_embeddings_are_tied_and_bad_configs_raise():
    encdec, deconly = _models()
    names = [n for n, _ in encdec.named_parameters()]
    assert sum("embed" in n for n in names) == 1
    assert not any("lm_head" in n for n in names)
    with pytest.raises(ValueError):
        MuConfig(n_heads=6, n_kv_heads=4)
    with pytest.raises(ValueError):
        MuConfig(d_attn=30, n_heads=6)  # odd head width: no rotary pairs
    with pytest.raises(ValueError):
        EncoderDecoderLM(matched_decoder_only(TINY))
    with pytest.raises(ValueError):
        matched_decoder_only(matched_decoder_only(TINY))


# ---------------------------------------------------------------- KV caches and generate
def test_cached_generation_equals_uncached_encoder_decoder():
    encdec, _ = _models()
    src = _source()
    kw = dict(max_new_tokens=6, decoder_start_token_id=BOS)
    torch.testing.assert_close(
        generate(encdec, src, use_cache=True, **kw), generate(encdec, src, use_cache=False, **kw)
    )
    # with padding: right-padded sources and their mask
    mask = torch.ones_like(src)
    mask[0, -5:] = 0
    padded = src.masked_fill(mask == 0, 0)
    a = generate(encdec, padded, attention_mask=mask, use_cache=True, **kw)
    b = generate(encdec, padded, attention_mask=mask, use_cache=False, **kw)
    torch.testing.assert_close(a, b)
    alone = generate(encdec, src[:1, :-5], **kw)
    torch.testing.assert_close(a[:1], alone)  # padding is invisible


def test_cached_generation_equals_uncached_decoder_only():
    _, deconly = _models()
    src = _source()
    torch.testing.assert_close(
        generate(deconly, src, max_new_tokens=6, use_cache=True),
        generate(deconly, src, max_new_tokens=6, use_cache=False),
    )
    mask = torch.ones_like(src)
    mask[1, :4] = 0  # left padding
    a = generate(deconly, src, attention_mask=mask, max_new_tokens=6, use_cache=True)
    b = generate(deconly, src, attention_mask=mask, max_new_tokens=6, use_cache=False)
    torch.testing.assert_close(a, b)
    alone = generate(deconly, src[1:2, 4:], max_new_tokens=6)
    torch.testing.assert_close(a[1:2, 4:], alone)


@torch.no_grad()
def test_incremental_logits_equal_full_forward():
    encdec, deconly = _models()
    src = _source()
    dec_in = torch.cat([torch.full((3, 1), BOS), _source(3, 5, seed=2)], dim=1)  # (B, 6)
    full = encdec(src, dec_in)  # (B, 6, K)
    memory = encdec.encode(src)
    cache = encdec.new_cache()
    steps = [encdec.decode_step(dec_in[:, t : t + 1], memory, None, cache)[0] for t in range(6)]
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-5, atol=1e-5)

    seq = torch.cat([src, dec_in], dim=1)
    full = deconly(seq)
    cache = deconly.new_cache()
    P = src.shape[1]
    first, _ = deconly.forward_step(src, None, torch.arange(P).expand(3, -1), cache)
    torch.testing.assert_close(first, full[:, P - 1], rtol=1e-5, atol=1e-5)
    for t in range(6):
        pos = torch.full((3, 1), P + t)
        logits, _ = deconly.forward_step(dec_in[:, t : t + 1], None, pos, cache)
        torch.testing.assert_close(logits, full[:, P + t], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_cross_attention_kv_are_projected_once_and_the_cache_grows_with_the_output_only():
    encdec, deconly = _models()
    src = _source(S=30)
    calls = []
    hooks = [
        layer.cross_attn.k_proj.register_forward_hook(lambda *a: calls.append(1))
        for layer in encdec.decoder.layers
    ]
    memory = encdec.encode(src)
    cache = encdec.new_cache()
    tok = torch.full((3, 1), BOS)
    for _ in range(7):
        tok = encdec.decode_step(tok, memory, None, cache)[0].argmax(-1, keepdim=True)
    for h in hooks:
        h.remove()
    assert len(calls) == TINY.n_decoder_layers  # once per layer, not once per token
    assert cache.length == 7  # self-attention: output tokens only
    assert all(c.length == 30 for c in cache.cross_attn)

    cache = deconly.new_cache()
    deconly.forward_step(src, None, torch.arange(30).expand(3, -1), cache)
    assert cache.length == 30  # the decoder-only cache holds the whole input


# ---------------------------------------------------------------- distillation
def test_kd_with_a_one_hot_teacher_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(4, 5, 11, generator=g)
    targets = torch.randint(0, 11, (4, 5), generator=g)
    one_hot = 1e4 * F.one_hot(targets, 11).float()  # a teacher certain of the targets
    ce = F.cross_entropy(student.flatten(0, 1), targets.flatten())
    torch.testing.assert_close(distillation_loss(student, one_hot), ce)
    for alpha in (0.0, 0.9, 1.0):
        loss, kd, ce2 = kd_objective(student, one_hot, student, targets, alpha=alpha)
        torch.testing.assert_close(loss, ce)
    # temperature: tau**2 * KL(softmax(t/tau) || softmax(s/tau)) -> tau**2 * CE(s/tau)
    tau = 2.0
    ce_tau = F.cross_entropy(student.flatten(0, 1) / tau, targets.flatten()) * tau**2
    torch.testing.assert_close(distillation_loss(student, one_hot, temperature=tau), ce_tau)


def test_kd_is_zero_for_an_identical_teacher_and_respects_the_mask_and_shared_vocab():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 4, 9, generator=g)
    assert distillation_loss(s, s).abs() < 1e-6
    t = torch.randn(2, 4, 9, generator=g)
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]])
    full = F.kl_div(
        F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="none", log_target=True
    ).sum(-1)
    expected = (full * mask).sum() / mask.sum()
    torch.testing.assert_close(distillation_loss(s, t, mask), expected)
    # a teacher with a larger vocabulary is compared on the shared (first) tokens
    t_big = torch.cat([t, torch.randn(2, 4, 3, generator=g)], dim=-1)
    torch.testing.assert_close(distillation_loss(s, t_big), distillation_loss(s, t))


@torch.no_grad()
def test_teacher_logits_align_with_the_students_target_positions():
    """Teacher logits on [source; SEP; target] at SEP onwards predict target tokens 1..k+1."""
    _, deconly = _models()
    src = _source(2, 12)
    tgt = torch.tensor([[5, 6, EOS], [7, 8, EOS]])
    aligned = causal_logits_on_target(deconly, src, tgt)  # (B, 3, K)
    prompt = torch.cat([src, torch.full((2, 1), SEP)], dim=1)
    cache = deconly.new_cache()
    P = prompt.shape[1]
    first, _ = deconly.forward_step(prompt, None, torch.arange(P).expand(2, -1), cache)
    torch.testing.assert_close(aligned[:, 0], first, rtol=1e-5, atol=1e-5)
    nxt, _ = deconly.forward_step(tgt[:, :1], None, torch.full((2, 1), P), cache)
    torch.testing.assert_close(aligned[:, 1], nxt, rtol=1e-5, atol=1e-5)
    assert decoder_input(tgt).tolist() == [[BOS, 5, 6], [BOS, 7, 8]]


# ---------------------------------------------------------------- data and helpers
def test_keyword_summaries_are_the_top_k_tokens_by_count():
    cfg = KeywordTaskConfig(n_symbols=10, n_source=40, k=3, min_gap=2)
    src, tgt = KeywordTask(cfg).sample(200, torch.Generator().manual_seed(0))
    assert src.shape == (200, 40) and tgt.shape == (200, 4)
    assert bool((tgt[:, -1] == EOS).all())
    assert int(src.min()) >= N_SPECIAL and int(src.max()) < cfg.vocab_size
    counts = F.one_hot(src - N_SPECIAL, cfg.n_symbols).sum(1)  # (B, n_symbols)
    top = counts.sort(-1, descending=True).values[:, : cfg.k + 1]
    assert bool((top[:, :-1] - top[:, 1:] >= 2).all())
    picked = counts.gather(1, tgt[:, :-1] - N_SPECIAL)
    torch.testing.assert_close(picked, top[:, : cfg.k])
    again = KeywordTask(cfg).sample(200, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], src) and torch.equal(again[1], tgt)


def test_alternate_timing_returns_medians():
    values = iter([1.0, 2.0] + [1.0, 3.0, 5.0, 2.0, 1.5, 4.0])  # warm-up, then a b, b a, a b
    a, b = alternate(lambda: next(values), lambda: next(values), 3)
    assert (a, b) == (1.5, 4.0)


# ---------------------------------------------------------------- error paths
V = TINY.vocab_size
OUT_OF_RANGE = rf"token ids in \[0, {V - 1}\] \(vocab_size {V}\)"


def _bad(x: torch.Tensor, value: int) -> torch.Tensor:
    y = x.clone()
    y[-1, -1] = value
    return y


def _bad_calls(value: int) -> dict:
    """Every way a token id reaches the models: forward, encode/decode, cached steps, generate."""
    encdec, deconly = _models()
    src = _source()
    dec_in = torch.cat([torch.full((3, 1), BOS), _source(3, 4, seed=2)], dim=1)
    positions = torch.arange(src.shape[1]).expand(3, -1)
    return {
        "encdec_source": lambda: encdec(_bad(src, value), dec_in),
        "encdec_target": lambda: encdec(src, _bad(dec_in, value)),
        "encode": lambda: encdec.encode(_bad(src, value)),
        "decode_step": lambda: encdec.decode_step(
            _bad(dec_in[:, :1], value), encdec.encode(src), None, encdec.new_cache()
        ),
        "generate_source": lambda: generate(
            encdec, _bad(src, value), max_new_tokens=2, decoder_start_token_id=BOS
        ),
        "generate_start_id": lambda: generate(
            encdec, src, max_new_tokens=2, decoder_start_token_id=value
        ),
        "deconly_forward": lambda: deconly(_bad(src, value)),
        "forward_step": lambda: deconly.forward_step(_bad(src, value), None, positions, None),
        "generate_prompt": lambda: generate(deconly, _bad(src, value), max_new_tokens=2),
    }


@pytest.mark.parametrize("case", list(_bad_calls(V)))
@pytest.mark.parametrize("value", [-1, V, V + 7], ids=["negative", "vocab_size", "above"])
@torch.no_grad()
def test_token_ids_outside_the_vocabulary_raise_a_value_error(case, value):
    assert _bad_calls(BOS)[case]() is not None  # in range: fine
    expected = OUT_OF_RANGE
    if value < 0 and case.startswith("generate"):
        expected = ">= 0; got -1"  # archlab.generate refuses negative ids before the model
    elif case.startswith("generate"):  # ... and ids past the vocabulary its cfg states
        expected = rf"token id {value}, outside the model's vocabulary of {V}"
    with pytest.raises(ValueError, match=expected):
        _bad_calls(value)[case]()


def test_source_and_target_batches_must_match():
    encdec, _ = _models()
    src = _source(B=1)
    dec_in = torch.cat([torch.full((2, 1), BOS), _source(2, 4, seed=2)], dim=1)  # batch 2
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"target batch \(2 rows.*source batch \(1 rows"):
            encdec(src, dec_in)
        with pytest.raises(ValueError, match=r"target batch \(2 rows.*source batch \(1 rows"):
            encdec.decode_step(dec_in[:, :1], encdec.encode(src), None, encdec.new_cache())
        with pytest.raises(ValueError, match=r"target batch \(1 rows.*source batch \(2 rows"):
            encdec(_source(B=2), dec_in[:1])
        assert encdec(_source(B=2), dec_in).shape == (2, 5, V)  # matching batches: fine


def test_experiment_arms_and_budgets():
    assert set(BUDGETS) == {"smoke", "quick"}  # no full budget: the paper's scale is not run
    for s in BUDGETS.values():
        assert s.recipe.optimizer == "adamw" and s.recipe.grad_clip == 1.0
        assert s.s_check in s.lengths and s.student.vocab_size == s.task.vocab_size
        assert s.teacher.vocab_size == s.task.vocab_size and s.teacher.is_decoder_only


# ---------------------------------------------------------------- positions (mechanism tests)
def _without_rotary(model: torch.nn.Module) -> torch.nn.Module:
    """The ablation: every attention's rotary removed (attention sees no positions)."""
    import copy

    model = copy.deepcopy(model)
    for module in model.modules():
        if hasattr(module, "rotary"):
            module.rotary = None
    return model


@torch.no_grad()
def test_encoder_rope_makes_the_encoder_read_token_order():
    """RoPE in the encoder's self-attention: permuting the source does not just permute the
    encoder's output (without positions the encoder is permutation-equivariant)."""
    encdec, _ = _models()
    src = _source()
    perm = torch.randperm(src.shape[1], generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(encdec.encode(src[:, perm]), encdec.encode(src)[:, perm], atol=1e-4)
    ablated = _without_rotary(encdec)
    torch.testing.assert_close(
        ablated.encode(src[:, perm]), ablated.encode(src)[:, perm], rtol=1e-5, atol=1e-5
    )


@torch.no_grad()
def test_decoder_rope_makes_the_last_position_read_the_prefix_order():
    """RoPE in the decoder's causal self-attention: the last position's logits change when the
    earlier decoder tokens are shuffled (without positions causal attention at the last
    position is a set function of the prefix)."""
    encdec, _ = _models()
    memory = encdec.encode(_source())
    body = _source(3, 5, seed=2)
    last = _source(3, 1, seed=3)
    a = torch.cat([torch.full((3, 1), BOS), body, last], dim=1)
    b = torch.cat([torch.full((3, 1), BOS), body.flip(1), last], dim=1)
    diff = (encdec.decode(a, memory)[:, -1] - encdec.decode(b, memory)[:, -1]).abs().max()
    assert diff > 1e-5, diff  # 6e-8 without rotary (float rounding)
    ablated = _without_rotary(encdec)
    torch.testing.assert_close(
        ablated.decode(a, memory)[:, -1], ablated.decode(b, memory)[:, -1], rtol=1e-5, atol=1e-5
    )


@torch.no_grad()
def test_cross_attention_has_no_positions():
    """Cross-attention reads the encoder output as a set: permuting the memory (with its
    padding mask) leaves every decoder logit unchanged."""
    encdec, _ = _models()
    src = _source(S=12)
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[0, 9:] = 0
    memory = encdec.encode(src, mask)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    dec_in = torch.cat([torch.full((3, 1), BOS), _source(3, 5, seed=2)], dim=1)
    torch.testing.assert_close(
        encdec.decode(dec_in, memory[:, perm], mask[:, perm]),
        encdec.decode(dec_in, memory, mask),
        rtol=1e-5,
        atol=1e-5,
    )


# ------------------------------------------------------------------------- protocol (issue 10)
def test_chosen_rows_is_the_kept_candidates_curve():
    from archlab.papers.language.return_of_encoder.experiment import chosen_rows

    rows = [{"step": 100 * (i % 3 + 1), "lr": lr} for lr in (1, 2, 3) for i in range(3)]
    assert [r["lr"] for r in chosen_rows(rows, (1.0, 2.0, 3.0), 2.0)] == [2, 2, 2]
    assert [r["step"] for r in chosen_rows(rows, (1.0, 2.0, 3.0), 3.0)] == [100, 200, 300]


def test_the_trivial_predictor_emits_the_most_common_summary():
    from archlab.papers.language.return_of_encoder.experiment import most_common_summary_match

    task = KeywordTask(KeywordTaskConfig(n_symbols=4, n_source=16, k=1))
    _, summaries = task.sample(500, torch.Generator().manual_seed(0))
    values, counts = torch.unique(summaries, dim=0, return_counts=True)
    target = torch.stack([values[counts.argmax()], values[counts.argmin()]])
    em = most_common_summary_match(task, torch.Generator().manual_seed(0), 500, target)
    assert em == 0.5


def test_latency_is_checked_at_a_long_input_and_both_arms_share_the_lr_grid():
    quick = BUDGETS["quick"]
    assert quick.s_check == max(quick.lengths) >= 1024 and min(quick.lengths) <= 64
    assert quick.recipe.lr in quick.lrs and len(quick.lrs) >= 2 and quick.n_replicates >= 3
