"""BART's noising functions (Lewis et al., 2019, arXiv 1910.13461, section 2.2 and Figure 2).

The five corruptions of the paper, written as fairseq's ``DenoisingDataset`` applies them, on one
document at a time: a 1-D LongTensor of token ids that starts with ``<s>`` and ends with
``</s>``. Both stay in place under every function. All randomness comes from the
``torch.Generator`` passed in, so a seed gives the same corruption.

- **Token masking**: ``ceil(mask_ratio * n)`` random tokens become ``<mask>`` (a fraction
  ``random_ratio`` of them a random token instead).
- **Token deletion**: ``ceil(mask_ratio * n)`` random tokens are deleted.
- **Text infilling**: span lengths are drawn from Poisson(``poisson_lambda``) until they cover
  ``ceil(mask_ratio * n)`` tokens (the last span is cut to fit). Each span with a length is
  replaced by one ``<mask>``. Each zero-length span inserts one ``<mask>`` at a random place.
- **Sentence permutation**: the sentences, which end at a full-stop token, are shuffled.
- **Document rotation**: the document is rotated to start at a uniformly random token.

Here ``n`` counts the word starts between ``<s>`` and ``</s>``: every token, unless
``word_starts`` marks which vocabulary entries begin a word. ``Noiser`` combines the functions
in fairseq's order: permutation, then masking (or deletion, or infilling), then insertion, then
rotation. ``paper_noiser(name)`` builds the settings of each scheme in the paper's Table 1.
Deviations from fairseq are listed in this folder's README.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import torch
from torch import Tensor

MASK_LENGTHS = ("subword", "word", "span-poisson")


# ---------------------------------------------------------------------------- helpers
# Documents are short (tens to hundreds of tokens): the loops below run on Python lists and draw
# their randomness with a handful of torch calls, which is several times faster than many tiny
# tensor operations.
def _check_document(tokens: Tensor) -> None:
    if not isinstance(tokens, Tensor) or tokens.dim() != 1 or tokens.dtype != torch.long:
        raise ValueError("tokens must be a 1-D LongTensor <s> ... </s>")
    if tokens.numel() < 2:
        raise ValueError(f"tokens must hold at least <s> and </s>; got {tokens.numel()} ids")


def _random_ids(n: int, low: int, high: int | None, generator: torch.Generator) -> list[int]:
    if n == 0:
        return []
    if high is None or high <= low:
        raise ValueError(f"random replacement needs vocab_size > first_random_id={low}; got {high}")
    return torch.randint(low, high, (n,), generator=generator).tolist()


def _word_start_list(tokens: Tensor, word_starts: Tensor | None) -> list[int]:
    """1 where a word starts, per position (never at ``<s>`` or ``</s>``)."""
    T = tokens.numel()
    if word_starts is None:
        starts = [1] * T
    else:
        starts = [int(v) for v in word_starts.long()[tokens].tolist()]
    starts[0] = 0
    starts[-1] = 0
    return starts


@lru_cache(maxsize=16)
def poisson_probabilities(lam: float) -> Tensor:
    """P(k) of a Poisson(``lam``) for k = 0, 1, ... up to the first P(k) below 1e-7 (fairseq's
    truncation); the categorical distribution span lengths are drawn from."""
    if lam <= 0:
        raise ValueError(f"poisson_lambda must be > 0; got {lam}")
    ps, term = [], math.exp(-lam)
    for k in range(128):
        ps.append(term)
        if term < 1e-7:
            break
        term *= lam / (k + 1)
    return torch.tensor(ps, dtype=torch.float64)


def sample_span_lengths(n_to_mask: int, lam: float, generator: torch.Generator) -> Tensor:
    """Span lengths ~ Poisson(``lam``), drawn until they cover ``n_to_mask`` tokens.

    As fairseq: draw ``n_to_mask`` lengths, draw more while their sum falls short, then keep the
    spans up to the one that reaches the budget and cut that one to fit. Zero-length spans are
    kept (they become inserted masks).

    Returns:
        (n_spans,) lengths >= 0 whose sum is exactly ``n_to_mask``.
    """
    if n_to_mask <= 0:
        return torch.empty(0, dtype=torch.long)
    ps = poisson_probabilities(float(lam))
    drawn: list[int] = []
    while sum(drawn) < n_to_mask:
        drawn += torch.multinomial(ps, n_to_mask, replacement=True, generator=generator).tolist()
    lengths, total = [], 0
    for length in drawn:
        if total + length >= n_to_mask:  # the span that reaches the budget, cut to fit
            lengths.append(n_to_mask - total)
            break
        lengths.append(length)
        total += length
    return torch.tensor(lengths, dtype=torch.long)


# ---------------------------------------------------------------------------- core operations
def _insert(
    values: list[int],
    n: int,
    generator: torch.Generator,
    mask_id: int,
    random_ratio: float,
    first_random_id: int,
    vocab_size: int | None,
) -> list[int]:
    T = len(values)
    positions = torch.randperm(T + n - 2, generator=generator)[:n].add_(1).tolist()
    n_random = math.ceil(n * random_ratio)
    noise = dict.fromkeys(positions[n_random:], mask_id)
    noise.update(
        zip(positions[:n_random], _random_ids(n_random, first_random_id, vocab_size, generator))
    )
    out, it = [], iter(values)
    for i in range(T + n):
        out.append(noise[i] if i in noise else next(it))
    return out


def insert_masks(
    tokens: Tensor,
    n: int,
    generator: torch.Generator,
    *,
    mask_id: int = 4,
    random_ratio: float = 0.0,
    first_random_id: int = 5,
    vocab_size: int | None = None,
) -> Tensor:
    """Insert ``n`` ``<mask>`` tokens at random places between ``<s>`` and ``</s>``
    (fairseq's ``add_insertion_noise``); ``ceil(n * random_ratio)`` of them are random tokens.

    (T,) -> (T + n,).
    """
    _check_document(tokens)
    if n <= 0:
        return tokens.clone()
    out = _insert(tokens.tolist(), n, generator, mask_id, random_ratio, first_random_id, vocab_size)
    return torch.tensor(out, dtype=torch.long)


def mask_spans(
    tokens: Tensor,
    lengths: Tensor,
    generator: torch.Generator,
    *,
    replace_length: int = 1,
    mask_id: int = 4,
    random_ratio: float = 0.0,
    first_random_id: int = 5,
    vocab_size: int | None = None,
    word_starts: Tensor | None = None,
) -> Tensor:
    """Corrupt spans of the given lengths (in words) at random word starts, as fairseq's
    ``add_whole_word_mask`` does after it has drawn the lengths.

    Spans start at distinct random word starts and may overlap (a token deleted by one span
    stays deleted). A span never covers ``</s>``. Each zero-length span inserts one ``<mask>``
    (``insert_masks``) after the spans are applied.

    Args:
        tokens: one document (T,) ``<s> ... </s>``.
        lengths: (n_spans,) span lengths in words; zeros are insertions.
        generator: the source of randomness.
        replace_length: ``1``: each span becomes one ``<mask>``; ``0``: spans are deleted;
            ``-1``: every token of a span becomes ``<mask>``.
        mask_id: the ``<mask>`` id.
        random_ratio: the fraction of spans whose masks are random tokens instead.
        first_random_id: random tokens are drawn from ``[first_random_id, vocab_size)``.
        vocab_size: needed when ``random_ratio > 0``.
        word_starts: (V,) 1 where a vocabulary entry begins a word (whole-word masking), or
            None: every token is a word.

    Returns:
        The corrupted document (T',).
    """
    _check_document(tokens)
    if replace_length not in (-1, 0, 1):
        raise ValueError(f"replace_length must be -1, 0 or 1; got {replace_length}")
    lengths = torch.as_tensor(lengths, dtype=torch.long).tolist()
    values = tokens.tolist()
    T = len(values)
    n_inserts = sum(1 for length in lengths if length == 0)
    lengths = [length for length in lengths if length > 0]
    is_start = _word_start_list(tokens, word_starts)
    candidates = [i for i, s in enumerate(is_start) if s]
    order = torch.randperm(len(candidates), generator=generator)[: len(lengths)].tolist()
    starts = [candidates[j] for j in order]  # a short document fits fewer spans
    if random_ratio > 0 and starts:
        to_random = (torch.rand(len(starts), generator=generator) < random_ratio).tolist()
    else:
        to_random = [False] * len(starts)
    is_start[-1] = 255  # a huge decrement: no span runs into </s>
    keep = [True] * T
    replaced: dict[int, bool] = {}  # position -> replaced by a random token (else <mask>)
    for start, length, random in zip(starts, lengths, to_random):
        covered, i, left = [start], start, length - 1
        while True:
            left -= is_start[i + 1]  # a span counts the words it covers
            if left < 0:
                break
            i += 1
            covered.append(i)
        for k, pos in enumerate(covered):
            if replace_length == 0 or (replace_length == 1 and k > 0):
                keep[pos] = False
            else:
                replaced[pos] = random
    picked = [pos for pos, random in replaced.items() if random]
    for pos, value in zip(picked, _random_ids(len(picked), first_random_id, vocab_size, generator)):
        values[pos] = value
    for pos, random in replaced.items():
        if not random:
            values[pos] = mask_id
    out = [v for v, k in zip(values, keep) if k]
    if n_inserts:
        out = _insert(out, n_inserts, generator, mask_id, random_ratio, first_random_id, vocab_size)
    return torch.tensor(out, dtype=torch.long)


def n_maskable(tokens: Tensor, ratio: float, word_starts: Tensor | None = None) -> int:
    """``ceil(ratio * number of word starts)``: fairseq's masking budget for one document."""
    if word_starts is None:
        return math.ceil((tokens.numel() - 2) * ratio)
    return math.ceil(sum(_word_start_list(tokens, word_starts)) * ratio)


# ---------------------------------------------------------------------------- the five functions
def token_masking(
    tokens: Tensor,
    generator: torch.Generator,
    ratio: float = 0.3,
    *,
    mask_id: int = 4,
    random_ratio: float = 0.0,
    first_random_id: int = 5,
    vocab_size: int | None = None,
    word_starts: Tensor | None = None,
) -> Tensor:
    """Replace ``ceil(ratio * n)`` random tokens (words) by ``<mask>``, a fraction
    ``random_ratio`` of them by a random token instead. (T,) -> (T,) without ``word_starts``.
    """
    n = n_maskable(tokens, ratio, word_starts)
    return mask_spans(
        tokens,
        torch.ones(n, dtype=torch.long),
        generator,
        replace_length=-1,
        mask_id=mask_id,
        random_ratio=random_ratio,
        first_random_id=first_random_id,
        vocab_size=vocab_size,
        word_starts=word_starts,
    )


def token_deletion(
    tokens: Tensor,
    generator: torch.Generator,
    ratio: float = 0.3,
    *,
    word_starts: Tensor | None = None,
) -> Tensor:
    """Delete ``ceil(ratio * n)`` random tokens (words). (T,) -> (T - ceil(ratio * n),)."""
    n = n_maskable(tokens, ratio, word_starts)
    lengths = torch.ones(n, dtype=torch.long)
    return mask_spans(tokens, lengths, generator, replace_length=0, word_starts=word_starts)


def text_infilling(
    tokens: Tensor,
    generator: torch.Generator,
    ratio: float = 0.3,
    poisson_lambda: float = 3.0,
    *,
    mask_id: int = 4,
    replace_length: int = 1,
    random_ratio: float = 0.0,
    first_random_id: int = 5,
    vocab_size: int | None = None,
    word_starts: Tensor | None = None,
) -> Tensor:
    """Replace Poisson(``poisson_lambda``)-long spans covering ``ceil(ratio * n)`` tokens, each
    by one ``<mask>``; each zero-length span inserts a ``<mask>``."""
    lengths = sample_span_lengths(n_maskable(tokens, ratio, word_starts), poisson_lambda, generator)
    return mask_spans(
        tokens,
        lengths,
        generator,
        replace_length=replace_length,
        mask_id=mask_id,
        random_ratio=random_ratio,
        first_random_id=first_random_id,
        vocab_size=vocab_size,
        word_starts=word_starts,
    )


def sentence_permutation(
    tokens: Tensor, generator: torch.Generator, full_stop_id: int, ratio: float = 1.0
) -> Tensor:
    """Shuffle ``ceil(ratio * n_sentences)`` of the sentences (fairseq's ``permute_sentences``).

    A sentence ends with ``full_stop_id`` (a run of full stops counts once); the token before
    ``</s>`` always ends one, so trailing words without a full stop form the last sentence.
    (T,) -> (T,), the same tokens in another order.
    """
    _check_document(tokens)
    values = tokens.tolist()
    if len(values) < 3:
        return tokens.clone()
    stops = [v == full_stop_id for v in values]
    stops[-2] = True
    ends = [i + 1 for i in range(1, len(values) - 1) if stops[i] and not stops[i - 1]]
    n_sentences = len(ends)  # sentence i is values[bounds[i]:bounds[i + 1]]
    n_permute = math.ceil(n_sentences * ratio)
    chosen = torch.randperm(n_sentences, generator=generator)[:n_permute]
    ordering = list(range(n_sentences))
    for slot, i in zip(chosen.tolist(), chosen[torch.randperm(n_permute, generator=generator)]):
        ordering[slot] = int(i)
    bounds = [1, *ends]
    out = values[:1]
    for i in ordering:
        out += values[bounds[i] : bounds[i + 1]]
    out += values[bounds[-1] :]
    return torch.tensor(out, dtype=torch.long)


def document_rotation(tokens: Tensor, generator: torch.Generator) -> Tensor:
    """Rotate the words between ``<s>`` and ``</s>`` to start at a random token (fairseq's
    ``add_rolling_noise``: offset uniform in ``[1, T - 1]``, where offsets 1 and ``T - 1`` both
    leave the document as it is). (T,) -> (T,)."""
    _check_document(tokens)
    T = tokens.numel()
    offset = int(torch.randint(1, max(1, T - 1) + 1, (1,), generator=generator))
    return torch.cat([tokens[:1], tokens[offset:-1], tokens[1:offset], tokens[-1:]])


# ---------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Noiser:
    """The noising of one document, with fairseq's ``--mask*``/``--permute-sentences``/``--rotate``
    options (names without the dashes).

    Attributes:
        mask_ratio: fraction of the word starts to corrupt (``--mask``); 0 turns masking off.
        mask_length: ``subword`` (single tokens), ``word`` (whole words, with ``word_starts``)
            or ``span-poisson`` (spans of Poisson(``poisson_lambda``) words: text infilling).
        poisson_lambda: mean span length of ``span-poisson``.
        replace_length: ``1``: a span becomes one ``<mask>``; ``0``: deleted; ``-1``: one
            ``<mask>`` per token.
        random_ratio: fraction of masks that are random tokens (``--mask-random``).
        insert_ratio: extra ``<mask>`` insertions, as a fraction of the length (``--insert``).
        permute_sentence_ratio: fraction of sentences shuffled (``--permute-sentences``).
        rotate_ratio: probability of rotating the document (``--rotate``).
        mask_id: the ``<mask>`` id (``archlab.data.text``: 4).
        full_stop_id: the token that ends a sentence.
        first_random_id: random tokens are drawn from ``[first_random_id, vocab_size)``.
        vocab_size: vocabulary size; needed when ``random_ratio > 0``.
    """

    mask_ratio: float = 0.0
    mask_length: str = "span-poisson"
    poisson_lambda: float = 3.0
    replace_length: int = 1
    random_ratio: float = 0.0
    insert_ratio: float = 0.0
    permute_sentence_ratio: float = 0.0
    rotate_ratio: float = 0.0
    mask_id: int = 4
    full_stop_id: int = 2
    first_random_id: int = 5
    vocab_size: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "mask_ratio",
            "random_ratio",
            "insert_ratio",
            "permute_sentence_ratio",
            "rotate_ratio",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]; got {getattr(self, name)}")
        if self.mask_length not in MASK_LENGTHS:
            raise ValueError(f"mask_length must be one of {MASK_LENGTHS}; got {self.mask_length!r}")
        if self.replace_length not in (-1, 0, 1):
            raise ValueError(f"replace_length must be -1, 0 or 1; got {self.replace_length}")
        if self.mask_length == "span-poisson" and self.poisson_lambda <= 0:
            raise ValueError(f"poisson_lambda must be > 0; got {self.poisson_lambda}")
        if self.random_ratio > 0 and (
            self.vocab_size is None or self.vocab_size <= self.first_random_id
        ):
            raise ValueError(
                f"random_ratio > 0 needs vocab_size > first_random_id={self.first_random_id}"
            )

    def __call__(
        self, tokens: Tensor, generator: torch.Generator, word_starts: Tensor | None = None
    ) -> Tensor:
        """The noised copy of one document (T,) -> (T',); ``tokens`` is not modified.

        Args:
            tokens: ``<s> ... </s>`` token ids.
            generator: the source of randomness.
            word_starts: (V,) 1 where a vocabulary entry begins a word, for ``mask_length`` of
                ``word`` or ``span-poisson``; None: every token is a word.
        """
        _check_document(tokens)
        x = tokens
        ids = dict(
            mask_id=self.mask_id,
            random_ratio=self.random_ratio,
            first_random_id=self.first_random_id,
            vocab_size=self.vocab_size,
        )
        if self.permute_sentence_ratio > 0:
            x = sentence_permutation(x, generator, self.full_stop_id, self.permute_sentence_ratio)
        if self.mask_ratio > 0:
            starts = None if self.mask_length == "subword" else word_starts
            n = n_maskable(x, self.mask_ratio, starts)
            if self.mask_length == "span-poisson":
                lengths = sample_span_lengths(n, self.poisson_lambda, generator)
            else:
                lengths = torch.ones(n, dtype=torch.long)
            replace_length = self.replace_length
            x = mask_spans(
                x, lengths, generator, replace_length=replace_length, word_starts=starts, **ids
            )
        if self.insert_ratio > 0:
            x = insert_masks(x, math.ceil(x.numel() * self.insert_ratio), generator, **ids)
        if self.rotate_ratio > 0 and float(torch.rand(1, generator=generator)) < self.rotate_ratio:
            x = document_rotation(x, generator)
        return x.clone() if x is tokens else x


PAPER_SCHEMES = {  # the noising of each row of the paper's Table 1 (ratios: fairseq's 0.3)
    "token_masking": Noiser(mask_ratio=0.3, mask_length="subword", replace_length=1),
    "token_deletion": Noiser(mask_ratio=0.3, mask_length="subword", replace_length=0),
    "text_infilling": Noiser(mask_ratio=0.3, mask_length="span-poisson", replace_length=1),
    "sentence_permutation": Noiser(permute_sentence_ratio=1.0),
    "document_rotation": Noiser(rotate_ratio=1.0),
    "infilling_permutation": Noiser(  # BART's final choice
        mask_ratio=0.3, mask_length="span-poisson", replace_length=1, permute_sentence_ratio=1.0
    ),
}


def paper_noiser(name: str, **ids: int | float | None) -> Noiser:
    """The ``Noiser`` of one of the paper's schemes (``PAPER_SCHEMES``) with this vocabulary's
    ids, e.g. ``paper_noiser("text_infilling", mask_id=4, full_stop_id=7)``."""
    if name not in PAPER_SCHEMES:
        raise ValueError(f"unknown noising scheme {name!r}; expected one of {list(PAPER_SCHEMES)}")
    return replace(PAPER_SCHEMES[name], **ids)
