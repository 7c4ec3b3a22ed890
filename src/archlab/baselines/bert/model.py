"""BERT encoder with its masked-language-model head (baseline).

Devlin, Chang, Lee, Toutanova, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding", 2018, arXiv 1810.04805. transformers' ``BertForMaskedLM`` is the parity
target.

Embeddings: word + learned position + token type, then LayerNorm (eps 1e-12) and dropout; a
post-norm GELU encoder (``archlab.nn.Encoder`` of ``EncoderLayer``); the MLM head
(``MLMHead``): a dense + GELU + LayerNorm transform and an output layer tied to the word
embeddings with its own bias. ``encode`` returns the encoder's hidden states (B, T, D) for
models that put another head on the encoder (DrBERT). ``archlab.build("bert", pretrained=DIR)``
loads a Hugging Face-format directory and ``save_pretrained(DIR)`` writes one (``hf.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.hf import HF_ACTIVATIONS, InputError, check_attention_mask, check_token_ids
from archlab.nn import Encoder, EncoderLayer, LayerNorm, LearnedPositionalEmbedding
from archlab.nn.mlp import get_activation
from archlab.registry import PaperSpec


@dataclass(frozen=True)
class BertConfig:
    """BERT hyper-parameters, named as transformers' ``BertConfig`` (defaults:
    bert-base-uncased).

    Attributes:
        vocab_size: vocabulary size K.
        hidden_size: width D.
        num_hidden_layers: encoder layers L.
        num_attention_heads: heads nh (must divide D).
        intermediate_size: feed-forward hidden width.
        hidden_act: transformers' activation name (``gelu`` is the exact GELU).
        hidden_dropout_prob: dropout on the embeddings and on each sublayer's output.
        attention_probs_dropout_prob: dropout on the attention weights.
        max_position_embeddings: positions of the learned table (longest input).
        type_vocab_size: number of token types (segments).
        initializer_range: std of the normal initialisation.
        layer_norm_eps: LayerNorm epsilon.
        pad_token_id: padding token (its embedding gets no gradient, as in transformers).
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.num_hidden_layers < 0:
            raise ValueError(f"num_hidden_layers must be >= 0; got {self.num_hidden_layers}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} must be divisible by "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.hidden_act not in HF_ACTIVATIONS:
            raise ValueError(
                f"hidden_act must be one of {', '.join(HF_ACTIVATIONS)}; got {self.hidden_act!r}"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)}")
        if self.layer_norm_eps <= 0 or self.initializer_range <= 0:
            raise ValueError("layer_norm_eps and initializer_range must be > 0")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"pad_token_id={self.pad_token_id} must be in [0, vocab_size={self.vocab_size})"
            )


class MaskedLMOutput(NamedTuple):
    """``Bert.forward`` with ``labels``: the mean cross-entropy and the logits (B, T, K)."""

    loss: Tensor
    logits: Tensor


class MLMHead(nn.Module):
    """BERT's masked-LM head: ``LayerNorm(act(dense(h))) @ Wᵀ + bias`` with W the (tied) word
    embeddings, passed to ``forward``.

    Args:
        d_model: width D.
        vocab_size: vocabulary size K (length of ``bias``).
        activation: archlab activation name (``gelu`` for BERT).
        norm_eps: LayerNorm epsilon.
    """

    def __init__(
        self, d_model: int, vocab_size: int, activation: str = "gelu", norm_eps: float = 1e-12
    ):
        super().__init__()
        self.activation = activation
        self.dense = nn.Linear(d_model, d_model)
        self.act = get_activation(activation)
        self.norm = LayerNorm(d_model, eps=norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def transform(self, h: Tensor) -> Tensor:  # (..., D) -> (..., D)
        """The dense + activation + LayerNorm transform."""
        return self.norm(self.act(self.dense(h)))

    def forward(self, h: Tensor, embedding_weight: Tensor) -> Tensor:  # (..., D) -> (..., K)
        """Logits of hidden states ``h`` against the output embeddings (K, D)."""
        return F.linear(self.transform(h), embedding_weight, self.bias)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"


class Bert(nn.Module):
    """BERT with the MLM head: (B, T) token ids -> (B, T, K) logits.

    Parameter names (transformers' in ``hf.py``): ``word_embeddings``,
    ``position_embeddings``, ``token_type_embeddings``, ``embed_norm``, ``encoder.layers.i``
    (``archlab.nn.EncoderLayer``), ``mlm_head`` (``MLMHead``).
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        activation = HF_ACTIVATIONS[cfg.hidden_act]
        self.word_embeddings = nn.Embedding(cfg.vocab_size, d, padding_idx=cfg.pad_token_id)
        self.position_embeddings = LearnedPositionalEmbedding(cfg.max_position_embeddings, d)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, d)
        self.embed_norm = LayerNorm(d, eps=cfg.layer_norm_eps)
        self.embed_dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.encoder = Encoder(
            [
                EncoderLayer(
                    d,
                    cfg.num_attention_heads,
                    cfg.intermediate_size,
                    activation=activation,
                    norm_eps=cfg.layer_norm_eps,
                    dropout=cfg.hidden_dropout_prob,
                    attn_dropout=cfg.attention_probs_dropout_prob,
                )
                for _ in range(cfg.num_hidden_layers)
            ]
        )
        self.mlm_head = MLMHead(d, cfg.vocab_size, activation, cfg.layer_norm_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """transformers' initialisation: normal(0, initializer_range) weights and embeddings
        (padding row zero), zero biases (the MLM bias too), unit LayerNorms."""
        std = self.cfg.initializer_range
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
        nn.init.zeros_(self.mlm_head.bias)

    def embed(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Word + position + token-type embeddings, normalised: (B, T) -> (B, T, D)."""
        T = input_ids.shape[1]
        x = self.word_embeddings(input_ids) + self.position_embeddings.weight[:T]
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.embed_dropout(self.embed_norm(x))

    def encode(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """The encoder's last hidden states (B, T, D).

        Args:
            input_ids: token ids (B, T).
            attention_mask: (B, T), 1 = real token, 0 = padding; None: no padding.
            token_type_ids: (B, T) segment ids in ``[0, type_vocab_size)``; default 0.

        Raises:
            InputError: for inputs of the wrong type or shape, ids out of range, or a sequence
                longer than ``max_position_embeddings``.
        """
        cfg = self.cfg
        check_token_ids(input_ids, "input_ids", cfg.vocab_size, cfg.max_position_embeddings)
        check_attention_mask(attention_mask, input_ids)
        if token_type_ids is not None:
            check_token_ids(token_type_ids, "token_type_ids", cfg.type_vocab_size)
            if token_type_ids.shape != input_ids.shape:
                raise InputError(
                    f"token_type_ids must have the shape of input_ids {tuple(input_ids.shape)}; "
                    f"got {tuple(token_type_ids.shape)}"
                )
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        x = self.embed(input_ids, token_type_ids)  # (B, T, D)
        return self.encoder(x, padding_mask=attention_mask)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> Tensor | MaskedLMOutput:
        """MLM logits at every position, as ``BertForMaskedLM``.

        Args:
            input_ids: token ids (B, T) (masked positions hold the mask token).
            attention_mask: (B, T), 1 = real token, 0 = padding.
            token_type_ids: (B, T) segment ids; default 0.
            labels: (B, T) original ids at the masked positions, -100 elsewhere (ignored).

        Returns:
            logits (B, T, K); with ``labels``, ``MaskedLMOutput(loss, logits)``.
        """
        h = self.encode(input_ids, attention_mask, token_type_ids)  # (B, T, D)
        logits = self.mlm_head(h, self.word_embeddings.weight)  # (B, T, K)
        if labels is None:
            return logits
        if not isinstance(labels, Tensor) or labels.shape != input_ids.shape:
            raise InputError(
                f"labels must be a tensor shaped like input_ids {tuple(input_ids.shape)}"
            )
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return MaskedLMOutput(loss, logits)

    # ------------------------------------------------------------------ Hugging Face format

    @classmethod
    def from_pretrained(cls, directory: str) -> Bert:
        """Load a Hugging Face-format BERT directory (``config.json`` + ``model.safetensors``)."""
        from archlab.baselines.bert.hf import from_pretrained

        return from_pretrained(directory)

    def save_pretrained(self, directory: str) -> None:
        """Write a directory that ``BertForMaskedLM.from_pretrained`` loads."""
        from archlab.baselines.bert.hf import save_pretrained

        save_pretrained(self, directory)


VARIANTS = {
    "tiny": BertConfig(
        vocab_size=96,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    ),
    "base": BertConfig(),  # bert-base-uncased
    "large": BertConfig(  # bert-large-uncased
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
    ),
}


def _example_input(model: Bert, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, cfg.vocab_size, (batch_size, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, 8:] = 0  # the last sequence is padded
    token_types = torch.zeros_like(ids)
    token_types[:, 6:] = min(1, cfg.type_vocab_size - 1)
    return ids, mask, token_types


def _from_pretrained(directory: str) -> Bert:
    from archlab.baselines.bert.hf import from_pretrained

    return from_pretrained(directory)


SPEC = PaperSpec(
    slug="bert",
    family="language",
    title=("BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding"),
    arxiv="1810.04805",
    claim="Baseline: a post-norm bidirectional transformer encoder with a masked-LM head.",
    config=BertConfig,
    build=Bert,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"encoder", "masked-lm", "pretrained", "transformers-parity"}),
    fidelity="faithful",
    experiment=None,
    from_pretrained=_from_pretrained,
)
