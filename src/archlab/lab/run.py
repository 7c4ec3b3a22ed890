"""``Lab``: one reproduction run. It owns the ``Result`` and gives an experiment its vocabulary.

An experiment's ``run(lab)`` reads like its claim::

    s = lab.settings                                   # this budget's row of BUDGETS
    train = make_data(seed=lab.seed_for("train"))      # named random streams, no offsets
    models = {arm: lab.build(arm, make) for arm, make in arms(s).items()}   # same init stream
    for arm, model in models.items():
        lab.fit(arm, model, loss_fn, train, s.recipe)   # same data stream, same recipe
        lab.measure(f"psnr/{arm}", psnr(predict(model, x_test), y_test))
    lab.compare("MAXIM beats a U-Net of similar size", "psnr", "maxim", "unet",
                margin=s.margin_db, unit=" dB")

Random streams: ``lab.seed_for(purpose)`` derives a 63-bit seed from the run's seed and a name
(``"train"``, ``"test"``, ``"noise"``, ``"init"``, ...) by hashing, so streams of different
purposes are independent and adding one changes no other. ``lab.rng(purpose)`` is a fresh
``torch.Generator`` on that stream. Nothing here touches the process's global generators:
models are built and trained under an isolated random state.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from archlab.engine.distributed import resolve_device
from archlab.engine.seed import isolated_rng
from archlab.errors import NonFiniteLossError
from archlab.lab.profiling import n_params
from archlab.lab.protocol import paired_interval
from archlab.lab.recipe import Recipe
from archlab.lab.result import CLAIM, HEALTH, INVARIANT, Budget, Result


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for ``purpose`` within a run of ``seed`` (stable across Python versions)."""
    digest = hashlib.sha256(f"archlab/{int(seed)}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def fmt(value: float) -> str:
    """A number as the checks print it: 4 significant digits, thousands separated when large."""
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1e4):
        return f"{int(value):,}"
    return f"{value:.4g}"


@dataclass
class Fit:
    """What ``Lab.fit`` measured for one arm.

    Attributes:
        arm: the arm's name.
        train_s: wall seconds of training.
        curve: ``[[step, mean training loss since the previous point], ...]``.
        eval_metrics: the last evaluation (when an ``eval_fn`` was given).
        eval_history: every evaluation, ``[{"step": ..., <metric>: ...}, ...]``.
    """

    arm: str
    train_s: float
    curve: list[list[float]] = field(default_factory=list)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    eval_history: list[dict[str, float]] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        return self.curve[-1][1] if self.curve else math.nan

    def flattening(self, fraction: float = 0.25) -> float:
        """The share of the whole run's loss drop that came in the last ``fraction`` of
        training: ``(head - end) / (first - end)``, where ``first`` is the first curve point and
        ``head`` / ``end`` are the means of the first and last third of the points in that last
        stretch (means, so one noisy batch does not decide it). Small: the curve has flattened.
        Relative to the total drop, so a loss still creeping towards zero after the model has
        converged reads as flat; NaN when the loss never fell (nothing was learned)."""
        if len(self.curve) < 4:
            return math.nan
        tail = [p[1] for p in self.curve[int(len(self.curve) * (1 - fraction)) - 1 :]]
        k = max(1, len(tail) // 3)
        head, end = sum(tail[:k]) / k, sum(tail[-k:]) / k
        total = self.curve[0][1] - end
        if not total > 0:
            return math.nan
        return (head - end) / total


class Lab:
    """One reproduction run of one paper at one budget and seed.

    Args:
        spec: the paper's ``PaperSpec`` (slug, title, claim).
        budget: ``smoke`` | ``quick`` | ``standard`` | ``full``.
        seed: the run's seed; every random stream derives from it.
        budgets: the paper's ``BUDGETS`` table (budget name -> settings); a budget missing from
            it is refused with one line.
        device: ``cpu`` | ``cuda`` | ``auto``: where arms are trained (bf16 autocast on CUDA).
    """

    def __init__(
        self,
        spec: Any,
        budget: str | Budget,
        seed: int,
        budgets: Mapping[str, Any],
        device: str = "cpu",
    ):
        self.spec = spec
        self.budget = Budget.parse(budget)
        self.seed = int(seed)
        self.settings = self.budget.settings(budgets, spec.slug)
        self.device = resolve_device(device)
        self.result = Result(spec.slug, spec.title, spec.claim, self.budget.value, self.seed)
        self.metrics = self.result.metrics
        self.fits: dict[str, Fit] = {}
        self.healthy: dict[str, bool] = {}  # arm -> whether it passed its health check

    # ------------------------------------------------------------------ random streams
    def seed_for(self, purpose: str) -> int:
        """The seed of the named stream ``purpose`` (e.g. ``"train"``, ``"test"``, ``"noise"``)."""
        return derive_seed(self.seed, purpose)

    def rng(self, purpose: str, device: str | torch.device = "cpu") -> torch.Generator:
        """A fresh ``torch.Generator`` on the named stream (on ``device``, e.g. ``lab.device``
        for sampling on the GPU)."""
        return torch.Generator(device=device).manual_seed(self.seed_for(purpose))

    # ------------------------------------------------------------------ arms
    def build(self, arm: str, make: Callable[[], nn.Module], stream: str = "init") -> nn.Module:
        """Build an arm's model under the ``stream`` random state (the same for every arm unless
        told otherwise) and record ``params/<arm>``."""
        with isolated_rng(self.seed_for(stream)):
            model = make()
        self.metrics[f"params/{arm}"] = n_params(model)
        return model

    def fit(
        self,
        arm: str,
        model: nn.Module,
        loss_fn: Callable,
        data: Any,
        recipe: Recipe,
        *,
        eval_fn: Callable | None = None,
        params: Any = None,
        collate: Callable | None = None,
        stream: str = "train",
    ) -> Fit:
        """Train ``model`` with the engine on ``data`` under ``recipe`` on the run's device.

        Every arm fitted on the same ``stream`` sees the same batches in the same order (the
        data order and dropout are seeded from the stream). Records ``train_s/<arm>`` and the
        arm's learning curve. ``data`` is a ``(batch_size, generator) -> batch`` callable or a
        map-style dataset (batched with ``collate``, default torch's); ``loss_fn`` is
        ``(model, batch) -> (loss, metrics)``; ``params`` optional optimizer param groups.
        """
        from archlab.engine.trainer import Trainer

        cfg = recipe.train_config(
            seed=self.seed_for(stream),
            device=str(self.device),
            amp=self.device.type == "cuda",
        )
        trainer = Trainer(model, loss_fn, cfg, eval_fn=eval_fn, params=params, collate=collate)
        t0 = time.perf_counter()  # after construction: the first optimizer imports torch._dynamo
        out = trainer.fit(data)
        seconds = time.perf_counter() - t0
        curve = [[row["step"], row["loss_mean"]] for row in out.history]
        fit = Fit(arm, seconds, curve, dict(out.eval_metrics), list(out.eval_history))
        self.fits[arm] = fit
        self.result.curves[arm] = curve
        self.metrics[f"train_s/{arm}"] = seconds
        return fit

    def tune(
        self,
        arm: str,
        make: Callable[[], nn.Module],
        loss_fn: Callable,
        data: Any,
        recipe: Recipe,
        *,
        lrs: tuple[float, ...],
        score: Callable[[nn.Module], float],
        higher_is_better: bool = True,
        init_stream: str = "init",
        train_stream: str = "train",
        extend: int = 1,
        **fit_kwargs: Any,
    ) -> nn.Module:
        """Build and fit ``arm`` once per learning rate in ``lrs`` (the same grid for every arm,
        from the budget table) and keep the model that ``score`` rates best on the validation
        split.

        The grid must bracket the choice: while the best rate sits at an end of the rates tried
        (and at most ``extend`` times), one more rate is tried beyond that end, one grid step
        further (the ratio of the grid's two values at that end). ``lr_edge/<arm>`` records
        whether the final choice still sits at an end (1.0) or is bracketed (0.0); a one-value
        grid is not extended.

        Each candidate starts from the same ``init_stream`` initialisation and sees the same
        batches (data order and dropout from ``train_stream``). Records ``val/<arm>@lr=<lr>``
        per candidate, the chosen ``lr/<arm>`` and ``val/<arm>``, and ``tune_s/<arm>`` (all
        candidates); the chosen run's learning curve and ``train_s`` become the arm's.
        ``fit_kwargs`` go to ``fit``.
        """
        if not lrs:
            raise ValueError(f"tune({arm!r}) needs at least one learning rate")
        best: tuple[float, float, nn.Module, Fit] | None = None
        total = 0.0
        tried: list[float] = []

        def candidate(lr: float) -> None:
            nonlocal best, total
            model = self.build(arm, make, stream=init_stream)
            tried.append(lr)
            try:
                fit = self.fit(arm, model, loss_fn, data, recipe.replace(lr=lr),
                               stream=train_stream, **fit_kwargs)  # fmt: skip
            except NonFiniteLossError:  # this rate diverged: it cannot win
                self.metrics[f"val/{arm}@lr={lr:g}"] = math.nan
                return
            total += fit.train_s
            value = float(score(model))
            self.metrics[f"val/{arm}@lr={lr:g}"] = value
            if best is None or _better(value, best[1], higher_is_better):
                best = (lr, value, model, fit)

        for lr in lrs:
            candidate(float(lr))
        grid = sorted(set(tried))
        for _ in range(extend if len(grid) > 1 else 0):
            if best is None:
                break
            if best[0] == max(tried):
                candidate(max(tried) * grid[-1] / grid[-2])
            elif best[0] == min(tried):
                candidate(min(tried) * grid[0] / grid[1])
            else:
                break
        if best is None:
            raise NonFiniteLossError(
                f"tune({arm!r}): training diverged at every learning rate tried "
                f"({', '.join(f'{lr:g}' for lr in tried)})"
            )
        lr, value, model, fit = best
        self.metrics[f"lr_edge/{arm}"] = float(len(tried) > 1 and lr in (min(tried), max(tried)))
        self.fits[arm] = fit
        self.result.curves[arm] = fit.curve
        self.metrics[f"train_s/{arm}"] = fit.train_s
        self.metrics[f"tune_s/{arm}"] = total
        self.metrics[f"lr/{arm}"] = lr
        self.metrics[f"val/{arm}"] = value
        return model

    def replicate(
        self,
        arm: str,
        make: Callable[[], nn.Module],
        loss_fn: Callable,
        data: Any,
        recipe: Recipe,
        index: int,
        **fit_kwargs: Any,
    ) -> nn.Module:
        """Refit an arm already tuned by ``tune`` on inner seed ``index`` (>= 1), for a paired
        comparison (``paired``): built from stream ``init/<index>`` and trained on the batches of
        stream ``train/<index>`` (the same for every arm of that replicate) at the arm's chosen
        ``lr/<arm>``; recorded as arm ``<arm>/<index>``. Replicate 0 is the tuned model itself
        (on ``tune``'s streams). ``fit_kwargs`` go to ``fit``."""
        if index < 1:
            raise ValueError(f"replicate({arm!r}) index must be >= 1 (0 is the tuned run), "
                             f"got {index}")  # fmt: skip
        if f"lr/{arm}" not in self.metrics:
            raise ValueError(f"replicate({arm!r}) needs the arm tuned first (no lr/{arm})")
        name = f"{arm}/{index}"
        model = self.build(name, make, stream=f"init/{index}")
        self.fit(name, model, loss_fn, data, recipe.replace(lr=self.value("lr", arm)),
                 stream=f"train/{index}", **fit_kwargs)  # fmt: skip
        return model

    # ------------------------------------------------------------------ measuring
    def measure(self, name: str, value: float) -> float:
        """Record a number measured in this run (``"<metric>/<arm>"`` by convention); integers
        (counts) stay integers."""
        value = int(value) if isinstance(value, int) else float(value)
        self.metrics[name] = value
        return value

    def value(self, metric: str, arm: str | None = None) -> float:
        return self.metrics[f"{metric}/{arm}" if arm is not None else metric]

    # ------------------------------------------------------------------ checks
    def compare(
        self,
        claim: str,
        metric: str,
        a: str,
        b: str,
        *,
        margin: float = 0.0,
        higher_is_better: bool = True,
        unit: str = "",
        note: str = "",
        kind: str = CLAIM,
        strict: bool = False,
    ) -> bool:
        """Check ``metric`` of arm ``a`` against arm ``b`` with a margin from the budget table.

        Higher is better: holds when ``a >= b + margin`` (``>`` with ``strict``); lower is
        better: ``a <= b - margin`` (a negative margin allows ``a`` to trail ``b`` by that
        much). The detail gives both numbers, the difference and what was needed.
        """
        va, vb = self.value(metric, a), self.value(metric, b)
        return self.compare_values(
            claim, (a, va), (b, vb), margin=margin, higher_is_better=higher_is_better,
            unit=unit, note=note, kind=kind, strict=strict, arms=(a, b),
        )  # fmt: skip

    def compare_values(
        self,
        claim: str,
        a: tuple[str, float],
        b: tuple[str, float],
        *,
        margin: float = 0.0,
        higher_is_better: bool = True,
        unit: str = "",
        note: str = "",
        kind: str = CLAIM,
        strict: bool = False,
        arms: tuple[str, ...] = (),
    ) -> bool:
        """``compare`` for two labelled values (derived quantities, ratios, ...).

        ``arms``: the arms the values come from (``compare`` passes both); when one of them
        failed its health check the comparison does not pass and says so."""
        (la, va), (lb, vb) = a, b
        op = ">" if strict else ">="
        if higher_is_better:
            passed = va > vb + margin if strict else va >= vb + margin
            need = f"needs {op} {margin:+g}{unit}"
        else:
            passed = va < vb - margin if strict else va <= vb - margin
            need = f"needs {op.replace('>', '<')} {-margin:+g}{unit}"
        detail = (
            f"{la} {fmt(va)}{unit} vs {lb} {fmt(vb)}{unit}: "
            f"difference {va - vb:+.4g}{unit} ({need})"
        )
        if note:
            detail += f"; {note}"
        passed, detail = self._gate(arms, passed, detail)
        return self.result.check(claim, _finite(va, vb) and passed, detail, kind)

    def _gate(self, arms: tuple[str, ...], passed: bool, detail: str) -> tuple[bool, str]:
        sick = [arm for arm in arms if self.healthy.get(arm) is False]
        if sick:
            detail += f"; NOT A PASS: {', '.join(sick)} failed its health check"
            return False, detail
        return passed, detail

    def health(
        self,
        arm: str,
        metric: str,
        trivial: tuple[str, float],
        *,
        margin: float,
        higher_is_better: bool = True,
        max_flattening: float | None = None,
        unit: str = "",
        aspect: str = "",
    ) -> bool:
        """The health check of a baseline (or any arm): ``metric`` of ``arm`` beats a trivial
        predictor (``(label, value)``: chance, the mean, the identity, ...) by ``margin``, and,
        with ``max_flattening``, its learning curve has flattened (at most that share of the
        run's loss drop came in the last quarter of training, ``Fit.flattening``).

        A comparison (``compare``, ``paired``) involving an arm that failed here never passes;
        several health checks of one arm (e.g. pretraining and downstream) must all pass;
        ``aspect`` names what a further check of the same arm looks at (it joins the check's
        name).
        """
        value = self.value(metric, arm)
        label, base = trivial
        sign = 1.0 if higher_is_better else -1.0
        beats = _finite(value, base) and sign * (value - base) >= margin
        op = ">=" if higher_is_better else "<="
        detail = (
            f"{metric} {fmt(value)}{unit} vs {label} {fmt(base)}{unit} "
            f"(needs {op} {label} {'+' if higher_is_better else '-'} {margin:g}{unit})"
        )
        passed = beats
        if max_flattening is not None:
            flat = self.fits[arm].flattening() if arm in self.fits else math.nan
            self.metrics[f"flattening/{arm}"] = flat
            flat_ok = _finite(flat) and flat <= max_flattening
            detail += (
                f"; {flat:.1%} of the loss drop came in the last quarter of training "
                f"(needs <= {max_flattening:.0%})"
            )
            passed = passed and flat_ok
        self.healthy[arm] = self.healthy.get(arm, True) and bool(passed)  # all criteria
        name = f"{arm} is a healthy baseline" + (f" ({aspect})" if aspect else "")
        return self.result.check(name, passed, detail, HEALTH)

    def paired(
        self,
        claim: str,
        a: tuple[str, list[float]],
        b: tuple[str, list[float]],
        *,
        margin: float = 0.0,
        higher_is_better: bool = True,
        unit: str = "",
        note: str = "",
        arms: tuple[str, ...] = (),
    ) -> bool:
        """A claim about an effect smaller than seed noise: paired differences ``a_i - b_i``
        over inner seeds, with a 95% t interval. Holds when the whole interval lies on the
        paper's side of ``margin`` (above it when higher is better, below ``-margin`` when
        lower is better). Records ``paired/<a>-<b>/{mean,lo,hi}``."""
        (la, va), (lb, vb) = a, b
        mean, lo, hi = paired_interval(va, vb)
        key = f"paired/{la}-{lb}"
        self.metrics.update({f"{key}/mean": mean, f"{key}/lo": lo, f"{key}/hi": hi})
        passed = lo > margin if higher_is_better else hi < -margin
        bound = f"> {margin:+g}" if higher_is_better else f"< {-margin:+g}"
        detail = (
            f"{la} - {lb} over {len(va)} paired seeds: mean {mean:+.4g}{unit}, 95% interval "
            f"[{lo:+.4g}, {hi:+.4g}]{unit} (needs the interval {bound}{unit}); "
            f"{la} {', '.join(fmt(x) for x in va)} vs {lb} {', '.join(fmt(x) for x in vb)}"
        )
        if note:
            detail += f"; {note}"
        passed, detail = self._gate(arms, passed, detail)
        return self.result.check(claim, passed, detail, CLAIM)

    def bound(
        self,
        claim: str,
        label: str,
        value: float,
        *,
        at_least: float | None = None,
        at_most: float | None = None,
        unit: str = "",
        note: str = "",
        kind: str = CLAIM,
        arms: tuple[str, ...] = (),
    ) -> bool:
        """Check one measured value against fixed bounds from the budget table.

        ``arms``: the arms the value depends on (e.g. both arms of a ratio); when one of them
        failed its health check the check does not pass and says so."""
        passed = _finite(value)
        need = []
        if at_least is not None:
            passed = passed and value >= at_least
            need.append(f">= {fmt(at_least)}{unit}")
        if at_most is not None:
            passed = passed and value <= at_most
            need.append(f"<= {fmt(at_most)}{unit}")
        detail = f"{label} {fmt(value)}{unit} (needs {' and '.join(need)})"
        if note:
            detail += f"; {note}"
        passed, detail = self._gate(arms, passed, detail)
        return self.result.check(claim, passed, detail, kind)

    def check(self, claim: str, passed: bool, detail: str) -> bool:
        """A claim check that is not a comparison of two numbers (give the numbers in detail)."""
        return self.result.check(claim, passed, detail, CLAIM)

    def invariant(self, name: str, passed: bool, detail: str) -> bool:
        """A property true by construction (parameter counts, masks, initialisation), reported
        apart from the claim checks."""
        return self.result.check(name, passed, detail, INVARIANT)

    # ------------------------------------------------------------------ figures
    def figure(self, name: str, fig: Any) -> None:
        """Attach a ``matplotlib.figure.Figure``; saved as ``<name>.png`` beside result.json."""
        self.result.figures[name] = fig


def _better(value: float, best: float, higher_is_better: bool) -> bool:
    """Whether a finite ``value`` beats ``best`` (a non-finite best loses to any finite value)."""
    if not math.isfinite(value):
        return False
    if not math.isfinite(best):
        return True
    return value > best if higher_is_better else value < best


def _finite(*values: float) -> bool:
    return all(math.isfinite(float(v)) for v in values)
