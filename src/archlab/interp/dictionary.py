"""Sparse dictionaries: SAEs (ReLU + L1, TopK, JumpReLU) and transcoders, trained on activations
streamed from any hooked model, with dead-latent detection and resampling, a decoder-norm
constraint and the usual metrics; interoperable with ``sae_lens`` (``archlab.interp.saelens``).

A dictionary maps an input ``x`` (d_in) to latents ``a = sigma(W_enc^T (x - b_dec) + b_enc)``
(d_sae) and reconstructs ``a W_dec + b_dec`` (d_out). An SAE reconstructs its input
(``d_out = d_in``, ``b_dec`` subtracted from the input, as ``sae_lens``' default
``apply_b_dec_to_input``); a transcoder predicts another activation (a layer's MLP output from
its input, ``d_out`` may differ) and does not subtract ``b_dec``.

- ``relu``: ``sigma = ReLU``, loss ``|x_hat - y|^2 + l1 sum_i a_i |W_dec,i|`` (the L1 weighted
  by decoder norms, as ``sae_lens``' standard SAE).
- ``topk``: keep the ``k`` largest pre-activations (then ReLU), no sparsity penalty (Gao et
  al. 2024).
- ``jumprelu``: ``a = z * H(z - theta)`` with a learned threshold ``theta > 0`` and an L0 penalty,
  both trained through straight-through estimators with a rectangle kernel of width
  ``bandwidth`` (Rajamanoharan et al. 2024).

``decoder_norm="unit"`` constrains every decoder row to unit norm (the forward pass normalises
the rows, so the constraint holds exactly at every step); ``"free"`` leaves them free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.errors import ArchlabError
from archlab.interp.hooks import capture, patch, resolve

ARCHITECTURES = ("relu", "topk", "jumprelu")


class DictionaryError(ArchlabError, ValueError):
    """A bad dictionary input: an activation whose width does not match, an unknown
    architecture, a ``sae_lens`` directory with a missing or mismatched file."""


@dataclass(frozen=True)
class DictionaryConfig:
    """A sparse dictionary.

    Attributes:
        d_in: input width.
        d_sae: latents.
        architecture: ``relu`` | ``topk`` | ``jumprelu``.
        d_out: output width of a transcoder; None: an SAE (``d_out = d_in``).
        k: active latents of ``topk``.
        l1_coefficient: ``relu``'s decoder-norm-weighted L1 weight.
        l0_coefficient: ``jumprelu``'s L0 weight.
        bandwidth: ``jumprelu``'s straight-through kernel width.
        init_threshold: ``jumprelu``'s initial threshold.
        decoder_norm: ``unit`` (rows constrained to norm 1) or ``free``.
        dead_after: a latent that has not fired for this many training steps is dead.
        resample_every: resample dead latents every N steps (0: never).
    """

    d_in: int
    d_sae: int
    architecture: str = "relu"
    d_out: int | None = None
    k: int = 16
    l1_coefficient: float = 1e-3
    l0_coefficient: float = 1e-3
    bandwidth: float = 1e-3
    init_threshold: float = 1e-3
    decoder_norm: str = "unit"
    dead_after: int = 1000
    resample_every: int = 0

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise DictionaryError(f"unknown architecture {self.architecture!r}; expected one of "
                                  f"{', '.join(ARCHITECTURES)}")  # fmt: skip
        if self.decoder_norm not in ("unit", "free"):
            raise DictionaryError(f"decoder_norm must be 'unit' or 'free', got "
                                  f"{self.decoder_norm!r}")  # fmt: skip
        for name in ("d_in", "d_sae", "k"):
            if getattr(self, name) < 1:
                raise DictionaryError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.architecture == "topk" and self.k > self.d_sae:
            raise DictionaryError(f"k={self.k} exceeds d_sae={self.d_sae}")

    @property
    def transcoder(self) -> bool:
        return self.d_out is not None

    @property
    def width_out(self) -> int:
        return self.d_in if self.d_out is None else self.d_out


def _rectangle(x: Tensor) -> Tensor:
    return ((x > -0.5) & (x < 0.5)).to(x)


class _Step(torch.autograd.Function):
    """``H(z - theta)``; the threshold's gradient by the rectangle-kernel pseudo-derivative."""

    @staticmethod
    def forward(ctx, z, theta, bandwidth):
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return (z > theta).to(z)

    @staticmethod
    def backward(ctx, grad):
        z, theta = ctx.saved_tensors
        bw = ctx.bandwidth
        g_theta = -(1.0 / bw) * _rectangle((z - theta) / bw) * grad
        return torch.zeros_like(z), g_theta.sum_to_size(theta.shape), None


class _JumpReLU(torch.autograd.Function):
    """``z H(z - theta)``: exact gradient in ``z``, pseudo-derivative in ``theta``."""

    @staticmethod
    def forward(ctx, z, theta, bandwidth):
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return z * (z > theta).to(z)

    @staticmethod
    def backward(ctx, grad):
        z, theta = ctx.saved_tensors
        bw = ctx.bandwidth
        g_z = (z > theta).to(z) * grad
        g_theta = -(theta / bw) * _rectangle((z - theta) / bw) * grad
        return g_z, g_theta.sum_to_size(theta.shape), None


class SparseDictionary(nn.Module):
    """An SAE or transcoder (``DictionaryConfig``); ``forward(x) -> x_hat``.

    Parameters use ``sae_lens``' names and layouts: ``W_enc`` (d_in, d_sae), ``b_enc``,
    ``W_dec`` (d_sae, d_out), ``b_dec`` (d_out), and for ``jumprelu`` ``log_threshold``.
    Buffers ``steps_since_fired`` (d_sae) and ``n_steps`` make dead-latent tracking part of the
    checkpoint, so a resumed run resamples as an uninterrupted one.
    """

    def __init__(self, cfg: DictionaryConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        d_in, d_sae, d_out = cfg.d_in, cfg.d_sae, cfg.width_out
        w_dec = torch.randn(d_sae, d_out, generator=generator)
        w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        # encoder starts as the decoder's transpose (sae_lens; Conerly et al.) when square
        w_enc = w_dec.T.clone() if d_out == d_in else torch.randn(d_in, d_sae, generator=generator)
        self.W_enc = nn.Parameter(w_enc / math.sqrt(d_in) if d_out != d_in else w_enc)
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        if cfg.architecture == "jumprelu":
            self.log_threshold = nn.Parameter(torch.full((d_sae,), math.log(cfg.init_threshold)))
        self.register_buffer("steps_since_fired", torch.zeros(d_sae, dtype=torch.long))
        self.register_buffer("n_steps", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ the map
    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def decoder(self) -> Tensor:  # (d_sae, d_out), rows of norm 1 under decoder_norm="unit"
        if self.cfg.decoder_norm == "unit":
            return self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
        return self.W_dec

    def _check(self, x: Tensor, width: int, what: str) -> None:
        if x.shape[-1] != width:
            raise DictionaryError(f"{what} has width {x.shape[-1]}, but this dictionary expects "
                                  f"{width} (shape {tuple(x.shape)})")  # fmt: skip

    def pre_activations(self, x: Tensor) -> Tensor:  # (..., d_in) -> (..., d_sae)
        self._check(x, self.cfg.d_in, "the input")
        if not self.cfg.transcoder:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activate(self, z: Tensor) -> Tensor:
        cfg = self.cfg
        if cfg.architecture == "relu":
            return torch.relu(z)
        if cfg.architecture == "topk":
            values, index = z.topk(cfg.k, dim=-1)
            return torch.zeros_like(z).scatter(-1, index, values.relu())
        return _JumpReLU.apply(torch.relu(z), self.threshold, cfg.bandwidth)

    def encode(self, x: Tensor) -> Tensor:  # (..., d_in) -> (..., d_sae)
        return self.activate(self.pre_activations(x))

    def decode(self, a: Tensor) -> Tensor:  # (..., d_sae) -> (..., d_out)
        self._check(a, self.cfg.d_sae, "the latents")
        return a @ self.decoder() + self.b_dec

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    # ------------------------------------------------------------------ training
    def training_loss(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, dict]:
        """MSE (summed over the output width, mean over rows) plus the sparsity penalty;
        also updates the dead-latent counters. ``y``: a transcoder's target (default ``x``)."""
        cfg = self.cfg
        y = x if y is None else y
        self._check(y, cfg.width_out, "the target")
        z = self.pre_activations(x)
        a = self.activate(z)
        x_hat = self.decode(a)
        mse = (x_hat - y).pow(2).sum(-1).mean()
        if cfg.architecture == "relu":
            sparsity = cfg.l1_coefficient * (a * self.decoder().norm(dim=1)).sum(-1).mean()
        elif cfg.architecture == "jumprelu":
            l0 = _Step.apply(torch.relu(z), self.threshold, cfg.bandwidth).sum(-1).mean()
            sparsity = cfg.l0_coefficient * l0
        else:
            sparsity = torch.zeros((), device=x.device)
        with torch.no_grad():
            fired = (a.reshape(-1, cfg.d_sae) > 0).any(0)
            self.steps_since_fired.add_(1).masked_fill_(fired, 0)
            self.n_steps.add_(1)
        metrics = {"mse": mse.detach(), "sparsity": sparsity.detach(),
                   "l0": (a > 0).float().sum(-1).mean().detach()}  # fmt: skip
        return mse + sparsity, metrics

    def dead(self) -> Tensor:  # (d_sae,) bool
        return self.steps_since_fired >= self.cfg.dead_after

    @torch.no_grad()
    def resample_dead(self, x: Tensor, y: Tensor | None = None) -> int:
        """Re-initialise dead latents towards inputs the dictionary reconstructs worst
        (Anthropic's resampling, 2023): inputs drawn with probability proportional to their
        squared error; the decoder row becomes the normalised residual, the encoder column the
        normalised input scaled to 0.2x the mean alive encoder norm, the bias 0."""
        dead = self.dead().nonzero().flatten()
        if not len(dead):
            return 0
        y = x if y is None else y
        err = (self(x) - y).pow(2).sum(-1).flatten()  # (N,)
        rows_x, rows_y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
        idx = torch.multinomial(err.clamp_min(1e-12), len(dead), replacement=len(dead) > len(err))
        residual = rows_y[idx] - self(rows_x[idx])  # (n, d_out)
        self.W_dec[dead] = residual / residual.norm(dim=1, keepdim=True).clamp_min(1e-8)
        alive = ~self.dead()
        scale = self.W_enc[:, alive].norm(dim=0).mean() if alive.any() else 1.0
        inp = rows_x[idx] - (0 if self.cfg.transcoder else self.b_dec)
        self.W_enc[:, dead] = (0.2 * scale * inp / inp.norm(dim=1, keepdim=True).clamp_min(1e-8)).T
        self.b_enc[dead] = 0.0
        self.steps_since_fired[dead] = 0
        return len(dead)


def dictionary_loss(dic: SparseDictionary, batch: Tensor | tuple[Tensor, Tensor]):
    """The engine's ``loss_fn`` for dictionaries: ``batch`` is ``x`` (an SAE) or ``(x, y)``
    (a transcoder). Every ``resample_every`` steps the dead latents are resampled on this
    batch first (all state lives in the module's buffers, so resuming is exact)."""
    module = dic.module if hasattr(dic, "module") else dic  # DDP
    x, y = (batch, None) if isinstance(batch, Tensor) else batch
    every = module.cfg.resample_every
    if every and int(module.n_steps) and int(module.n_steps) % every == 0:
        n = module.resample_dead(x, y)
        loss, metrics = module.training_loss(x, y)
        return loss, {**metrics, "resampled": float(n)}
    return module.training_loss(x, y)


# ---------------------------------------------------------------------- activation store
class ActivationStore:
    """Streams activations at hook points of ``model`` as engine batches.

    ``store(batch_size, generator) -> x`` (or ``(x, y)`` with ``target=``) draws rows from a
    shuffled buffer of ``buffer_rows`` activations, refilled by running ``model`` on the next
    inputs of ``inputs`` (an iterator of model inputs, e.g. token batches) under ``capture``.
    Positions are flattened: (B, T, D) activations give B T rows.

    Args:
        model: any module.
        hook: the hook point of the dictionary's input.
        inputs: a callable ``() -> model input`` (called for every refill).
        buffer_rows: rows held; half are replaced at each refill (mixing across batches).
        target: the hook point of a transcoder's target, or None.
    """

    def __init__(
        self,
        model: nn.Module,
        hook: str,
        inputs: Callable[[], Tensor],
        buffer_rows: int = 8192,
        target: str | None = None,
    ):
        resolve(model, [hook] + ([target] if target else []))
        self.model, self.hook, self.target = model, hook, target
        self.inputs = inputs
        self.buffer_rows = buffer_rows
        self._buffer: list[Tensor] | None = None
        self._cursor = 0

    def _collect(self) -> list[Tensor]:
        names = [self.hook] + ([self.target] if self.target else [])
        rows: list[list[Tensor]] = [[] for _ in names]
        n = 0
        while n < self.buffer_rows:
            with torch.no_grad(), capture(self.model, names) as cache:
                self.model(self.inputs())
            for i, name in enumerate(names):
                rows[i].append(cache[name].reshape(-1, cache[name].shape[-1]))
            n += len(rows[0][-1])
        return [torch.cat(r)[: self.buffer_rows] for r in rows]

    def __call__(self, batch_size: int, generator: torch.Generator):
        if self._buffer is None:
            self._buffer = self._collect()
            self._perm = torch.randperm(self.buffer_rows, generator=generator)
        if self._cursor + batch_size > self.buffer_rows // 2:  # refill the used half
            fresh = self._collect()
            half = self.buffer_rows // 2
            used = self._perm[:half]
            for buf, new in zip(self._buffer, fresh, strict=True):
                buf[used] = new[:half]
            self._perm = torch.randperm(self.buffer_rows, generator=generator)
            self._cursor = 0
        idx = self._perm[self._cursor : self._cursor + batch_size]
        self._cursor += batch_size
        out = [b[idx] for b in self._buffer]
        return out[0] if self.target is None else (out[0], out[1])

    def batches(self, n: int, batch_size: int, generator: torch.Generator) -> Iterator:
        for _ in range(n):
            yield self(batch_size, generator)


# ---------------------------------------------------------------------- metrics
@torch.no_grad()
def dictionary_metrics(
    dic: SparseDictionary, x: Tensor, y: Tensor | None = None
) -> dict[str, float]:
    """``l0`` (mean active latents), ``fvu`` (fraction of variance unexplained:
    ``|y - y_hat|^2 / |y - mean y|^2``), ``mse`` and ``dead_fraction`` (latents that never fire
    on ``x``)."""
    y = x if y is None else y
    a = dic.encode(x).reshape(-1, dic.cfg.d_sae)
    y = y.reshape(-1, y.shape[-1])
    y_hat = dic.decode(a)
    resid = (y - y_hat).pow(2).sum()
    total = (y - y.mean(0)).pow(2).sum()
    return {
        "l0": float((a > 0).float().sum(-1).mean()),
        "fvu": float(resid / total),
        "mse": float((y - y_hat).pow(2).sum(-1).mean()),
        "dead_fraction": float((~(a > 0).any(0)).float().mean()),
    }


@torch.no_grad()
def ce_loss_recovered(
    model: nn.Module,
    dic: SparseDictionary,
    hook: str,
    inputs: Tensor,
    loss: Callable[[Tensor], Tensor],
    target: str | None = None,
) -> dict[str, float]:
    """Downstream loss with the dictionary spliced in at ``hook`` (its reconstruction replaces
    the activation; for a transcoder, its prediction from ``hook`` replaces ``target``), against
    the clean model and the activation zero-ablated: ``recovered = (zero - spliced) /
    (zero - clean)``. ``loss(model_output) -> scalar``."""
    out_point = target or hook
    clean = float(loss(model(inputs)))
    with patch(model, {out_point: torch.zeros_like}):
        zero = float(loss(model(inputs)))
    if target is None:
        with patch(model, {hook: lambda t: dic(t).to(t.dtype)}):
            spliced = float(loss(model(inputs)))
    else:
        with capture(model, [hook]) as cache:
            model(inputs)
        pred = dic(cache[hook])
        with patch(model, {target: lambda t: pred.to(t.dtype).reshape(t.shape)}):
            spliced = float(loss(model(inputs)))
    denom = zero - clean
    return {"clean": clean, "spliced": spliced, "zero_ablated": zero,
            "recovered": (zero - spliced) / denom if denom else float("nan")}  # fmt: skip
