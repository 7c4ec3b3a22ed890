"""Atomic, pickle-free checkpoints: safetensors weights plus a JSON/safetensors training state.

A checkpoint is a folder ``checkpoints/step-00000100/`` holding ``model.safetensors`` and
``state.safetensors`` + ``state.json`` (optimizer, scheduler, step, RNG and data-order state).
It is written in a temporary folder, each file fsynced, then renamed into place, and only then is
``checkpoints/latest`` (a one-line file) replaced atomically. A crash at any moment leaves the
previous checkpoint intact and ``latest`` pointing at a complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from archlab.errors import CheckpointError


class CheckpointFallbackWarning(UserWarning):
    """The newest checkpoint was unreadable and an older complete one was loaded instead."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _contiguous(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous().clone()


def flatten_state(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state (dicts, lists, tuples, tensors, arrays, scalars) into JSON + tensors."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = _contiguous(x)
            return {"__tensor__": key}
        if isinstance(x, np.ndarray):
            key = f"t{len(tensors)}"
            tensors[key] = torch.from_numpy(np.ascontiguousarray(x)).clone()
            return {"__ndarray__": key, "dtype": str(x.dtype)}
        if isinstance(x, dict):
            if not all(isinstance(k, (str, int)) for k in x):
                raise TypeError(f"state dict keys must be str or int, got {list(x)[:3]}")
            return {
                "__dict__": [[k, walk(v)] for k, v in x.items()],
            }
        if isinstance(x, tuple):
            return {"__tuple__": [walk(v) for v in x]}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, (np.integer,)):
            return int(x)
        if isinstance(x, (np.floating,)):
            return float(x)
        if x is None or isinstance(x, (bool, int, float, str)):
            if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
                return {"__float__": repr(x)}
            return x
        raise TypeError(f"cannot store {type(x).__name__} in a checkpoint state")

    return walk(obj), tensors


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``flatten_state``."""

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            if "__tensor__" in x:
                return tensors[x["__tensor__"]]
            if "__ndarray__" in x:
                return tensors[x["__ndarray__"]].numpy().astype(x["dtype"])
            if "__dict__" in x:
                return {k: walk(v) for k, v in x["__dict__"]}
            if "__tuple__" in x:
                return tuple(walk(v) for v in x["__tuple__"])
            if "__float__" in x:
                return float(x["__float__"])
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk(skeleton)


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Model weights for safetensors (unwraps DDP; tied tensors stored once per name, copied)."""
    model = getattr(model, "module", model)
    return {k: _contiguous(v) for k, v in model.state_dict().items()}


def save_weights(model: torch.nn.Module, path: Path | str, metadata: dict | None = None) -> None:
    """Atomically write the model's weights as safetensors."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(model_state(model), tmp, metadata=metadata)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def load_weights(model: torch.nn.Module, path: Path | str, strict: bool = True) -> None:
    """Load safetensors weights into ``model`` (no unpickling)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file not found: {path}")
    state = load_file(str(path))
    target = getattr(model, "module", model)
    missing, unexpected = target.load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{path}: weights do not match the model (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )


def save_checkpoint(
    root: Path | str, step: int, model: torch.nn.Module, state: dict, keep: int = 2
):
    """Write ``root/step-<step>/`` atomically, point ``root/latest`` at it, prune old ones.

    Args:
        root: the ``checkpoints`` folder.
        step: the number of optimizer steps taken.
        model: its weights go to ``model.safetensors``.
        state: nested training state (optimizer, scheduler, RNG, data order, ...).
        keep: how many checkpoints to keep (at least 1).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        save_weights(model, tmp / "model.safetensors")
        skeleton, tensors = flatten_state(state)
        fd, p = tempfile.mkstemp(dir=tmp)
        os.close(fd)
        save_file(tensors, p)
        with open(p, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(p, tmp / "state.safetensors")
        atomic_write_text(tmp / "state.json", json.dumps({"step": step, "state": skeleton}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / "latest", name + "\n")
    complete = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in complete[: max(0, len(complete) - max(1, keep))]:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".step-*"):  # temporaries left by a crash
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _load_folder(folder: Path) -> tuple[int, dict[str, torch.Tensor], dict]:
    meta = json.loads((folder / "state.json").read_text())
    tensors = load_file(str(folder / "state.safetensors"))
    weights = load_file(str(folder / "model.safetensors"))
    return int(meta["step"]), weights, unflatten_state(meta["state"], tensors)


def load_checkpoint(root: Path | str) -> tuple[int, dict[str, torch.Tensor], dict] | None:
    """The newest complete checkpoint under ``root`` as ``(step, weights, state)``, or None.

    Follows ``root/latest``; if that folder is unreadable, falls back to older complete ones.
    """
    root = Path(root)
    if not root.exists():
        return None
    candidates = sorted((p for p in root.glob("step-*") if p.is_dir()), reverse=True)
    latest = root / "latest"
    if latest.exists():
        name = latest.read_text().strip()
        candidates.sort(key=lambda p: p.name != name)
    errors = []
    for folder in candidates:
        try:
            found = _load_folder(folder)
        except Exception as e:  # noqa: BLE001 - try the previous checkpoint
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            errors.append(f"{folder.name}: {first_line}")
            continue
        if errors:
            warnings.warn(
                f"checkpoint {errors[0]} is unreadable; resuming from {folder.name} instead",
                CheckpointFallbackWarning,
                stacklevel=2,
            )
        return found
    if errors:
        raise CheckpointError(
            f"no readable checkpoint in {root} ({'; '.join(errors)}); "
            "start afresh in a new --out folder"
        )
    return None
