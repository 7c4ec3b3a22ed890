"""Miniature reproduction of NeRV++: its decoder block against HNeRV's at equal size.

Data and protocol as in ``hnerv``'s experiment (``archlab.papers.fields.hnerv.experiment``):
a validation and a test clip of the synthetic video generator, every 4th frame held out, L2
loss, Adam with warm-up + cosine, batch 2. Arms: NeRV++ (SCRB -> UB -> SCRB plus the bilinear
skip in every block) and HNeRV, both reading HNeRV's content-adaptive embeddings and solved to
the same stored size (decoder + embeddings). Each arm's learning rate is tuned by ``lab.tune``
over the same grid on the validation clip; then both are refitted on the test clip at their
chosen rates on ``n_seeds`` paired inner seeds (``lab.replicate``), and the claim is the paired
PSNR difference with its 95% interval. The bilinear-skip ablation (NeRV++ without the skip,
re-solved to the same size, at NeRV++'s rate) runs on the same seeds. Thresholds in ``BUDGETS``
were fixed before the test clip was evaluated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from archlab.lab import Lab, Recipe
from archlab.lab.metrics import psnr
from archlab.lab.plots import image_grid, learning_curves
from archlab.papers.fields.hnerv import HNeRV, HNeRVConfig
from archlab.papers.fields.hnerv import evaluation as ev
from archlab.papers.fields.hnerv.experiment import Clip, dataset, loss_fn, psnr_curves, recipe
from archlab.papers.fields.nervpp.model import NeRVPP, NeRVPPConfig


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    n_frames: int
    frame_size: tuple[int, int]
    held_out_every: int
    target_size: int  # stored-size budget of every arm (decoder + embeddings)
    hnerv: HNeRVConfig  # geometry shared by both arms; fc_dim solved per arm
    scrb_kernel: int
    recipe: Recipe
    lrs: tuple[float, ...]
    extend: int
    n_seeds: int  # paired seeds on the test clip: the first refit plus replicates
    n_evals: int
    margin_db: float  # the paired interval of NeRV++ - HNeRV must lie above this
    skip_margin_db: float  # ... and of NeRV++ - NeRV++ without the skip
    health_db: float
    max_flattening: float
    size_tolerance: float


BUDGETS = {
    "smoke": Settings(
        n_frames=8, frame_size=(16, 16), held_out_every=4, target_size=12_000,
        hnerv=HNeRVConfig(frame_size=(16, 16), enc_strides=(4, 2), enc_dim=16, d_embed=8,
                          dec_strides=(4, 2)),
        scrb_kernel=3, recipe=recipe(4), lrs=(1e-3,), extend=0, n_seeds=2, n_evals=2,
        margin_db=-100.0, skip_margin_db=-100.0, health_db=-100.0, max_flattening=1.0,
        size_tolerance=1.0,
    ),
    # the hnerv experiment's clip and size (lower_width 4: see its BUDGETS); one test fit per
    # arm (9 fits in 3 minutes on one core)
    "quick": Settings(
        n_frames=64, frame_size=(64, 64), held_out_every=4, target_size=40_000,
        hnerv=HNeRVConfig(lower_width=4), scrb_kernel=3, recipe=recipe(700), lrs=(3e-3, 1e-2),
        extend=1, n_seeds=1, n_evals=20, margin_db=0.0, skip_margin_db=0.0, health_db=3.0,
        max_flattening=0.25, size_tolerance=0.1,
    ),
    # longer (1,500 steps) and paired over 3 seeds
    "standard": Settings(
        n_frames=64, frame_size=(64, 64), held_out_every=4, target_size=40_000,
        hnerv=HNeRVConfig(lower_width=4), scrb_kernel=3, recipe=recipe(1500), lrs=(3e-3, 1e-2),
        extend=1, n_seeds=3, n_evals=20, margin_db=0.0, skip_margin_db=0.0, health_db=3.0,
        max_flattening=0.25, size_tolerance=0.1,
    ),
}  # fmt: skip


def arm_configs(s: Settings, n_seen: int) -> dict[str, object]:
    geometry = dataclasses.replace(s.hnerv, n_frames=n_seen, frame_size=s.frame_size)
    pp = NeRVPPConfig(hnerv=geometry, scrb_kernel=s.scrb_kernel)
    return {
        "nervpp": pp.at_size(s.target_size, closest=True),
        "hnerv": geometry.at_size(s.target_size, closest=True),
        "nervpp_no_skip": dataclasses.replace(pp, bilinear_skip=False).at_size(
            s.target_size, closest=True
        ),
    }


def build(cfg: object) -> nn.Module:
    return NeRVPP(cfg) if isinstance(cfg, NeRVPPConfig) else HNeRV(cfg)


def run(lab: Lab) -> None:
    """Tune NeRV++ and HNeRV on the validation clip, refit both (and the ablation) on paired
    seeds of the test clip, compare."""
    s: Settings = lab.settings
    val, test = Clip.make(s, lab.rng("val-data")), Clip.make(s, lab.rng("test-data"))
    configs = arm_configs(s, len(test.seen))
    makes = {arm: (lambda cfg=cfg: build(cfg)) for arm, cfg in configs.items()}
    for arm, cfg in configs.items():
        lab.measure(f"size/{arm}", cfg.stored_size())
        lab.measure(f"fc_dim/{arm}", cfg.fc_dim)
    val_data, test_data = dataset("embedding", val), dataset("embedding", test)
    seen = test.frames[test.seen]

    def score(frames, idx):
        return lambda m: psnr(ev.reconstruct(m, frames, idx), frames[idx])

    for arm in ("nervpp", "hnerv"):
        lab.tune(arm, makes[arm], loss_fn, val_data, s.recipe, lrs=s.lrs, extend=s.extend,
                 score=score(val.frames, val.seen))  # fmt: skip
    lab.measure("lr/nervpp_no_skip", lab.value("lr", "nervpp"))  # the ablation: NeRV++'s rate
    eval_every = max(1, s.recipe.steps // s.n_evals)
    evals = {"eval_fn": lambda m: {"psnr": score(test.frames, test.seen)(m)}}
    psnrs: dict[str, list[float]] = {arm: [] for arm in configs}
    models = {}
    for arm in configs:
        for index in range(s.n_seeds):
            if index == 0:
                model = lab.build(arm, makes[arm])
                rec = s.recipe.replace(lr=lab.value("lr", arm), eval_every=eval_every)
                lab.fit(arm, model, loss_fn, test_data, rec, **evals)
                models[arm] = model
            else:
                model = lab.replicate(arm, makes[arm], loss_fn, test_data, s.recipe, index)
            name = arm if index == 0 else f"{arm}/{index}"
            recon = ev.reconstruct(model, test.frames, test.seen)
            psnrs[arm].append(lab.measure(f"psnr/{name}", psnr(recon, seen)))
    measure_extras(lab, models, test)
    mean = psnr(seen.mean(0, keepdim=True).expand_as(seen), seen)
    lab.measure("psnr/mean_frame", mean)
    for arm in ("hnerv", "nervpp"):
        lab.health(arm, "psnr", ("the mean frame", mean), margin=s.health_db,
                   max_flattening=s.max_flattening, unit=" dB")  # fmt: skip
    sizes = {arm: lab.value("size", arm) for arm in configs}
    lab.invariant(
        f"every arm stores a size within {s.size_tolerance:.0%} of the {s.target_size:,} budget",
        all(abs(v - s.target_size) <= s.size_tolerance * s.target_size for v in sizes.values()),
        ", ".join(f"{arm} {int(v):,}" for arm, v in sizes.items()),
    )
    claim(lab, s, "NeRV++ PSNR is above HNeRV's at equal size", psnrs, "nervpp", "hnerv",
          s.margin_db, arms=("nervpp", "hnerv"))  # fmt: skip
    claim(lab, s, "Removing the bilinear skip lowers NeRV++'s PSNR", psnrs, "nervpp",
          "nervpp_no_skip", s.skip_margin_db, arms=("nervpp",))  # fmt: skip
    figures(lab, models, test)


def claim(lab: Lab, s: Settings, text: str, psnrs: dict, a: str, b: str, margin: float,
          arms: tuple[str, ...]) -> None:  # fmt: skip
    """``a``'s PSNR above ``b``'s by ``margin``: paired over the seeds when there are several
    (the interval must lie above the margin), else one comparison."""
    if s.n_seeds >= 2:
        lab.paired(f"{text} (paired seeds)", (f"psnr_{a}", psnrs[a]), (f"psnr_{b}", psnrs[b]),
                   margin=margin, unit=" dB", arms=arms)  # fmt: skip
    else:
        lab.compare(text, "psnr", a, b, margin=margin, unit=" dB", strict=True)


def measure_extras(lab: Lab, models: dict[str, nn.Module], clip: Clip) -> None:
    """Interpolation, quantisation, bits per pixel and decoding speed of the seed-0 models."""
    for arm, model in models.items():
        interp = ev.interpolate(model, clip.frames, clip.seen, clip.held)
        lab.measure(f"psnr_interp/{arm}", psnr(interp, clip.frames[clip.held]))
        q = ev.quantized(model, clip.frames, clip.seen)
        lab.measure(f"psnr_quant/{arm}", q["psnr"])
        lab.measure(f"bpp/{arm}", q["bpp"])
        lab.measure(f"decode_fps/{arm}", ev.decode_fps(model, clip.frames, clip.seen))


def figures(lab: Lab, models: dict[str, nn.Module], clip: Clip) -> None:
    arms = list(models)
    curves = {a: lab.fits[a].curve for a in arms}
    lab.figure("learning_curves", learning_curves(curves, "training L2 loss, test clip, seed 0"))
    lab.figure("psnr_curves", psnr_curves(lab, arms))
    show = clip.seen[:: max(1, len(clip.seen) // 4)][:4]
    rows = {"original": clip.frames[show]}
    rows.update({arm: ev.reconstruct(m, clip.frames, show) for arm, m in models.items()})
    lab.figure("frames", image_grid(rows, [f"frame {int(i)}" for i in show]))
