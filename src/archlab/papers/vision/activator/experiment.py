"""Miniature reproduction of Activator: ViT accuracy at a fraction of its FLOPs.

Data: sklearn's 1797 handwritten digits (8 x 8, shipped with scikit-learn), 2 x 2 patches, so
N = 16 tokens; three stratified splits drawn from the run's ``split`` stream: 50 test and
20 validation images per class, the rest (1097) for training, random +-1 pixel shifts.

Arms (every trained arm has about 9 k parameters, within 10 % of Activator's):

- Activator (this paper's reduced model, GEGLU, token mixing, D = 64, 4 blocks, every hidden
  width 2 x the mixed axis as the authors' ``d_ffn = 2 d_model``) and its GLU variants (GLU,
  SwiGLU, ReGLU);
- ViT (``archlab.baselines.vit``, timm parity in tests/baselines): 4 blocks, MLP ratio 2,
  mean of the patch tokens read out (as Activator and the Mixer), its width chosen so that
  its parameter count matches Activator's (``matched_width``: D = 16, 2 heads);
- MLP-Mixer (``archlab.baselines.mlp_mixer``): 4 blocks, token hidden 2N, channel hidden 2D,
  width matched the same way (reported, not checked).

Every trained arm goes through ``lab.tune``: built from the same init stream, fitted on the same
batch stream with the same recipe (``CLASSIFY``: AdamW, cosine schedule, clipping at 1) at each
learning rate of the same grid, and kept at the one with the best validation accuracy. The
baselines are health-checked (beat the majority class by a margin; the loss curve has
flattened) before the comparisons.

FLOPs of one image's forward pass are counted with ``archlab.lab.profiling.forward_flops`` (math
attention kernel: the fused CPU attention kernel is invisible to ``FlopCounterMode``). The paper's
FLOP statement is about a ViT of the same width and depth (``vit_same_width``, built, not
trained): that ratio is fixed by the configs, so it is an invariant. The accuracy comparisons
are the claim checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from archlab.baselines.mlp_mixer import MlpMixer, MlpMixerConfig
from archlab.baselines.vit import ViT, ViTConfig
from archlab.data import Augment, image_batches, load_digits_images, split_per_class
from archlab.lab import Lab, Recipe, evaluate_accuracy
from archlab.lab.plots import new_figure
from archlab.lab.profiling import forward_flops, n_params
from archlab.lab.tasks import CLASSIFY
from archlab.papers.vision.activator.model import PAPER_GLU_VARIANTS, Activator, ActivatorConfig


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    recipe: Recipe
    lrs: tuple[float, ...]  # learning-rate grid of every trained arm (picked on validation)
    n_test_per_class: int
    n_val_per_class: int
    d_model: int
    n_layers: int
    n_heads: int
    ratio: float  # every hidden width / width of the mixed axis
    variants: bool  # also train the GLU variants
    accuracy_margin: float  # Activator may trail ViT by at most this much accuracy
    flops_ratio: float  # Activator FLOPs <= ratio x a same-width ViT's (invariant of the configs)
    glu_spread: float  # max - min test accuracy of GEGLU, SwiGLU and ReGLU
    health_margin: float  # a baseline beats the majority class by at least this accuracy
    max_flattening: float | None  # ... and its loss fell by at most this in the last quarter


BUDGETS = {
    "smoke": Settings(
        recipe=CLASSIFY.recipe(steps=3, batch_size=32, lr=2e-3, warmup_steps=1), lrs=(2e-3,),
        n_test_per_class=10, n_val_per_class=5, d_model=16, n_layers=1, n_heads=2, ratio=2.0,
        variants=False, accuracy_margin=0.01, flops_ratio=0.7, glu_spread=0.03,
        health_margin=0.0, max_flattening=None,
    ),
    "quick": Settings(
        recipe=CLASSIFY.recipe(steps=600, batch_size=64, lr=2e-3, warmup_steps=30),
        lrs=(2e-3, 6e-3, 1.8e-2), n_test_per_class=50, n_val_per_class=20, d_model=64,
        n_layers=4, n_heads=4, ratio=2.0, variants=True, accuracy_margin=0.01, flops_ratio=0.7,
        glu_spread=0.03, health_margin=0.3, max_flattening=0.2,
    ),
}  # fmt: skip

IMAGE_SIZE, PATCH_SIZE = 8, 2
PARAM_TOLERANCE = 0.1  # the baselines' parameter counts are within this fraction of Activator's
VIT_HEAD_WIDTH = 8  # width of one ViT head when its width is matched to Activator's parameters
ABLATED_VARIANTS = ("GEGLU", "SwiGLU", "ReGLU")
"""The variants of the paper's ablation; the sigmoid GLU is trained and reported too."""
GLU_ARMS = {"activator": "GEGLU"} | {
    f"activator_{label.lower()}": label for label in PAPER_GLU_VARIANTS.values() if label != "GEGLU"
}
"""Arm name -> GLU variant of the token-mixing Activator arms."""
BASELINES = ("vit", "mixer")


def _common(s: Settings) -> dict:
    return dict(
        image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, n_channels=1, n_classes=10,
        n_layers=s.n_layers,
    )  # fmt: skip


def vit_of_width(s: Settings, d_model: int, global_pool: str = "avg") -> ViT:
    """A ViT of ``d_model`` with the budget's depth and MLP ratio (heads of 8 when it is
    narrow), reading out the mean of its patch tokens like Activator and the Mixer (``avg``)
    or its class token (``token``)."""
    n_heads = s.n_heads if d_model == s.d_model else max(1, d_model // VIT_HEAD_WIDTH)
    cfg = ViTConfig(**_common(s), d_model=d_model, n_heads=n_heads, mlp_ratio=s.ratio,
                    global_pool=global_pool)  # fmt: skip
    return ViT(cfg)


def mixer_of_width(s: Settings, d_model: int) -> MlpMixer:
    """An MLP-Mixer of ``d_model``: token hidden 2N, channel hidden 2D."""
    n = (IMAGE_SIZE // PATCH_SIZE) ** 2
    return MlpMixer(
        MlpMixerConfig(
            **_common(s), d_model=d_model, d_token_hidden=round(s.ratio * n),
            d_channel_hidden=round(s.ratio * d_model),
        )
    )  # fmt: skip


def matched_width(make: Callable[[int], nn.Module], target: int, widths) -> int:
    """The width among ``widths`` whose model's parameter count is closest to ``target``."""
    return min(widths, key=lambda d: abs(n_params(make(d)) - target))


def make_models(s: Settings) -> dict[str, Callable[[], nn.Module]]:
    """Constructors of every compared model, by arm name: the trained arms (Activator and its
    variants, a ViT and an MLP-Mixer of Activator's parameter count) and, for FLOPs only, the
    ViT of the same width and depth (``vit_same_width``) and two more Activator readings."""
    act = dict(_common(s), d_model=s.d_model, glu_ratio=s.ratio, mlp_ratio=s.ratio)
    target = n_params(Activator(ActivatorConfig(**act, mixing="tokens")))
    d_vit = matched_width(lambda d: vit_of_width(s, d), target, range(8, s.d_model + 1, 8))
    d_mix = matched_width(lambda d: mixer_of_width(s, d), target, range(4, s.d_model + 1, 4))
    out: dict[str, Callable[[], nn.Module]] = {
        "vit": lambda: vit_of_width(s, d_vit),
        "mixer": lambda: mixer_of_width(s, d_mix),
        "activator": lambda: Activator(ActivatorConfig(**act, mixing="tokens")),
        "vit_same_width": lambda: vit_of_width(s, s.d_model, global_pool="token"),
        "activator_channels": lambda: Activator(ActivatorConfig(**act, mixing="channels")),
        "activator_with_mlp": lambda: Activator(
            ActivatorConfig(**act, mixing="tokens", use_mlp=True)
        ),
    }
    for gate in PAPER_GLU_VARIANTS:
        if gate != "gelu":
            out[f"activator_{PAPER_GLU_VARIANTS[gate].lower()}"] = lambda gate=gate: Activator(
                ActivatorConfig(**act, mixing="tokens", glu_activation=gate)
            )
    return out


FLOPS_ONLY = ("vit_same_width", "activator_channels", "activator_with_mlp")
"""Arms built for their FLOP count only (not trained)."""


def trained_arms(s: Settings) -> tuple[str, ...]:
    return ("vit", "mixer", "activator") + (tuple(GLU_ARMS)[1:] if s.variants else ())


def load_data(s: Settings, split_seed: int):
    """(train, val, test) pairs of (images, labels): stratified test and validation splits."""
    images, labels = load_digits_images()
    test_idx, rest = split_per_class(labels, s.n_test_per_class, seed=split_seed)
    val_in_rest, train_in_rest = split_per_class(labels[rest], s.n_val_per_class, seed=split_seed)
    val_idx, train_idx = rest[val_in_rest], rest[train_in_rest]
    return tuple((images[i], labels[i]) for i in (train_idx, val_idx, test_idx))


def run(lab: Lab) -> None:
    """Tune ViT, MLP-Mixer and Activator (and its GLU variants) of the same parameter count on
    validation; check accuracy on test, and FLOPs against a same-width ViT."""
    s: Settings = lab.settings
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_data(s, lab.seed_for("split"))
    data = image_batches(x_train, y_train, Augment(crop_padding=1))
    makes = make_models(s)
    for arm in FLOPS_ONLY:
        lab.measure(f"flops/{arm}", forward_flops(lab.build(arm, makes[arm]), x_test[:1]))
    for arm in trained_arms(s):
        model = lab.tune(arm, makes[arm], CLASSIFY.loss, data, s.recipe, lrs=s.lrs,
                         score=lambda m: evaluate_accuracy(m, x_val, y_val))  # fmt: skip
        lab.measure(f"flops/{arm}", forward_flops(model, x_test[:1]))
        lab.measure(f"acc/{arm}", evaluate_accuracy(model, x_test, y_test))

    majority = int(torch.mode(y_train).values)
    chance = lab.measure("acc/majority_class", float((y_test == majority).float().mean()))
    for arm in BASELINES:
        lab.health(arm, "acc", ("majority class", chance), margin=s.health_margin,
                   max_flattening=s.max_flattening)  # fmt: skip

    wide = lab.value("flops/vit_same_width")
    ratio = lab.measure("flops_ratio/activator_vs_vit_same_width",
                        lab.value("flops/activator") / wide)  # fmt: skip
    lab.measure(
        "flops_ratio/activator_vs_vit", lab.value("flops/activator") / lab.value("flops/vit")
    )
    lab.measure("flops_ratio/mixer_vs_vit", lab.value("flops/mixer") / lab.value("flops/vit"))
    params = {arm: int(lab.value("params", arm)) for arm in ("activator", "vit", "mixer")}
    lab.compare(
        f"Activator accuracy >= ViT - {s.accuracy_margin:.0%} (same parameter count, data, "
        "tuning and budget)",
        "acc", "activator", "vit", margin=-s.accuracy_margin,
        note=f"parameters {params['activator']:,} vs {params['vit']:,}; MLP-Mixer "
        f"({params['mixer']:,}) {lab.value('acc/mixer'):.3f}",
    )  # fmt: skip
    lab.invariant(
        f"Activator FLOPs <= {s.flops_ratio}x a ViT of the same width and depth's (fixed by "
        "the configs)",
        ratio <= s.flops_ratio,
        f"{lab.value('flops/activator') / 1e6:.3f} vs {wide / 1e6:.3f} MFLOPs per image "
        f"({ratio:.3f}x); vs the ViT of the same parameter count "
        f"{lab.value('flops_ratio/activator_vs_vit'):.3f}x",
    )
    off = {arm: params[arm] / params["activator"] - 1 for arm in BASELINES}
    lab.invariant(
        f"ViT and MLP-Mixer have Activator's parameter count within {PARAM_TOLERANCE:.0%} "
        "(fixed by the configs)",
        all(abs(v) <= PARAM_TOLERANCE for v in off.values()),
        ", ".join(f"{arm} {params[arm]:,} ({off[arm]:+.1%})" for arm in BASELINES)
        + f" vs Activator {params['activator']:,}",
    )
    glu = {label: lab.value("acc", arm) for arm, label in GLU_ARMS.items() if arm in lab.fits}
    ablated = [arm for arm, label in GLU_ARMS.items() if label in ABLATED_VARIANTS]
    if all(arm in lab.fits for arm in ablated):
        spread = lab.measure("acc/glu_spread", _spread(lab, "acc", ablated))
        lab.measure("val/glu_spread", _spread(lab, "val", ablated))
        lab.measure("acc/glu_spread_with_sigmoid", _spread(lab, "acc", list(GLU_ARMS)))
        lab.bound(
            f"the GLU variant matters little: {', '.join(ABLATED_VARIANTS)} within "
            f"{s.glu_spread:.0%} of each other",
            "max - min test accuracy", spread, at_most=s.glu_spread,
            note=", ".join(f"{k} {v:.3f}" for k, v in glu.items()) + " (GLU reported, not "
            f"checked); validation spread {lab.value('val/glu_spread'):.3f}",
        )  # fmt: skip
    lab.figure("accuracy_vs_flops", plot_accuracy_vs_flops(lab.metrics, s))


def _spread(lab: Lab, metric: str, arms) -> float:
    values = [lab.value(metric, arm) for arm in arms]
    return max(values) - min(values)


def plot_accuracy_vs_flops(m: Mapping[str, float], s: Settings):
    """Test accuracy against forward FLOPs, one point per arm."""
    names = [k[4:] for k in m if k.startswith("acc/") and f"flops/{k[4:]}" in m]
    markers = dict(zip(GLU_ARMS, "o^vD"))
    fig = new_figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    for name in names:
        x, y = m[f"flops/{name}"] / 1e6, 100 * m[f"acc/{name}"]
        if name in GLU_ARMS:  # same FLOPs: told apart by marker, in the legend
            label = f"Activator {GLU_ARMS[name]}"
            ax.scatter(x, y, color="C0", marker=markers[name], s=40, label=label)
            continue
        color = "C3" if name == "vit" else "C2" if name == "mixer" else "C0"
        ax.scatter(x, y, color=color, marker="s" if name in ("vit", "mixer") else "o", s=40)
        offset = (4, -11) if name == "mixer" else (4, 4)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=offset, fontsize=8)
    vit = m["flops/vit_same_width"] / 1e6
    ax.axvline(s.flops_ratio * vit, color="C3", ls=":", lw=1,
               label=f"{s.flops_ratio}x same-width ViT FLOPs")  # fmt: skip
    points = 100 * s.accuracy_margin
    ax.axhline(100 * m["acc/vit"] - points, color="C3", ls="--", lw=1,
               label=f"ViT accuracy - {points:g}")  # fmt: skip
    ax.set_xlabel("forward MFLOPs per image")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Activator vs ViT and MLP-Mixer of its size (digits 8x8, 2x2 patches)")
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    return fig
