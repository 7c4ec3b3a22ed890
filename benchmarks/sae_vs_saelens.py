"""SAE training-step throughput: archlab.interp against sae_lens, same config and data.

Both train a ReLU + L1 SAE (decoder-norm-weighted L1, ``b_dec`` subtracted from the input) of
width ``--d-sae`` on ``--d-in``-dimensional activations with Adam (constant lr), gradient
clipping at 1.0 and dead-latent counting, on the same pre-computed batches:

- archlab: ``Trainer(SparseDictionary, dictionary_loss)`` (the library's engine);
- sae_lens: ``SAETrainer(StandardTrainingSAE)`` fed by an iterator (its own training loop,
  without wandb logging or evaluation).

Runs alternate and the ratio of the medians is reported (> 1: archlab is faster). Target:
>= 1.0x.

    python benchmarks/sae_vs_saelens.py [--steps 50] [--batch 4096] [--d-in 256] [--d-sae 2048]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from archlab.engine.trainer import TrainConfig, Trainer
from archlab.interp import DictionaryConfig, SparseDictionary, dictionary_loss


def archlab_time(data: torch.Tensor, args) -> float:
    torch.manual_seed(0)
    dic = SparseDictionary(DictionaryConfig(args.d_in, args.d_sae, "relu", l1_coefficient=5.0,
                                            decoder_norm="free"))  # fmt: skip
    batches = iter(data)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch, lr=3e-4, optimizer="adam",
                      grad_clip=1.0, log_every=args.steps, progress=False,
                      device="cpu")  # fmt: skip
    t0 = time.perf_counter()
    Trainer(dic, dictionary_loss, cfg).fit(lambda b, g: next(batches))
    return time.perf_counter() - t0


def saelens_time(data: torch.Tensor, args) -> float:
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(0)
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=args.d_in, d_sae=args.d_sae,
                                                        l1_coefficient=5.0))  # fmt: skip
    cfg = SAETrainerConfig(total_training_samples=args.steps * args.batch,
                           train_batch_size_samples=args.batch, lr=3e-4, lr_end=3e-4)  # fmt: skip
    trainer = SAETrainer(cfg, sae, data_provider=iter(data))
    t0 = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--d-in", type=int, default=256)
    p.add_argument("--d-sae", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    g = torch.Generator().manual_seed(0)
    data = torch.randn(args.steps, args.batch, args.d_in, generator=g)
    runners = {"archlab": archlab_time, "sae_lens": saelens_time}
    small = argparse.Namespace(**{**vars(args), "steps": 3})
    for run in runners.values():  # warm-up
        run(data[:3], small)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, run in runners.items():
            times[name].append(run(data, args))
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:9s} median {med:.3f} s for {args.steps} steps "
              f"({args.steps / med:.1f} steps/s, batch {args.batch})")  # fmt: skip
    ratio = statistics.median(times["sae_lens"]) / statistics.median(times["archlab"])
    print(
        f"archlab vs sae_lens: {ratio:.2f}x (target >= 1.0x: {'met' if ratio >= 1 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
