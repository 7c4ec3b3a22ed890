"""KAN training-step throughput: archlab.nn.kan against pykan, same width, grid and data.

Both models are ``[2, 5, 1]`` KANs (grid 5, cubic splines; archlab's is two
``archlab.nn.kan.KANLayer`` with pykan's parameters) trained with Adam on the same full batch
of a 2-D regression. pykan's ``KAN`` runs twice: as constructed by default (it records
activations for plotting and evaluates its symbolic branch every step) and with
``save_act=False, symbolic_enabled=False`` (its fastest settings). Runs alternate and the ratio
of the medians is reported (> 1: archlab is faster). Target: >= 10x pykan's default.

    python benchmarks/kan_vs_pykan.py [--steps 100] [--batch 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch import nn

from archlab.nn.kan import KANLayer


class ArchlabKAN(nn.Module):
    def __init__(self, widths=(2, 5, 1), num=5, k=3):
        super().__init__()
        self.layers = nn.ModuleList(
            KANLayer(a, b, num=num, k=k) for a, b in zip(widths, widths[1:])
        )

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def pykan_model(fast: bool, ckpt: str) -> nn.Module:
    from kan import KAN

    kw = dict(save_act=False, symbolic_enabled=False) if fast else {}
    return KAN(width=[2, 5, 1], grid=5, k=3, seed=0, auto_save=False, ckpt_path=ckpt, **kw)


def train_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 2, generator=g) * 2 - 1
    y = torch.exp(torch.sin(torch.pi * x[:, :1]) + x[:, 1:] ** 2)
    times: dict[str, list[float]] = {"archlab": [], "pykan (default)": [], "pykan (fast)": []}
    with tempfile.TemporaryDirectory() as ckpt:
        makers = {
            "archlab": lambda: ArchlabKAN(),
            "pykan (default)": lambda: pykan_model(False, ckpt),
            "pykan (fast)": lambda: pykan_model(True, ckpt),
        }
        for make in makers.values():  # warm-up
            train_time(make(), x, y, 5)
        for _ in range(args.repeats):
            for name, make in makers.items():
                times[name].append(train_time(make(), x, y, args.steps))
    ours = statistics.median(times["archlab"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(
            f"{name:16s} median {med:.3f} s for {args.steps} steps ({args.steps / med:.0f} steps/s)"
        )
    for name in ("pykan (default)", "pykan (fast)"):
        ratio = statistics.median(times[name]) / ours
        note = (
            f" (target >= 10x: {'met' if ratio >= 10 else 'NOT met'})" if "default" in name else ""
        )
        print(f"archlab vs {name}: {ratio:.2f}x{note}")


if __name__ == "__main__":
    main()
