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
from archlab.engine.seed import isolated_rng
from archlab.engine.trainer import FitResult, TrainConfig, Trainer
from archlab.errors import ArchlabError, UnknownNameError, close_matches_message
from archlab.registry import spec, split_name


@dataclass(frozen=True)
class RunConfig:
    """The two halves ``--set`` addresses: ``model.*`` and ``train.*``."""

    model: Any
    train: TrainConfig


def resolve_run_config(
    name: str,
    overrides: list[str],
    steps: int | None = None,
    seed: int = 0,
    recorded: dict | None = None,
) -> tuple[Any, RunConfig]:
    """The paper's spec and the resolved run config for ``slug[/variant]`` and CLI overrides.

    ``recorded`` (a run folder's ``config.json``) is the base when resuming: what the command
    line does not say is taken from it, so ``--resume`` alone continues the recorded run.
    """
    slug, variant = split_name(name)
    s = spec(slug)
    if s.task is None:
        raise ArchlabError(
            f"{slug} has no single training loop for `archlab train`; "
            f"use `archlab reproduce {slug}`"
        )
    model_cfg = s.variant(variant)
    train_cfg = replace_fields(TrainConfig(), dict(s.train_defaults))
    if recorded is not None:
        model_cfg = replace_fields(model_cfg, recorded["model"])
        train_cfg = replace_fields(train_cfg, recorded["train"])
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


def read_recorded_config(out: Path) -> dict:
    """The ``config.json`` of a run folder to resume, or a one-line error saying what is wrong."""
    cfg_path = out / "config.json"
    if not out.is_dir():
        raise ArchlabError(f"--resume: {out} does not exist; nothing to resume (drop --resume)")
    if not cfg_path.is_file():
        raise ArchlabError(
            f"--resume: {out} has no config.json, so it is not a run folder of `archlab train`"
        )
    try:
        recorded = json.loads(cfg_path.read_text())
        if not isinstance(recorded, dict) or not all(
            isinstance(recorded.get(k), t)
            for k, t in (("slug", str), ("seed", int), ("model", dict), ("train", dict))
        ):
            raise ValueError("expected slug, seed, model and train")
    except (ValueError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ArchlabError(
            f"--resume: {cfg_path} is corrupt ({first}); it cannot say which run to continue"
        ) from None
    return recorded


def train(
    name: str,
    overrides: list[str] | None = None,
    steps: int | None = None,
    out: str | Path = "runs/train",
    resume: bool = False,
    seed: int | None = None,
) -> FitResult:
    """Train ``slug[/variant]``; see the module docstring for what is written.

    With ``resume``, the run folder must hold a readable ``config.json``; the command line may
    repeat its settings or leave them out, but not change them. A refused resume leaves the
    folder exactly as it was.
    """
    from archlab.lab.provenance import git_sha

    out = Path(out)
    recorded = read_recorded_config(out) if resume else None
    if recorded is not None and split_name(name)[0] != recorded["slug"]:
        raise ArchlabError(
            f"--resume: {out} holds a run of {recorded['slug']}, not {split_name(name)[0]}"
        )
    if seed is None:
        seed = recorded["seed"] if recorded is not None else 0
    s, run_cfg = resolve_run_config(
        name, overrides or [], steps=steps, seed=seed, recorded=recorded
    )
    record = {
        "name": name,
        "slug": s.slug,
        "seed": seed,
        "model": to_dict(run_cfg.model),
        "train": to_dict(run_cfg.train),
    }
    if recorded is not None:
        for key in ("slug", "seed", "model", "train"):
            if recorded.get(key) != record[key]:
                raise ArchlabError(
                    f"--resume: {out / 'config.json'} was written with a different {key}; "
                    "resume with the same arguments (or none) or use a new --out"
                )
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            out / "config.json", json.dumps({**record, "git": git_sha()}, indent=2) + "\n"
        )
    with isolated_rng(seed):
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
