"""Miniature reproduction of Activator: ViT accuracy at a fraction of its FLOPs.

Data: sklearn's 1797 handwritten digits (8 x 8, shipped with scikit-learn), 2 x 2 patches, so
N = 16 tokens; 50 test images per class, the rest (1297) for training, random +-1 pixel shifts.
Models of the same size (D = 64, 4 blocks, every hidden width = 2 x the mixed axis, as the
authors' ``d_ffn = 2 d_model``), trained with the shared engine on the same data stream, budget
and seed (AdamW, cosine schedule):

- ViT (``archlab.baselines.vit``): 4 heads, MLP ratio 2, class token;
- MLP-Mixer (``archlab.baselines.mlp_mixer``): token hidden 2N, channel hidden 2D;
- Activator (this paper's reduced model, GEGLU, token mixing) and its GLU variants (GLU,
  SwiGLU, ReGLU), the channel-mixing reading of the authors' code, and the first model of the
  paper (GLU + second MLP).

FLOPs of one image's forward pass are counted with ``archlab.measure.count_flops`` under the
math attention kernel (the fused CPU attention kernel is invisible to ``FlopCounterMode``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from archlab.baselines.mlp_mixer import MlpMixer, MlpMixerConfig
from archlab.baselines.vit import ViT, ViTConfig
from archlab.data import Augment, image_batches, load_digits_images, split_per_class
from archlab.engine import fit_steps
from archlab.lab.inference import evaluate_accuracy
from archlab.lab.losses import classification_loss
from archlab.lab.profiling import forward_flops
from archlab.lab.result import Budget, Result
from archlab.papers.vision.activator.model import (
    PAPER_GLU_VARIANTS,
    SPEC,
    Activator,
    ActivatorConfig,
)


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    n_test_per_class: int
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    d_model: int
    n_layers: int
    n_heads: int
    ratio: float  # every hidden width / width of the mixed axis
    variants: bool  # also train the GLU variants, channel mixing and GLU + MLP
    accuracy_margin: float  # Activator >= ViT - margin
    flops_ratio: float  # Activator FLOPs <= ratio x ViT's
    glu_spread: float  # max - min accuracy of GEGLU, SwiGLU and ReGLU


SMOKE = Sizes(
    n_test_per_class=10,
    steps=3,
    batch_size=32,
    lr=2e-3,
    weight_decay=0.05,
    warmup_steps=1,
    d_model=16,
    n_layers=1,
    n_heads=2,
    ratio=2.0,
    variants=False,
    accuracy_margin=0.01,
    flops_ratio=0.7,
    glu_spread=0.03,
)
QUICK = Sizes(
    n_test_per_class=50,
    steps=600,
    batch_size=64,
    lr=2e-3,
    weight_decay=0.05,
    warmup_steps=30,
    d_model=64,
    n_layers=4,
    n_heads=4,
    ratio=2.0,
    variants=True,
    accuracy_margin=0.01,
    flops_ratio=0.7,
    glu_spread=0.03,
)
BUDGETS = {"smoke": SMOKE, "quick": QUICK}

IMAGE_SIZE, PATCH_SIZE = 8, 2
ABLATED_VARIANTS = ("GEGLU", "SwiGLU", "ReGLU")
"""The variants of the paper's ablation; the sigmoid GLU is trained and reported too."""


def make_models(sizes: Sizes) -> dict[str, Callable[[], nn.Module]]:
    """Constructors of every compared model, by name (built under the caller's seed)."""
    common = dict(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        n_channels=1,
        n_classes=10,
        d_model=sizes.d_model,
        n_layers=sizes.n_layers,
    )
    n = (IMAGE_SIZE // PATCH_SIZE) ** 2
    act = dict(common, glu_ratio=sizes.ratio, mlp_ratio=sizes.ratio)
    out: dict[str, Callable[[], nn.Module]] = {
        "vit": lambda: ViT(ViTConfig(**common, n_heads=sizes.n_heads, mlp_ratio=sizes.ratio)),
        "mixer": lambda: MlpMixer(
            MlpMixerConfig(
                **common,
                d_token_hidden=round(sizes.ratio * n),
                d_channel_hidden=round(sizes.ratio * sizes.d_model),
            )
        ),
        "activator": lambda: Activator(ActivatorConfig(**act, mixing="tokens")),
    }
    if sizes.variants:
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


def train(model: nn.Module, data, sizes: Sizes, seed: int) -> float:
    """Train with the shared engine; returns the CPU seconds it took."""
    t0 = time.process_time()
    fit_steps(
        model,
        classification_loss,
        data,
        steps=sizes.steps,
        batch_size=sizes.batch_size,
        lr=sizes.lr,
        optimizer="adamw",
        weight_decay=sizes.weight_decay,
        schedule="cosine",
        warmup_steps=sizes.warmup_steps,
        grad_clip=1.0,
        seed=seed,
    )
    return time.process_time() - t0


def load_data(sizes: Sizes):
    """(train images, labels), (test images, labels): a fixed stratified test split."""
    images, labels = load_digits_images()
    test_idx, train_idx = split_per_class(labels, sizes.n_test_per_class, seed=12345)
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def run(budget: Budget, seed: int) -> Result:
    """Train ViT, MLP-Mixer and Activator (and its variants); check accuracy at <= 0.7x FLOPs."""
    import matplotlib

    matplotlib.use("Agg")
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(SPEC.slug, SPEC.title, SPEC.claim, budget.value, seed)
    m = result.metrics
    (x_train, y_train), (x_test, y_test) = load_data(sizes)
    data = image_batches(x_train, y_train, Augment(crop_padding=1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: extra threads only add overhead on a shared CPU
    try:
        for name, make in make_models(sizes).items():
            torch.manual_seed(seed)
            model = make()
            m[f"params/{name}"] = sum(p.numel() for p in model.parameters())
            m[f"flops/{name}"] = forward_flops(model, x_test[:1])
            m[f"cpu_s/{name}"] = train(model, data, sizes, seed)
            m[f"acc/{name}"] = evaluate_accuracy(model, x_test, y_test)
    finally:
        torch.set_num_threads(threads)

    act, vit = m["acc/activator"], m["acc/vit"]
    ratio = m["flops/activator"] / m["flops/vit"]
    m["flops_ratio/activator_vs_vit"] = ratio
    m["flops_ratio/mixer_vs_vit"] = m["flops/mixer"] / m["flops/vit"]
    margin = sizes.accuracy_margin
    result.check(
        f"Activator accuracy >= ViT - {margin:.0%} (same size, data, budget)",
        act >= vit - margin,
        f"Activator {act:.3f} vs ViT {vit:.3f} (MLP-Mixer {m['acc/mixer']:.3f})",
    )
    result.check(
        f"Activator FLOPs <= {sizes.flops_ratio}x ViT's",
        ratio <= sizes.flops_ratio,
        f"{m['flops/activator'] / 1e6:.3f} vs {m['flops/vit'] / 1e6:.3f} MFLOPs per image "
        f"({ratio:.3f}x; MLP-Mixer {m['flops_ratio/mixer_vs_vit']:.3f}x)",
    )
    glu = {"GEGLU": act}
    for label in PAPER_GLU_VARIANTS.values():
        key = f"acc/activator_{label.lower()}"
        if key in m:
            glu[label] = m[key]
    ablated = {k: v for k, v in glu.items() if k in ABLATED_VARIANTS}
    if len(ablated) > 1:
        spread = max(ablated.values()) - min(ablated.values())
        m["acc/glu_spread"] = spread  # over the paper's ablation: GEGLU, SwiGLU, ReGLU
        m["acc/glu_spread_with_sigmoid"] = max(glu.values()) - min(glu.values())
        result.check(
            f"the GLU variant matters little: {', '.join(ablated)} within "
            f"{sizes.glu_spread:.0%} of each other",
            spread <= sizes.glu_spread,
            ", ".join(f"{k} {v:.3f}" for k, v in glu.items()) + " (GLU reported, not checked)",
        )
    result.figures["accuracy_vs_flops"] = _plot(m)
    return result


def _plot(m: dict):
    import matplotlib.pyplot as plt

    names = [k[4:] for k in m if k.startswith("acc/") and f"flops/{k[4:]}" in m]
    glu = {"activator": "GEGLU"}
    glu.update({f"activator_{v.lower()}": v for v in PAPER_GLU_VARIANTS.values() if v != "GEGLU"})
    markers = dict(zip(glu, "o^vD"))
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name in names:
        x, y = m[f"flops/{name}"] / 1e6, 100 * m[f"acc/{name}"]
        if name in glu:  # same FLOPs: told apart by marker, in the legend
            ax.scatter(x, y, color="C0", marker=markers[name], s=40, label=f"Activator {glu[name]}")
            continue
        color = "C3" if name == "vit" else "C2" if name == "mixer" else "C0"
        ax.scatter(x, y, color=color, marker="s" if name in ("vit", "mixer") else "o", s=40)
        offset = (4, -11) if name == "mixer" else (4, 4)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=offset, fontsize=8)
    vit = m["flops/vit"] / 1e6
    ax.axvline(0.7 * vit, color="C3", ls=":", lw=1, label="0.7x ViT FLOPs")
    ax.axhline(100 * m["acc/vit"] - 1, color="C3", ls="--", lw=1, label="ViT accuracy - 1")
    ax.set_xlabel("forward MFLOPs per image")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Activator vs ViT and MLP-Mixer (digits 8x8, 2x2 patches)")
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    return fig
