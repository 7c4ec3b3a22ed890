"""Return of the Encoder (Elfeki, Liu, Voegele, 2025).

"Return of the Encoder: Maximizing Parameter Efficiency for SLMs", arXiv 2501.16273. Official
code: microsoft/encoder-decoder-slm (``src/mu/models/modeling_mu.py``, ``mu_utils.py``,
``train_text2text_by_kd.py``). Deviations from it are listed in this folder's README.md.

The paper's small encoder-decoder LM ("Mu"), built from ``archlab.nn`` blocks:

- a 2/3 : 1/3 split of the layers between encoder and decoder (20 + 10 at 330M);
- pre-norm RMSNorm blocks with a final norm after each stack, a GELU (tanh) MLP with biases;
- grouped-query attention whose width ``d_attn = n_heads * d_head`` (384) is smaller than the
  model width ``d_model`` (1024);
- rotary positions (base 1e4) in the encoder's self-attention and the decoder's causal
  self-attention; cross-attention has no positions;
- one token embedding shared by the encoder, the decoder and the (tied) output head.

The decoder's cross-attention keys and values are projected from the encoder output once per
input (``DecoderCache``), so decoding cost grows only with the output length. The decoder-only
baseline (``DecoderOnlyLM``) is the same stack without the encoder and the cross-attention,
reading ``[source; SEP; target]``; ``matched_decoder_only`` gives it the encoder-decoder's
parameter count (same width and depth, wider MLP). ``distillation_loss`` is the paper's
cross-architecture KD objective.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.lab.profiling import n_params
from archlab.nn import (
    Decoder,
    DecoderCache,
    DecoderLayer,
    Encoder,
    EncoderLayer,
    RMSNorm,
    RotaryEmbedding,
)
from archlab.registry import PaperSpec, Task


@dataclass(frozen=True)
class MuConfig:
    """The encoder-decoder SLM (official ``MuConfig``) or, with no encoder, its decoder-only twin.

    Attributes:
        vocab_size: shared vocabulary K (T5's 32,128 in the paper).
        n_encoder_layers: encoder layers (``n_encoder_layer``, 20); 0 builds ``DecoderOnlyLM``.
        n_decoder_layers: decoder layers (``n_decoder_layer``, 10).
        d_model: residual width D (``n_embd``).
        d_attn: attention width ``n_heads * d_head`` (``qkv_embd``, 384).
        n_heads: query heads nh (6).
        n_kv_heads: key/value heads of grouped-query attention (3).
        d_hidden: MLP hidden width (``hidden_dim``, 4096).
        rope_base: rotary frequency base (``rope_theta``).
        dropout: dropout on attention weights and sublayer outputs (0.1 in the paper).
        norm_eps: RMSNorm epsilon.
        pad_token_id: padding id.
        bos_token_id: the decoder's start token.
        eos_token_id: end of the target.
    """

    vocab_size: int = 32128
    n_encoder_layers: int = 20
    n_decoder_layers: int = 10
    d_model: int = 1024
    d_attn: int = 384
    n_heads: int = 6
    n_kv_heads: int = 3
    d_hidden: int = 4096
    rope_base: float = 10000.0
    dropout: float = 0.1
    norm_eps: float = 1e-6
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_decoder_layers", "d_model", "d_attn", "d_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_encoder_layers < 0:
            raise ValueError(f"n_encoder_layers must be >= 0, got {self.n_encoder_layers}")
        if self.n_heads < 1 or self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_kv_heads ({self.n_kv_heads}) must be a positive divisor of n_heads "
                f"({self.n_heads})"
            )
        if self.d_attn % self.n_heads or (self.d_attn // self.n_heads) % 2:
            raise ValueError(
                f"d_attn ({self.d_attn}) must be n_heads ({self.n_heads}) x an even head width "
                "(rotary positions rotate feature pairs)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                raise ValueError(f"{name} must be a token id below vocab_size {self.vocab_size}")

    @property
    def is_decoder_only(self) -> bool:
        """True when there is no encoder (``n_encoder_layers == 0``)."""
        return self.n_encoder_layers == 0

    @property
    def d_head(self) -> int:
        """Head width hd = d_attn / nh."""
        return self.d_attn // self.n_heads


# ----------------------------------------------------------------------------- parameter counts
def _attention_params(cfg: MuConfig) -> int:
    d, da = cfg.d_model, cfg.d_attn
    dkv = cfg.n_kv_heads * cfg.d_head
    return (d * da + da) + 2 * (d * dkv + dkv) + (da * d + d)  # q, k, v, out (with biases)


def _mlp_params(cfg: MuConfig) -> int:
    return 2 * cfg.d_model * cfg.d_hidden + cfg.d_hidden + cfg.d_model  # fc1, fc2 with biases


def n_parameters(cfg: MuConfig) -> int:
    """Trainable parameters of ``build(cfg)`` (tied embedding counted once), without building it.

    Encoder layer: self-attention, MLP, 2 norms; decoder layer: self- and cross-attention, MLP,
    3 norms (decoder-only: no cross-attention, 2 norms); plus the embedding and the final norms.
    """
    d = cfg.d_model
    attn, mlp = _attention_params(cfg), _mlp_params(cfg)
    encoder = cfg.n_encoder_layers * (attn + mlp + 2 * d) + (d if cfg.n_encoder_layers else 0)
    if cfg.is_decoder_only:
        decoder = cfg.n_decoder_layers * (attn + mlp + 2 * d) + d
    else:
        decoder = cfg.n_decoder_layers * (2 * attn + mlp + 3 * d) + d
    return cfg.vocab_size * d + encoder + decoder


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of a built model (shared tensors counted once)."""
    return n_params(model, trainable_only=True)


def matched_decoder_only(cfg: MuConfig) -> MuConfig:
    """The decoder-only baseline with the parameter count of encoder-decoder ``cfg``.

    Same width, heads and total depth (``n_encoder_layers + n_decoder_layers`` causal layers);
    the MLP hidden width is widened to absorb the encoder-decoder's cross-attention and extra
    norms, so that the two models differ by less than one MLP unit per layer.
    """
    if cfg.is_decoder_only:
        raise ValueError("matched_decoder_only takes an encoder-decoder config")
    n_layers = cfg.n_encoder_layers + cfg.n_decoder_layers
    target = n_parameters(cfg)
    base = replace(cfg, n_encoder_layers=0, n_decoder_layers=n_layers, d_hidden=1)
    per_unit = n_layers * (2 * cfg.d_model + 1)  # parameters per extra MLP hidden unit
    d_hidden = 1 + round((target - n_parameters(base)) / per_unit)
    return replace(base, d_hidden=max(1, d_hidden))


# ----------------------------------------------------------------------------- models
def _layer_kwargs(cfg: MuConfig, rotary: RotaryEmbedding) -> dict:
    return dict(
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        d_hidden=cfg.d_hidden,
        n_kv_heads=cfg.n_kv_heads,
        d_head=cfg.d_head,
        activation="gelu_tanh",
        norm="rmsnorm",
        norm_eps=cfg.norm_eps,
        norm_first=True,
        bias=True,
        dropout=cfg.dropout,
        attn_dropout=cfg.dropout,
        rotary=rotary,
    )


def check_token_ids(name: str, ids: Tensor, vocab_size: int) -> None:
    """Raise a one-line ``ValueError`` unless every id of ``ids`` lies in ``[0, vocab_size)``.

    (``nn.Embedding`` would raise a bare ``IndexError`` on the CPU and a device-side assert on
    CUDA.) One host sync per call.
    """
    if ids.numel() == 0:
        return
    lo, hi = torch.stack(torch.aminmax(ids)).tolist()
    if lo < 0 or hi >= vocab_size:
        raise ValueError(
            f"{name} must hold token ids in [0, {vocab_size - 1}] (vocab_size {vocab_size}); "
            f"got ids from {lo} to {hi}"
        )


def _init_weights(module: nn.Module) -> None:
    """The official init: N(0, 0.02) for linear and embedding weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


class EncoderDecoderLM(nn.Module):
    """The paper's encoder-decoder SLM (``Mu``), with the ``archlab.generate`` protocol.

    Args:
        cfg: a ``MuConfig`` with ``n_encoder_layers >= 1``.
    """

    def __init__(self, cfg: MuConfig):
        super().__init__()
        if cfg.is_decoder_only:
            raise ValueError("EncoderDecoderLM needs n_encoder_layers >= 1 (0: DecoderOnlyLM)")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        rotary = RotaryEmbedding(cfg.d_head, base=cfg.rope_base)
        kw = _layer_kwargs(cfg, rotary)
        self.encoder = Encoder(
            [EncoderLayer(**kw) for _ in range(cfg.n_encoder_layers)],
            RMSNorm(cfg.d_model, cfg.norm_eps),
        )
        self.decoder = Decoder(
            [DecoderLayer(cross_attention=True, **kw) for _ in range(cfg.n_decoder_layers)],
            RMSNorm(cfg.d_model, cfg.norm_eps),
        )
        self.apply(_init_weights)

    def logits(self, h: Tensor) -> Tensor:  # (B, T, D) -> (B, T, K)
        """The tied output head."""
        return F.linear(h, self.embed.weight)

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Encoder output ``memory`` (B, S, D) of source ``input_ids`` (B, S), once per input.

        Raises:
            ValueError: if a source id lies outside the vocabulary.
        """
        check_token_ids("input_ids (source)", input_ids, self.cfg.vocab_size)
        return self.encoder(self.embed(input_ids), padding_mask=attention_mask)

    def decode(
        self,
        decoder_input_ids: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> Tensor:  # (B, T) -> (B, T, K)
        """Logits at every decoder position (positions start at the cache's length).

        Raises:
            ValueError: if a decoder id lies outside the vocabulary, or the batch of
                ``decoder_input_ids`` differs from the source batch of ``memory`` (it would
                broadcast a single source over several targets).
        """
        check_token_ids("decoder_input_ids (target)", decoder_input_ids, self.cfg.vocab_size)
        if decoder_input_ids.shape[0] != memory.shape[0]:
            raise ValueError(
                f"the target batch ({decoder_input_ids.shape[0]} rows of decoder_input_ids) must "
                f"match the source batch ({memory.shape[0]} rows of input_ids / memory)"
            )
        h = self.decoder(
            self.embed(decoder_input_ids), memory, memory_padding_mask=memory_mask, cache=cache
        )
        return self.logits(h)

    def forward(
        self,
        input_ids: Tensor,
        decoder_input_ids: Tensor,
        attention_mask: Tensor | None = None,
    ) -> Tensor:  # (B, S), (B, T) -> (B, T, K)
        """Teacher-forced logits of the decoder.

        Args:
            input_ids: source (B, S).
            decoder_input_ids: ``[BOS, y_1 .. y_{T-1}]`` (B, T).
            attention_mask: (B, S), 1 = real source token; None when nothing is padded.
        """
        return self.decode(
            decoder_input_ids, self.encode(input_ids, attention_mask), attention_mask
        )

    # generate protocol (archlab.generate)
    def new_cache(self) -> DecoderCache:
        """Self-attention caches that grow by one entry per token, and cross-attention caches
        filled once from the encoder output."""
        return self.decoder.new_cache()

    def decode_step(
        self,
        decoder_input_ids: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None,
        cache: DecoderCache | None,
    ) -> tuple[Tensor, DecoderCache | None]:  # (B, T) -> (B, K)
        """Logits of the next token after ``decoder_input_ids`` (the tokens the cache lacks)."""
        return self.decode(decoder_input_ids, memory, memory_mask, cache)[:, -1], cache


class DecoderOnlyLM(nn.Module):
    """The decoder-only baseline: the same pre-RMSNorm GQA/RoPE blocks, causal, no encoder.

    It reads ``[source; SEP; target]`` and is trained on the target positions.

    Args:
        cfg: a ``MuConfig`` with ``n_encoder_layers == 0``.
    """

    def __init__(self, cfg: MuConfig):
        super().__init__()
        if not cfg.is_decoder_only:
            raise ValueError("DecoderOnlyLM needs n_encoder_layers == 0")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        rotary = RotaryEmbedding(cfg.d_head, base=cfg.rope_base)
        kw = _layer_kwargs(cfg, rotary)
        self.decoder = Decoder(
            [DecoderLayer(cross_attention=False, **kw) for _ in range(cfg.n_decoder_layers)],
            RMSNorm(cfg.d_model, cfg.norm_eps),
        )
        self.apply(_init_weights)

    def logits(self, h: Tensor) -> Tensor:  # (B, T, D) -> (B, T, K)
        """The tied output head."""
        return F.linear(h, self.embed.weight)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None
    ) -> Tensor:  # (B, T) -> (B, T, K)
        """Causal logits at every position.

        Args:
            input_ids: (B, T), left-padded when sequences differ in length.
            attention_mask: (B, T), 1 = real token; None when nothing is padded.

        Raises:
            ValueError: if an id lies outside the vocabulary.
        """
        check_token_ids("input_ids", input_ids, self.cfg.vocab_size)
        positions = None
        if attention_mask is not None:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)  # (B, T)
        h = self.decoder(self.embed(input_ids), padding_mask=attention_mask, positions=positions)
        return self.logits(h)

    # generate protocol (archlab.generate)
    def new_cache(self) -> DecoderCache:
        """Self-attention caches: one entry per prompt and generated token."""
        return self.decoder.new_cache()

    def forward_step(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        position_ids: Tensor,
        cache: DecoderCache | None,
    ) -> tuple[Tensor, DecoderCache | None]:  # (B, T) -> (B, K)
        """Logits of the next token after ``input_ids`` (the tokens the cache has not seen)."""
        check_token_ids("input_ids", input_ids, self.cfg.vocab_size)
        h = self.decoder(
            self.embed(input_ids), padding_mask=attention_mask, positions=position_ids, cache=cache
        )
        return self.logits(h[:, -1:])[:, 0], cache


def build(cfg: MuConfig) -> nn.Module:
    """``EncoderDecoderLM`` (``n_encoder_layers >= 1``) or ``DecoderOnlyLM`` (0)."""
    return DecoderOnlyLM(cfg) if cfg.is_decoder_only else EncoderDecoderLM(cfg)


# ----------------------------------------------------------------------------- distillation
def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
) -> Tensor:
    """``KL(teacher || student)`` per token, averaged over the unmasked tokens.

    The official ``KDModel.forward_kd``: ``F.kl_div(log_softmax(student), log_softmax(teacher),
    log_target=True)`` over the shared vocabulary (the first ``min(K_s, K_t)`` logits). With a
    temperature ``tau`` both distributions are softened and the loss is scaled by ``tau**2``
    (Hinton et al. 2015); the paper uses ``tau = 1``.

    Args:
        student_logits: (B, T, K_s) student decoder logits.
        teacher_logits: (B, T, K_t) teacher logits aligned to the same target tokens.
        mask: (B, T), 1 = a token that counts; None: all.
        temperature: softening temperature tau > 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    k = min(student_logits.shape[-1], teacher_logits.shape[-1])
    log_p_s = F.log_softmax(student_logits[..., :k].float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits[..., :k].float() / temperature, dim=-1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(-1)  # (B, T)
    if mask is None:
        mask = torch.ones_like(kl)
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp_min(1.0) * temperature**2


def kd_objective(
    student_logits_kd: Tensor,
    teacher_logits: Tensor,
    student_logits_ce: Tensor,
    targets: Tensor,
    alpha: float = 0.9,
    kd_mask: Tensor | None = None,
    temperature: float = 1.0,
    ignore_index: int = -100,
) -> tuple[Tensor, Tensor, Tensor]:
    """The paper's loss ``alpha * KD + (1 - alpha) * CE`` (alpha = 0.9).

    Args:
        student_logits_kd: (B, T, K) student logits on the sequence the teacher scored.
        teacher_logits: (B, T, K) aligned teacher logits.
        student_logits_ce: (B, T', K) student logits on the ground-truth decoder input.
        targets: (B, T') ground-truth tokens (``ignore_index`` = not counted).
        alpha: weight of the KD term.
        kd_mask: (B, T) tokens that count in the KD term.
        temperature: KD temperature.
        ignore_index: target id that is ignored by the CE term.

    Returns:
        ``(loss, kd, ce)``.
    """
    kd = distillation_loss(student_logits_kd, teacher_logits, kd_mask, temperature)
    ce = F.cross_entropy(
        student_logits_ce.flatten(0, 1).float(), targets.flatten(), ignore_index=ignore_index
    )
    return alpha * kd + (1.0 - alpha) * ce, kd, ce


# ----------------------------------------------------------------------------- registry
def example_input(model: nn.Module, batch_size: int) -> tuple[Tensor, ...]:
    """A source (B, 24) and, for the encoder-decoder, a decoder input (B, 5)."""
    g = torch.Generator().manual_seed(0)
    K = model.cfg.vocab_size
    source = torch.randint(3, K, (batch_size, 24), generator=g)
    if isinstance(model, DecoderOnlyLM):
        return (source,)
    decoder_input = torch.randint(3, K, (batch_size, 5), generator=g)
    decoder_input[:, 0] = model.cfg.bos_token_id
    return source, decoder_input


def make_task(cfg: MuConfig, seed: int) -> Task:
    """Keyword extraction (``data.KeywordTask``) for ``archlab train``; the vocabulary of
    ``cfg`` must hold the task's tokens."""
    from archlab.papers.language.return_of_encoder.data import (
        N_SPECIAL,
        KeywordTask,
        KeywordTaskConfig,
        causal_loss,
        seq2seq_loss,
    )

    task_cfg = KeywordTaskConfig(n_symbols=cfg.vocab_size - N_SPECIAL)
    task = KeywordTask(task_cfg)
    loss = causal_loss if cfg.is_decoder_only else seq2seq_loss
    return Task(data=task.sampler(), loss_fn=loss)


TINY = MuConfig(
    vocab_size=36,
    n_encoder_layers=2,
    n_decoder_layers=1,
    d_model=32,
    d_attn=32,
    n_heads=4,
    n_kv_heads=2,
    d_hidden=64,
    dropout=0.0,
)
BASE = MuConfig()  # 20 + 10 layers, d = 1024: about 332M parameters (the paper's 330M)

VARIANTS = {
    "tiny": TINY,
    "tiny_decoder_only": matched_decoder_only(TINY),
    "base": BASE,
    "base_decoder_only": matched_decoder_only(BASE),
}

SPEC = PaperSpec(
    slug="return_of_encoder",
    family="language",
    title="Return of the Encoder: Maximizing Parameter Efficiency for SLMs",
    arxiv="2501.16273",
    claim=(
        "At the same parameter count, a small encoder-decoder LM (2/3 of the layers in the "
        "encoder, cross-attention K/V computed once) has lower first-token latency, lower "
        "per-token decoding latency and higher throughput than a decoder-only LM on a "
        "long-input/short-output task, at comparable accuracy; and distilling a larger "
        "decoder-only teacher into it (KL on the teacher's logits over the student's target, "
        "0.9 KD + 0.1 CE) improves it over CE-only training."
    ),
    config=MuConfig,
    build=build,
    variants=VARIANTS,
    example_input=example_input,
    task=make_task,
    train_defaults={"lr": 3e-3, "batch_size": 64, "steps": 600, "weight_decay": 0.01},
    capabilities=frozenset({"seq2seq", "causal-lm", "kv-cache", "distillation"}),
    fidelity="simplified",
    experiment="archlab.papers.language.return_of_encoder.experiment",
)
