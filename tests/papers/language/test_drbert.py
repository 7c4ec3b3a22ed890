"""Invariants of DrBERT / BPDec (arXiv 2401.15861): the decoder is pretraining-only, Gradual
Unmasking Attention masks, output randomness, and the experiment's data."""

from __future__ import annotations

import random

import pytest
import torch

from archlab.baselines.bert import Bert
from archlab.data.text import grammar_sentence
from archlab.engine import seed_everything
from archlab.papers.language.drbert import (
    VARIANTS,
    BertClassifier,
    DrBert,
    DrBertConfig,
    draw_alpha,
    gua_key_masks,
    mix_outputs,
)
from archlab.papers.language.drbert.experiment import (
    PREPOSITIONS,
    VERBS,
    MaskedWindows,
    pp_attachment_sentences,
)

TINY = VARIANTS["tiny"]


def _ids(B: int = 2, T: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, TINY.bert.vocab_size, (B, T), generator=g)
    ids[:, 2::3] = TINY.mask_token_id
    return ids


# --------------------------------------------------------------------- the decoder is discarded
def test_finetuning_model_is_exactly_the_baseline_bert():
    seed_everything(0)
    base = Bert(TINY.bert)
    seed_everything(0)
    model = DrBert(TINY)
    enc = model.encoder()
    assert type(enc) is Bert
    # same parameter names, shapes and (built under one seed) values as the baseline
    sd_base, sd_enc = base.state_dict(), enc.state_dict()
    assert sd_base.keys() == sd_enc.keys()
    for k in sd_base:
        torch.testing.assert_close(sd_base[k], sd_enc[k], rtol=0, atol=0)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(enc) == n(base)
    assert n(model) == n(base) + sum(p.numel() for p in model.decoder.parameters())
    assert not any(n_.startswith("decoder.") for n_, _ in enc.named_parameters())
    # the fine-tuning classifier: same parameters either way, the MLM head not among them
    clf_base, clf_ours = BertClassifier(base, 3), BertClassifier(enc, 3)
    names = [n_ for n_, _ in clf_ours.finetune_parameters()]
    assert names == [n_ for n_, _ in clf_base.finetune_parameters()]
    assert not any("mlm_head" in n_ for n_ in names)
    # and the same function: identical outputs on identical weights
    clf_ours.load_state_dict(clf_base.state_dict())
    clf_base.eval(), clf_ours.eval()
    ids = _ids()
    torch.testing.assert_close(clf_base(ids), clf_ours(ids), rtol=0, atol=0)


def test_no_decoder_no_randomness_equals_bert():
    seed_everything(0)
    base = Bert(TINY.bert).eval()
    seed_everything(0)
    model = DrBert(DrBertConfig(bert=TINY.bert, n_decoder_layers=0)).train()
    model.bert.embed_dropout.p = 0.0  # compare without dropout in train mode
    base.embed_dropout.p = 0.0
    for m in (model.bert, base):
        for layer in m.encoder.layers:
            layer.dropout.p, layer.self_attn.dropout = 0.0, 0.0
    ids = _ids()
    torch.testing.assert_close(model(ids), base(ids), rtol=0, atol=0)


# ------------------------------------------------------------------- Gradual Unmasking Attention
def test_gua_masks_closed_form():
    is_masked = torch.tensor([[False, True, True, False, True, True]])
    u = torch.tensor([[0.9, 0.1, 0.4, 0.0, 0.6, 0.95]])
    masks = gua_key_masks(is_masked, (1 / 3, 2 / 3, 1.0), u)
    assert [m.shape for m in masks] == [(1, 1, 1, 6)] * 3
    got = [m[0, 0, 0].tolist() for m in masks]
    assert got[0] == [True, True, False, True, False, False]  # masked keys with u < 1/3
    assert got[1] == [True, True, True, True, True, False]  # ... u < 2/3
    assert got[2] == [True] * 6  # every key by the last layer
    # nested: once visible, a key stays visible; unmasked tokens are always visible
    for a, b in zip(masks, masks[1:]):
        assert bool((a <= b).all())
    assert all(bool(m[0, 0, 0][~is_masked[0]].all()) for m in masks)


def test_gua_default_schedule_and_visible_fraction():
    cfg = DrBertConfig(bert=TINY.bert, n_decoder_layers=4)
    assert cfg.visible_fractions == (0.25, 0.5, 0.75, 1.0)
    is_masked = torch.ones(1, 20_000, dtype=torch.bool)
    u = torch.rand(1, 20_000, generator=torch.Generator().manual_seed(0))
    for v, m in zip(cfg.visible_fractions, gua_key_masks(is_masked, cfg.visible_fractions, u)):
        assert abs(m.float().mean().item() - v) < 0.02
    with pytest.raises(ValueError, match="non-decreasing"):
        DrBertConfig(bert=TINY.bert, n_decoder_layers=2, gua_visible=(1.0, 0.5))
    with pytest.raises(ValueError, match="one fraction per decoder layer"):
        DrBertConfig(bert=TINY.bert, n_decoder_layers=2, gua_visible=(1.0,))


def test_gua_hidden_keys_do_not_influence_the_first_decoder_layer():
    """A masked position hidden at layer 0 contributes nothing to other positions there."""
    seed_everything(0)
    model = DrBert(DrBertConfig(bert=TINY.bert, n_decoder_layers=1, gua_visible=(0.0,))).eval()
    ids = _ids(1, 10)
    h = model.mlm_hidden(ids).encoder.detach()
    is_masked = ids == TINY.mask_token_id
    masks = gua_key_masks(is_masked, (0.0,), torch.full(ids.shape, 0.5))
    h2 = h.clone()
    h2[is_masked] += torch.randn_like(h2[is_masked])  # perturb the hidden masked keys
    layer = model.decoder[0]
    out, out2 = layer(h, attn_mask=masks[0]), layer(h2, attn_mask=masks[0])
    torch.testing.assert_close(out[~is_masked], out2[~is_masked])


# ------------------------------------------------------------------------------ output randomness
def test_output_mixing_is_convex_or_selection():
    h_enc, h_dec = torch.randn(4, 7, 8), torch.randn(4, 7, 8)
    g = torch.Generator().manual_seed(0)
    alpha = draw_alpha((4, 7), 1.0, "convex", g)
    assert bool(((alpha >= 0) & (alpha < 1)).all()) and alpha.std() > 0.1
    out = mix_outputs(h_enc, h_dec, alpha)
    torch.testing.assert_close(out, alpha[..., None] * h_enc + (1 - alpha[..., None]) * h_dec)
    sel = draw_alpha((4, 7), 0.5, "select", g)
    assert set(sel.unique().tolist()) <= {0.0, 1.0}
    out = mix_outputs(h_enc, h_dec, sel)
    pick = sel.bool()
    torch.testing.assert_close(out[pick], h_enc[pick], rtol=0, atol=0)
    torch.testing.assert_close(out[~pick], h_dec[~pick], rtol=0, atol=0)
    # probability p of a token being mixed at all
    big = draw_alpha((200, 100), 0.3, "select", g)
    assert abs(big.mean().item() - 0.3) < 0.02
    assert bool((draw_alpha((5, 5), 0.0, "convex", g) == 0).all())


def test_mlm_hidden_train_mixes_eval_uses_decoder():
    seed_everything(0)
    model = DrBert(DrBertConfig(bert=TINY.bert, n_decoder_layers=2, output_randomness=1.0))
    for m in model.modules():  # no dropout: only the mixing is random
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if hasattr(m, "dropout") and isinstance(m.dropout, float):
            m.dropout = 0.0
    ids = _ids()
    out = model.train().mlm_hidden(ids, generator=torch.Generator().manual_seed(1))
    # every token lies on the segment between its encoder and decoder outputs
    d = out.encoder - out.decoder
    alpha = ((out.hidden - out.decoder) * d).sum(-1) / (d * d).sum(-1)
    assert bool(((alpha > -1e-4) & (alpha < 1 + 1e-4)).all())
    torch.testing.assert_close(out.hidden, out.decoder + alpha[..., None] * d, atol=1e-5, rtol=0)
    ev = model.eval().mlm_hidden(ids)
    torch.testing.assert_close(ev.hidden, ev.decoder, rtol=0, atol=0)


# ------------------------------------------------------------------------------ experiment data
def test_grammar_word_classes_match_the_generator():
    rng = random.Random(0)
    for _ in range(300):
        words = grammar_sentence(rng).split()
        clauses = " ".join(words).split(" and ")
        for c in clauses:
            assert sum(w in VERBS for w in c.split()) == 1, c
        assert all(w in PREPOSITIONS for w in words if w in {"near", "under", "behind", "with"})


def test_pp_attachment_labels():
    texts, labels = pp_attachment_sentences(200, seed=0)
    assert sum(labels) == 100
    for t, y in zip(texts, labels):
        words = t.rstrip(".").lower().split()
        p = next(i for i, w in enumerate(words) if w in PREPOSITIONS)
        v = next(i for i, w in enumerate(words) if w in VERBS)
        assert y == int(p < v)
        # both classes use the same words: the label is not a bag-of-words property
    bags = [set(t.lower().rstrip(".").split()) for t in texts]
    assert any(b & PREPOSITIONS for b, y in zip(bags, labels) if y == 0)


def test_masked_windows_follow_bert_masking():
    stream = torch.randint(5, 50, (20_000,), generator=torch.Generator().manual_seed(0))
    x, labels = MaskedWindows(stream, 32, 50)(256, torch.Generator().manual_seed(1))
    assert x.shape == labels.shape == (256, 32)
    assert bool((x[:, 0] == 1).all()) and bool((labels[:, 0] == -100).all())
    sel = labels != -100
    assert abs(sel[:, 1:].float().mean().item() - 0.15) < 0.01
    masked = x[sel] == 4
    kept = x[sel] == labels[sel]
    assert abs(masked.float().mean().item() - 0.8) < 0.03
    assert abs(kept.float().mean().item() - 0.1) < 0.03
    assert bool((x[~sel] != 4).all())


# ------------------------------------------------------------------------------ mechanism tests
@torch.no_grad()
def test_mlm_hidden_runs_the_decoder_under_the_gua_masks_in_eval():
    """The model itself applies GUA: in eval every masked key takes the median draw u = 0.5, so
    with the default L = 2 schedule (1/2, 1) the masked keys are hidden from every query in
    decoder layer 0 and visible in layer 1. The decoder output is recomputed by hand from the
    layers with those key masks, and differs from a decoder without GUA."""
    seed_everything(0)
    model = DrBert(DrBertConfig(bert=TINY.bert, n_decoder_layers=2)).eval()
    assert model.cfg.visible_fractions == (0.5, 1.0)
    ids = _ids()
    out = model.mlm_hidden(ids)
    is_masked = ids == TINY.mask_token_id
    hidden_masked = (~is_masked)[:, None, None, :]  # (B, 1, 1, T): key visible iff unmasked
    expected = model.decoder[1](model.decoder[0](out.encoder, attn_mask=hidden_masked))
    torch.testing.assert_close(out.decoder, expected, rtol=1e-5, atol=1e-5)
    plain = model.decoder[1](model.decoder[0](out.encoder))
    assert (out.decoder - plain).abs().max() > 1e-3, "GUA must change the decoder output"
    torch.testing.assert_close(out.hidden, out.decoder, rtol=0, atol=0)


# ------------------------------------------------------------------------- protocol (issue 10)
def test_unigram_mlm_loss_is_the_smoothed_unigram_cross_entropy():
    from archlab.papers.language.drbert.experiment import N_SPECIAL, unigram_mlm_loss

    stream = torch.tensor([5, 5, 5, 6, 0, 1])  # specials are never predicted
    labels = torch.tensor([[5, -100, 6, 7]])
    # add-one counts over the non-special ids 5..7 of a vocabulary of 8: 4, 2, 1 (of 7)
    expected = -(torch.tensor([4 / 7, 2 / 7, 1 / 7], dtype=torch.float64).log().mean())
    got = unigram_mlm_loss(stream, N_SPECIAL + 3, (labels, labels))
    assert abs(got - float(expected)) < 1e-9


def test_every_arm_gets_the_same_lr_grid_and_no_latency_check():
    from archlab.papers.language.drbert.experiment import BUDGETS, Settings

    for s in BUDGETS.values():
        assert s.finetune.lr in s.lrs and s.n_val > 0
    assert "latency_tolerance" not in Settings.__dataclass_fields__
