"""DrBERT / BPDec — Wen Liang, Youzhi Liang, 2024 (arXiv 2401.15861; v1 "DrBERT: Unveiling the
Potential of Masked Language Modeling Decoder in BERT pretraining", retitled "BPDec" from v2).

A standard BERT encoder (``archlab.baselines.bert.Bert``, unchanged) gets an *enhanced MLM
decoder* during pretraining only: ``n_decoder_layers`` extra transformer layers between the
encoder's last hidden states and the (tied) MLM head. Two components shape the decoder
(BPDec, v2-v4):

- **Gradual Unmasking Attention (GUA)**: in the decoder, the keys at ``[MASK]`` positions start
  hidden from the attention and are released layer by layer. Every masked position draws one
  ``u ~ U[0, 1)`` per forward pass; at decoder layer ``l`` its key is visible iff
  ``u < gua_visible[l]`` (default ``gua_visible[l] = (l + 1) / L``), so the visible subsets are
  nested, a random portion is released in the first layer and all of them by the last one.
  Unmasked tokens and queries are never restricted (padding still is).
- **Output randomness**: the MLM head reads a random mix of encoder and decoder outputs,
  ``h = h_dec + alpha * (h_enc - h_dec)`` per token, with ``alpha = b * v``,
  ``b ~ Bernoulli(output_randomness)`` and ``v ~ U[0, 1)`` (``output_mix="convex"``) or
  ``v = 1`` (``"select"``: the token uses the encoder output instead of the decoder output).

In eval mode both are deterministic: ``alpha = 0`` and every masked key takes the median draw
``u = 0.5``. ``encoder()`` returns the bare ``Bert``: fine-tuning and serving discard the decoder,
so their parameters, FLOPs and latency are exactly BERT's. ``BertClassifier`` is the fine-tuning
model (first-token pooler + linear head, as ``BertForSequenceClassification``).

The paper gives GUA and output randomness in prose; the exact schedule and mixing law here are
our reading of it. Deviations are listed in this folder's README.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.baselines.bert import Bert, BertConfig, MaskedLMOutput
from archlab.hf import HF_ACTIVATIONS, InputError
from archlab.nn import EncoderLayer
from archlab.registry import PaperSpec

MASK_TOKEN_ID = 4  # ``<mask>`` of archlab.data.text's tokenizers


@dataclass(frozen=True)
class DrBertConfig:
    """The BERT encoder plus the pretraining-only MLM decoder.

    Attributes:
        bert: the encoder (and MLM head) configuration; the decoder layers copy its width,
            heads, feed-forward size, activation, dropout and LayerNorm epsilon.
        n_decoder_layers: decoder layers L between the encoder and the MLM head (0: plain BERT).
        gua_visible: Gradual Unmasking Attention schedule, the fraction of ``[MASK]`` keys visible
            at each decoder layer (non-decreasing, in [0, 1]); empty: ``(l + 1) / L``. Use all
            ones to switch GUA off.
        output_randomness: probability that a token's MLM-head input mixes in the encoder output.
        output_mix: ``convex`` (a uniform random convex mix) or ``select`` (the encoder output
            replaces the decoder output).
        mask_token_id: id of the ``[MASK]`` token, whose positions GUA hides.
    """

    bert: BertConfig = field(default_factory=BertConfig)
    n_decoder_layers: int = 2
    gua_visible: tuple[float, ...] = ()
    output_randomness: float = 0.5
    output_mix: Literal["convex", "select"] = "convex"
    mask_token_id: int = MASK_TOKEN_ID

    def __post_init__(self) -> None:
        if self.n_decoder_layers < 0:
            raise ValueError(f"n_decoder_layers must be >= 0; got {self.n_decoder_layers}")
        if self.gua_visible:
            if len(self.gua_visible) != self.n_decoder_layers:
                raise ValueError(
                    f"gua_visible needs one fraction per decoder layer ({self.n_decoder_layers}); "
                    f"got {len(self.gua_visible)}"
                )
            if any(not 0.0 <= v <= 1.0 for v in self.gua_visible) or any(
                b < a for a, b in zip(self.gua_visible, self.gua_visible[1:])
            ):
                raise ValueError(
                    f"gua_visible must be non-decreasing fractions in [0, 1]; "
                    f"got {self.gua_visible}"
                )
        if not 0.0 <= self.output_randomness <= 1.0:
            raise ValueError(f"output_randomness must be in [0, 1]; got {self.output_randomness}")
        if self.output_mix not in ("convex", "select"):
            raise ValueError(f"output_mix must be 'convex' or 'select'; got {self.output_mix!r}")
        if not 0 <= self.mask_token_id < self.bert.vocab_size:
            raise ValueError(
                f"mask_token_id={self.mask_token_id} must be in [0, {self.bert.vocab_size})"
            )

    @property
    def visible_fractions(self) -> tuple[float, ...]:
        """The GUA schedule, resolved: ``gua_visible`` or ``(l + 1) / L``."""
        if self.gua_visible:
            return self.gua_visible
        L = self.n_decoder_layers
        return tuple((l + 1) / L for l in range(L))


# ------------------------------------------------------------------------------------ components
def gua_key_masks(
    is_masked: Tensor, visible: tuple[float, ...], u: Tensor
) -> list[Tensor]:  # (B, T) -> L x (B, 1, 1, T)
    """Gradual Unmasking Attention: per decoder layer, which keys may be attended to.

    Key ``j`` is visible at layer ``l`` iff it is not a ``[MASK]`` position or ``u[j] <
    visible[l]``. One draw ``u`` per position serves every layer, so the visible sets are nested.

    Args:
        is_masked: (B, T) bool, True at ``[MASK]`` positions.
        visible: the fraction of masked keys visible at each layer.
        u: (B, T) draws in [0, 1).

    Returns:
        One bool mask (B, 1, 1, T) per layer (True = may attend), broadcast over heads and
        queries.
    """
    return [(~is_masked | (u < v))[:, None, None, :] for v in visible]


def mix_outputs(h_enc: Tensor, h_dec: Tensor, alpha: Tensor) -> Tensor:  # (B, T, D)
    """Output randomness: ``h_dec + alpha * (h_enc - h_dec)``, alpha (B, T) in [0, 1].

    ``torch.lerp`` is exact at both ends: ``alpha = 1`` gives ``h_enc``, ``alpha = 0`` ``h_dec``.
    """
    return torch.lerp(h_dec, h_enc, alpha[..., None].to(h_dec.dtype))


def draw_alpha(
    shape: tuple[int, ...], p: float, mode: str, generator: torch.Generator | None = None
) -> Tensor:  # -> shape
    """Per-token mixing weights: ``Bernoulli(p) * (U[0, 1) if mode == "convex" else 1)``."""
    b = (torch.rand(shape, generator=generator) < p).float()
    return b * torch.rand(shape, generator=generator) if mode == "convex" else b


class DrBertOutput(NamedTuple):
    """``DrBert.mlm_hidden``: the MLM-head input and its two sources, all (B, T, D)."""

    hidden: Tensor
    encoder: Tensor
    decoder: Tensor


# ----------------------------------------------------------------------------------------- model
class DrBert(nn.Module):
    """BERT + the pretraining-only enhanced MLM decoder: (B, T) ids -> (B, T, K) MLM logits.

    Parameter names: ``bert.*`` (exactly ``archlab.baselines.bert.Bert``, MLM head included) and
    ``decoder.i.*`` (``archlab.nn.EncoderLayer``, post-norm like BERT's layers).
    """

    def __init__(self, cfg: DrBertConfig):
        super().__init__()
        self.cfg = cfg
        b = cfg.bert
        self.bert = Bert(b)  # built first: under one seed its init equals a plain Bert's
        self.decoder = nn.ModuleList(
            EncoderLayer(
                b.hidden_size,
                b.num_attention_heads,
                b.intermediate_size,
                activation=HF_ACTIVATIONS[b.hidden_act],
                norm_eps=b.layer_norm_eps,
                dropout=b.hidden_dropout_prob,
                attn_dropout=b.attention_probs_dropout_prob,
            )
            for _ in range(cfg.n_decoder_layers)
        )
        std = b.initializer_range
        for module in self.decoder.modules():  # BERT's initialisation
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def encoder(self) -> Bert:
        """The bare BERT encoder for fine-tuning and serving (the decoder is discarded)."""
        return self.bert

    def mlm_hidden(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> DrBertOutput:
        """Encoder, then the GUA decoder, then output randomness: the MLM head's input.

        Args:
            input_ids: (B, T), masked positions hold ``mask_token_id``.
            attention_mask: (B, T) 1 = real token, 0 = padding.
            token_type_ids: (B, T) segment ids.
            generator: source of the GUA draws and mixing weights in training mode.
        """
        cfg = self.cfg
        h_enc = self.bert.encode(input_ids, attention_mask, token_type_ids)  # (B, T, D)
        is_masked = input_ids == cfg.mask_token_id  # (B, T)
        if self.training:
            u = torch.rand(input_ids.shape, generator=generator).to(input_ids.device)
        else:
            u = torch.full(input_ids.shape, 0.5, device=input_ids.device)  # the median draw
        h = h_enc
        for layer, keys in zip(self.decoder, gua_key_masks(is_masked, cfg.visible_fractions, u)):
            h = layer(h, padding_mask=attention_mask, attn_mask=keys)  # (B, T, D)
        if self.training and cfg.output_randomness > 0 and len(self.decoder):
            alpha = draw_alpha(input_ids.shape, cfg.output_randomness, cfg.output_mix, generator)
            out = mix_outputs(h_enc, h, alpha.to(h.device))
        else:
            out = h
        return DrBertOutput(out, h_enc, h)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> Tensor | MaskedLMOutput:
        """MLM logits (B, T, K) at every position; with ``labels`` (-100: ignored), the loss."""
        h = self.mlm_hidden(input_ids, attention_mask, token_type_ids).hidden  # (B, T, D)
        logits = self.bert.mlm_head(h, self.bert.word_embeddings.weight)  # (B, T, K)
        if labels is None:
            return logits
        if not isinstance(labels, Tensor) or labels.shape != input_ids.shape:
            raise InputError(
                f"labels must be a tensor shaped like input_ids {tuple(input_ids.shape)}"
            )
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return MaskedLMOutput(loss, logits)


class BertClassifier(nn.Module):
    """Sequence classification on a (pretrained) BERT encoder: (B, T) ids -> (B, K) logits.

    As transformers' ``BertForSequenceClassification``: the first token's hidden state through a
    dense + tanh pooler, dropout, and a linear layer; here the pooler is fresh (our BERTs are
    pretrained without next-sentence prediction). The encoder's MLM head is not used.

    Args:
        encoder: the BERT (``DrBert.encoder()`` or a baseline ``Bert``).
        n_classes: number of classes K.
        dropout: dropout before the classifier (default: the encoder's hidden dropout).
    """

    def __init__(self, encoder: Bert, n_classes: int, dropout: float | None = None):
        super().__init__()
        d = encoder.cfg.hidden_size
        self.encoder = encoder
        self.pooler = nn.Linear(d, d)
        self.dropout = nn.Dropout(encoder.cfg.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(d, n_classes)
        for layer in (self.pooler, self.classifier):
            nn.init.normal_(layer.weight, std=encoder.cfg.initializer_range)
            nn.init.zeros_(layer.bias)

    def finetune_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The parameters fine-tuning trains and inference uses (the MLM head excluded)."""
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("encoder.mlm_head.")]

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        h = self.encoder.encode(input_ids, attention_mask)  # (B, T, D)
        pooled = torch.tanh(self.pooler(h[:, 0]))  # (B, D)
        return self.classifier(self.dropout(pooled))  # (B, K)


def build(cfg: DrBertConfig) -> DrBert:
    return DrBert(cfg)


def _tiny_bert(vocab_size: int = 96) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )


VARIANTS = {
    "tiny": DrBertConfig(bert=_tiny_bert(), n_decoder_layers=2),
    # the experiment's BERT-tiny (4 x 128) on the 2000-token stdlib BPE, 2-layer decoder
    "small": DrBertConfig(
        bert=BertConfig(
            vocab_size=2000,
            hidden_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=512,
            max_position_embeddings=128,
        ),
        n_decoder_layers=2,
    ),
    "base": DrBertConfig(bert=BertConfig(), n_decoder_layers=2),  # bert-base + 2 decoder layers
}


def _example_input(model: DrBert, batch_size: int) -> tuple[Tensor, Tensor]:
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, cfg.bert.vocab_size, (batch_size, 12), generator=g)
    ids[:, 1::4] = cfg.mask_token_id  # masked positions, hidden by GUA in the first layer
    mask = torch.ones_like(ids)
    mask[-1, 9:] = 0  # the last sequence is padded
    return ids, mask


SPEC = PaperSpec(
    slug="drbert",
    family="language",
    title="DrBERT: Unveiling the Potential of Masked Language Modeling Decoder in BERT pretraining",
    arxiv="2401.15861",
    claim=(
        "Pretraining BERT with an enhanced MLM decoder (extra layers with Gradual Unmasking "
        "Attention and output randomness), discarded afterwards, improves downstream accuracy "
        "after fine-tuning at identical fine-tuning and inference cost."
    ),
    config=DrBertConfig,
    build=build,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"encoder", "masked-lm", "pretraining-decoder"}),
    fidelity="simplified",
    experiment="archlab.papers.language.drbert.experiment",
)
