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
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.baselines.unet import UNet, UNetConfig
from archlab.data.restoration import add_gaussian_noise, denoising_batches, natural_crops
from archlab.engine import fit_steps, seed_everything
from archlab.lab.losses import charbonnier
from archlab.lab.metrics import psnr
from archlab.lab.plots import image_grid
from archlab.lab.profiling import one_thread
from archlab.lab.result import Budget, Result
from archlab.papers.dense.maxim.model import MINI, SPEC, Maxim, MaximConfig, n_params


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    maxim: MaximConfig
    unet_widths: tuple[int, ...]
    size: int
    n_train: int
    n_test: int
    sigma: float
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    freq_weight: float  # lambda of the frequency loss (0.1 in the paper)
    margin_db: float  # MAXIM must beat the U-Net by this much


SMOKE = Sizes(
    maxim=dataclasses.replace(MINI, d_features=8, depth=2), unet_widths=(8, 16, 32), size=16,
    n_train=64, n_test=8, sigma=25 / 255, steps=3, batch_size=4, lr=1e-3, warmup_steps=1,
    freq_weight=0.1, margin_db=0.0,
)  # fmt: skip
QUICK = Sizes(
    maxim=MINI, unet_widths=(20, 40, 80, 160), size=32, n_train=4000, n_test=256,
    sigma=25 / 255, steps=170, batch_size=8, lr=2e-3, warmup_steps=10, freq_weight=0.1,
    margin_db=0.0,
)  # fmt: skip
BUDGETS = {"smoke": SMOKE, "quick": QUICK}


def frequency_loss(pred: Tensor, target: Tensor) -> Tensor:
    """MAXIM's frequency reconstruction loss: mean |FFT2(pred) - FFT2(target)| (real and
    imaginary parts)."""
    diff = torch.fft.fft2(pred) - torch.fft.fft2(target)
    return torch.view_as_real(diff).abs().mean()


def restoration_loss(freq_weight: float):
    """``(model, (noisy, clean)) -> (loss, metrics)``: Charbonnier + ``freq_weight`` x frequency
    loss, summed over the model's supervised scales (``forward_scales``) when it has them."""

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]):
        noisy, clean = batch
        outs = model.forward_scales(noisy) if hasattr(model, "forward_scales") else [model(noisy)]
        loss = noisy.new_zeros(())
        for out in outs:
            target = clean
            if out.shape[-1] != clean.shape[-1]:  # lower scales: nearest-resized target
                target = nn.functional.interpolate(clean, size=out.shape[-2:], mode="nearest")
            loss = loss + charbonnier(out, target) + freq_weight * frequency_loss(out, target)
        return loss, {}

    return loss_fn


@torch.no_grad()
def denoise(model: nn.Module, noisy: Tensor, batch_size: int = 64) -> Tensor:
    model.eval()
    out = torch.cat([model(noisy[i : i + batch_size]) for i in range(0, len(noisy), batch_size)])
    model.train()
    return out.clamp(0.0, 1.0)


def make_models(sizes: Sizes, seed: int) -> dict[str, nn.Module]:
    """MAXIM, MAXIM without the grid branch, and the residual U-Net, each seeded alike."""
    models: dict[str, nn.Module] = {}
    for name, cfg in (
        ("maxim", sizes.maxim),
        ("maxim_local", dataclasses.replace(sizes.maxim, use_grid=False)),
    ):
        seed_everything(seed)
        models[name] = Maxim(cfg)
    seed_everything(seed)
    models["unet"] = UNet(
        UNetConfig(
            n_channels=3, n_outputs=3, widths=sizes.unet_widths, residual_output=True,
            norm=None,  # the 2015 paper's U-Net; better than BN here (25.9 vs 25.3 dB, seed 0)
        )
    )  # fmt: skip
    return models


def run(budget: Budget, seed: int) -> Result:
    """Train MAXIM, MAXIM-local and a U-Net on the same denoising data; check the claim."""
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(SPEC.slug, SPEC.title, SPEC.claim, budget.value, seed)
    m = result.metrics
    with one_thread():
        train = natural_crops(sizes.n_train, sizes.size, split="train", seed=seed)
        test_clean = natural_crops(sizes.n_test, sizes.size, split="test", seed=10_000 + seed)
        test_noisy = add_gaussian_noise(
            test_clean, sizes.sigma, torch.Generator().manual_seed(20_000 + seed)
        )
        m["psnr/noisy_input"] = psnr(test_noisy.clamp(0, 1), test_clean)
        data = denoising_batches(train, sizes.sigma)
        outputs: dict[str, Tensor] = {}
        for name, model in make_models(sizes, seed).items():
            m[f"params/{name}"] = n_params(model)
            secs = fit_steps(
                model, restoration_loss(sizes.freq_weight), data, steps=sizes.steps,
                batch_size=sizes.batch_size, lr=sizes.lr, seed=seed,
                warmup_steps=sizes.warmup_steps, grad_clip=1.0,
            )  # fmt: skip
            m[f"train_s/{name}"] = secs
            outputs[name] = denoise(model, test_noisy)
            m[f"psnr/{name}"] = psnr(outputs[name], test_clean)

    p = {k: m[f"psnr/{k}"] for k in ("maxim", "maxim_local", "unet")}
    n_test = len(test_clean)
    result.check(
        f"MAXIM denoises better than a residual U-Net of similar size (PSNR margin "
        f">= {sizes.margin_db} dB)",
        p["maxim"] >= p["unet"] + sizes.margin_db,
        f"MAXIM {p['maxim']:.2f} dB ({int(m['params/maxim']):,} params) vs U-Net "
        f"{p['unet']:.2f} dB ({int(m['params/unet']):,} params); noisy input "
        f"{m['psnr/noisy_input']:.2f} dB; {n_test} held-out crops, {sizes.steps} steps each",
    )
    result.check(
        "removing the global (grid) branch lowers PSNR",
        p["maxim"] > p["maxim_local"],
        f"MAXIM {p['maxim']:.2f} dB vs local-only {p['maxim_local']:.2f} dB "
        f"(difference {p['maxim'] - p['maxim_local']:+.2f} dB)",
    )
    k = min(6, n_test)
    result.figures["predictions"] = image_grid(
        {
            f"noisy ({m['psnr/noisy_input']:.1f} dB)": test_noisy[:k].clamp(0, 1),
            f"U-Net ({p['unet']:.1f})": outputs["unet"][:k],
            f"MAXIM local ({p['maxim_local']:.1f})": outputs["maxim_local"][:k],
            f"MAXIM ({p['maxim']:.1f})": outputs["maxim"][:k],
            "clean": test_clean[:k],
        }
    )
    return result
