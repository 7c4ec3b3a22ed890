"""Miniature reproduction of MAXIM: Gaussian denoising of natural-image crops.

MAXIM (one stage, channels 16/32/64; blocks and grids of 4 at the two high-resolution scales,
of 2 at the 8x8 scale and the 4x4 bottleneck, so that a grid window and a block differ wherever
the grid branch acts), the same MAXIM without its global (grid) branch (a second local head of
the same size instead), and a residual U-Net baseline (``archlab.baselines.unet``, output = input
+ correction, similar parameter count) on the same data, steps and recipe, each with the same
learning-rate sweep picked on a validation split: 32x32 RGB crops of the scikit-image /
scikit-learn photos with additive Gaussian noise (sigma = 25/255), split by photo (training
photos, one validation photo, two test photos), MAXIM's loss (Charbonnier + 0.1 x L1 of the 2-D
FFT difference), AdamW with a cosine schedule. Tested on crops of the two held-out photos with
fixed noise (PSNR of the clipped output). The grid ablation is paired over inner seeds where the
budget has ``n_pairs > 1``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.baselines.unet import UNet, UNetConfig
from archlab.data.restoration import (
    DEFAULT_TEST,
    add_gaussian_noise,
    denoising_batches,
    natural_crops,
)
from archlab.interfaces import MultiScaleOutput
from archlab.lab import Lab, Recipe, predict
from archlab.lab.losses import charbonnier
from archlab.lab.metrics import psnr
from archlab.lab.plots import image_grid
from archlab.lab.tasks import RESTORE
from archlab.papers.dense.maxim.model import MINI, Maxim, MaximConfig, partition

VAL_PHOTOS = ("china",)
"""The validation photo (neither trained on nor tested); the test photos are ``DEFAULT_TEST``."""

QUICK = dataclasses.replace(MINI, block_size_lr=(2, 2), grid_size_lr=(2, 2))
"""MINI with b = d = 2 at the low-resolution scales: at 32x32 crops the 8x8 scale and the 4x4
bottleneck then split into 2x2 blocks and a 2x2 grid of stride 4 / 2 (with b = d = 4 both cover
the whole 4x4 bottleneck, so the two heads would see the same tokens there)."""


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    maxim: MaximConfig
    unet_widths: tuple[int, ...]
    size: int
    n_train: int
    n_val: int
    n_test: int
    sigma: float
    recipe: Recipe
    lrs: tuple[float, ...]  # the learning-rate grid of every arm, picked on validation PSNR
    n_pairs: int  # inner seeds of the grid ablation (1: one comparison of the tuned models)
    freq_weight: float  # lambda of the frequency loss (0.1 in the paper)
    margin_db: float  # MAXIM must beat the U-Net by this much
    grid_margin_db: float  # MAXIM must beat its local-only ablation by more than this
    health_margin_db: float  # every arm must beat the noisy input by this much
    max_flattening: float | None  # and its training loss fall by at most this over the last quarter


BUDGETS = {
    "smoke": Settings(
        maxim=dataclasses.replace(MINI, d_features=8, depth=2, block_size_lr=(2, 2),
                                  grid_size_lr=(2, 2)),
        unet_widths=(8, 16, 32), size=16, n_train=64, n_val=8, n_test=8, sigma=25 / 255,
        recipe=RESTORE.recipe(steps=3, batch_size=4, lr=1e-3, warmup_steps=1), lrs=(1e-3,),
        n_pairs=2, freq_weight=0.1, margin_db=0.0, grid_margin_db=0.0, health_margin_db=-100.0,
        max_flattening=None,
    ),
    "quick": Settings(
        maxim=QUICK, unet_widths=(20, 40, 80, 160), size=32, n_train=4000, n_val=64,
        n_test=256, sigma=25 / 255,
        recipe=RESTORE.recipe(steps=120, batch_size=8, lr=3e-3, warmup_steps=10, curve_points=24),
        lrs=(3e-3, 1e-2), n_pairs=3, freq_weight=0.1, margin_db=0.0, grid_margin_db=0.0,
        health_margin_db=3.0, max_flattening=0.15,
    ),
    # paired grid ablation over 4 inner seeds and longer training (about 12 minutes on a free
    # core, estimated from the quick run's per-step times; not yet run)
    "standard": Settings(
        maxim=QUICK, unet_widths=(20, 40, 80, 160), size=32, n_train=4000, n_val=64,
        n_test=256, sigma=25 / 255,
        recipe=RESTORE.recipe(steps=300, batch_size=8, lr=3e-3, warmup_steps=15),
        lrs=(1e-3, 3e-3), n_pairs=4, freq_weight=0.1, margin_db=0.0, grid_margin_db=0.0,
        health_margin_db=3.0, max_flattening=0.15,
    ),
}  # fmt: skip


def frequency_loss(pred: Tensor, target: Tensor) -> Tensor:
    """MAXIM's frequency reconstruction loss: mean |FFT2(pred) - FFT2(target)| (real and
    imaginary parts)."""
    diff = torch.fft.fft2(pred) - torch.fft.fft2(target)
    return torch.view_as_real(diff).abs().mean()


def restoration_loss(freq_weight: float):
    """``(model, (noisy, clean)) -> (loss, metrics)``: Charbonnier + ``freq_weight`` x frequency
    loss, summed over the supervised scales of a ``MultiScaleOutput`` model."""

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]):
        noisy, clean = batch
        outs = (
            model.forward_scales(noisy) if isinstance(model, MultiScaleOutput) else [model(noisy)]
        )
        loss = noisy.new_zeros(())
        for out in outs:
            target = clean
            if out.shape[-1] != clean.shape[-1]:  # lower scales: nearest-resized target
                target = nn.functional.interpolate(clean, size=out.shape[-2:], mode="nearest")
            loss = loss + charbonnier(out, target) + freq_weight * frequency_loss(out, target)
        return loss, {}

    return loss_fn


def grid_block_sites(cfg: MaximConfig, size: int) -> list[tuple[str, int, tuple, tuple]]:
    """Where the grid branch acts on a ``size x size`` input: ``(where, map side, block size,
    grid size)`` for the MABs and cross-gating block of every scale and for the bottleneck (which
    uses the low-resolution block size for both, as the official code)."""
    sites = []
    for i in range(cfg.depth):
        block, grid = cfg.sizes(i)
        sites.append((f"scale {i}", size // 2**i, block, grid))
    b_lr = tuple(cfg.block_size_lr)
    if cfg.n_bottleneck_blocks:
        sites.append(("bottleneck", size // 2**cfg.depth, b_lr, b_lr))
    return sites


def same_partition(side: int, block: tuple, grid: tuple) -> bool:
    """Whether the block and the grid partition of a ``side x side`` map group the same tokens
    (then the grid head sees exactly what the block head sees)."""
    index = torch.arange(side * side, dtype=torch.float32).view(1, side, side, 1)

    def groups(axis: str, s: tuple) -> set[frozenset[int]]:
        tokens = partition(index, s, axis)[..., 0].long()  # (n, T)
        return {frozenset(row.tolist()) for row in tokens}

    return groups("block", block) == groups("grid", grid)


def arms(s: Settings) -> dict[str, Callable[[], nn.Module]]:
    """MAXIM, MAXIM without the grid branch, and the residual U-Net."""
    return {
        "maxim": lambda: Maxim(s.maxim),
        "maxim_local": lambda: Maxim(dataclasses.replace(s.maxim, use_grid=False)),
        "unet": lambda: UNet(
            UNetConfig(
                n_channels=3, n_outputs=3, widths=s.unet_widths, residual_output=True,
                norm=None,  # the 2015 paper's U-Net
            )
        ),
    }  # fmt: skip


def run(lab: Lab) -> None:
    """Tune MAXIM, MAXIM-local and a U-Net on the same denoising data; check the claim."""
    s: Settings = lab.settings
    train = natural_crops(s.n_train, s.size, split="train", seed=lab.seed_for("train-data"),
                          test_photos=DEFAULT_TEST + VAL_PHOTOS)  # fmt: skip
    val_clean = natural_crops(s.n_val, s.size, split="test", seed=lab.seed_for("val-data"),
                              test_photos=VAL_PHOTOS)  # fmt: skip
    val_noisy = add_gaussian_noise(val_clean, s.sigma, lab.rng("val-noise"))
    clean = natural_crops(s.n_test, s.size, split="test", seed=lab.seed_for("test-data"))
    noisy = add_gaussian_noise(clean, s.sigma, lab.rng("test-noise"))
    lab.measure("psnr/noisy_input", psnr(noisy.clamp(0, 1), clean))

    sites = grid_block_sites(s.maxim, s.size)
    same = [f"{where} ({side}x{side})" for where, side, b, g in sites if same_partition(side, b, g)]
    lab.invariant(
        "the grid and block partitions differ wherever the grid branch acts",
        not same,
        "; ".join(f"{w} {side}x{side}: block {b[0]}x{b[1]}, grid {g[0]}x{g[1]}"
                  for w, side, b, g in sites)
        + (f"; identical at {', '.join(same)}" if same else ""),
    )  # fmt: skip

    loss_fn = restoration_loss(s.freq_weight)
    data = denoising_batches(train, s.sigma)

    def val_psnr(model: nn.Module) -> float:
        return psnr(predict(model, val_noisy).clamp(0.0, 1.0), val_clean)

    outputs: dict[str, Tensor] = {}
    for arm, make in arms(s).items():
        model = lab.tune(arm, make, loss_fn, data, s.recipe, lrs=s.lrs, score=val_psnr)
        outputs[arm] = predict(model, noisy).clamp(0.0, 1.0)
        lab.measure(f"psnr/{arm}", psnr(outputs[arm], clean))
    lab.invariant(
        "MAXIM and its local-only ablation have the same parameter count",
        lab.value("params/maxim") == lab.value("params/maxim_local"),
        f"{lab.value('params/maxim'):,} vs {lab.value('params/maxim_local'):,}; U-Net "
        f"{lab.value('params/unet'):,}",
    )

    noisy_db = lab.value("psnr/noisy_input")
    for arm in ("unet", "maxim"):
        lab.health(arm, "psnr", ("the noisy input", noisy_db), margin=s.health_margin_db,
                   max_flattening=s.max_flattening, unit=" dB")  # fmt: skip

    note = f"noisy input {noisy_db:.2f} dB; {len(clean)} held-out crops"
    lab.compare(
        f"MAXIM denoises better than a residual U-Net of similar size (PSNR margin "
        f">= {s.margin_db} dB)",
        "psnr", "maxim", "unet", margin=s.margin_db, unit=" dB", note=note,
    )  # fmt: skip
    claim = "removing the global (grid) branch lowers PSNR"
    if s.n_pairs > 1:
        values = {
            "maxim": [lab.value("psnr/maxim")],
            "maxim_local": [lab.value("psnr/maxim_local")],
        }
        for i in range(1, s.n_pairs):
            for arm in ("maxim", "maxim_local"):
                model = lab.replicate(arm, arms(s)[arm], loss_fn, data, s.recipe, i)
                value = psnr(predict(model, noisy).clamp(0, 1), clean)
                values[arm].append(lab.measure(f"psnr/{arm}/{i}", value))
        lab.paired(claim, ("maxim", values["maxim"]), ("maxim_local", values["maxim_local"]),
                   margin=s.grid_margin_db, unit=" dB", arms=("maxim",),
                   note="each pair: one init and batch stream, each arm at its lr")  # fmt: skip
    else:
        lab.compare(claim, "psnr", "maxim", "maxim_local", margin=s.grid_margin_db + 1e-9,
                    unit=" dB", note="one pair (same init stream and batches)")  # fmt: skip
    k = min(6, len(clean))
    p = {arm: lab.value("psnr", arm) for arm in outputs}
    lab.figure("predictions", image_grid({
        f"noisy ({noisy_db:.1f} dB)": noisy[:k].clamp(0, 1),
        f"U-Net ({p['unet']:.1f})": outputs["unet"][:k],
        f"MAXIM local ({p['maxim_local']:.1f})": outputs["maxim_local"][:k],
        f"MAXIM ({p['maxim']:.1f})": outputs["maxim"][:k],
        "clean": clean[:k],
    }))  # fmt: skip
