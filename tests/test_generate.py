"""archlab.generate: greedy, sampling and beam search over the model protocol.

Tiny models built from archlab.nn blocks check caching, padding and sampling; adapters over
transformers' GPT-2 and BART check that the decoding itself (beam search included) returns the
very tokens of transformers' ``generate`` on the same forward passes.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from archlab.generate import generate
from archlab.nn import (
    Decoder,
    DecoderCache,
    DecoderLayer,
    Encoder,
    EncoderLayer,
    LearnedPositionalEmbedding,
    RMSNorm,
    RotaryEmbedding,
)

VOCAB, PAD, BOS, EOS = 40, 1, 0, 2


class TinyCausalLM(nn.Module):
    """GPT-2-like (learned positions, pre-norm, tanh GELU) or LLaMA-like (RoPE, GQA, SwiGLU)."""

    def __init__(self, modern: bool = False, d_model: int = 32, n_layers: int = 2):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d_model)
        self.pos = None if modern else LearnedPositionalEmbedding(64, d_model)
        rotary = RotaryEmbedding(d_model // 4) if modern else None
        layers = [
            DecoderLayer(
                d_model,
                4,
                2 * d_model,
                cross_attention=False,
                n_kv_heads=2 if modern else None,
                activation="silu" if modern else "gelu_tanh",
                glu=modern,
                norm="rmsnorm" if modern else "layernorm",
                norm_first=True,
                rotary=rotary,
            )
            for _ in range(n_layers)
        ]
        self.decoder = Decoder(layers, norm=RMSNorm(d_model) if modern else nn.LayerNorm(d_model))
        self.head = nn.Linear(d_model, VOCAB, bias=False)
        nn.init.normal_(self.head.weight)  # peaked logits: no near ties between tokens

    def new_cache(self) -> DecoderCache:
        return self.decoder.new_cache()

    def forward_step(self, input_ids, attention_mask, position_ids, cache):
        x = self.embed(input_ids)  # (B, T, D)
        if self.pos is not None:
            x = x + self.pos(position_ids)
        h = self.decoder(x, padding_mask=attention_mask, positions=position_ids, cache=cache)
        return self.head(h[:, -1]), cache  # (B, K)


class TinySeq2Seq(nn.Module):
    """BART-like: post-norm, learned positions with offset 2, shared embeddings."""

    def __init__(self, d_model: int = 32):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d_model)
        self.enc_pos = LearnedPositionalEmbedding(64, d_model, offset=2)
        self.dec_pos = LearnedPositionalEmbedding(64, d_model, offset=2)
        self.encoder = Encoder([EncoderLayer(d_model, 4, 2 * d_model) for _ in range(2)])
        self.decoder = Decoder([DecoderLayer(d_model, 4, 2 * d_model) for _ in range(2)])
        self.head = nn.Linear(d_model, VOCAB, bias=False)
        nn.init.normal_(self.head.weight)  # peaked logits: no near ties between tokens

    def new_cache(self) -> DecoderCache:
        return self.decoder.new_cache()

    def encode(self, input_ids, attention_mask):
        positions = torch.arange(input_ids.shape[1])
        x = self.embed(input_ids) + self.enc_pos(positions)  # (B, S, D)
        return self.encoder(x, padding_mask=attention_mask)

    def decode_step(self, decoder_input_ids, memory, memory_mask, cache):
        past = 0 if cache is None else cache.length
        positions = torch.arange(past, past + decoder_input_ids.shape[1])
        x = self.embed(decoder_input_ids) + self.dec_pos(positions)  # (B, T, D)
        h = self.decoder(x, memory, memory_padding_mask=memory_mask, cache=cache)
        return self.head(h[:, -1]), cache  # (B, K)


def _model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return {"gpt": TinyCausalLM, "llama": lambda: TinyCausalLM(modern=True)}.get(
        kind, TinySeq2Seq
    )().eval()


def _prompts(lengths=(6, 3, 5)) -> tuple[Tensor, Tensor]:
    """Left-padded prompts of the given lengths."""
    g = torch.Generator().manual_seed(1)
    T = max(lengths)
    ids = torch.full((len(lengths), T), PAD)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, T - n :] = torch.randint(3, VOCAB, (n,), generator=g)
        mask[i, T - n :] = 1
    return ids, mask


def _kwargs(model):
    return {"decoder_start_token_id": EOS} if isinstance(model, TinySeq2Seq) else {}


def _greedy_reference(model: TinyCausalLM, ids: Tensor, n: int) -> Tensor:
    """Argmax decoding by full recomputation, one unpadded sequence."""
    for _ in range(n):
        logits, _ = model.forward_step(ids, None, torch.arange(ids.shape[1])[None], None)
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids


@pytest.mark.parametrize("kind", ["gpt", "llama"])
def test_greedy_equals_argmax_loop_and_beam_one(kind):
    model = _model(kind)
    ids, _ = _prompts((5,))
    expected = _greedy_reference(model, ids, 8)
    torch.testing.assert_close(generate(model, ids, max_new_tokens=8), expected)
    same = generate(model, ids, max_new_tokens=8, num_beams=1, length_penalty=2.0)
    torch.testing.assert_close(same, expected)
    assert len(set(expected[0, 5:].tolist())) > 2  # the tiny model is not degenerate


@pytest.mark.parametrize("kind", ["gpt", "llama", "seq2seq"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_cached_equals_uncached(kind, num_beams):
    model = _model(kind)
    ids, mask = _prompts()
    kw = dict(max_new_tokens=10, num_beams=num_beams, eos_token_id=7, pad_token_id=PAD)
    cached = generate(model, ids, mask, use_cache=True, **kw, **_kwargs(model))
    uncached = generate(model, ids, mask, use_cache=False, **kw, **_kwargs(model))
    torch.testing.assert_close(cached, uncached)


@pytest.mark.parametrize("kind", ["gpt", "llama"])
@pytest.mark.parametrize("num_beams", [1, 2])
def test_left_padding_does_not_change_results(kind, num_beams):
    model = _model(kind)
    ids, mask = _prompts((6, 3, 5))
    batched = generate(model, ids, mask, max_new_tokens=8, num_beams=num_beams)
    for i in range(3):
        alone = ids[i : i + 1, mask[i].bool()]
        out = generate(model, alone, max_new_tokens=8, num_beams=num_beams)
        torch.testing.assert_close(batched[i, -8:], out[0, -8:])


def test_source_padding_does_not_change_seq2seq_results():
    model = _model("seq2seq")
    ids, _ = _prompts((6, 6))
    padded = torch.cat([ids, torch.full((2, 3), PAD)], dim=1)
    mask = torch.ones_like(padded)
    mask[:, 6:] = 0
    for num_beams in (1, 3):
        kw = dict(max_new_tokens=8, num_beams=num_beams, decoder_start_token_id=EOS)
        torch.testing.assert_close(generate(model, padded, mask, **kw), generate(model, ids, **kw))


def test_sampling_is_reproducible_and_top_k_one_is_greedy():
    model = _model("gpt")
    ids, mask = _prompts()

    def sample(seed, **kw):
        g = torch.Generator().manual_seed(seed)
        return generate(model, ids, mask, max_new_tokens=12, do_sample=True, generator=g, **kw)

    torch.testing.assert_close(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))
    greedy = generate(model, ids, mask, max_new_tokens=12)
    torch.testing.assert_close(sample(3, top_k=1), greedy)
    torch.testing.assert_close(sample(4, top_p=1e-6), greedy)
    torch.testing.assert_close(sample(5, temperature=1e-4), greedy)
    assert torch.equal(
        sample(6, top_k=5, top_p=0.9, temperature=0.7),
        sample(6, top_k=5, top_p=0.9, temperature=0.7),
    )
    beams = dict(num_beams=2, top_k=5)
    assert torch.equal(sample(7, **beams), sample(7, **beams))


def test_eos_ends_sequences_and_min_new_tokens_masks_it():
    model = _model("gpt")
    ids, mask = _prompts()
    free = generate(model, ids, mask, max_new_tokens=12)
    eos = int(free[0, 6 + 2])  # the third new token of the first sequence
    out = generate(model, ids, mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=PAD)
    torch.testing.assert_close(out[0, : 6 + 3], free[0, : 6 + 3])
    assert (out[0, 6 + 3 :] == PAD).all()
    for row in out[:, 6:]:  # after its eos, a sequence holds only padding
        hits = (row == eos).nonzero()
        if len(hits):
            assert (row[int(hits[0]) + 1 :] == PAD).all()
    late = generate(model, ids, mask, max_new_tokens=12, eos_token_id=eos, min_new_tokens=5)
    assert not (late[:, 6 : 6 + 5] == eos).any()
    alone = generate(model, ids[:1], max_new_tokens=12, eos_token_id=eos)
    assert alone.shape == (1, 6 + 3)  # stops once every sequence has ended
    assert generate(model, ids, mask, max_new_tokens=0).shape == ids.shape


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(num_beams=0), "num_beams must be an integer >= 1"),
        (dict(input_ids=torch.rand(2, 3)), "input_ids must be an integer tensor"),
        (dict(input_ids=torch.tensor([3, 4, 5])), r"input_ids must have shape \(B, T\)"),
        (dict(attention_mask=torch.ones(2, 4)), "attention_mask must have the shape"),
        (dict(attention_mask=torch.tensor([[1, 1, 0], [1, 1, 1]])), "must be left-padded"),
        (dict(attention_mask=torch.tensor([[0, 0, 0], [1, 1, 1]])), "at least one real token"),
        (dict(top_p=1.5), r"top_p must be a number in \(0, 1\]"),
        (dict(temperature=0.0), "temperature must be a positive number"),
        (dict(early_stopping="always"), "early_stopping must be"),
        (dict(eos_token_id="2"), "eos_token_id must be"),
    ],
)
def test_bad_input_is_a_one_line_value_error(change, message):
    model = _model("gpt")
    kwargs = dict(input_ids=torch.tensor([[3, 4, 5], [6, 7, 8]]), max_new_tokens=2) | change
    with pytest.raises(ValueError, match=message) as info:
        generate(model, **kwargs)
    assert "\n" not in str(info.value)


def test_protocol_errors():
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        generate(_model("seq2seq"), torch.tensor([[3, 4]]))
    with pytest.raises(TypeError, match="forward_step"):
        generate(nn.Linear(2, 2), torch.tensor([[3, 4]]))


# --------------------------------------------------------------------------- transformers parity


class _HFCache:
    def __init__(self):
        self.inner = None

    def reorder(self, beam_idx: Tensor) -> None:
        self.inner.reorder_cache(beam_idx)


class HFCausalAdapter:
    """archlab's protocol over a transformers causal LM."""

    def __init__(self, hf):
        self.hf = hf

    def new_cache(self):
        return _HFCache()

    def forward_step(self, input_ids, attention_mask, position_ids, cache):
        out = self.hf(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=None if cache is None else cache.inner,
            use_cache=cache is not None,
        )
        if cache is not None:
            cache.inner = out.cache
        return out.logits[:, -1], cache


class HFSeq2SeqAdapter(HFCausalAdapter):
    """archlab's protocol over a transformers encoder-decoder."""

    def encode(self, input_ids, attention_mask):
        encoder = self.hf.get_encoder()
        return encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def decode_step(self, decoder_input_ids, memory, memory_mask, cache):
        out = self.hf(
            encoder_outputs=(memory,),
            attention_mask=memory_mask,
            decoder_input_ids=decoder_input_ids,
            cache=None if cache is None else cache.inner,
            use_cache=cache is not None,
        )
        if cache is not None:
            cache.inner = out.cache
        return out.logits[:, -1], cache


@pytest.fixture(scope="module")
def hf_gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        initializer_range=0.3,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize(
    ("num_beams", "length_penalty", "early_stopping", "eos", "min_new_tokens"),
    [
        (1, 1.0, False, 23, 0),
        (3, 1.0, False, 23, 0),
        (3, 2.0, True, 39, 0),
        (3, -0.5, "never", 39, 2),
        (4, 0.0, False, 24, 0),
    ],
)
def test_same_tokens_as_transformers_gpt2(
    hf_gpt2, num_beams, length_penalty, early_stopping, eos, min_new_tokens
):
    ids, mask = _prompts((6, 4, 5, 6))
    kw = dict(
        max_new_tokens=12,
        min_new_tokens=min_new_tokens,
        num_beams=num_beams,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        eos_token_id=eos,
        pad_token_id=3,
    )
    expected = hf_gpt2.generate(ids, attention_mask=mask, do_sample=False, **kw)
    ours = generate(HFCausalAdapter(hf_gpt2), ids, mask, **kw)
    torch.testing.assert_close(ours, expected)


@pytest.mark.parametrize(
    "settings",
    [dict(top_k=5, top_p=0.9, temperature=0.7), dict(num_beams=3, top_k=40, top_p=0.8)],
)
def test_same_samples_as_transformers_gpt2(hf_gpt2, settings):
    """With generator=None both draw from the global RNG: same seed, same samples."""
    ids, mask = _prompts((6, 4, 5, 6))
    kw = dict(max_new_tokens=10, do_sample=True, eos_token_id=24, pad_token_id=3) | settings
    torch.manual_seed(5)
    expected = hf_gpt2.generate(ids, attention_mask=mask, **kw)
    torch.manual_seed(5)
    ours = generate(HFCausalAdapter(hf_gpt2), ids, mask, **kw)
    torch.testing.assert_close(ours, expected)


def test_same_tokens_as_transformers_bart():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(1)
    config = transformers.BartConfig(
        vocab_size=VOCAB,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        init_std=1.0,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=EOS,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
    )
    hf = transformers.BartForConditionalGeneration(config).eval()
    ids = torch.randint(4, VOCAB, (3, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    free = hf.generate(ids, attention_mask=mask, max_new_tokens=10, eos_token_id=None)
    assert len(set(free[0].tolist())) > 3  # not degenerate
    eos = int(free[0, 4])
    for num_beams, length_penalty, early_stopping in [(1, 1.0, False), (3, 1.5, True)]:
        kw = dict(
            max_new_tokens=10,
            num_beams=num_beams,
            length_penalty=length_penalty,
            early_stopping=early_stopping,
            eos_token_id=eos,
            pad_token_id=PAD,
        )
        expected = hf.generate(ids, attention_mask=mask, do_sample=False, **kw)
        ours = generate(HFSeq2SeqAdapter(hf), ids, mask, decoder_start_token_id=EOS, **kw)
        torch.testing.assert_close(ours, expected)


def test_token_ids_outside_a_stated_vocabulary_are_refused_in_one_line():
    model = _model("gpt")
    model.vocab_size = VOCAB  # a model that states its vocabulary (as cfg.vocab_size does)
    ids = torch.tensor([[3, 4, 5]])
    for kwargs, name in (
        (dict(input_ids=torch.tensor([[3, VOCAB, 5]])), "input_ids"),
        (dict(input_ids=ids, eos_token_id=[EOS, VOCAB + 3]), "eos_token_id"),
        (dict(input_ids=ids, pad_token_id=VOCAB), "pad_token_id"),
    ):
        with pytest.raises(ValueError, match=f"{name} holds token id .* vocabulary of {VOCAB}"):
            generate(model, max_new_tokens=2, **kwargs)
    assert generate(model, ids, max_new_tokens=2).shape == (1, 5)
