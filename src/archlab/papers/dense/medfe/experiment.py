"""Miniature reproduction of MEDFE: irregular-hole inpainting of natural-image crops.

Four arms are built from the same init stream and tuned the same way (``lab.tune``: one
training run per learning rate of the budget's grid on the same batch stream, the best kept on
validation in-hole PSNR): MEDFE (mini: encoder 16..128 channels, branches meeting at 8x8) with
the paper's bilateral propagation activation (BPA), MEDFE with the BPA as the released code
computes it (``bpa_variant="released"``: its terms reshaped from position-major to channels
without a transpose), MEDFE without the BPA, and the partial-convolution U-Net baseline (Liu et
al. 2018, ``pconv.PConvUNet``, similar parameter count). Data: 32x32 RGB crops of the
scikit-image / scikit-learn photos with irregular masks (strokes and blobs, 20-40 % holes),
split by photo: training crops from four photos, validation crops from ``china``, test crops
from ``coffee`` and ``flower``, each split's crops and masks from their own named stream. Both
use the pixel loss of the PConv paper (L1 on the known pixels + 6 x L1 in the holes); MEDFE
adds its branch supervision (L1 of the structure branch's image against a total-variation
smoothed ground truth and of the texture branch's image against the ground truth, both at the
8x8 equalisation scale). The GAN, perceptual and style losses are left out (no pretrained VGG
offline; too slow on CPU). Test: in-hole PSNR; the baselines' health is checked against the
mean-fill predictor (each hole filled with its crop's mean known colour).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.data.restoration import (
    DEFAULT_TEST,
    fill_holes,
    inpainting_batches,
    irregular_masks,
    natural_crops,
)
from archlab.lab import Lab, Recipe, predict
from archlab.lab.losses import masked_l1
from archlab.lab.metrics import psnr, ssim
from archlab.lab.plots import image_grid
from archlab.lab.tasks import RESTORE
from archlab.papers.dense.medfe.model import MEDFE, MINI, BranchSupervision, MEDFEConfig
from archlab.papers.dense.medfe.pconv import PConvUNet, PConvUNetConfig

VAL_PHOTOS = ("china",)
"""The photo held out for validation (learning-rate choice); ``DEFAULT_TEST`` for testing."""


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
    lrs: tuple[float, ...]  # the learning-rate grid every arm is tuned on (validation)
    n_val: int  # validation crops (photo ``china``)
    margin_db: float  # MEDFE must beat the PConv U-Net by this much (in-hole PSNR)
    bpa_margin_db: float  # MEDFE must beat its no-BPA ablation by this much (> 0: strictly)
    health_margin_db: float  # a baseline must beat mean fill by this much (in-hole PSNR)
    max_flattening: float  # and its loss fall by at most this fraction over the last quarter


BUDGETS = {
    "smoke": Settings(
        medfe=dataclasses.replace(MINI, d_base=8, d_branch=16, n_pconv_layers=1, n_res_blocks=1),
        pconv=PConvUNetConfig(widths=(8, 16, 32, 32), kernels=(7, 5, 5, 3)), size=32,
        n_train=64, n_test=8, n_masks=32, hole_range=(0.2, 0.4), structure_weight=0.1,
        hole_weight=6.0, aux_weight=1.0,
        recipe=RESTORE.recipe(steps=3, batch_size=4, lr=1e-3, warmup_steps=1), lrs=(1e-3,),
        n_val=8, margin_db=0.0, bpa_margin_db=1e-9, health_margin_db=1.0, max_flattening=0.15,
    ),
    "quick": Settings(
        medfe=MINI, pconv=PConvUNetConfig(widths=(32, 64, 128, 256), kernels=(7, 5, 5, 3)),
        size=32, n_train=4000, n_test=256, n_masks=1000, hole_range=(0.2, 0.4),
        structure_weight=0.1, hole_weight=6.0, aux_weight=1.0,
        recipe=RESTORE.recipe(steps=240, batch_size=8, lr=2e-3, warmup_steps=10),
        lrs=(1e-3, 3e-3), n_val=128, margin_db=0.0, bpa_margin_db=1e-9, health_margin_db=1.0,
        max_flattening=0.15,
    ),
    "standard": Settings(
        medfe=MINI, pconv=PConvUNetConfig(widths=(32, 64, 128, 256), kernels=(7, 5, 5, 3)),
        size=32, n_train=4000, n_test=256, n_masks=1000, hole_range=(0.2, 0.4),
        structure_weight=0.1, hole_weight=6.0, aux_weight=1.0,
        recipe=RESTORE.recipe(steps=1500, batch_size=8, lr=2e-3, warmup_steps=30),
        lrs=(1e-3, 3e-3), n_val=128, margin_db=0.0, bpa_margin_db=1e-9, health_margin_db=1.0,
        max_flattening=0.15,
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
    """Each arm's model factory and loss: MEDFE with the paper's BPA, with the released
    code's BPA, without BPA (each with its branch head), and the PConv U-Net."""
    released = dataclasses.replace(s.medfe, bpa_variant="released")
    no_bpa = dataclasses.replace(s.medfe, use_bpa=False)
    medfe = medfe_loss(s.hole_weight, s.aux_weight)
    return {
        "medfe": (lambda: WithBranchLoss(MEDFE(s.medfe)), medfe),
        "medfe_released": (lambda: WithBranchLoss(MEDFE(released)), medfe),
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


def mean_fill(masked: Tensor, holes: Tensor) -> Tensor:
    """The trivial inpainter: every hole pixel gets its crop's mean known colour."""
    known = 1.0 - holes
    mean = (masked * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True)
    return masked * known + mean * holes


def prediction_grid(masked: Tensor, holes: Tensor, clean: Tensor, outputs: dict[str, Tensor],
                    p: dict[str, float], k: int = 6):  # fmt: skip
    """Up to ``k`` held-out crops: input (holes white), each arm's output, the target."""
    k = min(k, len(clean))
    return image_grid({
        "masked input": masked[:k] + holes[:k],
        f"PConv U-Net ({p['pconv_unet']:.1f} dB)": outputs["pconv_unet"][:k],
        f"MEDFE no BPA ({p['medfe_no_bpa']:.1f})": outputs["medfe_no_bpa"][:k],
        f"MEDFE released BPA ({p['medfe_released']:.1f})": outputs["medfe_released"][:k],
        f"MEDFE ({p['medfe']:.1f})": outputs["medfe"][:k],
        "target": clean[:k],
    })  # fmt: skip


def held_out(s: Settings, split: str, n: int, lab: Lab) -> tuple[Tensor, Tensor, Tensor]:
    """``(clean, holes, masked)`` crops of the validation photo or the test photos, with masks
    from the split's own stream."""
    photos = VAL_PHOTOS if split == "val" else DEFAULT_TEST
    clean = natural_crops(n, s.size, split="test", seed=lab.seed_for(f"{split}-crops"),
                          test_photos=photos)  # fmt: skip
    holes = irregular_masks(n, s.size, hole_range=s.hole_range,
                            seed=lab.seed_for(f"{split}-masks"))  # fmt: skip
    return clean, holes, fill_holes(clean, holes, 0.0)


def run(lab: Lab) -> None:
    """Tune and train the four arms on the same inpainting data; check the paper's claims."""
    s: Settings = lab.settings
    train, structure = natural_crops(
        s.n_train, s.size, split="train", seed=lab.seed_for("train-crops"),
        structure_weight=s.structure_weight, test_photos=DEFAULT_TEST + VAL_PHOTOS,
    )  # fmt: skip
    masks = irregular_masks(s.n_masks, s.size, hole_range=s.hole_range,
                            seed=lab.seed_for("train-masks"))  # fmt: skip
    v_clean, v_holes, v_masked = held_out(s, "val", s.n_val, lab)
    clean, holes, masked = held_out(s, "test", s.n_test, lab)
    lab.measure("hole_ratio/test", holes.mean())
    data = inpainting_batches(train, masks, structure, fill=0.0)

    def val_psnr(model: nn.Module) -> float:
        return psnr(inpaint(model, v_masked, v_holes), v_clean, mask=v_holes)

    outputs: dict[str, Tensor] = {}
    for arm, (make, loss_fn) in arms(s).items():
        model = lab.tune(arm, make, loss_fn, data, s.recipe, lrs=s.lrs, score=val_psnr)
        outputs[arm] = inpaint(model, masked, holes)
        lab.measure(f"psnr_hole/{arm}", psnr(outputs[arm], clean, mask=holes))
        lab.measure(f"psnr/{arm}", psnr(outputs[arm], clean))
        lab.measure(f"ssim/{arm}", ssim(outputs[arm], clean))
    lab.measure("val/mean_fill", psnr(mean_fill(v_masked, v_holes), v_clean, mask=v_holes))
    trivial = lab.measure("psnr_hole/mean_fill", psnr(mean_fill(masked, holes), clean, mask=holes))

    m = lab.metrics
    lab.invariant(
        "the three MEDFE arms have the same parameter count",
        m["params/medfe"] == m["params/medfe_released"] == m["params/medfe_no_bpa"],
        f"{int(m['params/medfe']):,} each; the BPA variants differ in computation only",
    )
    for arm in ("pconv_unet", "medfe_no_bpa"):
        lab.health(arm, "psnr_hole", ("mean fill", trivial), margin=s.health_margin_db,
                   max_flattening=s.max_flattening, unit=" dB")  # fmt: skip
    lab.compare(
        f"MEDFE in-hole PSNR >= PConv U-Net's + {s.margin_db} dB",
        "psnr_hole", "medfe", "pconv_unet", margin=s.margin_db, unit=" dB",
        note=f"{int(m['params/medfe']):,} vs {int(m['params/pconv_unet']):,} params; "
        f"{len(clean)} held-out crops, {m['hole_ratio/test']:.0%} holes, "
        f"{s.recipe.steps} steps each; lr {m['lr/medfe']:g} vs {m['lr/pconv_unet']:g}",
    )  # fmt: skip
    lab.compare(
        "removing the bilateral propagation activation (the paper's) lowers in-hole PSNR",
        "psnr_hole", "medfe", "medfe_no_bpa", margin=s.bpa_margin_db, unit=" dB",
    )  # fmt: skip
    lab.compare(
        "removing the bilateral propagation activation (the released code's) lowers in-hole PSNR",
        "psnr_hole", "medfe_released", "medfe_no_bpa", margin=s.bpa_margin_db, unit=" dB",
        note=f"paper's BPA {m['psnr_hole/medfe']:.2f} dB",
    )  # fmt: skip
    p = {arm: lab.value("psnr_hole", arm) for arm in outputs}
    lab.figure("predictions", prediction_grid(masked, holes, clean, outputs, p))
