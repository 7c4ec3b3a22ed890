"""Decoding shared by every sequence model: greedy, sampling and beam search, with a KV cache.

``generate(model, input_ids, ...)`` has the signature and the results of transformers'
``model.generate`` (v5): for a decoder-only model it returns the prompt followed by the new
tokens; for an encoder-decoder model, the decoder sequence starting with the decoder start token.
Beam search follows transformers' v5 vectorised beam search exactly (same candidates, same
early-stopping heuristic): a finished hypothesis scores ``sum_logprobs / n_new**length_penalty``
where ``n_new`` counts the generated tokens, end-of-sequence included.

Model protocol (``archlab.interfaces``: ``CausalLM`` or ``Seq2Seq``, each also ``Cached``).

Decoder-only models implement::

    model.forward_step(input_ids, attention_mask, position_ids, cache) -> (logits, cache)
        input_ids       (B, T)  tokens the cache has not seen: the whole prompt at the first
                                call, then one token per step; without a cache (cache is None)
                                the whole sequence at every step.
        attention_mask  (B, S)  1 = real token, 0 = left padding, over all S = past + T
                                positions; None when no sequence is padded.
        position_ids    (B, T)  positions of input_ids counted from each sequence's first real
                                token (``attention_mask.cumsum(-1) - 1``; 0 on padding).
        cache                   None (no caching) or the object from ``new_cache()`` / the
                                previous call, which the model extends (in place or not).
        returns logits (B, K) of the token after the last input position, and the cache.

Encoder-decoder models implement::

    model.encode(input_ids, attention_mask) -> memory              (B, S) -> (B, S, D)
    model.decode_step(decoder_input_ids, memory, memory_mask, cache) -> (logits, cache)
        decoder_input_ids (B, T) decoder tokens the cache has not seen (all of them when cache
                                 is None); their positions start at the cache's length.
        memory_mask       (B, S) the encoder's attention_mask, or None when nothing is padded.
        returns logits (B, K) of the token after the last decoder position, and the cache.

Both kinds implement ``model.new_cache() -> cache`` when ``use_cache=True``, and for beam search
with a cache ``cache.reorder(beam_idx)`` keeps the batch rows ``beam_idx`` (B',) in that order
(``archlab.nn.DecoderCache`` does both). Models stay in their current mode: call ``eval()``
first, as with transformers.

Sampling draws from ``generator`` when one is given, else from torch's global RNG, like
transformers: with the same seed and settings both return the same samples. Differences from
transformers: ``top_k`` defaults to None (transformers' generation config defaults to 50 when
sampling); the attention mask is never inferred from pad tokens in ``input_ids`` (pass it);
finished beams are filled with ``pad_token_id`` (transformers' beam search fills with the eos
token when ``pad_token_id == 0``).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from archlab.interfaces import Cached, CausalLM, Seq2Seq

__all__ = ["generate"]


# --------------------------------------------------------------------------- validation


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


def _check_token_tensor(name: str, x: Any) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of token ids (B, T); got {type(x)}")
    if x.dtype == torch.bool or x.dtype.is_floating_point or x.dtype.is_complex:
        raise ValueError(
            f"{name} must be an integer tensor (torch.long) of token ids; got {x.dtype}"
        )
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must have shape (B, T) with B, T >= 1; got {tuple(x.shape)}")
    if bool((x < 0).any()):
        raise ValueError(f"{name} must hold token ids >= 0; got {int(x.min())}")


def _vocab_size(model: Any) -> int | None:
    """The model's vocabulary size where it states one (``vocab_size`` on the model or on its
    ``cfg`` / ``config``), else None."""
    for owner in (model, getattr(model, "cfg", None), getattr(model, "config", None)):
        value = getattr(owner, "vocab_size", None)
        if _is_int(value) and value > 0:
            return int(value)
    return None


def _check_vocab(vocab_size: int | None, **ids: Any) -> None:
    """Every given token id (a tensor, an int, a list or None) is below ``vocab_size``."""
    if vocab_size is None:
        return
    for name, value in ids.items():
        if value is None:
            continue
        top = (
            int(value.max())
            if isinstance(value, Tensor)
            else max([value] if _is_int(value) else list(value))
        )
        if top >= vocab_size:
            raise ValueError(
                f"{name} holds token id {top}, outside the model's vocabulary of {vocab_size} "
                f"(ids 0..{vocab_size - 1})"
            )


def _check_mask(attention_mask: Any, input_ids: Tensor) -> Tensor:
    if not isinstance(attention_mask, Tensor):
        raise ValueError(
            f"attention_mask must be a torch.Tensor (B, T); got {type(attention_mask)}"
        )
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}; "
            f"got {tuple(attention_mask.shape)}"
        )
    if attention_mask.dtype.is_complex or not ((attention_mask == 0) | (attention_mask == 1)).all():
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token)")
    mask = attention_mask.long()
    if not mask.any(-1).all():
        raise ValueError("attention_mask: every sequence needs at least one real token (a 1)")
    return mask


def _eos_tensor(eos_token_id: int | Sequence[int] | None, device: torch.device) -> Tensor | None:
    if eos_token_id is None:
        return None
    if isinstance(eos_token_id, Tensor) and not eos_token_id.dtype.is_floating_point:
        eos_token_id = eos_token_id.flatten().tolist()
    ids = [eos_token_id] if _is_int(eos_token_id) else eos_token_id
    if (
        not isinstance(ids, Sequence)
        or isinstance(ids, str)
        or not ids
        or not all(_is_int(i) and i >= 0 for i in ids)
    ):
        raise ValueError(
            f"eos_token_id must be a token id or a list of token ids; got {eos_token_id!r}"
        )
    return torch.tensor([int(i) for i in ids], dtype=torch.long, device=device)


# --------------------------------------------------------------------------- logits processing


class _Processor:
    """transformers' logits processors in their order: min_new_tokens, then (when sampling)
    temperature, top-k, top-p."""

    def __init__(
        self,
        min_new_tokens: int,
        eos: Tensor | None,
        do_sample: bool,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        min_tokens_to_keep: int,
    ):
        self.min_new_tokens = min_new_tokens if eos is not None else 0
        self.eos = eos
        self.do_sample = do_sample
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, scores: Tensor, n_generated: int) -> Tensor:  # (B, K) -> (B, K)
        if n_generated < self.min_new_tokens:
            scores = scores.index_fill(-1, self.eos, -float("inf"))
        if not self.do_sample:
            return scores
        if self.temperature != 1.0:
            scores = scores / self.temperature
        if self.top_k is not None:
            k = min(max(self.top_k, self.min_tokens_to_keep), scores.shape[-1])
            threshold = torch.topk(scores, k)[0][..., -1, None]  # (B, 1)
            scores = scores.masked_fill(scores < threshold, -float("inf"))
        if self.top_p is not None and self.top_p < 1.0:
            sorted_scores, sorted_idx = torch.sort(scores, descending=False)
            cum_probs = sorted_scores.softmax(dim=-1).cumsum(dim=-1)  # (B, K)
            remove = cum_probs <= (1 - self.top_p)
            remove[..., -self.min_tokens_to_keep :] = False
            remove = remove.scatter(1, sorted_idx, remove)
            scores = scores.masked_fill(remove, -float("inf"))
        return scores


# --------------------------------------------------------------------------- model steppers


class _CausalStepper:
    """Feeds a decoder-only model the part of each sequence that its cache has not seen."""

    def __init__(self, model: CausalLM, prompt_mask: Tensor | None, use_cache: bool):
        self.model = model
        self.prompt_mask = prompt_mask  # (B, P) or None
        self.cache = model.new_cache() if use_cache else None
        self.n_seen = 0

    def __call__(self, seqs: Tensor) -> Tensor:  # (B, L) -> (B, K)
        B, L = seqs.shape
        start = self.n_seen if self.cache is not None else 0
        if self.prompt_mask is None:
            mask = None
            positions = torch.arange(start, L, device=seqs.device).expand(B, -1)  # (B, T)
        else:
            new = self.prompt_mask.new_ones(B, L - self.prompt_mask.shape[1])
            mask = torch.cat([self.prompt_mask, new], dim=-1)  # (B, L)
            positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)[:, start:]  # (B, T)
        logits, cache = self.model.forward_step(seqs[:, start:], mask, positions, self.cache)
        if self.cache is not None:
            self.cache, self.n_seen = cache, L
        return logits

    def reorder(self, index: Tensor) -> None:
        if self.cache is not None:
            self.cache.reorder(index)


class _Seq2SeqStepper:
    """Feeds an encoder-decoder model the decoder tokens that its cache has not seen."""

    def __init__(self, model: Seq2Seq, memory: Tensor, memory_mask: Tensor | None, use_cache: bool):
        self.model = model
        self.memory = memory  # (B, S, D)
        self.memory_mask = memory_mask  # (B, S) or None
        self.cache = model.new_cache() if use_cache else None
        self.n_seen = 0

    def __call__(self, seqs: Tensor) -> Tensor:  # (B, L) -> (B, K)
        start = self.n_seen if self.cache is not None else 0
        logits, cache = self.model.decode_step(
            seqs[:, start:], self.memory, self.memory_mask, self.cache
        )
        if self.cache is not None:
            self.cache, self.n_seen = cache, seqs.shape[1]
        return logits

    def reorder(self, index: Tensor) -> None:
        if self.cache is not None:
            self.cache.reorder(index)


# --------------------------------------------------------------------------- search


def _greedy_or_sample(
    step: _CausalStepper | _Seq2SeqStepper,
    prompt: Tensor,
    max_new_tokens: int,
    process: _Processor,
    do_sample: bool,
    generator: torch.Generator | None,
    eos: Tensor | None,
    pad_token_id: int | None,
) -> Tensor:  # (B, P) -> (B, P + n_new)
    seqs = prompt
    unfinished = torch.ones(prompt.shape[0], dtype=torch.bool, device=prompt.device)  # (B,)
    for n_generated in range(max_new_tokens):
        scores = process(step(seqs).float(), n_generated)  # (B, K)
        if do_sample:
            probs = F.softmax(scores, dim=-1)
            next_tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
        else:
            next_tokens = scores.argmax(dim=-1)  # (B,)
        if eos is not None:
            next_tokens = torch.where(unfinished, next_tokens, pad_token_id)
        seqs = torch.cat([seqs, next_tokens[:, None]], dim=-1)  # (B, L + 1)
        if eos is not None:
            unfinished &= ~torch.isin(next_tokens, eos)
            if not unfinished.any():
                break
    return seqs


def _gather_beams(x: Tensor, index: Tensor) -> Tensor:  # (B, n, ...), (B, m) -> (B, m, ...)
    while index.dim() < x.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(x, index, dim=1)


def _beam_search(
    step: _CausalStepper | _Seq2SeqStepper,
    prompt: Tensor,
    n_beams: int,
    max_new_tokens: int,
    process: _Processor,
    do_sample: bool,
    generator: torch.Generator | None,
    eos: Tensor | None,
    fill_token_id: int,
    length_penalty: float,
    early_stopping: bool | str,
) -> Tensor:  # (B * n_beams, P) -> (B, P + n_new)
    """transformers' v5 ``_beam_search``, step for step (same candidates, scores, stopping)."""
    device = prompt.device
    B = prompt.shape[0] // n_beams
    P = cur_len = prompt.shape[1]
    max_length = P + max_new_tokens
    n_keep = max(2, 1 + (0 if eos is None else eos.numel())) * n_beams
    top_beams = torch.arange(n_keep, device=device) < n_beams  # (n_keep,)
    batch_offset = torch.arange(B, device=device)[:, None] * n_beams  # (B, 1)

    running = torch.full((B, n_beams, max_length), fill_token_id, dtype=torch.long, device=device)
    running[:, :, :P] = prompt.view(B, n_beams, P)
    sequences = running.clone()  # finished hypotheses (B, n_beams, max_length)
    running_scores = torch.zeros(B, n_beams, device=device)
    running_scores[:, 1:] = -1e9  # only the first beam expands at the first step
    beam_scores = torch.full((B, n_beams), -1e9, device=device)
    n_new = torch.zeros(B, n_beams, dtype=torch.long, device=device)
    finished = torch.zeros(B, n_beams, dtype=torch.bool, device=device)
    improvable = torch.ones(B, 1, dtype=torch.bool, device=device)

    while True:
        logits = step(running[:, :, :cur_len].reshape(B * n_beams, cur_len)).float()
        log_probs = process(F.log_softmax(logits, dim=-1), cur_len - P)  # (B * n_beams, K)
        K = log_probs.shape[-1]
        log_probs = log_probs.view(B, n_beams, K) + running_scores[:, :, None]
        log_probs = log_probs.reshape(B, n_beams * K)

        # top n_keep continuations over all beams (or sampled without replacement)
        if do_sample:
            idx = torch.multinomial(F.softmax(log_probs, -1), n_keep, generator=generator)
            top_lp = log_probs.gather(1, idx)
            top_lp, order = top_lp.sort(dim=-1, descending=True)
            idx = idx.gather(-1, order)
        else:
            top_lp, idx = torch.topk(log_probs, k=n_keep)  # (B, n_keep)
        src_beam = idx // K  # (B, n_keep)
        candidates = _gather_beams(running, src_beam)  # (B, n_keep, max_length)
        candidates[:, :, cur_len] = idx % K
        if cur_len + 1 >= max_length:
            hits = torch.ones_like(top_lp, dtype=torch.bool)  # (B, n_keep)
        elif eos is not None:
            hits = torch.isin(idx % K, eos)
        else:
            hits = torch.zeros_like(top_lp, dtype=torch.bool)

        # the best n_beams unfinished candidates keep running
        running_lp = top_lp + hits.to(torch.float32) * -1.0e9
        keep = torch.topk(running_lp, k=n_beams)[1]  # (B, n_beams)
        running = _gather_beams(candidates, keep)
        running_scores = _gather_beams(running_lp, keep)
        beam_idx = (_gather_beams(src_beam, keep) + batch_offset).flatten()  # (B * n_beams,)

        # finished candidates among the top n_beams compete with earlier hypotheses
        just_finished = hits & top_beams[None, :]
        final_lp = top_lp / ((cur_len + 1 - P) ** length_penalty)
        full = torch.all(finished, dim=-1, keepdim=True) & (early_stopping is True)
        final_lp += full.to(torch.float32) * -1.0e9
        final_lp += (~improvable).to(torch.float32) * -1.0e9
        final_lp += (~just_finished) * -1.0e9
        merged_scores = torch.cat([beam_scores, final_lp], dim=1)
        best = torch.topk(merged_scores, k=n_beams)[1]  # (B, n_beams)
        sequences = _gather_beams(torch.cat([sequences, candidates], dim=1), best)
        beam_scores = _gather_beams(merged_scores, best)
        cand_new = torch.full_like(top_lp, cur_len + 1 - P, dtype=torch.long)
        n_new = _gather_beams(torch.cat([n_new, cand_new], dim=1), best)
        finished = _gather_beams(torch.cat([finished, just_finished], dim=1), best)

        step.reorder(beam_idx)
        cur_len += 1

        # can a running beam still beat the worst finished one? (transformers' heuristic)
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = max_length - P
        else:
            best_length = cur_len - P
        best_possible = running_scores[:, :1] / (best_length**length_penalty)  # (B, 1)
        worst_finished = torch.where(
            finished, torch.min(beam_scores, dim=1, keepdim=True)[0], -1.0e9
        )  # (B, n_beams)
        improvable = improvable & torch.any(best_possible > worst_finished, dim=-1, keepdim=True)
        all_full = bool(finished.all()) and early_stopping is True
        if not bool(improvable.any()) or all_full or bool(hits.all()):
            break

    out_len = P + int(n_new[:, 0].max())
    return sequences[:, 0, :out_len]


# --------------------------------------------------------------------------- entry point


@torch.no_grad()
def generate(
    model: CausalLM | Seq2Seq,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    max_new_tokens: int = 20,
    min_new_tokens: int = 0,
    num_beams: int = 1,
    do_sample: bool = False,
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float = 1.0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    decoder_start_token_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Generate token ids with greedy search, sampling or beam search.

    Args:
        model: a decoder-only model (``forward_step``) or an encoder-decoder model (``encode``
            and ``decode_step``); see the module docstring for the protocol.
        input_ids: prompt (decoder-only, left-padded) or source (encoder-decoder) ids (B, T).
        attention_mask: (B, T), 1 = real token, 0 = padding; default all ones. Decoder-only
            prompts must be left-padded.
        max_new_tokens: maximum number of generated tokens.
        min_new_tokens: the eos tokens are forbidden until this many tokens are generated.
        num_beams: 1 for greedy search / sampling, more for beam search.
        do_sample: sample instead of taking the most likely token (multinomial beam sampling
            when ``num_beams > 1``).
        top_k: when sampling, keep only the k most likely tokens.
        top_p: when sampling, keep the smallest set of tokens whose probability reaches top_p.
        temperature: when sampling, divide the logits by this.
        eos_token_id: id (or ids) that end a sequence; None: sequences end at max_new_tokens.
        pad_token_id: fills the ended sequences; default ``eos_token_id`` (its first id).
        length_penalty: beam search scores a finished hypothesis as
            ``sum_logprobs / n_new**length_penalty``; > 0 favours longer sequences.
        early_stopping: beam search stops a batch item when it has ``num_beams`` finished
            hypotheses (True), when the heuristic says no running beam can beat them (False),
            or when the canonical bound says so (``"never"``), as in transformers.
        decoder_start_token_id: first decoder token of encoder-decoder models (required there).
        generator: random generator used for sampling, for reproducible samples.
        use_cache: reuse keys and values between steps (``model.new_cache()``); False
            recomputes the whole sequence at every step.

    Returns:
        Token ids (B, T + n_new) for decoder-only models (prompt then new tokens) or
        (B, 1 + n_new) for encoder-decoder models (start token then new tokens), where n_new
        is at most ``max_new_tokens``; ended sequences are filled with ``pad_token_id``.

    Raises:
        ValueError: on a bad argument, with a one-line message naming what was expected.
        TypeError: if ``model`` does not implement the decoding protocol.
    """
    is_seq2seq = isinstance(model, Seq2Seq)
    if not is_seq2seq and not isinstance(model, CausalLM):
        raise TypeError(
            f"{type(model).__name__} cannot generate: implement forward_step (decoder-only) or "
            "encode and decode_step (encoder-decoder); see archlab.generate"
        )
    if use_cache and not isinstance(model, Cached):
        raise TypeError(f"{type(model).__name__} has no new_cache(); pass use_cache=False")
    _check_token_tensor("input_ids", input_ids)
    mask = None if attention_mask is None else _check_mask(attention_mask, input_ids)
    if mask is not None and not is_seq2seq and not bool(mask[:, -1].all()):
        raise ValueError(
            "decoder-only prompts must be left-padded: attention_mask[:, -1] must be all 1"
        )
    if mask is not None and bool(mask.all()):
        mask = None  # nothing is padded: let the model skip the padding mask
    _check_int("num_beams", num_beams, 1)
    _check_int("max_new_tokens", max_new_tokens, 0)
    _check_int("min_new_tokens", min_new_tokens, 0)
    if top_k is not None:
        _check_int("top_k", top_k, 1)
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be a number in (0, 1]; got {top_p!r}")
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number; got {temperature!r}")
    if early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never'; got {early_stopping!r}")
    if pad_token_id is not None:
        _check_int("pad_token_id", pad_token_id, 0)
    if is_seq2seq and decoder_start_token_id is None:
        raise ValueError("encoder-decoder models need decoder_start_token_id (an int token id)")
    if decoder_start_token_id is not None:
        _check_int("decoder_start_token_id", decoder_start_token_id, 0)

    device = input_ids.device
    input_ids = input_ids.long()
    eos = _eos_tensor(eos_token_id, device)
    _check_vocab(
        _vocab_size(model),
        input_ids=input_ids,
        eos_token_id=eos,
        pad_token_id=pad_token_id,
        decoder_start_token_id=decoder_start_token_id,
    )
    if pad_token_id is None and eos is not None:
        pad_token_id = int(eos[0])
    # beam sampling keeps a non-eos continuation alive, as transformers does
    min_keep = max(2, 1 + (0 if eos is None else eos.numel())) if num_beams > 1 else 1
    process = _Processor(min_new_tokens, eos, do_sample, temperature, top_k, top_p, min_keep)

    B = input_ids.shape[0]
    if is_seq2seq:
        memory = model.encode(input_ids, mask)  # (B, S, D)
        prompt = torch.full((B, 1), decoder_start_token_id, dtype=torch.long, device=device)
    else:
        prompt = input_ids
    if max_new_tokens == 0:
        return prompt
    if num_beams > 1:
        prompt = prompt.repeat_interleave(num_beams, dim=0)  # (B * n_beams, P)
        mask = None if mask is None else mask.repeat_interleave(num_beams, dim=0)
        if is_seq2seq:
            memory = memory.repeat_interleave(num_beams, dim=0)  # (B * n_beams, S, D)
    if is_seq2seq:
        step = _Seq2SeqStepper(model, memory, mask, use_cache)
    else:
        step = _CausalStepper(model, mask, use_cache)

    if num_beams == 1:
        return _greedy_or_sample(
            step, prompt, max_new_tokens, process, do_sample, generator, eos, pad_token_id
        )
    fill = pad_token_id if pad_token_id is not None else -1
    return _beam_search(
        step,
        prompt,
        num_beams,
        max_new_tokens,
        process,
        do_sample,
        generator,
        eos,
        fill,
        length_penalty,
        early_stopping,
    )
