"""Engine overhead: ``Trainer.fit`` against a bare PyTorch loop, same model, data and steps.

Both loops do the same work per step (forward, loss, backward, gradient clipping, AdamW, LR
schedule) on the same pre-generated batches; the engine adds its NaN guard, logging, batch
source and bookkeeping. Runs alternate (bare, engine, bare, engine, ...) and the ratio of the
medians is reported. Target: ratio < 1.05.

    python benchmarks/engine_overhead.py [--steps 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from archlab.engine import TrainConfig, Trainer, seed_everything
from archlab.engine.optim import make_optimizer, make_scheduler


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 10)
    )


def make_batches(steps: int, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(batch, 256, generator=g), torch.randint(0, 10, (batch,), generator=g))
        for _ in range(steps)
    ]


def loss_fn(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y), {}


def bare(cfg: TrainConfig, batches) -> float:
    seed_everything(0)
    model = make_model()
    opt = make_optimizer(model.parameters(), cfg)
    sched = make_scheduler(opt, cfg)
    t0 = time.perf_counter()
    for batch in batches:
        loss, _ = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
    return time.perf_counter() - t0


def engine(cfg: TrainConfig, batches) -> float:
    seed_everything(0)
    model = make_model()
    it = iter(batches)
    trainer = Trainer(model, loss_fn, cfg)
    t0 = time.perf_counter()
    trainer.fit(lambda batch_size, gen: next(it))
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch,
        lr=1e-3,
        schedule="cosine",
        warmup_steps=10,
        grad_clip=1.0,
        log_every=10,
        progress=False,
        device="cpu",
    )
    batches = make_batches(args.steps, args.batch)
    bare(cfg, batches[:20])  # warm-up
    t_bare, t_engine = [], []
    for _ in range(args.repeats):
        t_bare.append(bare(cfg, batches))
        t_engine.append(engine(cfg, batches))
    ratio = statistics.median(t_engine) / statistics.median(t_bare)
    print(f"bare loop   median {statistics.median(t_bare):.3f} s  ({args.steps} steps)")
    print(f"engine loop median {statistics.median(t_engine):.3f} s")
    print(
        f"engine/bare ratio: {ratio:.3f}  (target < 1.05: {'met' if ratio < 1.05 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
