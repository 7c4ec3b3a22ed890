"""Miniature reproduction of MEDFE: irregular-hole inpainting of natural-image crops.

MEDFE (mini: encoder 16..128 channels, branches meeting at 8x8), the same MEDFE without the
bilateral propagation activation, and the partial-convolution U-Net baseline (Liu et al. 2018,
``pconv.PConvUNet``, similar parameter count) are built from the same init stream and trained
on the same data stream with the same recipe (``archlab.lab``): 32x32 RGB crops of the
scikit-image / scikit-learn photos with irregular masks (strokes and blobs, 20-40 % holes). Both
use the pixel loss of the PConv paper (L1 on the known pixels + 6 x L1 in the holes); MEDFE adds
its branch supervision (L1 of the structure branch's image against a total-variation smoothed
ground truth and of the texture branch's image against the ground truth, both at the 8x8
equalisation scale). The GAN, perceptual and style losses are left out (no pretrained VGG
offline; too slow on CPU). Test: in-hole PSNR on crops of two held-out photos with held-out
masks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.data.restoration import fill_holes, inpainting_batches, irregular_masks, natural_crops
from archlab.lab import Lab, Recipe, predict
from archlab.lab.losses import masked_l1
from archlab.lab.metrics import psnr, ssim
from archlab.lab.plots import image_grid
from archlab.lab.tasks import RESTORE
from archlab.papers.dense.medfe.model import MEDFE, MINI, BranchSupervision, MEDFEConfig
from archlab.papers.dense.medfe.pconv import PConvUNet, PConvUNetConfig


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    medfe: MEDFEConfig
    pconv: PConvUNetConfig
    size: int
    n_train: int
    n_test: int
    n_masks: int  # the bank of training masks
    hole_range: tuple[float, float]
    structure_weight: float  # TV smoothing of the structure target
    hole_weight: float  # PConv's 6 x L1 in the holes
    aux_weight: float  # weight of MEDFE's branch losses
    recipe: Recipe
    margin_db: float  # MEDFE must beat the PConv U-Net by this much (in-hole PSNR)
    bpa_margin_db: float  # MEDFE must beat its no-BPA ablation by this much (> 0: strictly)


BUDGETS = {
    "smoke": Settings(
        medfe=dataclasses.replace(MINI, d_base=8, d_branch=16, n_pconv_layers=1, n_res_blocks=1),
        pconv=PConvUNetConfig(widths=(8, 16, 32, 32), kernels=(7, 5, 5, 3)), size=32,
        n_train=64, n_test=8, n_masks=32, hole_range=(0.2, 0.4), structure_weight=0.1,
        hole_weight=6.0, aux_weight=1.0,
        recipe=RESTORE.recipe(steps=3, batch_size=4, lr=1e-3, warmup_steps=1),
        margin_db=0.0, bpa_margin_db=1e-9,
    ),
    "quick": Settings(
        medfe=MINI, pconv=PConvUNetConfig(widths=(32, 64, 128, 256), kernels=(7, 5, 5, 3)),
        size=32, n_train=4000, n_test=256, n_masks=1000, hole_range=(0.2, 0.4),
        structure_weight=0.1, hole_weight=6.0, aux_weight=1.0,
        recipe=RESTORE.recipe(steps=450, batch_size=8, lr=2e-3, warmup_steps=10),
        margin_db=0.0, bpa_margin_db=1e-9,
    ),
}  # fmt: skip


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
        return loss, {"branch_l1": branch.detach()}

    return loss_fn


def pconv_loss(hole_weight: float):
    """``(model, (masked, holes, target, _)) -> (loss, metrics)``: the pixel loss alone."""

    def loss_fn(model: nn.Module, batch):
        masked, holes, target, _ = batch
        return pixel_loss(model(masked, holes), target, holes, hole_weight), {}

    return loss_fn


def arms(s: Settings) -> dict[str, tuple[Callable[[], nn.Module], Callable]]:
    """Each arm's model factory and loss: MEDFE and MEDFE without BPA (each with its branch
    head), and the PConv U-Net."""
    no_bpa = dataclasses.replace(s.medfe, use_bpa=False)
    medfe = medfe_loss(s.hole_weight, s.aux_weight)
    return {
        "medfe": (lambda: WithBranchLoss(MEDFE(s.medfe)), medfe),
        "medfe_no_bpa": (lambda: WithBranchLoss(MEDFE(no_bpa)), medfe),
        "pconv_unet": (lambda: PConvUNet(s.pconv), pconv_loss(s.hole_weight)),
    }


def inpaint(model: nn.Module, masked: Tensor, holes: Tensor) -> Tensor:
    """Model outputs clipped to [0, 1] and composited with the known pixels (batched, on the
    model's device; image and mask travel together as one tensor)."""
    c = masked.shape[1]
    both = torch.cat([masked, holes], 1)  # (N, C + 1, H, W)
    out = predict(model, both, fn=lambda m, x: m(x[:, :c], x[:, c:])).clamp(0.0, 1.0)
    return out * holes + masked * (1.0 - holes)


def prediction_grid(masked: Tensor, holes: Tensor, clean: Tensor, outputs: dict[str, Tensor],
                    p: dict[str, float], k: int = 6):  # fmt: skip
    """Up to ``k`` held-out crops: input (holes white), each arm's output, the target."""
    k = min(k, len(clean))
    return image_grid({
        "masked input": masked[:k] + holes[:k],
        f"PConv U-Net ({p['pconv_unet']:.1f} dB)": outputs["pconv_unet"][:k],
        f"MEDFE no BPA ({p['medfe_no_bpa']:.1f})": outputs["medfe_no_bpa"][:k],
        f"MEDFE ({p['medfe']:.1f})": outputs["medfe"][:k],
        "target": clean[:k],
    })  # fmt: skip


def run(lab: Lab) -> None:
    """Train MEDFE, MEDFE without BPA and a PConv U-Net on the same inpainting data."""
    s: Settings = lab.settings
    train, structure = natural_crops(
        s.n_train, s.size, split="train", seed=lab.seed_for("train-crops"),
        structure_weight=s.structure_weight,
    )  # fmt: skip
    masks = irregular_masks(s.n_masks, s.size, hole_range=s.hole_range,
                            seed=lab.seed_for("train-masks"))  # fmt: skip
    clean = natural_crops(s.n_test, s.size, split="test", seed=lab.seed_for("test-crops"))
    holes = irregular_masks(s.n_test, s.size, hole_range=s.hole_range,
                            seed=lab.seed_for("test-masks"))  # fmt: skip
    masked = fill_holes(clean, holes, 0.0)
    lab.measure("hole_ratio/test", holes.mean())
    data = inpainting_batches(train, masks, structure, fill=0.0)
    outputs: dict[str, Tensor] = {}
    for arm, (make, loss_fn) in arms(s).items():
        model = lab.build(arm, make)
        lab.fit(arm, model, loss_fn, data, s.recipe)
        outputs[arm] = inpaint(model, masked, holes)
        lab.measure(f"psnr_hole/{arm}", psnr(outputs[arm], clean, mask=holes))
        lab.measure(f"psnr/{arm}", psnr(outputs[arm], clean))
        lab.measure(f"ssim/{arm}", ssim(outputs[arm], clean))

    m = lab.metrics
    lab.compare(
        f"MEDFE in-hole PSNR >= PConv U-Net's + {s.margin_db} dB",
        "psnr_hole", "medfe", "pconv_unet", margin=s.margin_db, unit=" dB",
        note=f"{int(m['params/medfe']):,} vs {int(m['params/pconv_unet']):,} params; "
        f"{len(clean)} held-out crops, {m['hole_ratio/test']:.0%} holes, "
        f"{s.recipe.steps} steps each",
    )  # fmt: skip
    lab.compare(
        "removing the bilateral propagation activation lowers in-hole PSNR",
        "psnr_hole", "medfe", "medfe_no_bpa", margin=s.bpa_margin_db, unit=" dB",
    )  # fmt: skip
    p = {arm: lab.value("psnr_hole", arm) for arm in outputs}
    lab.figure("predictions", prediction_grid(masked, holes, clean, outputs, p))
