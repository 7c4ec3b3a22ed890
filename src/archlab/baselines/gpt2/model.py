"""GPT-2 causal language model (baseline).

Radford, Wu, Child, Luan, Amodei, Sutskever, "Language Models are Unsupervised Multitask
Learners", OpenAI 2019 (no arXiv id). transformers' ``GPT2LMHeadModel`` is the parity target.

Token plus learned position embeddings, pre-norm decoder blocks without cross-attention
(``archlab.nn.DecoderLayer`` with ``norm_first=True``: causal self-attention and a ``gelu_new``
MLP), a final LayerNorm (``ln_f``) and an output layer tied to the token embeddings. The model
implements archlab's decoder-only decoding protocol (``forward_step`` with a KV cache,
``new_cache``) and ``generate``; left-padded prompts read their positions from the attention
mask. ``archlab.build("gpt2", pretrained=DIR)`` loads a Hugging Face-format directory and
``save_pretrained(DIR)`` writes one (``hf.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.hf import HF_ACTIVATIONS, InputError, check_attention_mask, check_token_ids
from archlab.nn import Decoder, DecoderCache, DecoderLayer, LayerNorm, LearnedPositionalEmbedding
from archlab.registry import PaperSpec


@dataclass(frozen=True)
class GPT2Config:
    """GPT-2 hyper-parameters, named as transformers' ``GPT2Config`` (defaults: gpt2, 124M).

    Attributes:
        vocab_size: vocabulary size K.
        n_positions: positions of the learned table (longest sequence).
        n_embd: width D.
        n_layer: blocks L.
        n_head: heads nh (must divide D).
        n_inner: MLP hidden width; None means 4 * D.
        activation_function: transformers' name (``gelu_new`` is the tanh GELU).
        resid_pdrop: dropout on each sublayer's output.
        embd_pdrop: dropout on the embeddings.
        attn_pdrop: dropout on the attention weights.
        layer_norm_epsilon: LayerNorm epsilon.
        initializer_range: std of the normal initialisation (residual projections get
            ``initializer_range / sqrt(2 * n_layer)``, as GPT-2).
        scale_attn_weights: scale scores by ``1 / sqrt(hd)``.
        scale_attn_by_inverse_layer_idx: also divide layer ``i``'s scores by ``i + 1``.
        bos_token_id: beginning-of-sequence token.
        eos_token_id: end-of-sequence token (``generate`` stops on it), or None.
        pad_token_id: padding token for ``generate`` (None: the eos token).
    """

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_positions", "n_embd", "n_head"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.n_layer < 0:
            raise ValueError(f"n_layer must be >= 0; got {self.n_layer}")
        if self.n_inner is not None and self.n_inner < 1:
            raise ValueError(f"n_inner must be >= 1 or None; got {self.n_inner}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.activation_function not in HF_ACTIVATIONS:
            raise ValueError(
                f"activation_function must be one of {', '.join(HF_ACTIVATIONS)}; got "
                f"{self.activation_function!r}"
            )
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)}")
        if self.layer_norm_epsilon <= 0 or self.initializer_range <= 0:
            raise ValueError("layer_norm_epsilon and initializer_range must be > 0")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None; got {value}")

    @property
    def d_hidden(self) -> int:
        """The MLP hidden width (``n_inner`` or 4 * D)."""
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd


class CausalLMOutput(NamedTuple):
    """``GPT2.forward`` with ``labels``: the mean next-token cross-entropy and the logits."""

    loss: Tensor
    logits: Tensor


def gpt2_block(cfg: GPT2Config, layer_idx: int) -> DecoderLayer:
    """One pre-norm GPT-2 block (no cross-attention) with GPT-2's attention scale."""
    block = DecoderLayer(
        cfg.n_embd,
        cfg.n_head,
        cfg.d_hidden,
        cross_attention=False,
        activation=HF_ACTIVATIONS[cfg.activation_function],
        norm_eps=cfg.layer_norm_epsilon,
        norm_first=True,
        dropout=cfg.resid_pdrop,
        attn_dropout=cfg.attn_pdrop,
    )
    scale = 1.0 / math.sqrt(cfg.n_embd // cfg.n_head) if cfg.scale_attn_weights else 1.0
    if cfg.scale_attn_by_inverse_layer_idx:
        scale /= layer_idx + 1
    if not cfg.scale_attn_weights or cfg.scale_attn_by_inverse_layer_idx:
        block.self_attn.scale = scale  # default (None) is 1 / sqrt(hd)
    return block


class GPT2(nn.Module):
    """GPT-2 language model: (B, T) token ids -> (B, T, K) next-token logits.

    Parameter names (transformers' in ``hf.py``): ``wte``, ``wpe``, ``decoder.layers.i``
    (``archlab.nn.DecoderLayer``), ``decoder.norm`` (``ln_f``); the head is ``wte``.
    """

    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = LearnedPositionalEmbedding(cfg.n_positions, cfg.n_embd)
        self.drop = nn.Dropout(cfg.embd_pdrop)
        self.decoder = Decoder(
            [gpt2_block(cfg, i) for i in range(cfg.n_layer)],
            norm=LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """transformers' GPT-2 initialisation: normal(0, initializer_range) weights and
        embeddings, zero biases, unit LayerNorms, residual projections (attention output and
        MLP output) normal(0, initializer_range / sqrt(2 * n_layer))."""
        std = self.cfg.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        residual_std = std / math.sqrt(2 * max(self.cfg.n_layer, 1))
        for layer in self.decoder.layers:
            nn.init.normal_(layer.self_attn.out_proj.weight, std=residual_std)
            nn.init.normal_(layer.ffn.fc2.weight, std=residual_std)

    def hidden_states(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> Tensor:  # (B, T) -> (B, T, D)
        """Final-norm hidden states of ``input_ids``.

        Args:
            input_ids: tokens (B, T) not yet in ``cache``.
            attention_mask: (B, past + T), 1 = real token, 0 = padding; None: none padded.
            position_ids: (B, T) or (T,); default ``past + arange(T)`` (as transformers'
                forward; pass ``attention_mask.cumsum(-1) - 1`` for left-padded batches).
            cache: a ``DecoderCache`` from ``new_cache`` (extended in place), or None.
        """
        past = 0 if cache is None else cache.length
        T = input_ids.shape[1]
        if past + T > self.cfg.n_positions:
            raise InputError(
                f"the sequence reaches position {past + T} but the model has n_positions="
                f"{self.cfg.n_positions}; shorten the input"
            )
        if position_ids is None:
            pos = self.wpe.weight[past : past + T]  # (T, D): one slice, no gather
        else:
            pos = self.wpe(position_ids)  # (B, T, D), bounds checked
        x = self.wte(input_ids) + pos  # (B, T, D)
        if self.training:
            x = self.drop(x)
        return self.decoder(x, padding_mask=attention_mask, cache=cache)

    def lm_head(self, h: Tensor) -> Tensor:  # (..., D) -> (..., K)
        """Logits: the tied token embeddings."""
        return F.linear(h, self.wte.weight)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> Tensor | CausalLMOutput:
        """Logits of the next token at every position, as ``GPT2LMHeadModel``.

        Args:
            input_ids: tokens (B, T).
            attention_mask: (B, T), 1 = real token, 0 = padding.
            position_ids: (B, T); default ``arange(T)`` (transformers' default too).
            labels: (B, T) targets aligned with ``input_ids`` (shifted inside, as
                transformers); -100 is ignored.

        Returns:
            logits (B, T, K); with ``labels``, ``CausalLMOutput(loss, logits)``.
        """
        cfg = self.cfg
        check_token_ids(input_ids, "input_ids", cfg.vocab_size, cfg.n_positions)
        check_attention_mask(attention_mask, input_ids)
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        logits = self.lm_head(self.hidden_states(input_ids, attention_mask, position_ids))
        if labels is None:
            return logits
        if not isinstance(labels, Tensor) or labels.shape != input_ids.shape:
            raise InputError(
                f"labels must be a tensor shaped like input_ids {tuple(input_ids.shape)}"
            )
        loss = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1)
        )
        return CausalLMOutput(loss, logits)

    # ------------------------------------------------------------------ decoding protocol

    def new_cache(self) -> DecoderCache:
        """An empty KV cache for ``forward_step``."""
        return self.decoder.new_cache()

    def forward_step(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        position_ids: Tensor,
        cache: DecoderCache | None,
    ) -> tuple[Tensor, DecoderCache | None]:
        """Logits (B, K) of the token after ``input_ids`` (B, T), and the extended cache.

        ``attention_mask`` (B, past + T) covers the cached positions too; ``position_ids``
        (B, T) count from each sequence's first real token (left padding).
        """
        past = 0 if cache is None else cache.length
        if past + input_ids.shape[1] > self.cfg.n_positions:
            raise InputError(
                f"the sequence reaches position {past + input_ids.shape[1]} but the model has "
                f"n_positions={self.cfg.n_positions}"
            )
        x = self.wte(input_ids) + F.embedding(position_ids, self.wpe.weight)  # (B, T, D)
        if self.training:
            x = self.drop(x)
        h = self.decoder(x, padding_mask=attention_mask, cache=cache)
        return self.lm_head(h[:, -1]), cache

    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        max_new_tokens: int = 20,
        **kwargs: Any,
    ) -> Tensor:
        """``archlab.generate.generate`` with this config's eos / pad ids as defaults.

        Prompts are left-padded (``attention_mask`` 0 on the left). Returns (B, T + n_new):
        the prompt then the new tokens. Every other argument is ``archlab.generate.generate``'s.
        Call ``eval()`` first.

        Raises:
            InputError: if the prompt plus ``max_new_tokens`` exceeds ``n_positions``.
        """
        from archlab.generate import generate

        cfg = self.cfg
        check_token_ids(input_ids, "input_ids", cfg.vocab_size)
        if isinstance(max_new_tokens, int) and input_ids.shape[1] + max_new_tokens - 1 > (
            cfg.n_positions
        ):
            raise InputError(
                f"prompt length {input_ids.shape[1]} + max_new_tokens={max_new_tokens} exceeds "
                f"n_positions={cfg.n_positions}"
            )
        kwargs.setdefault("eos_token_id", cfg.eos_token_id)
        kwargs.setdefault("pad_token_id", cfg.pad_token_id)
        with torch.inference_mode():  # no autograd bookkeeping on the many small decoding ops
            out = generate(self, input_ids, attention_mask, max_new_tokens=max_new_tokens, **kwargs)
        return out.clone()  # a normal tensor, usable later in autograd (e.g. as training input)

    # ------------------------------------------------------------------ Hugging Face format

    @classmethod
    def from_pretrained(cls, directory: str) -> GPT2:
        """Load a Hugging Face-format GPT-2 directory (``config.json`` + ``model.safetensors``)."""
        from archlab.baselines.gpt2.hf import from_pretrained

        return from_pretrained(directory)

    def save_pretrained(self, directory: str) -> None:
        """Write a directory that ``GPT2LMHeadModel.from_pretrained`` loads."""
        from archlab.baselines.gpt2.hf import save_pretrained

        save_pretrained(self, directory)


VARIANTS = {
    "tiny": GPT2Config(
        vocab_size=96,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=0,
        eos_token_id=0,
    ),
    "base": GPT2Config(),  # gpt2 (124M)
    "medium": GPT2Config(n_embd=1024, n_layer=24, n_head=16),  # gpt2-medium (355M)
}


def _example_input(model: GPT2, batch_size: int) -> tuple[Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, model.cfg.vocab_size, (batch_size, 12), generator=g),)


def _from_pretrained(directory: str) -> GPT2:
    from archlab.baselines.gpt2.hf import from_pretrained

    return from_pretrained(directory)


SPEC = PaperSpec(
    slug="gpt2",
    family="language",
    title="Language Models are Unsupervised Multitask Learners",
    arxiv="",
    claim="Baseline: a pre-norm decoder-only transformer language model (GPT-2).",
    config=GPT2Config,
    build=GPT2,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"causal-lm", "generate", "pretrained", "transformers-parity"}),
    fidelity="faithful",
    experiment=None,
    from_pretrained=_from_pretrained,
)
