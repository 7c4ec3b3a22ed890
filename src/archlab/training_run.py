"""``archlab train``: build a paper's model, resolve its config and train it with the engine.

The run folder gets ``config.json`` (resolved model and train config, seed, git SHA),
``metrics.jsonl``, ``checkpoints/`` and ``model.safetensors`` (final weights).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archlab.config import parse_overrides, replace_fields, to_dict
from archlab.engine.checkpoint import atomic_write_text
from archlab.engine.seed import seed_everything
from archlab.engine.trainer import FitResult, TrainConfig, Trainer
from archlab.registry import ArchlabError, UnknownNameError, close_matches_message, spec, split_name


@dataclass(frozen=True)
class RunConfig:
    """The two halves ``--set`` addresses: ``model.*`` and ``train.*``."""

    model: Any
    train: TrainConfig


def resolve_run_config(
    name: str, overrides: list[str], steps: int | None = None, seed: int = 0
) -> tuple[Any, RunConfig]:
    """The paper's spec and the resolved run config for ``slug[/variant]`` and CLI overrides."""
    slug, variant = split_name(name)
    s = spec(slug)
    if s.task is None:
        raise ArchlabError(
            f"{slug} has no single training loop for `archlab train`; "
            f"use `archlab reproduce {slug}`"
        )
    model_cfg = s.variant(variant)
    train_cfg = replace_fields(TrainConfig(), dict(s.train_defaults))
    train_cfg = replace_fields(train_cfg, {"seed": seed})
    if steps is not None:
        train_cfg = replace_fields(train_cfg, {"steps": steps})
    model_updates, train_updates = {}, {}
    for key, value in parse_overrides(overrides).items():
        head, _, rest = key.partition(".")
        if head == "model" and rest:
            model_updates[rest] = value
        elif head == "train" and rest:
            train_updates[rest] = value
        else:
            raise UnknownNameError(
                close_matches_message("override section", key, ["model.<field>", "train.<field>"])
                + " — overrides look like model.d_hidden=64 or train.lr=3e-4"
            )
    model_cfg = replace_fields(model_cfg, model_updates)
    train_cfg = replace_fields(train_cfg, train_updates)
    return s, RunConfig(model=model_cfg, train=train_cfg)


def train(
    name: str,
    overrides: list[str] | None = None,
    steps: int | None = None,
    out: str | Path = "runs/train",
    resume: bool = False,
    seed: int = 0,
) -> FitResult:
    """Train ``slug[/variant]``; see the module docstring for what is written."""
    from archlab.reproduce_run import git_sha

    s, run_cfg = resolve_run_config(name, overrides or [], steps=steps, seed=seed)
    out = Path(out)
    record = {
        "name": name,
        "slug": s.slug,
        "seed": seed,
        "model": to_dict(run_cfg.model),
        "train": to_dict(run_cfg.train),
    }
    cfg_path = out / "config.json"
    if resume and cfg_path.exists():
        previous = json.loads(cfg_path.read_text())
        for key in ("slug", "seed", "model", "train"):
            if previous.get(key) != record[key]:
                raise ArchlabError(
                    f"--resume: {cfg_path} was written with a different {key}; "
                    "resume with the same arguments or use a new --out"
                )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg_path, json.dumps({**record, "git": git_sha()}, indent=2) + "\n")
    seed_everything(seed)
    model = s.build(run_cfg.model)
    task = s.task(run_cfg.model, seed)
    params = task.param_groups(model, run_cfg.train.lr) if task.param_groups else None
    trainer = Trainer(
        model,
        task.loss_fn,
        run_cfg.train,
        out=out,
        eval_fn=task.eval_fn,
        collate=task.collate,
        params=params,
    )
    try:
        return trainer.fit(task.data, resume=resume)
    finally:
        from archlab.engine.distributed import shutdown

        shutdown()
