"""Codebook Features: Sparse and Discrete Interpretability for Neural Networks.

Alex Tamkin, Mohammad Taufeeque, Noah D. Goodman, 2023, arXiv 2310.17230. Official code and
package: github.com/taufeeque9/codebook-features (``codebook_features.models``:
``CodebookLayer``, ``EuclideanSnapFunction``, ``InnerProductSnapFunction``). Paper card and
deviations: README.md beside this file.

A codebook layer replaces an activation ``x`` by the mean of the ``k`` codes of a learned
codebook ``C`` (n_codes, d) most similar to it (``snap``): a sparse, discrete bottleneck whose
active codes can be read off, counted against concepts and switched on by hand. Similarity is
the negative Euclidean distance (the package's default) or the inner product divided by the
code's norm (``InnerProductSnapFunction``). Training is end to end: the output's gradient goes
straight through to ``x``, and the codes learn from the task loss through the gather (the
package's ``"base"`` loss).

``CodebookTransformer`` is a decoder-only transformer from ``archlab.nn`` layers with a
codebook after every attention head (``HeadCodebooks``: one codebook per head, on its output
before the output projection) and after every MLP, as the paper's models.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.errors import ArchlabError
from archlab.nn import Decoder, DecoderLayer, LayerNorm
from archlab.registry import PaperSpec

SIMILARITIES = ("euclidean", "inner")


class CodebookError(ArchlabError, ValueError):
    """A width that does not match a codebook, an unknown similarity, ``k`` > codes."""


def similarity(x: Tensor, codes: Tensor, kind: str) -> Tensor:  # (..., d), (n, d) -> (..., n)
    """``-|x - c|`` (``euclidean``) or ``x . c / |c|`` (``inner``)."""
    if kind == "euclidean":
        flat = x.reshape(-1, x.shape[-1])
        return -torch.cdist(flat, codes).reshape(*x.shape[:-1], codes.shape[0])
    if kind == "inner":
        return (x @ codes.T) / codes.norm(dim=-1)
    raise CodebookError(f"unknown similarity {kind!r}; expected one of {', '.join(SIMILARITIES)}")


def snap(x: Tensor, codes: Tensor, k: int, kind: str = "euclidean") -> tuple[Tensor, Tensor]:
    """The mean of the ``k`` most similar codes (straight-through in ``x``) and their ids."""
    with torch.no_grad():
        ids = similarity(x, codes, kind).topk(k, dim=-1).indices  # (..., k)
    out = F.embedding(ids, codes).mean(-2)  # (..., d): the codes learn through the gather
    return x - x.detach() + out, ids  # forward: the codes; backward: identity to x


class CodebookLayer(nn.Module):
    """A codebook of ``n_codes`` codes of width ``dim`` with ``k`` active per position.

    ``forward(x)`` snaps ``x``; ``codes_of(x)`` gives the active ids (..., k). Inside
    ``force(ids, positions)`` the output at those sequence positions (dim -2; default all) is
    the mean of the given codes instead (the paper's intervention).
    """

    def __init__(
        self,
        dim: int,
        n_codes: int,
        k: int = 1,
        kind: str = "euclidean",
        replace_every: int = 0,
        replace_rho: float = 0.0,
    ):
        super().__init__()
        if kind not in SIMILARITIES:
            raise CodebookError(f"unknown similarity {kind!r}; expected one of "
                                f"{', '.join(SIMILARITIES)}")  # fmt: skip
        if not 1 <= k <= n_codes:
            raise CodebookError(f"k={k} must be in [1, n_codes={n_codes}]")
        self.dim, self.k, self.kind = dim, k, kind
        self.codes = nn.Parameter(torch.randn(n_codes, dim) / dim**0.5)
        self.replace_every, self.replace_rho = replace_every, replace_rho
        self.register_buffer("uses", torch.zeros(n_codes, dtype=torch.long))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self._forced: tuple | None = None

    def _check(self, x: Tensor) -> None:
        if x.shape[-1] != self.dim:
            raise CodebookError(f"input width {x.shape[-1]} does not match the codebook's "
                                f"{self.dim} (shape {tuple(x.shape)})")  # fmt: skip

    def codes_of(self, x: Tensor) -> Tensor:
        self._check(x)
        return similarity(x, self.codes, self.kind).topk(self.k, dim=-1).indices

    @torch.no_grad()
    def _replace_dead(self, x: Tensor) -> None:
        """Training only: every ``replace_every`` calls, the codes no position chose since
        the last replacement become random inputs of this batch (plus ``replace_rho`` noise),
        as the package's ``replace_after_steps``. Counters are buffers (checkpointed)."""
        ids = similarity(x, self.codes, self.kind).topk(self.k, dim=-1).indices
        self.uses += torch.bincount(ids.flatten(), minlength=self.codes.shape[0])
        self.calls += 1
        if int(self.calls) % self.replace_every:
            return
        dead = (self.uses == 0).nonzero().flatten()
        if len(dead):
            rows = x.reshape(-1, self.dim)
            pick = torch.randint(0, len(rows), (len(dead),), device=x.device)
            new = rows[pick] + self.replace_rho * torch.randn_like(rows[pick])
            self.codes[dead] = new.to(self.codes.dtype)
        self.uses.zero_()

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        if self.training and self.replace_every:
            self._replace_dead(x.detach())
        out = snap(x, self.codes, self.k, self.kind)[0]
        if self._forced is not None:
            ids, positions = self._forced
            out = out.clone()
            out[..., positions, :] = self.codes[ids].mean(0)
        return out

    @contextmanager
    def force(self, ids: Tensor | list[int], positions: slice | list[int] | None = None):
        """Replace the output at ``positions`` by the mean of codes ``ids`` during the body."""
        ids = torch.as_tensor(ids).flatten()
        if len(ids) == 0 or int(ids.min()) < 0 or int(ids.max()) >= self.codes.shape[0]:
            raise CodebookError(f"code ids must be in [0, {self.codes.shape[0]}), got "
                                f"{ids.tolist()}")  # fmt: skip
        self._forced = (ids, slice(None) if positions is None else positions)
        try:
            yield
        finally:
            self._forced = None

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_codes={self.codes.shape[0]}, k={self.k}, kind={self.kind}"


class HeadCodebooks(nn.Module):
    """One codebook per attention head on the heads' outputs (B, T, nh * hd)."""

    def __init__(
        self,
        n_heads: int,
        d_head: int,
        n_codes: int,
        k: int = 1,
        kind="euclidean",
        replace_every: int = 0,
    ):
        super().__init__()
        self.heads = nn.ModuleList(CodebookLayer(d_head, n_codes, k, kind, replace_every)
                                   for _ in range(n_heads))  # fmt: skip
        self.d_head = d_head

    def forward(self, z: Tensor) -> Tensor:
        parts = z.split(self.d_head, dim=-1)
        return torch.cat([cb(p) for cb, p in zip(self.heads, parts, strict=True)], dim=-1)


@dataclass(frozen=True)
class CodebookConfig:
    """A decoder-only transformer with codebooks.

    Attributes:
        vocab_size: tokens V.
        max_len: longest sequence.
        d_model: width D.
        n_layers: layers.
        n_heads: heads.
        d_hidden: MLP width.
        mlp_codes: codes of each MLP codebook (0: no MLP codebooks).
        mlp_k: active MLP codes per position.
        head_codes: codes of each head's codebook (0: none).
        head_k: active head codes per position.
        similarity: ``euclidean`` or ``inner``.
        replace_every: replace codes unused for this many training steps (0: never).
    """

    vocab_size: int = 8
    max_len: int = 64
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 4
    d_hidden: int = 128
    mlp_codes: int = 256
    mlp_k: int = 4
    head_codes: int = 64
    head_k: int = 1
    similarity: str = "euclidean"
    replace_every: int = 0


class CodebookTransformer(nn.Module):
    """(B, T) tokens -> (B, T, V) logits; ``codebooks()`` lists the (name, layer) pairs."""

    def __init__(self, cfg: CodebookConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        layers = []
        for _ in range(cfg.n_layers):
            layer = DecoderLayer(cfg.d_model, cfg.n_heads, cfg.d_hidden, cross_attention=False,
                                 norm_first=True)  # fmt: skip
            if cfg.head_codes:
                hd = cfg.d_model // cfg.n_heads
                heads = HeadCodebooks(cfg.n_heads, hd, cfg.head_codes, cfg.head_k,
                                      cfg.similarity, cfg.replace_every)  # fmt: skip
                layer.self_attn.out_proj = nn.Sequential(heads, layer.self_attn.out_proj)
            if cfg.mlp_codes:
                book = CodebookLayer(cfg.d_model, cfg.mlp_codes, cfg.mlp_k, cfg.similarity,
                                     cfg.replace_every)  # fmt: skip
                layer.ffn = nn.Sequential(layer.ffn, book)
            layers.append(layer)
        self.decoder = Decoder(layers, LayerNorm(cfg.d_model))
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        T = tokens.shape[1]
        h = self.embed(tokens) + self.pos.weight[:T]
        return self.head(self.decoder(h))

    def codebooks(self) -> list[tuple[str, CodebookLayer]]:
        return [(n, m) for n, m in self.named_modules() if isinstance(m, CodebookLayer)]


VARIANTS = {
    "tiny": CodebookConfig(
        d_model=16, n_layers=1, n_heads=2, d_hidden=32, mlp_codes=16, head_codes=8, max_len=16
    ),  # fmt: skip
    "base": CodebookConfig(),
    "inner": CodebookConfig(similarity="inner"),
    "no_codebooks": CodebookConfig(mlp_codes=0, head_codes=0),
}

SPEC = PaperSpec(
    slug="codebook_features",
    family="interp",
    title="Codebook Features: Sparse and Discrete Interpretability for Neural Networks",
    arxiv="2310.17230",
    claim=(
        "Vector-quantised codebooks after every attention head and MLP, trained end to end, "
        "keep a model's accuracy close to the un-quantised one, give codes that align with "
        "the hidden states of a finite-state machine better than any single neuron, and "
        "activating a state's codes makes the model act as if in that state."
    ),
    config=CodebookConfig,
    build=CodebookTransformer,
    variants=VARIANTS,
    example_input=lambda model, batch_size: (
        torch.randint(0, model.cfg.vocab_size, (batch_size, 8)),
    ),
    fidelity="simplified",
    batch_independent=True,
    experiment="archlab.papers.interp.codebook_features.experiment",
)
