"""BART — Lewis, Liu, Goyal, Ghazvininejad, Mohamed, Levy, Stoyanov, Zettlemoyer, 2019
(arXiv 1910.13461).

A standard Transformer encoder-decoder (``BartForConditionalGeneration`` of transformers, which
is the exact parity target): token embeddings shared by the encoder, the decoder and the output
layer (multiplied by ``sqrt(d_model)`` when ``scale_embedding``), learned positions read at row
``position + 2`` (fairseq's offset), a LayerNorm on the embeddings (``layernorm_embedding``),
post-norm layers with GELU feed-forwards (``archlab.nn.EncoderLayer`` / ``DecoderLayer``), and
logits ``h @ shared.T + final_logits_bias``. Pretraining corrupts documents with the paper's
noising functions and reconstructs them (cross-entropy on the original tokens).

The model implements archlab's encoder-decoder decoding protocol (``encode``, ``decode_step``,
``new_cache``) and ``generate``; ``archlab.build("bart", pretrained=DIR)`` loads a Hugging
Face-format directory and ``save_pretrained(DIR)`` writes one (``hf.py``). Deviations from the
paper are listed in this folder's README.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.hf import HF_ACTIVATIONS, InputError, check_attention_mask, check_token_ids
from archlab.nn import (
    Decoder,
    DecoderCache,
    DecoderLayer,
    Encoder,
    EncoderLayer,
    LayerNorm,
    LearnedPositionalEmbedding,
)
from archlab.registry import PaperSpec

POSITION_OFFSET = 2  # BART's learned position tables have two extra leading rows


@dataclass(frozen=True)
class BartConfig:
    """BART hyper-parameters, named as transformers' ``BartConfig`` (defaults: bart-base).

    Attributes:
        vocab_size: vocabulary size K.
        d_model: width D.
        encoder_layers: encoder layers.
        decoder_layers: decoder layers.
        encoder_attention_heads: encoder heads nh (must divide D).
        decoder_attention_heads: decoder heads nh (self and cross; must divide D).
        encoder_ffn_dim: encoder feed-forward hidden width.
        decoder_ffn_dim: decoder feed-forward hidden width.
        max_position_embeddings: positions of each learned table (longest input and output).
        activation_function: transformers' name: ``gelu`` (BART), ``gelu_new``, ``relu``, ...
        dropout: dropout on the embeddings and on each sublayer's output.
        attention_dropout: dropout on the attention weights.
        activation_dropout: dropout on the feed-forward hidden activations.
        init_std: standard deviation of the normal initialisation of weights and embeddings.
        scale_embedding: multiply token embeddings by ``sqrt(d_model)``.
        pad_token_id: padding token (its embedding gets no gradient, as in transformers).
        bos_token_id: beginning-of-sequence token.
        eos_token_id: end-of-sequence token (``generate`` stops on it), or None.
        decoder_start_token_id: first decoder token (``shift_tokens_right``, ``generate``).
        forced_eos_token_id: kept for ``config.json`` round trips; transformers' ``generate``
            forces this token at the last step, archlab's ``generate`` does not.
    """

    vocab_size: int = 50265
    d_model: int = 768
    encoder_layers: int = 6
    decoder_layers: int = 6
    encoder_attention_heads: int = 12
    decoder_attention_heads: int = 12
    encoder_ffn_dim: int = 3072
    decoder_ffn_dim: int = 3072
    max_position_embeddings: int = 1024
    activation_function: str = "gelu"
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.1
    init_std: float = 0.02
    scale_embedding: bool = False
    pad_token_id: int = 1
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2
    decoder_start_token_id: int = 2
    forced_eos_token_id: int | None = 2

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "d_model",
            "encoder_attention_heads",
            "decoder_attention_heads",
            "encoder_ffn_dim",
            "decoder_ffn_dim",
            "max_position_embeddings",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("encoder_layers", "decoder_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        for name in ("encoder_attention_heads", "decoder_attention_heads"):
            if self.d_model % getattr(self, name):
                raise ValueError(
                    f"d_model={self.d_model} must be divisible by {name}={getattr(self, name)}"
                )
        if self.activation_function not in HF_ACTIVATIONS:
            raise ValueError(
                f"activation_function must be one of {', '.join(HF_ACTIVATIONS)}; got "
                f"{self.activation_function!r}"
            )
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)}")
        if self.init_std <= 0:
            raise ValueError(f"init_std must be > 0; got {self.init_std}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"pad_token_id={self.pad_token_id} must be in [0, vocab_size={self.vocab_size})"
            )
        if not 0 <= self.decoder_start_token_id < self.vocab_size:
            raise ValueError(
                f"decoder_start_token_id={self.decoder_start_token_id} must be in "
                f"[0, vocab_size={self.vocab_size})"
            )
        for name in ("bos_token_id", "eos_token_id", "forced_eos_token_id"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None; got {value}")


class Seq2SeqLMOutput(NamedTuple):
    """``Bart.forward`` with ``labels``: the mean cross-entropy and the logits (B, T, K)."""

    loss: Tensor
    logits: Tensor


def shift_tokens_right(ids: Tensor, pad_token_id: int, decoder_start_token_id: int) -> Tensor:
    """Decoder inputs from targets: prepend the start token, drop the last token, and replace
    ignored labels (-100) by padding, as transformers' ``shift_tokens_right``. (B, T) -> (B, T).
    """
    shifted = ids.new_empty(ids.shape)
    shifted[:, 1:] = ids[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


class Bart(nn.Module):
    """BART encoder-decoder with the tied language-modelling head.

    Parameter names (transformers' in ``hf.py``): ``shared``, ``encoder_positions``,
    ``encoder_embed_norm``, ``encoder`` (``archlab.nn.Encoder``), ``decoder_positions``,
    ``decoder_embed_norm``, ``decoder`` (``archlab.nn.Decoder``), ``final_logits_bias``.
    """

    def __init__(self, cfg: BartConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        activation = HF_ACTIVATIONS[cfg.activation_function]
        self.embed_scale = math.sqrt(d) if cfg.scale_embedding else 1.0
        self.shared = nn.Embedding(cfg.vocab_size, d, padding_idx=cfg.pad_token_id)
        self.encoder_positions = LearnedPositionalEmbedding(
            cfg.max_position_embeddings, d, offset=POSITION_OFFSET
        )
        self.decoder_positions = LearnedPositionalEmbedding(
            cfg.max_position_embeddings, d, offset=POSITION_OFFSET
        )
        self.encoder_embed_norm = LayerNorm(d)
        self.decoder_embed_norm = LayerNorm(d)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        common = dict(
            activation=activation,
            dropout=cfg.dropout,
            attn_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout,
        )
        self.encoder = Encoder(
            [
                EncoderLayer(d, cfg.encoder_attention_heads, cfg.encoder_ffn_dim, **common)
                for _ in range(cfg.encoder_layers)
            ]
        )
        self.decoder = Decoder(
            [
                DecoderLayer(d, cfg.decoder_attention_heads, cfg.decoder_ffn_dim, **common)
                for _ in range(cfg.decoder_layers)
            ]
        )
        self.register_buffer("final_logits_bias", torch.zeros(1, cfg.vocab_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """transformers' initialisation: normal(0, init_std) weights and embeddings (padding row
        zero), zero biases, unit LayerNorms, zero ``final_logits_bias``."""
        std = self.cfg.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
                if module.padding_idx is not None:
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.final_logits_bias)

    # ------------------------------------------------------------------ pieces

    def _embed(self, ids: Tensor) -> Tensor:  # (B, T) -> (B, T, D)
        x = self.shared(ids)
        return x * self.embed_scale if self.embed_scale != 1.0 else x

    @staticmethod
    def _positions(table: LearnedPositionalEmbedding, start: int, n: int) -> Tensor:
        """Rows of positions ``start .. start + n - 1`` (n, D), read as one slice (no gather,
        no per-step reduction to check the bounds)."""
        if start + n > table.n_positions:
            raise InputError(
                f"position {start + n - 1} is beyond max_position_embeddings="
                f"{table.n_positions}: the sequence is longer than the model's position table"
            )
        return table.weight[start + table.offset : start + n + table.offset]

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Encoder output ``memory`` (B, S, D) of the source ``input_ids`` (B, S).

        Args:
            input_ids: source token ids (B, S).
            attention_mask: (B, S), 1 = real token, 0 = padding; None: no padding.

        Raises:
            InputError: for ids of the wrong type or shape, out of the vocabulary, or longer
                than ``max_position_embeddings``.
        """
        cfg = self.cfg
        check_token_ids(input_ids, "input_ids", cfg.vocab_size, cfg.max_position_embeddings)
        check_attention_mask(attention_mask, input_ids)
        S = input_ids.shape[1]
        x = self._embed(input_ids) + self._positions(self.encoder_positions, 0, S)
        x = self.encoder_embed_norm(x)  # (B, S, D)
        if self.training:
            x = self.embed_dropout(x)
        return self.encoder(x, padding_mask=_none_if_full(attention_mask))

    def decode(
        self,
        decoder_input_ids: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        """Decoder hidden states (B, T, D) of ``decoder_input_ids`` (B, T).

        Args:
            decoder_input_ids: decoder tokens not yet in ``cache`` (B, T); their positions
                start at ``cache.length``.
            memory: encoder output (B, S, D).
            memory_mask: (B, S) the encoder's attention mask, or None.
            decoder_attention_mask: (B, past + T) 1 = real decoder token, or None.
            cache: a ``DecoderCache`` from ``new_cache`` (extended in place), or None.
        """
        past = 0 if cache is None else cache.length
        T = decoder_input_ids.shape[1]
        x = self._embed(decoder_input_ids)
        x = self.decoder_embed_norm(x + self._positions(self.decoder_positions, past, T))
        if self.training:
            x = self.embed_dropout(x)  # (B, T, D)
        return self.decoder(
            x,
            memory,
            padding_mask=decoder_attention_mask,
            memory_padding_mask=memory_mask,
            cache=cache,
        )

    def lm_head(self, h: Tensor) -> Tensor:  # (..., D) -> (..., K)
        """Logits over the vocabulary: tied embeddings plus ``final_logits_bias``."""
        flat = h.reshape(-1, h.shape[-1])  # (N, D): one fused matmul + bias, no (N, K) temporary
        logits = torch.addmm(self.final_logits_bias, flat, self.shared.weight.t())  # (N, K)
        return logits.view(*h.shape[:-1], logits.shape[-1])

    # ------------------------------------------------------------------ training / scoring

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        decoder_input_ids: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> Tensor | Seq2SeqLMOutput:
        """Teacher-forced logits, as ``BartForConditionalGeneration``.

        Args:
            input_ids: source token ids (B, S).
            attention_mask: (B, S), 1 = real token, 0 = padding.
            decoder_input_ids: decoder inputs (B, T); default ``shift_tokens_right(labels)``,
                or of ``input_ids`` when there are no labels (denoising pretraining).
            decoder_attention_mask: (B, T), 1 = real decoder token; default none padded.
            labels: target ids (B, T); -100 is ignored by the loss.

        Returns:
            logits (B, T, K); with ``labels``, ``Seq2SeqLMOutput(loss, logits)``.
        """
        cfg = self.cfg
        if labels is not None:
            _check_labels(labels, cfg.vocab_size)
        if decoder_input_ids is None:
            source = labels if labels is not None else input_ids
            decoder_input_ids = shift_tokens_right(
                source, cfg.pad_token_id, cfg.decoder_start_token_id
            )
        check_token_ids(
            decoder_input_ids, "decoder_input_ids", cfg.vocab_size, cfg.max_position_embeddings
        )
        check_attention_mask(decoder_attention_mask, decoder_input_ids, "decoder_attention_mask")
        memory = self.encode(input_ids, attention_mask)  # (B, S, D)
        h = self.decode(
            decoder_input_ids,
            memory,
            _none_if_full(attention_mask),
            _none_if_full(decoder_attention_mask),
        )
        logits = self.lm_head(h)  # (B, T, K)
        if labels is None:
            return logits
        if labels.shape != decoder_input_ids.shape:
            raise InputError(
                f"labels must have the shape of decoder_input_ids {tuple(decoder_input_ids.shape)}"
                f"; got {tuple(labels.shape)}"
            )
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return Seq2SeqLMOutput(loss, logits)

    # ------------------------------------------------------------------ decoding protocol

    def new_cache(self) -> DecoderCache:
        """An empty self- and cross-attention cache for ``decode_step``."""
        return self.decoder.new_cache()

    def decode_step(
        self,
        decoder_input_ids: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None,
        cache: DecoderCache | None,
    ) -> tuple[Tensor, DecoderCache | None]:
        """Logits (B, K) of the token after the last decoder position, and the cache.

        ``decoder_input_ids`` (B, T) are the tokens the cache has not seen (all of them when
        ``cache`` is None); cross-attention keys and values are computed from ``memory`` once,
        at the first step, and reused (``archlab.nn.MultiHeadAttention``).
        """
        h = self.decode(decoder_input_ids, memory, memory_mask, None, cache)  # (B, T, D)
        return self.lm_head(h[:, -1]), cache

    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        max_new_tokens: int = 20,
        **kwargs: Any,
    ) -> Tensor:
        """``archlab.generate.generate`` with this config's token ids as defaults.

        ``eos_token_id``, ``pad_token_id`` and ``decoder_start_token_id`` default to the
        config's; every other argument is ``archlab.generate.generate``'s (greedy, beam search,
        sampling). Returns (B, 1 + n_new): the start token then the new tokens. Unlike
        transformers, ``forced_eos_token_id`` is not applied. Call ``eval()`` first.

        Raises:
            InputError: if ``max_new_tokens`` would go beyond the decoder's position table.
        """
        from archlab.generate import generate

        cfg = self.cfg
        if isinstance(max_new_tokens, int) and max_new_tokens > cfg.max_position_embeddings:
            raise InputError(
                f"max_new_tokens={max_new_tokens} exceeds the decoder's "
                f"max_position_embeddings={cfg.max_position_embeddings}"
            )
        check_token_ids(input_ids, "input_ids", cfg.vocab_size, cfg.max_position_embeddings)
        kwargs.setdefault("eos_token_id", cfg.eos_token_id)
        kwargs.setdefault("pad_token_id", cfg.pad_token_id)
        kwargs.setdefault("decoder_start_token_id", cfg.decoder_start_token_id)
        with torch.inference_mode():  # no autograd bookkeeping on the many small decoding ops
            out = generate(self, input_ids, attention_mask, max_new_tokens=max_new_tokens, **kwargs)
        return out.clone()  # a normal tensor, usable later in autograd (e.g. as training input)

    # ------------------------------------------------------------------ Hugging Face format

    @classmethod
    def from_pretrained(cls, directory: str) -> Bart:
        """Load a Hugging Face-format BART directory (``config.json`` + ``model.safetensors``)."""
        from archlab.papers.language.bart.hf import from_pretrained

        return from_pretrained(directory)

    def save_pretrained(self, directory: str) -> None:
        """Write a directory that ``BartForConditionalGeneration.from_pretrained`` loads."""
        from archlab.papers.language.bart.hf import save_pretrained

        save_pretrained(self, directory)


def _none_if_full(mask: Tensor | None) -> Tensor | None:
    """Drop a padding mask that pads nothing, so attention runs without a mask."""
    return None if mask is None or bool(mask.all()) else mask


def _check_labels(labels: Any, vocab_size: int) -> None:
    if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or labels.dim() != 2:
        raise InputError(f"labels must be an integer tensor (B, T); got {_describe(labels)}")
    bad = (labels != -100) & ((labels < 0) | (labels >= vocab_size))
    if bool(bad.any()):
        raise InputError(f"labels must be -100 (ignored) or ids in [0, {vocab_size})")


def _describe(x: Any) -> str:
    return f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else str(type(x))


VARIANTS = {
    "tiny": BartConfig(
        vocab_size=96,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        dropout=0.1,
        attention_dropout=0.0,
        activation_dropout=0.0,
    ),
    "base": BartConfig(),  # facebook/bart-base
    "large": BartConfig(  # facebook/bart-large
        d_model=1024,
        encoder_layers=12,
        decoder_layers=12,
        encoder_attention_heads=16,
        decoder_attention_heads=16,
        encoder_ffn_dim=4096,
        decoder_ffn_dim=4096,
    ),
}


def _example_input(model: Bart, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    low = min(3, cfg.vocab_size - 1)
    ids = torch.randint(low, cfg.vocab_size, (batch_size, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, 9:] = 0  # the last source is padded
    ids = ids.masked_fill(mask == 0, cfg.pad_token_id)
    decoder_input_ids = torch.randint(low, cfg.vocab_size, (batch_size, 7), generator=g)
    decoder_input_ids[:, 0] = cfg.decoder_start_token_id
    return ids, mask, decoder_input_ids


def _from_pretrained(directory: str) -> Bart:
    from archlab.papers.language.bart.hf import from_pretrained

    return from_pretrained(directory)


SPEC = PaperSpec(
    slug="bart",
    family="language",
    title=(
        "BART: Denoising Sequence-to-Sequence Pre-training for Natural Language Generation, "
        "Translation, and Comprehension"
    ),
    arxiv="1910.13461",
    claim=(
        "Pretraining an encoder-decoder to reconstruct corrupted text (text infilling) makes it "
        "better on a low-data downstream seq2seq task than the same model trained from scratch "
        "with the same steps; infilling ranks at least as high as document rotation."
    ),
    config=BartConfig,
    build=Bart,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"seq2seq", "generate", "pretrained", "transformers-parity"}),
    fidelity="faithful",
    experiment="archlab.papers.language.bart.experiment",
    from_pretrained=_from_pretrained,
)
