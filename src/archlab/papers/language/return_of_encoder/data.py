"""Keyword extraction: a long-input / short-output task for the encoder-decoder comparison.

A *document* is ``n_source`` tokens drawn i.i.d. from a document-specific Zipf distribution over
``n_symbols`` content tokens (the ranks are a random permutation of the symbols, so every document
has its own keywords). The *summary* is the document's ``k`` most frequent tokens in decreasing
order of their count in the document, then EOS. Documents whose top ``k + 1`` counts are not all
distinct are redrawn, so every summary is unique. This is the paper's "asymmetric" setting in
miniature: the output is a few tokens that depend on the whole input.

Token ids: ``PAD = 0, BOS = 1, EOS = 2, SEP = 3``, content tokens ``4 .. 4 + n_symbols - 1``.

- Encoder-decoder: source = document; decoder input ``[BOS, y_1 .. y_k]``; labels
  ``[y_1 .. y_k, EOS]``.
- Decoder-only: ``[document; SEP; y_1 .. y_k; EOS]``; the loss counts the positions from SEP on
  (SEP predicts ``y_1``), so both models learn exactly the same conditional distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

PAD, BOS, EOS, SEP = 0, 1, 2, 3
N_SPECIAL = 4


@dataclass(frozen=True)
class KeywordTaskConfig:
    """Sizes of the keyword-extraction task.

    Attributes:
        n_symbols: content tokens.
        n_source: document length S.
        k: keywords in the summary.
        zipf_exponent: the document's token distribution is ``rank**-zipf_exponent``.
        min_gap: documents are redrawn unless each of the top ``k`` counts exceeds the next
            count by at least this much (1: just distinct).
    """

    n_symbols: int = 32
    n_source: int = 64
    k: int = 3
    zipf_exponent: float = 1.0
    min_gap: int = 1

    def __post_init__(self) -> None:
        if self.k < 1 or self.n_symbols <= self.k:
            raise ValueError(f"need 1 <= k < n_symbols; got k={self.k}, n={self.n_symbols}")
        if self.n_source < 2 * (self.k + 1):
            raise ValueError(f"n_source ({self.n_source}) is too short for k={self.k} keywords")
        if self.min_gap < 1:
            raise ValueError(f"min_gap must be >= 1, got {self.min_gap}")
        if self.zipf_exponent < 0:
            raise ValueError(f"zipf_exponent must be >= 0, got {self.zipf_exponent}")

    @property
    def vocab_size(self) -> int:
        """Special plus content tokens."""
        return N_SPECIAL + self.n_symbols


class KeywordTask:
    """Sampler of (document, summary) pairs and their encoder-decoder / decoder-only layouts."""

    def __init__(self, cfg: KeywordTaskConfig):
        self.cfg = cfg
        ranks = torch.arange(1, cfg.n_symbols + 1, dtype=torch.float64)
        self.zipf = (ranks**-cfg.zipf_exponent / (ranks**-cfg.zipf_exponent).sum()).float()

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``batch_size`` documents (B, S) and their summaries ``[y_1 .. y_k, EOS]`` (B, k+1)."""
        cfg = self.cfg
        docs, keys = [], []
        n = 0
        while n < batch_size:
            m = 4 * (batch_size - n) + 8
            perm = torch.rand(m, cfg.n_symbols, generator=generator).argsort(-1)  # (m, n_sym)
            # symbol perm[i, j] has rank j in document i
            probs = torch.empty(m, cfg.n_symbols).scatter_(1, perm, self.zipf.expand(m, -1))
            doc = torch.multinomial(probs, cfg.n_source, replacement=True, generator=generator)
            counts = F.one_hot(doc, cfg.n_symbols).sum(1)  # (m, n_sym)
            top, idx = counts.topk(cfg.k + 1, dim=-1)  # (m, k+1) sorted
            ok = (top[:, :-1] - top[:, 1:] >= cfg.min_gap).all(-1)  # top k + 1 well separated
            docs.append(doc[ok])
            keys.append(idx[ok, : cfg.k])
            n += int(ok.sum())
        doc = torch.cat(docs)[:batch_size] + N_SPECIAL  # (B, S)
        key = torch.cat(keys)[:batch_size] + N_SPECIAL  # (B, k)
        eos = torch.full((batch_size, 1), EOS, dtype=torch.long)
        return doc, torch.cat([key, eos], dim=1)  # (B, S), (B, k + 1)

    def sampler(self):
        """A ``(batch_size, generator) -> (source, target)`` stream for the ``Trainer``."""

        def data(batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
            return self.sample(batch_size, generator)

        return data


def decoder_input(target: Tensor) -> Tensor:  # (B, k+1) -> (B, k+1)
    """``[BOS, y_1 .. y_k]``: the target shifted right behind the start token."""
    return torch.cat([torch.full_like(target[:, :1], BOS), target[:, :-1]], dim=1)


def causal_sequence(source: Tensor, target: Tensor) -> Tensor:  # -> (B, S + 1 + k + 1)
    """``[source; SEP; target]``: what the decoder-only model reads."""
    return torch.cat([source, torch.full_like(source[:, :1], SEP), target], dim=1)


def seq2seq_loss(model, batch) -> tuple[Tensor, dict[str, Tensor]]:
    """Cross-entropy of the encoder-decoder on ``[y_1 .. y_k, EOS]`` and token accuracy."""
    source, target = batch
    logits = model(source, decoder_input(target))  # (B, k+1, K)
    loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
    acc = (logits.argmax(-1) == target).float().mean()
    return loss, {"token_acc": acc.detach()}


def causal_logits_on_target(model, source: Tensor, target: Tensor) -> Tensor:
    """Decoder-only logits at the positions that predict ``target`` (B, k+1, K): SEP onwards."""
    seq = causal_sequence(source, target)[:, :-1]  # (B, S + k + 1)
    logits = model(seq)  # (B, S + k + 1, K)
    return logits[:, source.shape[1] :]  # (B, k + 1, K)


def causal_loss(model, batch) -> tuple[Tensor, dict[str, Tensor]]:
    """Cross-entropy of the decoder-only model on the target positions and token accuracy."""
    source, target = batch
    logits = causal_logits_on_target(model, source, target)
    loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
    acc = (logits.argmax(-1) == target).float().mean()
    return loss, {"token_acc": acc.detach()}
