"""Miniature reproduction of MEDFE: irregular-hole inpainting of natural-image crops.

MEDFE (mini: encoder 16..128 channels, branches meeting at 8x8), the same MEDFE without the
bilateral propagation activation, and the partial-convolution U-Net baseline (Liu et al. 2018,
``pconv.PConvUNet``, similar parameter count) are trained on the same data, steps and recipe
from the same seed: 32x32 RGB crops of the scikit-image / scikit-learn photos with irregular
masks (strokes and blobs, 20-40 % holes). Both use the pixel loss of the PConv paper
(L1 on the known pixels + 6 x L1 in the holes); MEDFE adds its branch supervision (L1 of the
structure branch's image against a total-variation smoothed ground truth and of the texture
branch's image against the ground truth, both at the 8x8 equalisation scale). The GAN,
perceptual and style losses are left out (no pretrained VGG offline; too slow on CPU). Test:
in-hole PSNR on crops of two held-out photos with a fixed bank of held-out masks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.data.restoration import fill_holes, inpainting_batches, irregular_masks, natural_crops
from archlab.engine import fit_steps, seed_everything
from archlab.lab.losses import masked_l1
from archlab.lab.metrics import psnr, ssim
from archlab.lab.plots import image_grid
from archlab.lab.profiling import one_thread
from archlab.lab.result import Budget, Result
from archlab.papers.dense.medfe.model import (
    MEDFE,
    MINI,
    SPEC,
    BranchSupervision,
    MEDFEConfig,
    n_params,
)
from archlab.papers.dense.medfe.pconv import PConvUNet, PConvUNetConfig


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    medfe: MEDFEConfig
    pconv: PConvUNetConfig
    size: int
    n_train: int
    n_test: int
    n_masks: int
    hole_range: tuple[float, float]
    structure_weight: float  # TV smoothing of the structure target
    hole_weight: float  # PConv's 6 x L1 in the holes
    aux_weight: float  # weight of MEDFE's branch losses
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    margin_db: float


SMOKE = Sizes(
    medfe=dataclasses.replace(
        MINI, d_base=8, d_branch=16, n_pconv_layers=1, n_res_blocks=1
    ),
    pconv=PConvUNetConfig(widths=(8, 16, 32, 32), kernels=(7, 5, 5, 3)), size=32, n_train=64,
    n_test=8, n_masks=32, hole_range=(0.2, 0.4), structure_weight=0.1, hole_weight=6.0,
    aux_weight=1.0, steps=3, batch_size=4, lr=1e-3, warmup_steps=1, margin_db=0.0,
)  # fmt: skip
QUICK = Sizes(
    medfe=MINI,
    pconv=PConvUNetConfig(widths=(32, 64, 128, 256), kernels=(7, 5, 5, 3)), size=32,
    n_train=4000, n_test=256, n_masks=1000, hole_range=(0.2, 0.4), structure_weight=0.1,
    hole_weight=6.0, aux_weight=1.0, steps=450, batch_size=8, lr=2e-3, warmup_steps=10,
    margin_db=0.0,
)  # fmt: skip
BUDGETS = {"smoke": SMOKE, "quick": QUICK}


def pixel_loss(out: Tensor, target: Tensor, holes: Tensor, hole_weight: float) -> Tensor:
    """PConv's reconstruction terms: L1 on the known pixels + ``hole_weight`` x L1 in the holes
    (each a mean over its own pixels)."""
    return masked_l1(out, target, 1.0 - holes) + hole_weight * masked_l1(out, target, holes)


class WithBranchLoss(nn.Module):
    """MEDFE and its ``BranchSupervision`` head, trained together (as the official
    ``PCblock`` holds ``InnerCos``); ``forward`` is MEDFE's."""

    def __init__(self, model: MEDFE):
        super().__init__()
        self.model = model
        self.branch_loss = BranchSupervision(model.cfg.d_branch, model.cfg.n_channels)

    def forward(self, image: Tensor, holes: Tensor) -> Tensor:
        return self.model(image, holes)


def medfe_loss(hole_weight: float, aux_weight: float):
    """``(WithBranchLoss, (masked, holes, target, structure)) -> (loss, metrics)`` of MEDFE:
    pixel loss + ``aux_weight`` x (structure-branch L1 + texture-branch L1)."""

    def loss_fn(wrapped: WithBranchLoss, batch):
        masked, holes, target, structure = batch
        out, branches = wrapped.model(masked, holes, return_aux=True)
        branch = wrapped.branch_loss(branches, target, structure)
        loss = pixel_loss(out, target, holes, hole_weight) + aux_weight * branch
        return loss, {"branch_l1": float(branch.detach())}

    return loss_fn


def pconv_loss(hole_weight: float):
    def loss_fn(model: nn.Module, batch):
        masked, holes, target, _ = batch
        return pixel_loss(model(masked, holes), target, holes, hole_weight), {}

    return loss_fn


@torch.no_grad()
def inpaint(model: nn.Module, masked: Tensor, holes: Tensor, batch_size: int = 64) -> Tensor:
    """Model outputs composited with the known pixels, clipped to [0, 1]."""
    model.eval()
    outs = [
        model(masked[i : i + batch_size], holes[i : i + batch_size])
        for i in range(0, len(masked), batch_size)
    ]
    model.train()
    out = torch.cat(outs).clamp(0.0, 1.0)
    return out * holes + masked * (1.0 - holes)


def make_models(sizes: Sizes, seed: int) -> dict[str, nn.Module]:
    models: dict[str, nn.Module] = {}
    for name, cfg in (
        ("medfe", sizes.medfe),
        ("medfe_no_bpa", dataclasses.replace(sizes.medfe, use_bpa=False)),
    ):
        seed_everything(seed)
        models[name] = WithBranchLoss(MEDFE(cfg))
    seed_everything(seed)
    models["pconv_unet"] = PConvUNet(sizes.pconv)
    return models


def run(budget: Budget, seed: int) -> Result:
    """Train MEDFE, MEDFE without BPA and a PConv U-Net on the same inpainting data."""
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(SPEC.slug, SPEC.title, SPEC.claim, budget.value, seed)
    m = result.metrics
    with one_thread():
        train, structure = natural_crops(
            sizes.n_train, sizes.size, split="train", seed=seed,
            structure_weight=sizes.structure_weight,
        )  # fmt: skip
        masks = irregular_masks(sizes.n_masks, sizes.size, hole_range=sizes.hole_range, seed=seed)
        test = natural_crops(sizes.n_test, sizes.size, split="test", seed=10_000 + seed)
        test_holes = irregular_masks(
            sizes.n_test, sizes.size, hole_range=sizes.hole_range, seed=20_000 + seed
        )
        test_masked = fill_holes(test, test_holes, 0.0)
        data = inpainting_batches(train, masks, structure, fill=0.0)
        losses = {
            "medfe": medfe_loss(sizes.hole_weight, sizes.aux_weight),
            "medfe_no_bpa": medfe_loss(sizes.hole_weight, sizes.aux_weight),
            "pconv_unet": pconv_loss(sizes.hole_weight),
        }
        outputs: dict[str, Tensor] = {}
        for name, model in make_models(sizes, seed).items():
            m[f"params/{name}"] = n_params(model)
            secs = fit_steps(
                model, losses[name], data, steps=sizes.steps, batch_size=sizes.batch_size,
                lr=sizes.lr, seed=seed, warmup_steps=sizes.warmup_steps, grad_clip=1.0,
            )  # fmt: skip
            m[f"train_s/{name}"] = secs
            out = inpaint(model, test_masked, test_holes)
            outputs[name] = out
            m[f"psnr_hole/{name}"] = psnr(out, test, mask=test_holes)
            m[f"psnr/{name}"] = psnr(out, test)
            m[f"ssim/{name}"] = ssim(out, test)
        m["hole_ratio/test"] = float(test_holes.mean())

    p = {k: m[f"psnr_hole/{k}"] for k in ("medfe", "medfe_no_bpa", "pconv_unet")}
    result.check(
        f"MEDFE in-hole PSNR >= PConv U-Net's + {sizes.margin_db} dB",
        p["medfe"] >= p["pconv_unet"] + sizes.margin_db,
        f"MEDFE {p['medfe']:.2f} dB ({int(m['params/medfe']):,} params) vs PConv U-Net "
        f"{p['pconv_unet']:.2f} dB ({int(m['params/pconv_unet']):,} params); "
        f"{len(test)} held-out crops, {m['hole_ratio/test']:.0%} holes, {sizes.steps} steps each",
    )
    result.check(
        "removing the bilateral propagation activation lowers in-hole PSNR",
        p["medfe"] > p["medfe_no_bpa"],
        f"MEDFE {p['medfe']:.2f} dB vs without BPA {p['medfe_no_bpa']:.2f} dB "
        f"(difference {p['medfe'] - p['medfe_no_bpa']:+.2f} dB)",
    )
    k = min(6, len(test))
    shown = test_masked[:k] + test_holes[:k]  # holes drawn white
    result.figures["predictions"] = image_grid(
        {
            "masked input": shown,
            f"PConv U-Net ({p['pconv_unet']:.1f} dB)": outputs["pconv_unet"][:k],
            f"MEDFE no BPA ({p['medfe_no_bpa']:.1f})": outputs["medfe_no_bpa"][:k],
            f"MEDFE ({p['medfe']:.1f})": outputs["medfe"][:k],
            "target": test[:k],
        }
    )
    return result
