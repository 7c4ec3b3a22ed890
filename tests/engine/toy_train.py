"""A small training script used by the engine tests (run as a subprocess, also under torchrun).

Usage: python toy_train.py OUT [--steps N] [--resume] [--sleep S] [--data stream|dataset]
       [--checkpoint-every K] [--nan-at STEP] [--batch B]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn

from archlab.engine import TrainConfig, Trainer, seed_everything


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 3))

    def forward(self, x):  # (B, 8) -> (B, 3)
        return self.net(x)


def dataset(n: int = 200):
    g = torch.Generator().manual_seed(123)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, :3].argmax(1)).long()
    return [(x[i], y[i]) for i in range(n)]


def stream(batch_size: int, gen: torch.Generator):
    x = torch.randn(batch_size, 8, generator=gen)
    return x, x[:, :3].argmax(1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--data", default="dataset")
    p.add_argument("--checkpoint-every", type=int, default=3)
    p.add_argument("--nan-at", type=int, default=-1)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--no-dropout", action="store_true")
    args = p.parse_args(argv)
    seed_everything(0)
    model = Toy()
    if args.no_dropout:
        model.net[2].p = 0.0
    calls = {"n": 0}

    def loss_fn(m, batch):
        x, y = batch
        calls["n"] += 1
        if args.sleep:
            time.sleep(args.sleep)
        logits = m(x)
        loss = nn.functional.cross_entropy(logits, y)
        if calls["n"] == args.nan_at:
            loss = loss * float("nan")
        return loss, {"acc": (logits.argmax(1) == y).float().mean()}

    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch,
        lr=1e-2,
        schedule="cosine",
        warmup_steps=5,
        log_every=1,
        checkpoint_every=args.checkpoint_every,
        progress=False,
    )
    data = dataset() if args.data == "dataset" else stream
    Trainer(model, loss_fn, cfg, out=args.out).fit(data, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
