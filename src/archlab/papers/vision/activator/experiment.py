"""Miniature reproduction of Activator: ViT accuracy at a fraction of its FLOPs.

Data: sklearn's 1797 handwritten digits (8 x 8, shipped with scikit-learn), 2 x 2 patches, so
N = 16 tokens; 50 test images per class (a stratified split drawn from the run's ``split``
stream), the rest (1297) for training, random +-1 pixel shifts. Models of the same size
(D = 64, 4 blocks, every hidden width = 2 x the mixed axis, as the authors' ``d_ffn = 2
d_model``), built from the same init stream and trained with ``lab.fit`` on the same data stream
with the same recipe (``CLASSIFY``: AdamW, cosine schedule, gradient clipping at 1):

- ViT (``archlab.baselines.vit``): 4 heads, MLP ratio 2, class token;
- MLP-Mixer (``archlab.baselines.mlp_mixer``): token hidden 2N, channel hidden 2D;
- Activator (this paper's reduced model, GEGLU, token mixing) and its GLU variants (GLU,
  SwiGLU, ReGLU), the channel-mixing reading of the authors' code, and the first model of the
  paper (GLU + second MLP).

FLOPs of one image's forward pass are counted with ``archlab.lab.profiling.forward_flops`` (math
attention kernel: the fused CPU attention kernel is invisible to ``FlopCounterMode``). The FLOP
ratio is fixed by the configs, so it is reported as an invariant; the accuracy comparisons are
the claim checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn

from archlab.baselines.mlp_mixer import MlpMixer, MlpMixerConfig
from archlab.baselines.vit import ViT, ViTConfig
from archlab.data import Augment, image_batches, load_digits_images, split_per_class
from archlab.lab import Lab, Recipe, evaluate_accuracy
from archlab.lab.plots import new_figure
from archlab.lab.profiling import forward_flops
from archlab.lab.tasks import CLASSIFY
from archlab.papers.vision.activator.model import PAPER_GLU_VARIANTS, Activator, ActivatorConfig


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    recipe: Recipe
    n_test_per_class: int
    d_model: int
    n_layers: int
    n_heads: int
    ratio: float  # every hidden width / width of the mixed axis
    variants: bool  # also train the GLU variants, channel mixing and GLU + MLP
    accuracy_margin: float  # Activator may trail ViT by at most this much accuracy
    flops_ratio: float  # Activator FLOPs <= ratio x ViT's (invariant of the configs)
    glu_spread: float  # max - min accuracy of GEGLU, SwiGLU and ReGLU


BUDGETS = {
    "smoke": Settings(
        recipe=CLASSIFY.recipe(steps=3, batch_size=32, lr=2e-3, warmup_steps=1),
        n_test_per_class=10, d_model=16, n_layers=1, n_heads=2, ratio=2.0, variants=False,
        accuracy_margin=0.01, flops_ratio=0.7, glu_spread=0.03,
    ),
    "quick": Settings(
        recipe=CLASSIFY.recipe(steps=600, batch_size=64, lr=2e-3, warmup_steps=30),
        n_test_per_class=50, d_model=64, n_layers=4, n_heads=4, ratio=2.0, variants=True,
        accuracy_margin=0.01, flops_ratio=0.7, glu_spread=0.03,
    ),
}  # fmt: skip

IMAGE_SIZE, PATCH_SIZE = 8, 2
ABLATED_VARIANTS = ("GEGLU", "SwiGLU", "ReGLU")
"""The variants of the paper's ablation; the sigmoid GLU is trained and reported too."""
GLU_ARMS = {"activator": "GEGLU"} | {
    f"activator_{label.lower()}": label for label in PAPER_GLU_VARIANTS.values() if label != "GEGLU"
}
"""Arm name -> GLU variant of the token-mixing Activator arms."""


def make_models(s: Settings) -> dict[str, Callable[[], nn.Module]]:
    """Constructors of every compared model, by arm name."""
    common = dict(
        image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, n_channels=1, n_classes=10,
        d_model=s.d_model, n_layers=s.n_layers,
    )  # fmt: skip
    n = (IMAGE_SIZE // PATCH_SIZE) ** 2
    act = dict(common, glu_ratio=s.ratio, mlp_ratio=s.ratio)
    out: dict[str, Callable[[], nn.Module]] = {
        "vit": lambda: ViT(ViTConfig(**common, n_heads=s.n_heads, mlp_ratio=s.ratio)),
        "mixer": lambda: MlpMixer(
            MlpMixerConfig(
                **common,
                d_token_hidden=round(s.ratio * n),
                d_channel_hidden=round(s.ratio * s.d_model),
            )
        ),
        "activator": lambda: Activator(ActivatorConfig(**act, mixing="tokens")),
    }
    if s.variants:
        for gate in PAPER_GLU_VARIANTS:
            if gate != "gelu":
                out[f"activator_{PAPER_GLU_VARIANTS[gate].lower()}"] = lambda gate=gate: Activator(
                    ActivatorConfig(**act, mixing="tokens", glu_activation=gate)
                )
        out["activator_channels"] = lambda: Activator(ActivatorConfig(**act, mixing="channels"))
        out["activator_with_mlp"] = lambda: Activator(
            ActivatorConfig(**act, mixing="tokens", use_mlp=True)
        )
    return out


def load_data(s: Settings, split_seed: int):
    """(train images, labels), (test images, labels): a stratified test split."""
    images, labels = load_digits_images()
    test_idx, train_idx = split_per_class(labels, s.n_test_per_class, seed=split_seed)
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def run(lab: Lab) -> None:
    """Train ViT, MLP-Mixer and Activator (and its variants); check accuracy at <= 0.7x FLOPs."""
    s: Settings = lab.settings
    (x_train, y_train), (x_test, y_test) = load_data(s, lab.seed_for("split"))
    data = image_batches(x_train, y_train, Augment(crop_padding=1))
    for arm, make in make_models(s).items():
        model = lab.build(arm, make)
        lab.measure(f"flops/{arm}", forward_flops(model, x_test[:1]))
        lab.fit(arm, model, CLASSIFY.loss, data, s.recipe)
        lab.measure(f"acc/{arm}", evaluate_accuracy(model, x_test, y_test))

    flops = {arm: lab.value("flops", arm) for arm in ("activator", "mixer")}
    ratio = lab.measure("flops_ratio/activator_vs_vit", flops["activator"] / lab.value("flops/vit"))
    lab.measure("flops_ratio/mixer_vs_vit", flops["mixer"] / lab.value("flops/vit"))
    lab.compare(
        f"Activator accuracy >= ViT - {s.accuracy_margin:.0%} (same size, data, budget)",
        "acc", "activator", "vit", margin=-s.accuracy_margin,
        note=f"MLP-Mixer {lab.value('acc/mixer'):.3f}",
    )  # fmt: skip
    lab.invariant(
        f"Activator FLOPs <= {s.flops_ratio}x ViT's (fixed by the configs)",
        ratio <= s.flops_ratio,
        f"{flops['activator'] / 1e6:.3f} vs {lab.value('flops/vit') / 1e6:.3f} MFLOPs per image "
        f"({ratio:.3f}x; MLP-Mixer {lab.value('flops_ratio/mixer_vs_vit'):.3f}x)",
    )
    glu = {label: lab.value("acc", arm) for arm, label in GLU_ARMS.items() if arm in lab.fits}
    ablated = {k: v for k, v in glu.items() if k in ABLATED_VARIANTS}
    if len(ablated) > 1:
        spread = lab.measure("acc/glu_spread", max(ablated.values()) - min(ablated.values()))
        lab.measure("acc/glu_spread_with_sigmoid", max(glu.values()) - min(glu.values()))
        lab.bound(
            f"the GLU variant matters little: {', '.join(ablated)} within "
            f"{s.glu_spread:.0%} of each other",
            "max - min accuracy", spread, at_most=s.glu_spread,
            note=", ".join(f"{k} {v:.3f}" for k, v in glu.items()) + " (GLU reported, not checked)",
        )  # fmt: skip
    lab.figure("accuracy_vs_flops", plot_accuracy_vs_flops(lab.metrics, s))


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
    vit = m["flops/vit"] / 1e6
    ax.axvline(s.flops_ratio * vit, color="C3", ls=":", lw=1, label=f"{s.flops_ratio}x ViT FLOPs")
    points = 100 * s.accuracy_margin
    ax.axhline(100 * m["acc/vit"] - points, color="C3", ls="--", lw=1,
               label=f"ViT accuracy - {points:g}")  # fmt: skip
    ax.set_xlabel("forward MFLOPs per image")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Activator vs ViT and MLP-Mixer (digits 8x8, 2x2 patches)")
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    return fig
