"""Offline text: stdlib docstrings corpus, cached byte-level BPE, grammar corpora."""

from __future__ import annotations

from archlab.data.text import (
    SPECIAL_TOKENS,
    grammar_corpus,
    sentences,
    stdlib_docstrings,
    train_bpe,
)


def test_stdlib_corpus_is_large_and_deterministic():
    docs = stdlib_docstrings()
    assert len(docs) > 1000 and sum(map(len, docs)) > 500_000
    assert docs == stdlib_docstrings()


def test_bpe_round_trip_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHLAB_CACHE", str(tmp_path))
    texts = list(stdlib_docstrings()[:300])
    tok = train_bpe(texts, vocab_size=600)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    text = "Return the number of items in a container, e.g. len([1, 2])."
    ids = tok.encode(text).ids
    assert tok.decode(ids) == text
    assert len(list(tmp_path.glob("bpe-*.json"))) == 1
    again = train_bpe(texts, vocab_size=600)  # loaded from the cache
    assert again.encode(text).ids == ids


def test_grammar_and_sentences():
    docs = grammar_corpus(5, seed=1)
    assert docs == grammar_corpus(5, seed=1) and docs != grammar_corpus(5, seed=2)
    for d in docs:
        assert 3 <= len(sentences(d)) <= 12
