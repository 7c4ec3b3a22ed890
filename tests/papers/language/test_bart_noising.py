"""BART's noising functions (arXiv 1910.13461, section 2.2), as fairseq's DenoisingDataset."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch

from archlab.papers.language.bart.noising import (
    PAPER_SCHEMES,
    Noiser,
    document_rotation,
    insert_masks,
    mask_spans,
    n_maskable,
    paper_noiser,
    poisson_probabilities,
    sample_span_lengths,
    sentence_permutation,
    text_infilling,
    token_deletion,
    token_masking,
)

BOS, EOS, MASK, STOP = 1, 2, 4, 9
V = 60


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _doc(n: int = 40) -> torch.Tensor:
    """``<s> 10 11 ... </s>``: n distinct inner tokens, so every token can be traced."""
    return torch.tensor([BOS, *range(10, 10 + n), EOS])


def _sentences_doc() -> torch.Tensor:
    """Four sentences of different lengths, each ending with the full stop ``STOP``."""
    sentences = [[10, 11, STOP], [12, 13, 14, STOP], [15, STOP], [16, 17, 18, 19, STOP]]
    return torch.tensor([BOS, *(t for s in sentences for t in s), EOS])


def _is_subsequence(small: list[int], big: list[int]) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def _ends_kept(out: torch.Tensor) -> bool:
    return int(out[0]) == BOS and int(out[-1]) == EOS and not (out[1:-1] == EOS).any()


# ---------------------------------------------------------------------------- token masking
def test_token_masking_masks_the_ratio_in_place():
    doc = _doc(40)
    for seed in range(20):
        out = token_masking(doc, _gen(seed), 0.3)
        assert out.shape == doc.shape and _ends_kept(out)
        masked = out == MASK
        assert int(masked.sum()) == math.ceil(0.3 * 40)
        assert torch.equal(out[~masked], doc[~masked])  # the rest is untouched


def test_token_masking_random_replacement():
    doc = _doc(40)
    n_random = n_corrupted = 0
    for seed in range(300):
        out = token_masking(doc, _gen(seed), 0.3, random_ratio=0.2, vocab_size=V)
        corrupted = out != doc
        random = corrupted & (out != MASK)
        assert ((out[random] >= 5) & (out[random] < V)).all()  # never a special token
        n_random += int(random.sum())
        n_corrupted += int((corrupted | (out == MASK)).sum())
    # a random token may equal the original by chance (1 in 55), which hides it
    assert n_random / n_corrupted == pytest.approx(0.2 * 54 / 55, abs=0.03)


def test_whole_word_masking_masks_every_piece_of_a_word():
    # ids 30..59 continue a word (not word starts); the document is words of 1-3 pieces
    word_starts = torch.ones(V, dtype=torch.long)
    word_starts[30:] = 0
    words = [[10, 30], [11], [12, 31, 32], [13], [14, 33], [15], [16, 34, 35], [17]]
    doc = torch.tensor([BOS, *(t for w in words for t in w), EOS])
    for seed in range(20):
        out = token_masking(doc, _gen(seed), 0.5, word_starts=word_starts)
        assert out.shape == doc.shape
        pos = 1
        for w in words:
            piece = out[pos : pos + len(w)]
            assert bool((piece == MASK).all()) or torch.equal(piece, torch.tensor(w))
            pos += len(w)
        assert int((out == MASK).sum()) >= n_maskable(doc, 0.5, word_starts)


# ---------------------------------------------------------------------------- token deletion
def test_token_deletion_shortens_by_the_ratio():
    doc = _doc(40)
    for seed in range(20):
        out = token_deletion(doc, _gen(seed), 0.3)
        assert out.numel() == doc.numel() - math.ceil(0.3 * 40)
        assert _ends_kept(out) and not (out == MASK).any()
        assert _is_subsequence(out.tolist(), doc.tolist())


# ---------------------------------------------------------------------------- text infilling
def test_span_lengths_cover_the_budget_exactly():
    for seed in range(50):
        lengths = sample_span_lengths(12, 3.0, _gen(seed))
        assert int(lengths.sum()) == 12 and (lengths >= 0).all()
    assert sample_span_lengths(0, 3.0, _gen()).numel() == 0


def test_span_lengths_are_poisson():
    lengths = sample_span_lengths(30_000, 3.0, _gen(1))[:-1].double()  # the last one is cut
    assert lengths.mean().item() == pytest.approx(3.0, abs=0.05)
    assert lengths.var().item() == pytest.approx(3.0, abs=0.15)
    assert (lengths == 0).double().mean().item() == pytest.approx(math.exp(-3.0), abs=0.006)
    ps = poisson_probabilities(3.0)
    assert ps.sum().item() == pytest.approx(1.0, abs=1e-6) and ps[-1] < 1e-7


def test_zero_length_spans_insert_one_mask_each():
    doc = _doc(10)
    out = mask_spans(doc, torch.tensor([0, 0, 0]), _gen(0))
    assert out.numel() == doc.numel() + 3 and int((out == MASK).sum()) == 3
    assert torch.equal(out[out != MASK], doc) and _ends_kept(out)
    # mixed: one span of 4 tokens becomes one mask, and two insertions
    out = mask_spans(doc, torch.tensor([0, 4, 0]), _gen(0))
    assert out.numel() == doc.numel() - 4 + 1 + 2 and int((out == MASK).sum()) == 3


def test_text_infilling_one_mask_per_span():
    doc = _doc(40)
    n_with_inserts = 0
    for seed in range(200):
        out = text_infilling(doc, _gen(seed), 0.3, 3.0)
        g = _gen(seed)  # the same draws, step by step
        lengths = sample_span_lengths(n_maskable(doc, 0.3), 3.0, g)
        assert torch.equal(out, mask_spans(doc, lengths, g))
        assert _ends_kept(out)
        kept = out[out != MASK].tolist()
        assert _is_subsequence(kept, doc.tolist())  # order kept, nothing new
        assert doc.numel() - len(kept) <= math.ceil(0.3 * 40)  # overlapping spans remove less
        n_masks, n_zero = int((out == MASK).sum()), int((lengths == 0).sum())
        n_spans = int((lengths > 0).sum())
        # one mask per insertion and per span, except spans swallowed by an earlier one
        # (the leftmost span always survives)
        assert n_zero + min(n_spans, 1) <= n_masks <= n_zero + n_spans
        n_with_inserts += n_zero > 0
    assert n_with_inserts > 10  # zero-length spans do occur (P(0) = e^-3 per span)


def test_text_infilling_masked_fraction_is_the_ratio():
    doc = _doc(100)
    fractions = []
    for seed in range(300):
        lengths = sample_span_lengths(n_maskable(doc, 0.3), 3.0, _gen(seed))
        out = mask_spans(doc, lengths[lengths > 0], _gen(seed), replace_length=-1)
        assert out.shape == doc.shape
        fractions.append(float((out == MASK).sum()) / 100)
    mean = sum(fractions) / len(fractions)
    # spans start at distinct random places and may overlap (as in fairseq), which covers
    # about a tenth less than the budget
    assert 0.85 * 0.3 <= mean <= 0.3 and max(fractions) <= 0.3


def test_spans_never_cover_eos():
    doc = _doc(6)
    for seed in range(50):
        out = mask_spans(doc, torch.tensor([6]), _gen(seed), replace_length=0)
        assert int(out[-1]) == EOS and int(out[0]) == BOS


def test_insert_masks_positions():
    doc = _doc(5)
    seen = Counter()
    for seed in range(400):
        out = insert_masks(doc, 1, _gen(seed))
        assert _ends_kept(out) and torch.equal(out[out != MASK], doc)
        seen[int((out == MASK).nonzero())] += 1
    assert set(seen) == set(range(1, 7))  # anywhere between <s> and </s>


# ---------------------------------------------------------------------------- permutation
def _split(tokens: torch.Tensor) -> list[tuple[int, ...]]:
    out, cur = [], []
    for t in tokens[1:-1].tolist():
        cur.append(t)
        if t == STOP:
            out.append(tuple(cur))
            cur = []
    return out + ([tuple(cur)] if cur else [])


def test_sentence_permutation_preserves_the_sentences():
    doc = _sentences_doc()
    orders = set()
    for seed in range(100):
        out = sentence_permutation(doc, _gen(seed), STOP)
        assert out.shape == doc.shape and _ends_kept(out)
        assert Counter(_split(out)) == Counter(_split(doc))
        orders.add(tuple(_split(out)))
    assert len(orders) == 24  # every order of 4 sentences occurs


def test_sentence_permutation_without_final_full_stop_and_partial_ratio():
    doc = torch.tensor([BOS, 10, STOP, 11, 12, STOP, 13, 14, EOS])  # last sentence unfinished
    pieces = [[10, STOP], [11, 12, STOP], [13, 14]]
    orders = {tuple(t for i in p for t in pieces[i]) for p in itertools.permutations(range(3))}
    seen = set()
    for seed in range(60):
        out = sentence_permutation(doc, _gen(seed), STOP)
        assert tuple(out[1:-1].tolist()) in orders and _ends_kept(out)
        seen.add(tuple(out[1:-1].tolist()))
    assert seen == orders
    doc = _sentences_doc()
    moved = [
        sum(a != b for a, b in zip(_split(sentence_permutation(doc, _gen(s), STOP, 0.5)),
                                   _split(doc)))
        for s in range(50)
    ]  # fmt: skip
    assert max(moved) <= 2  # ceil(0.5 * 4) sentences take part


# ---------------------------------------------------------------------------- rotation
def test_document_rotation_is_a_cyclic_shift():
    doc = _doc(10)
    inner = doc[1:-1].tolist()
    starts = Counter()
    for seed in range(2000):
        out = document_rotation(doc, _gen(seed))
        assert _ends_kept(out)
        k = inner.index(int(out[1]))
        assert out[1:-1].tolist() == inner[k:] + inner[:k]
        starts[k] += 1
    assert set(starts) == set(range(10))
    # fairseq's offset is uniform in [1, T - 1]: offsets 1 and T - 1 both give the identity
    assert starts[0] / 2000 == pytest.approx(2 / 11, abs=0.03)
    assert starts[5] / 2000 == pytest.approx(1 / 11, abs=0.03)


# ---------------------------------------------------------------------------- Noiser
@pytest.mark.parametrize("name", list(PAPER_SCHEMES))
def test_paper_schemes_deterministic_and_keep_ends(name):
    noiser = paper_noiser(name, full_stop_id=STOP, vocab_size=V)
    doc = _sentences_doc()
    a = noiser(doc, _gen(3))
    assert torch.equal(a, noiser(doc, _gen(3))) and _ends_kept(a)
    assert torch.equal(doc, _sentences_doc())  # the input is not modified
    outs = {tuple(noiser(doc, _gen(s)).tolist()) for s in range(20)}
    assert len(outs) > 1


def test_noiser_infilling_plus_permutation():
    noiser = paper_noiser("infilling_permutation", full_stop_id=STOP)
    doc = _sentences_doc()
    for seed in range(30):
        out = noiser(doc, _gen(seed))
        kept = out[out != MASK].tolist()
        assert Counter(kept) <= Counter(doc.tolist()) and _ends_kept(out)


def test_noiser_insert_ratio():
    doc = _doc(20)
    out = Noiser(insert_ratio=0.1)(doc, _gen(0))
    assert out.numel() == 22 + math.ceil(22 * 0.1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"replace_length": 2},
        {"mask_ratio": 1.5},
        {"mask_length": "sentence"},
        {"random_ratio": 0.1},  # without vocab_size
        {"poisson_lambda": 0.0},
    ],
)
def test_noiser_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        Noiser(**kwargs)


def test_bad_document_is_refused():
    with pytest.raises(ValueError, match="1-D LongTensor"):
        text_infilling(torch.tensor([[1, 2]]), _gen())
    with pytest.raises(ValueError, match="unknown noising scheme"):
        paper_noiser("shuffle")


# ---------------------------------------------------------------------------- experiment data
def test_downstream_task_and_vocabulary():
    from archlab.papers.language.bart.experiment import compress, encode, vocabulary

    vocab = vocabulary()
    assert vocab[:5] == ("<pad>", "<s>", "</s>", "<unk>", "<mask>") and len(vocab) == 44
    doc = "A quiet garden near some cat moves the cat. The model runs."
    assert compress(doc) == "a garden moves the cat . the model runs .".split()
    ids = encode(doc)
    assert int(ids[0]) == BOS and int(ids[-1]) == EOS and 3 not in ids.tolist()  # no <unk>


def test_finetuning_dataset_pads_without_changing_the_loss():
    from torch.utils.data import default_collate

    from archlab.data.text import grammar_corpus
    from archlab.papers.language.bart import Bart
    from archlab.papers.language.bart.experiment import (
        BUDGETS,
        downstream_target,
        encode,
        model_config,
        padded_pairs,
        pair_batch,
        seq2seq_loss,
    )

    torch.manual_seed(0)
    model = Bart(model_config(BUDGETS["smoke"])).eval()
    pairs = [(encode(d), downstream_target(d)) for d in grammar_corpus(12, (3, 4), seed=1)]
    dataset = padded_pairs(pairs)  # padded to the longest of the 12 pairs
    batch = default_collate([dataset[i] for i in range(4)])
    tight = pair_batch(*map(list, zip(*pairs[:4])))  # padded to the longest of these 4
    assert batch["input_ids"].shape[1] > tight["input_ids"].shape[1]
    with torch.no_grad():
        loss, metrics = seq2seq_loss(model, batch)
        loss_tight, metrics_tight = seq2seq_loss(model, tight)
    torch.testing.assert_close(loss, loss_tight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(metrics["token_acc"], metrics_tight["token_acc"])


def test_trivial_predictors_of_the_scratch_health_check():
    from archlab.papers.language.bart.experiment import trivial_token_accuracy

    t = torch.tensor
    train = [(t([1, 7, 8, 2]), t([1, 7, 7, 2])), (t([1, 7, 2]), t([1, 7, 2]))]  # 7: 3 of 7
    test = [(t([1, 9, 7, 2]), t([1, 7, 2])), (t([1, 5, 2]), t([1, 7, 2]))]
    got = trivial_token_accuracy(train, test)
    assert got["majority"] == pytest.approx(2 / 6)  # predicting 7 everywhere hits the two 7s
    assert got["copy"] == pytest.approx(3 / 6)  # <s>,<s> and the 2nd pair's </s> at position 2


# ---------------------------------------------------------------------------- mechanism tests
def test_each_paper_scheme_is_its_corruption():
    """Every row of the paper's Table 1 runs its own corruption: the scheme's Noiser gives,
    draw for draw, what the corresponding noising function gives (so a scheme wired to the wrong
    corruption, ratio or replace length turns this red)."""
    doc = _sentences_doc()
    expected = {
        "token_masking": lambda g: token_masking(doc, g, 0.3, mask_id=MASK),
        "token_deletion": lambda g: token_deletion(doc, g, 0.3),
        "text_infilling": lambda g: text_infilling(doc, g, 0.3, 3.0, mask_id=MASK),
        "sentence_permutation": lambda g: sentence_permutation(doc, g, STOP, 1.0),
        # the Noiser draws whether to rotate (rotate_ratio = 1: always) before rotating
        "document_rotation": lambda g: (torch.rand(1, generator=g), document_rotation(doc, g))[1],
        "infilling_permutation": lambda g: text_infilling(
            sentence_permutation(doc, g, STOP, 1.0), g, 0.3, 3.0, mask_id=MASK
        ),
    }
    assert set(expected) == set(PAPER_SCHEMES)
    for name, fn in expected.items():
        noiser = paper_noiser(name, full_stop_id=STOP, mask_id=MASK, vocab_size=V)
        for seed in range(10):
            got, want = noiser(doc, _gen(seed)), fn(_gen(seed))
            assert torch.equal(got, want), (name, seed, got.tolist(), want.tolist())
    # and the corruptions differ from each other on this document
    outs = {
        name: tuple(paper_noiser(name, full_stop_id=STOP)(doc, _gen(0)).tolist())
        for name in expected
    }
    assert len(set(outs.values())) == len(outs)
