"""Miniature reproduction of MAXIM: Gaussian denoising of natural-image crops.

MAXIM (one stage, channels 16/32/64, b = d = 4), the same MAXIM without its global (grid)
branch (a second local head of the same size instead), and a residual U-Net baseline
(``archlab.baselines.unet``, output = input + correction, similar parameter count) are trained
on the same data, steps and recipe from the same seed: 32x32 RGB crops of the scikit-image /
scikit-learn photos with additive Gaussian noise (sigma = 25/255), MAXIM's loss (Charbonnier +
0.1 x L1 of the 2-D FFT difference), AdamW with a cosine schedule. They are tested on crops of
two held-out photos with fixed noise (PSNR of the clipped output).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.baselines.unet import UNet, UNetConfig
from archlab.data.restoration import add_gaussian_noise, denoising_batches, natural_crops
from archlab.interfaces import MultiScaleOutput
from archlab.lab import Lab, Recipe, predict
from archlab.lab.losses import charbonnier
from archlab.lab.metrics import psnr
from archlab.lab.plots import image_grid
from archlab.lab.tasks import RESTORE
from archlab.papers.dense.maxim.model import MINI, Maxim, MaximConfig


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    maxim: MaximConfig
    unet_widths: tuple[int, ...]
    size: int
    n_train: int
    n_test: int
    sigma: float
    recipe: Recipe
    freq_weight: float  # lambda of the frequency loss (0.1 in the paper)
    margin_db: float  # MAXIM must beat the U-Net by this much


BUDGETS = {
    "smoke": Settings(
        maxim=dataclasses.replace(MINI, d_features=8, depth=2), unet_widths=(8, 16, 32),
        size=16, n_train=64, n_test=8, sigma=25 / 255,
        recipe=RESTORE.recipe(steps=3, batch_size=4, lr=1e-3, warmup_steps=1),
        freq_weight=0.1, margin_db=0.0,
    ),
    "quick": Settings(
        maxim=MINI, unet_widths=(20, 40, 80, 160), size=32, n_train=4000, n_test=256,
        sigma=25 / 255, recipe=RESTORE.recipe(steps=170, batch_size=8, lr=2e-3, warmup_steps=10),
        freq_weight=0.1, margin_db=0.0,
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


def arms(s: Settings) -> dict[str, Callable[[], nn.Module]]:
    """MAXIM, MAXIM without the grid branch, and the residual U-Net."""
    return {
        "maxim": lambda: Maxim(s.maxim),
        "maxim_local": lambda: Maxim(dataclasses.replace(s.maxim, use_grid=False)),
        "unet": lambda: UNet(
            UNetConfig(
                n_channels=3, n_outputs=3, widths=s.unet_widths, residual_output=True,
                norm=None,  # the 2015 paper's U-Net; better than BN here (25.9 vs 25.3 dB, seed 0)
            )
        ),
    }  # fmt: skip


def run(lab: Lab) -> None:
    """Train MAXIM, MAXIM-local and a U-Net on the same denoising data; check the claim."""
    s: Settings = lab.settings
    train = natural_crops(s.n_train, s.size, split="train", seed=lab.seed_for("train-crops"))
    clean = natural_crops(s.n_test, s.size, split="test", seed=lab.seed_for("test-crops"))
    noisy = add_gaussian_noise(clean, s.sigma, lab.rng("test-noise"))
    lab.measure("psnr/noisy_input", psnr(noisy.clamp(0, 1), clean))
    outputs: dict[str, Tensor] = {}
    for arm, make in arms(s).items():
        model = lab.build(arm, make)
        lab.fit(arm, model, restoration_loss(s.freq_weight), denoising_batches(train, s.sigma),
                s.recipe)  # fmt: skip
        outputs[arm] = predict(model, noisy).clamp(0.0, 1.0)
        lab.measure(f"psnr/{arm}", psnr(outputs[arm], clean))

    note = f"noisy input {lab.value('psnr/noisy_input'):.2f} dB; {len(clean)} held-out crops"
    lab.compare(
        f"MAXIM denoises better than a residual U-Net of similar size (PSNR margin "
        f">= {s.margin_db} dB)",
        "psnr", "maxim", "unet", margin=s.margin_db, unit=" dB", note=note,
    )  # fmt: skip
    lab.compare("removing the global (grid) branch lowers PSNR", "psnr", "maxim", "maxim_local",
                margin=1e-9, unit=" dB")  # fmt: skip
    k = min(6, len(clean))
    p = {arm: lab.value("psnr", arm) for arm in outputs}
    lab.figure("predictions", image_grid({
        f"noisy ({lab.value('psnr/noisy_input'):.1f} dB)": noisy[:k].clamp(0, 1),
        f"U-Net ({p['unet']:.1f})": outputs["unet"][:k],
        f"MAXIM local ({p['maxim_local']:.1f})": outputs["maxim_local"][:k],
        f"MAXIM ({p['maxim']:.1f})": outputs["maxim"][:k],
        "clean": clean[:k],
    }))  # fmt: skip
