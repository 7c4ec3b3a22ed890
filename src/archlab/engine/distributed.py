"""Multi-process training on ``torch.distributed``: DDP launched by ``torchrun``.

The same code path serves one process or many: with ``WORLD_SIZE`` unset (or 1) every helper here
is a no-op. gloo on CPU, NCCL on GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from archlab.errors import ArchlabError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group described by torchrun's environment, if there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> the local CUDA device under torchrun, else ``cuda`` if present, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ArchlabError(
            f"unknown device {name!r} (expected auto, cpu, cuda or cuda:N)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ArchlabError(f"device {name!r} asked for, but torch sees no CUDA device (use cpu)")
    return device


def wrap_model(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """DDP-wrap ``model`` when running in several processes."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True only if ``flag`` is true on every process."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)


def mean_over_processes(row: dict[str, float], info: DistInfo, device: torch.device) -> dict:
    """Average logged scalars over processes (every process must call it at the same step)."""
    if not info.enabled:
        return row
    keys = sorted(row)
    t = torch.tensor([row[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_batch(batch, rank: int, world_size: int):
    """This process's slice (along dim 0) of a global batch of tensors, tuples, lists or dicts."""
    if world_size == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        n = batch.shape[0]
        if n % world_size:
            raise ValueError(f"global batch {n} is not divisible by world size {world_size}")
        per = n // world_size
        return batch[rank * per : (rank + 1) * per]
    if isinstance(batch, dict):
        return {k: shard_batch(v, rank, world_size) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(shard_batch(v, rank, world_size) for v in batch)
    return batch
