"""Scan and Snap — Tian, Wang, Chen, Du, 2023 (arXiv 2305.16380).

A 1-layer transformer without positional encoding predicts the next token ``x_{T+1}`` of a
sequence ``x_1 .. x_T`` from one self-attention layer whose only query is the last token
``x_T`` (the paper's problem setting, Fig. 1a): attention
``b_t = softmax_t(z_{x_T, x_t})`` over the contextual tokens ``x_1 .. x_{T-1}``, the attended
mixture ``f = sum_t b_t u_{x_t}``, its l2 normalisation ``f~ = f / ||f||`` (the paper's
LayerNorm stand-in), and a linear decoder with a softmax over the vocabulary.

Two parametrisations, one output type (``ScanSnapOutput``):

- ``ScanSnapYZ`` (``d = None``, the default): the paper's Y/Z reparametrisation with
  one-hot (orthonormal) embeddings, where the trainable parameters are the pairwise logit
  matrices ``Z`` (M x M, attention: row = query token ``m``, column = key token ``l``) and
  ``Y`` (M x M, decoder: row = next token ``n``, column = token ``l``). The logits are
  ``Y f~`` with ``f = sum_t b_t e_{x_t}``. This is the model the paper analyses and the one the
  official synthetic experiments train (``Model2`` in facebookresearch/luckmatters
  ``ssl/real-dataset/decoder_only.py``).
- ``ScanSnapTransformer`` (``d`` set): the un-reparametrised layer of the problem setting,
  with embeddings ``U`` (M x d), ``W_Q``, ``W_K``, ``W_V`` (d x d) and a decoder tied to
  ``U``; its pairwise logits are ``Z = U W_Q^T W_K U^T / sqrt(d)`` and ``Y = U W_V U^T``.
  With orthonormal embeddings (``d >= M``) it computes exactly what ``ScanSnapYZ`` computes
  from these ``Y, Z``.

Deviations from the paper are listed in this folder's README.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from archlab.papers.language.scan_snap.data import LAYOUTS, SequenceClasses
from archlab.registry import PaperSpec, Task


@dataclass(frozen=True)
class ScanSnapConfig:
    """Hyper-parameters, named after the paper's symbols.

    The paper's sequence length ``T`` is not a field: the layer has no positional encoding and
    no parameter that depends on the length, so it reads a sequence of any length ``T >= 2``
    (``T - 1`` contextual tokens, then the query ``x_T``). ``T`` is a property of the data,
    set where sequences are drawn (``SequenceClasses.sample``, the experiment's ``Settings``).

    Attributes:
        M: vocabulary size (contextual, query and next tokens share one vocabulary).
        d: embedding width of ``ScanSnapTransformer``; ``None`` selects the reparametrised
            ``ScanSnapYZ`` on one-hot tokens (the paper's analysis and official experiments).
        normalize: l2-normalise the attended mixture before the decoder (paper: yes).
        residual: add the query token's embedding to the mixture (paper's optional residual;
            the official synthetic runs use ``False``).
        attend_to_query: let the query attend to itself (official ``attn_include_base_token``;
            the paper's attention covers ``x_1 .. x_{T-1}`` only).
        zero_init: start from ``Y = Z = 0`` (uniform attention, as the theory assumes); otherwise
            uniform in ``[-1/sqrt(M), 1/sqrt(M)]`` (``nn.Linear``'s default, as in the official
            sweeps). For ``ScanSnapTransformer`` it zeroes ``W_Q`` and ``W_V``.
    """

    M: int = LAYOUTS["base"].M
    d: int | None = None
    normalize: bool = True
    residual: bool = False
    attend_to_query: bool = False
    zero_init: bool = True

    def __post_init__(self) -> None:
        if self.M < 2:
            raise ValueError(f"M must be >= 2, got {self.M}")
        if self.d is not None and self.d < 1:
            raise ValueError(f"d must be >= 1 or None, got {self.d}")


class ScanSnapOutput(NamedTuple):
    """What both parametrisations return.

    Attributes:
        logits: (B, M) next-token logits.
        attention: (B, Tk) attention of the query over the keys (``Tk = T - 1``, or ``T`` with
            ``attend_to_query``).
        mixture: (B, M) attention mass on each vocabulary token, ``sum_t b_t e_{x_t}`` (the
            per-sequence token mixture whose class average is the paper's ``c_n``).
    """

    logits: torch.Tensor
    attention: torch.Tensor
    mixture: torch.Tensor


def split_query(
    x: torch.Tensor,
    M: int,  # noqa: N803 - the paper's symbol
    attend_to_query: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and query of a token sequence: (B, T) -> keys (B, Tk), query (B,).

    Raises:
        ValueError: unless ``x`` is an integer tensor (B, T) with ``T >= 2`` whose ids lie in
            the vocabulary ``[0, M)``.
    """
    if x.dim() != 2 or x.shape[1] < 2:
        raise ValueError(f"expected tokens of shape (B, T) with T >= 2, got {tuple(x.shape)}")
    if x.dtype == torch.bool or x.dtype.is_floating_point or x.dtype.is_complex:
        raise ValueError(f"expected integer token ids (torch.long), got {x.dtype}")
    if x.numel():
        lo, hi = torch.stack(torch.aminmax(x)).tolist()
        if lo < 0 or hi >= M:
            raise ValueError(
                f"token ids must lie in [0, {M - 1}] (vocabulary M={M}); got ids from {lo} to {hi}"
            )
    keys = x if attend_to_query else x[:, :-1]  # (B, Tk)
    return keys, x[:, -1]


def token_mixture(attention: torch.Tensor, keys: torch.Tensor, M: int) -> torch.Tensor:
    """Attention mass per vocabulary token: (B, Tk), (B, Tk) -> (B, M)."""
    out = attention.new_zeros(attention.shape[0], M)
    return out.scatter_add(1, keys, attention)  # (B, M)


def _normalize(f: torch.Tensor) -> torch.Tensor:
    return f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class ScanSnapYZ(nn.Module):
    """The reparametrised 1-layer transformer: pairwise logits ``Y`` and ``Z``.

    ``b_t = softmax_t Z[x_T, x_t]``, ``f = sum_t b_t e_{x_t}`` (+ ``e_{x_T}`` with residual),
    ``logits = Y f / ||f||``.
    """

    def __init__(self, cfg: ScanSnapConfig):
        super().__init__()
        if cfg.d is not None:
            raise ValueError("ScanSnapYZ is the one-hot model: use d=None")
        self.cfg = cfg
        self.Y = nn.Parameter(torch.empty(cfg.M, cfg.M))  # (M next, M tokens): decoder
        self.Z = nn.Parameter(torch.empty(cfg.M, cfg.M))  # (M queries, M keys): attention
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in (self.Y, self.Z):
            if self.cfg.zero_init:
                nn.init.zeros_(p)
            else:
                bound = 1.0 / math.sqrt(self.cfg.M)
                nn.init.uniform_(p, -bound, bound)

    def pairwise_logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Y, Z)``, each (M, M)."""
        return self.Y, self.Z

    def param_groups(self, lr_Z: float, lr_Y: float) -> list[dict]:  # noqa: N803
        """Optimizer groups with the attention (``Z``) and decoder (``Y``) learning rates."""
        return [{"params": [self.Z], "lr": lr_Z}, {"params": [self.Y], "lr": lr_Y}]

    def forward(self, x: torch.Tensor) -> ScanSnapOutput:  # (B, T) -> logits (B, M)
        keys, query = split_query(x, self.cfg.M, self.cfg.attend_to_query)  # (B, Tk), (B,)
        z = self.Z[query].gather(1, keys)  # (B, Tk): z_{x_T, x_t}
        attention = z.softmax(dim=-1)  # (B, Tk)
        mixture = token_mixture(attention, keys, self.cfg.M)  # (B, M)
        f = mixture + F.one_hot(query, self.cfg.M).to(mixture) if self.cfg.residual else mixture
        if self.cfg.normalize:
            f = _normalize(f)
        return ScanSnapOutput(f @ self.Y.t(), attention, mixture)  # logits (B, M)


class ScanSnapTransformer(nn.Module):
    """The 1-layer transformer of the problem setting, with embeddings and ``W_Q, W_K, W_V``.

    Attention ``b_t = softmax_t (W_Q u_{x_T})^T (W_K u_{x_t}) / sqrt(d)``, mixture
    ``f = sum_t b_t u_{x_t}`` (+ ``u_{x_T}`` with residual), ``logits = U W_V f / ||f||``.
    """

    def __init__(self, cfg: ScanSnapConfig):
        super().__init__()
        if cfg.d is None:
            raise ValueError("ScanSnapTransformer needs an embedding width d")
        self.cfg = cfg
        self.U = nn.Embedding(cfg.M, cfg.d)  # rows u_l
        self.W_Q = nn.Linear(cfg.d, cfg.d, bias=False)
        self.W_K = nn.Linear(cfg.d, cfg.d, bias=False)
        self.W_V = nn.Linear(cfg.d, cfg.d, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.U.weight, std=1.0 / math.sqrt(self.cfg.d))
        for w in (self.W_Q, self.W_K, self.W_V):
            w.reset_parameters()
        if self.cfg.zero_init:
            nn.init.zeros_(self.W_Q.weight)
            nn.init.zeros_(self.W_V.weight)

    def pairwise_logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The reparametrisation ``Y = U W_V U^T`` and ``Z = U W_Q^T W_K U^T / sqrt(d)``."""
        U = self.U.weight  # (M, d)
        Z = self.W_Q(U) @ self.W_K(U).t() / math.sqrt(self.cfg.d)  # (M, M)
        Y = U @ self.W_V(U).t()  # (M, M): u_n^T W_V u_l
        return Y, Z

    def param_groups(self, lr_Z: float, lr_Y: float) -> list[dict]:  # noqa: N803
        """Attention (``W_Q, W_K``) at ``lr_Z``; decoder side (``W_V``, ``U``) at ``lr_Y``."""
        attention = [self.W_Q.weight, self.W_K.weight]
        decoder = [self.W_V.weight, self.U.weight]
        return [{"params": attention, "lr": lr_Z}, {"params": decoder, "lr": lr_Y}]

    def forward(self, x: torch.Tensor) -> ScanSnapOutput:  # (B, T) -> logits (B, M)
        keys, query = split_query(x, self.cfg.M, self.cfg.attend_to_query)  # (B, Tk), (B,)
        u_keys, u_query = self.U(keys), self.U(query)  # (B, Tk, D), (B, D)
        q = self.W_Q(u_query)  # (B, D)
        k = self.W_K(u_keys)  # (B, Tk, D)
        z = torch.einsum("bd,btd->bt", q, k) / math.sqrt(self.cfg.d)  # (B, Tk)
        attention = z.softmax(dim=-1)  # (B, Tk)
        f = torch.einsum("bt,btd->bd", attention, u_keys)  # (B, D)
        if self.cfg.residual:
            f = f + u_query
        if self.cfg.normalize:
            f = _normalize(f)
        logits = self.W_V(f) @ self.U.weight.t()  # (B, M): u_n^T W_V f
        return ScanSnapOutput(logits, attention, token_mixture(attention, keys, self.cfg.M))


def build(cfg: ScanSnapConfig) -> nn.Module:
    """``ScanSnapYZ`` when ``cfg.d`` is None, else ``ScanSnapTransformer``."""
    return ScanSnapYZ(cfg) if cfg.d is None else ScanSnapTransformer(cfg)


def next_token_loss(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy of the next token (the paper's objective) and accuracy."""
    x, y = batch[0], batch[1]
    logits = model(x).logits  # (B, M)
    loss = F.cross_entropy(logits, y)
    return loss, {"acc": (logits.argmax(-1) == y).float().mean().detach()}


def layout_for(cfg: ScanSnapConfig) -> SequenceClasses:
    """The shipped sequence-class layout whose vocabulary size is ``cfg.M``."""
    for layout in LAYOUTS.values():
        if layout.M == cfg.M:
            return SequenceClasses(layout)
    sizes = ", ".join(f"{k}: M={v.M}" for k, v in LAYOUTS.items())
    raise ValueError(f"no sequence-class layout with M={cfg.M} (shipped layouts: {sizes})")


TRAIN_T = 64
"""Sequence length of the data ``archlab train`` draws (the quick experiment's ``T``)."""
EXAMPLE_T = 16
"""Sequence length of ``example_input``."""


def make_task(cfg: ScanSnapConfig, seed: int) -> Task:
    """Next-token prediction on the sequence classes whose vocabulary matches ``cfg.M``, with
    sequences of ``TRAIN_T`` tokens."""
    classes = layout_for(cfg)

    def data(batch_size: int, generator: torch.Generator):
        x, y, _ = classes.sample(batch_size, TRAIN_T, generator)
        return x, y

    return Task(data=data, loss_fn=next_token_loss)


def example_input(model: nn.Module, batch_size: int) -> tuple[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, model.cfg.M, (batch_size, EXAMPLE_T), generator=g),)


VARIANTS = {
    "tiny": ScanSnapConfig(M=LAYOUTS["tiny"].M, zero_init=False),
    "base": ScanSnapConfig(),
    "transformer": ScanSnapConfig(d=64),
}

SPEC = PaperSpec(
    slug="scan_snap",
    family="language",
    title=(
        "Scan and Snap: Understanding Training Dynamics and Token Composition in "
        "1-layer Transformer"
    ),
    arxiv="2305.16380",
    claim=(
        "Trained by SGD on next-token prediction, the attention of a 1-layer transformer moves "
        "from uniform onto the distinct tokens of each next token, away from common tokens, "
        "keeping the frequent ones (scan), then freezes before winner-take-all at a point set by "
        "the decoder/attention learning-rate ratio: a larger ratio snaps earlier and leaves a "
        "higher attention entropy (snap)."
    ),
    config=ScanSnapConfig,
    build=build,
    variants=VARIANTS,
    example_input=example_input,
    task=make_task,
    train_defaults={
        "optimizer": "sgd",
        "momentum": 0.9,
        "lr": 3.0,
        "grad_clip": None,
        "batch_size": 128,
        "steps": 200,
    },
    capabilities=frozenset({"next-token", "attention-weights"}),
    fidelity="faithful",
    experiment="archlab.papers.language.scan_snap.experiment",
)
