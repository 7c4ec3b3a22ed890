"""The one training engine: an explicit loop with evaluation, logging, checkpoints and DDP.

``Trainer(model, loss_fn, TrainConfig(...), out=DIR).fit(data)`` where ``loss_fn(model, batch) ->
(loss, metrics)``. ``data`` is either a map-style dataset (shuffled each epoch with a seeded
permutation; incomplete last batches are dropped) or a callable ``(batch_size, generator) ->
batch`` for synthetic data drawn on the fly. Every random state that decides what happens next
(global RNGs, the data generator, the epoch permutation position, optimizer and scheduler) goes
into each checkpoint, so a resumed run is bit-identical to an uninterrupted one on CPU.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import default_collate

from archlab.engine import distributed as D
from archlab.engine.checkpoint import load_checkpoint, save_checkpoint, save_weights
from archlab.engine.optim import make_optimizer, make_scheduler
from archlab.engine.seed import isolated_rng, rng_state, set_rng_state
from archlab.errors import ArchlabError, NonFiniteLossError

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "cosine", "linear")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (the ``train.*`` keys of ``--set``).

    Attributes:
        steps: optimizer steps in total.
        batch_size: global batch size (split evenly over DDP processes).
        lr: peak learning rate.
        optimizer: ``adamw`` | ``adam`` | ``sgd``.
        weight_decay: decoupled for AdamW, L2 for Adam/SGD.
        betas: Adam betas.
        momentum: SGD momentum.
        schedule: ``constant`` | ``cosine`` | ``linear`` after ``warmup_steps`` linear warm-up.
        min_lr_ratio: final learning rate as a fraction of ``lr`` (cosine/linear).
        grad_clip: max global gradient norm, or None.
        eval_every: run ``eval_fn`` every N steps (0: only at the end).
        log_every: write a metrics line every N steps.
        checkpoint_every: checkpoint every N steps (0: only at the end; needs an output folder).
        keep_checkpoints: how many checkpoints to keep.
        seed: seeds model init (when the caller builds under it), RNGs and data order.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:1``.
        amp: bfloat16 autocast on CUDA.
        progress: show a progress bar when attached to a terminal.
    """

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    eval_every: int = 0
    log_every: int = 10
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "warmup_steps", "eval_every", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or (self.batch_size < 1)
        ):
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        for name in ("weight_decay", "momentum", "min_lr_ratio"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.grad_clip is not None and not (
            math.isfinite(self.grad_clip) and self.grad_clip > 0
        ):
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")


@dataclass
class FitResult:
    """What ``fit`` returns: the final step, the logged rows, every evaluation (``eval_history``:
    ``{"step": ..., <metric>: ...}`` rows) and the last one (``eval_metrics``)."""

    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    eval_history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None
    elapsed_s: float = 0.0


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


class _Batches:
    """Deterministic, resumable batch source over a dataset or a generator callable."""

    def __init__(self, data: Any, batch_size: int, seed: int, collate: Callable | None):
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.collate = collate or default_collate
        self.is_stream = callable(data) and not hasattr(data, "__getitem__")
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.pos = 0
        self._perm: torch.Tensor | None = None
        if not self.is_stream:
            n = len(data)
            if n < batch_size:
                raise ArchlabError(f"dataset has {n} examples, fewer than batch_size {batch_size}")

    def _permutation(self) -> torch.Tensor:
        if self._perm is None:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
            self._perm = torch.randperm(len(self.data), generator=g)
        return self._perm

    def next(self) -> Any:
        if self.is_stream:
            return self.data(self.batch_size, self.generator)
        if self.pos + self.batch_size > len(self.data):
            self.epoch += 1
            self.pos = 0
            self._perm = None
        idx = self._permutation()[self.pos : self.pos + self.batch_size].tolist()
        self.pos += self.batch_size
        return self.collate([self.data[i] for i in idx])

    def state(self) -> dict:
        return {"generator": self.generator.get_state(), "epoch": self.epoch, "pos": self.pos}

    def load(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.epoch, self.pos, self._perm = int(state["epoch"]), int(state["pos"]), None


class Trainer:
    """Train ``model`` with ``loss_fn`` under ``cfg``; write run artefacts into ``out``.

    Args:
        model: the module to train (moved to the configured device, DDP-wrapped under torchrun).
        loss_fn: ``(model, batch) -> (loss, metrics)``; call ``model(...)`` so DDP sees forward.
        cfg: the ``TrainConfig``.
        out: run folder for ``metrics.jsonl``, ``checkpoints/`` and ``model.safetensors``.
        eval_fn: ``(model) -> metrics`` run in eval mode without gradients.
        collate: collate function for map-style datasets (default: torch's default_collate).
        params: parameters or param groups for the optimizer (default: all trainable ones).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable,
        cfg: TrainConfig,
        out: str | Path | None = None,
        eval_fn: Callable | None = None,
        collate: Callable | None = None,
        params: Iterable | None = None,
    ):
        self.cfg = cfg
        self.device = D.resolve_device(cfg.device)
        self.dist = D.init_distributed(self.device)
        self.raw_model = model.to(self.device)
        self.model = D.wrap_model(self.raw_model, self.dist, self.device)
        self.loss_fn = loss_fn
        self.eval_fn = eval_fn
        self.collate = collate
        self.out = Path(out) if out is not None else None
        trainable = [p for p in self.raw_model.parameters() if p.requires_grad]
        self.params = trainable
        self.optimizer = make_optimizer(params if params is not None else trainable, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.step = 0
        # off CPU, non-finite losses/gradients are flagged on the device and checked once per
        # logging interval (no per-step host sync); _checked_at is the last step checked
        self._nonfinite: dict[str, torch.Tensor] = {}
        self._checked_at = 0

    # ---------------------------------------------------------------- state
    def _state(self, batches: _Batches) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "data": batches.state(),
        }

    def _save(self, batches: _Batches) -> None:
        if self.out is None:
            return
        if self.dist.is_main:
            save_checkpoint(
                self.out / "checkpoints",
                self.step,
                self.raw_model,
                self._state(batches),
                keep=self.cfg.keep_checkpoints,
            )
        D.barrier(self.dist)

    def _resume(self, batches: _Batches) -> int | None:
        if self.out is None:
            raise ArchlabError("resume needs an output folder (out=...)")
        found = load_checkpoint(self.out / "checkpoints")
        if found is None:
            return None
        step, weights, state = found
        self.raw_model.load_state_dict(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        batches.load(state["data"])
        self.step = step
        self._truncate_metrics(step)
        return step

    def _truncate_metrics(self, step: int) -> None:
        path = self.out / "metrics.jsonl" if self.out else None
        if path is None or not path.exists() or not self.dist.is_main:
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:  # a line cut by the kill
                break
        path.write_text("".join(k + "\n" for k in keep))

    # ---------------------------------------------------------------- loop
    def _log(self, row: dict, sink) -> None:
        if sink is not None:
            sink.write(json.dumps(row) + "\n")
            sink.flush()

    def evaluate(self) -> dict[str, float]:
        """Run ``eval_fn`` on the unwrapped model in eval mode without gradients."""
        if self.eval_fn is None:
            return {}
        was_training = self.raw_model.training
        self.raw_model.eval()
        with torch.no_grad():
            metrics = self.eval_fn(self.raw_model)
        self.raw_model.train(was_training)
        return {k: float(v) for k, v in metrics.items()}

    def _autocast(self):
        if self.cfg.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def fit(self, data: Any, resume: bool = False) -> FitResult:
        """Train to ``cfg.steps`` (continuing from the newest checkpoint if ``resume``).

        Training runs under its own random state seeded from ``cfg.seed`` (dropout, data order);
        the caller's global generators (Python, NumPy, torch CPU/CUDA) are restored afterwards.
        """
        with isolated_rng(cfg_seed=self.cfg.seed):
            return self._fit(data, resume)

    def _fit(self, data: Any, resume: bool) -> FitResult:
        cfg = self.cfg
        if cfg.batch_size % self.dist.world_size:
            raise ArchlabError(
                f"batch_size {cfg.batch_size} must be divisible by the number of processes "
                f"{self.dist.world_size}"
            )
        batches = _Batches(data, cfg.batch_size, cfg.seed, self.collate)
        resumed = self._resume(batches) if resume else None
        result = FitResult(step=self.step, resumed_from=resumed)
        sink = None
        if self.out is not None and self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            sink = open(self.out / "metrics.jsonl", "a")
        progress = self._progress()
        t0 = time.perf_counter()
        try:
            if progress is not None:
                progress.start()
                task = progress.add_task("train", total=cfg.steps, completed=self.step)
            self.raw_model.train()
            loss_sum, n_summed = None, 0
            while self.step < cfg.steps:
                row = self._train_step(batches)
                self.step += 1
                loss_sum = row["loss"] if loss_sum is None else loss_sum + row["loss"]
                n_summed += 1
                last = self.step == cfg.steps
                at_checkpoint = bool(cfg.checkpoint_every) and self.step % cfg.checkpoint_every == 0
                if self.step % max(1, cfg.log_every) == 0 or last or at_checkpoint:
                    self._raise_if_nonfinite()  # one host sync per logging interval
                if self.step % max(1, cfg.log_every) == 0 or last:
                    row = {k: float(v) for k, v in row.items()}
                    row["loss_mean"] = float(loss_sum) / n_summed
                    loss_sum, n_summed = None, 0
                    row = D.mean_over_processes(row, self.dist, self.device)
                    row = {"step": self.step, **row, "lr": self.scheduler.get_last_lr()[0]}
                    result.history.append(row)
                    self._log(row, sink)
                    if progress is not None:
                        progress.update(
                            task, completed=self.step, description=f"loss {row['loss']:.4f}"
                        )
                if (cfg.eval_every and self.step % cfg.eval_every == 0) or last:
                    metrics = self.evaluate()
                    if metrics:
                        result.eval_metrics = metrics
                        result.eval_history.append({"step": self.step, **metrics})
                        self._log(
                            {"step": self.step, **{f"eval/{k}": v for k, v in metrics.items()}},
                            sink,
                        )
                if (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0) or last:
                    self._save(batches)
            if self.out is not None and self.dist.is_main:
                save_weights(self.raw_model, self.out / "model.safetensors")
        finally:
            if progress is not None:
                progress.stop()
            if sink is not None:
                sink.close()
        result.step = self.step
        result.elapsed_s = time.perf_counter() - t0
        return result

    def _train_step(self, batches: _Batches) -> dict[str, Any]:
        """One optimizer step. Values stay tensors on the device: on CUDA nothing here waits
        for the GPU; finiteness is checked every step on CPU (free) and once per logging
        interval (and before every checkpoint) on an accelerator."""
        batch = batches.next()
        batch = D.shard_batch(batch, self.dist.rank, self.dist.world_size)
        batch = _to_device(batch, self.device)
        with self._autocast():
            loss, metrics = self.loss_fn(self.model, batch)
        loss_value = loss.detach().float()
        self._note_finite("loss", loss_value)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        row: dict[str, Any] = {"loss": loss_value}
        if self.cfg.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
            self._note_finite("gradient norm", norm.detach())
            row["grad_norm"] = norm.detach()
        self.optimizer.step()
        self.scheduler.step()
        for k, v in (metrics or {}).items():
            row[k] = v.detach() if isinstance(v, torch.Tensor) else float(v)
        return row

    def _note_finite(self, what: str, value: torch.Tensor) -> None:
        if self.device.type == "cpu" and self.dist.world_size == 1:
            if not torch.isfinite(value).item():
                raise NonFiniteLossError(self._nan_message(what, float(value), self.step + 1))
            return
        bad = ~torch.isfinite(value)
        flags = self._nonfinite
        flags[what] = bad if what not in flags else flags[what] | bad

    def _raise_if_nonfinite(self) -> None:
        flags = self._nonfinite
        for what, flag in flags.items():
            if not D.all_true(not bool(flag.item()), self.dist, self.device):
                since = self._checked_at
                raise NonFiniteLossError(
                    self._nan_message(what, float("nan"), f"between {since + 1} and {self.step}")
                )
        flags.clear()
        self._checked_at = self.step

    def _nan_message(self, what: str, value: float, step: int | str) -> str:
        at = f"step {step}" if isinstance(step, int) else f"a step {step}"
        where = (
            f"; the last good checkpoint is kept in {self.out / 'checkpoints'}"
            if self.out is not None
            else ""
        )
        return (
            f"{what} became {value} at {at}; training stopped{where} "
            f"(try a lower train.lr or train.grad_clip)"
        )

    def _progress(self):
        if not self.cfg.progress or not self.dist.is_main:
            return None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        console = Console(stderr=True)
        if not console.is_terminal:
            return None
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
