"""Miniature reproduction of SimpleNet: a plain 13-layer network against residual networks.

1. Accuracy: SimpleNet-310k (the paper's slim CIFAR network, 1 input channel) and ResNet-20
   (He et al.'s CIFAR network, ``archlab.baselines.resnet``, 0.27M parameters) are built from
   the same init stream and trained with ``lab.fit`` on the same data stream with the same
   recipe (``CLASSIFY`` with weight decay 5e-4 and no clipping; AdamW, cosine schedule,
   batch 64): scikit-learn's handwritten digits upsampled to 16 x 16, with random crops
   (padding 2) and Gaussian pixel noise, tested on 50 held-out images per class (a stratified
   split drawn from the run's ``split`` stream).
2. Size and latency at the paper's CIFAR shape (3 x 32 x 32, 10 classes): parameters of
   SimpleNet-310k, ResNet-20 and ResNet-32 (0.47M; fixed by the configs, so an invariant), and
   single-image inference latency of SimpleNet against each ResNet, timed alternately in one
   process (``archlab.lab.profiling.compare_latency``) on inputs from the ``latency-input/b<B>``
   streams; the batch-64 ratios are reported too.

The paper trains on CIFAR-10/100, SVHN, MNIST and ImageNet for hundreds of epochs with its own
schedule; here each network gets about a minute of one CPU core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from archlab.baselines.resnet import ResNet, ResNetConfig
from archlab.data import Augment, image_batches, load_digits_images, split_per_class
from archlab.lab import Lab, Recipe, evaluate_accuracy, evaluating
from archlab.lab.plots import new_figure
from archlab.lab.profiling import compare_latency
from archlab.lab.tasks import CLASSIFY
from archlab.papers.vision.simplenet.model import CIFAR_310K, TINY, SimpleNet, SimpleNetConfig

RESNET20 = ResNetConfig(widths=(16, 32, 64), depths=(3, 3, 3))
RESNET32 = ResNetConfig(widths=(16, 32, 64), depths=(5, 5, 5))
LABELS = {"simplenet": "SimpleNet-310k", "resnet20": "ResNet-20", "resnet32": "ResNet-32"}


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    recipe: Recipe
    layers: tuple[str, ...]
    pointwise_padding: int  # 0 as the paper's Caffe prototxt, 1 as the PyTorch port
    image_size: int
    n_test_per_class: int
    crop_padding: int
    noise: float
    latency_batches: tuple[int, ...]  # the first is the checked one (single image)
    latency_repeats: int  # timed repeats at the checked batch size
    latency_repeats_large: int  # timed repeats at the other batch sizes
    margin: float  # SimpleNet may trail ResNet-20 by at most this much accuracy
    min_latency_ratio: float  # ResNet-32 / SimpleNet single-image time must exceed this


BUDGETS = {
    "smoke": Settings(
        recipe=CLASSIFY.recipe(steps=3, batch_size=16, lr=2e-3, weight_decay=5e-4,
                               warmup_steps=1, grad_clip=None),
        layers=TINY, pointwise_padding=1, image_size=16, n_test_per_class=5, crop_padding=2,
        noise=0.1, latency_batches=(1, 64), latency_repeats=2, latency_repeats_large=3,
        margin=0.01, min_latency_ratio=1.0,
    ),
    "quick": Settings(
        recipe=CLASSIFY.recipe(steps=120, batch_size=64, lr=4e-3, weight_decay=5e-4,
                               warmup_steps=10, grad_clip=None),
        layers=CIFAR_310K, pointwise_padding=1, image_size=16, n_test_per_class=50,
        crop_padding=2, noise=0.1, latency_batches=(1, 64), latency_repeats=15,
        latency_repeats_large=3, margin=0.01, min_latency_ratio=1.0,
    ),
}  # fmt: skip


class NoisyCrops:
    """Random crop (zero padding) then additive Gaussian pixel noise, clamped to [0, 1]."""

    def __init__(self, padding: int, noise: float):
        self.crop = Augment(crop_padding=padding)
        self.noise = noise

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:  # (B, C, H, W)
        x = self.crop(x, generator)
        return (x + self.noise * torch.randn(x.shape, generator=generator)).clamp_(0.0, 1.0)


def load_data(s: Settings, split_seed: int):
    """Digits at ``image_size``: (train images, labels), (test images, labels)."""
    images, labels = load_digits_images(size=s.image_size)
    test_idx, train_idx = split_per_class(labels, s.n_test_per_class, seed=split_seed)
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def make_models(
    s: Settings, n_channels: int = 1, image_size: int | None = None
) -> dict[str, Callable[[], nn.Module]]:
    """Constructors of SimpleNet and ResNet-20 (``image_size`` defaults to the digits')."""
    cfg = SimpleNetConfig(
        layers=s.layers, n_channels=n_channels, image_size=image_size or s.image_size,
        pointwise_padding=s.pointwise_padding,
    )  # fmt: skip
    resnet = ResNetConfig(n_channels=n_channels, widths=RESNET20.widths, depths=RESNET20.depths)
    return {"simplenet": partial(SimpleNet, cfg), "resnet20": partial(ResNet, resnet)}


def cifar_models(s: Settings) -> dict[str, Callable[[], nn.Module]]:
    """Constructors of SimpleNet-310k, ResNet-20 and ResNet-32 at the CIFAR shape."""
    cfg = SimpleNetConfig(layers=s.layers, pointwise_padding=s.pointwise_padding)
    return {
        "simplenet": partial(SimpleNet, cfg),
        "resnet20": partial(ResNet, RESNET20),
        "resnet32": partial(ResNet, RESNET32),
    }


def run(lab: Lab) -> None:
    """Train SimpleNet and ResNet-20 on digits, compare sizes and latency; check the claim."""
    s: Settings = lab.settings
    (x_train, y_train), (x_test, y_test) = load_data(s, lab.seed_for("split"))
    data = image_batches(x_train, y_train, NoisyCrops(s.crop_padding, s.noise))
    for arm, make in make_models(s).items():
        model = lab.build(arm, make)
        lab.fit(arm, model, CLASSIFY.loss, data, s.recipe)
        lab.measure(f"acc/{arm}", evaluate_accuracy(model, x_test, y_test))

    # Size and latency at the paper's CIFAR shape (untrained networks).
    cifar = {name: lab.build(f"cifar/{name}", make) for name, make in cifar_models(s).items()}
    for batch in s.latency_batches:
        x = torch.rand(batch, 3, 32, 32, generator=lab.rng(f"latency-input/b{batch}"))
        checked = batch == s.latency_batches[0]
        for other in ("resnet20", "resnet32"):
            with evaluating(cifar["simplenet"]), evaluating(cifar[other]):
                c = compare_latency(
                    partial(cifar["simplenet"], x), partial(cifar[other], x),
                    repeats=s.latency_repeats if checked else s.latency_repeats_large,
                    warmup=1 if checked else 0,
                )  # fmt: skip
            lab.measure(f"latency_ms/simplenet_vs_{other}_b{batch}", c.a_s * 1e3)
            lab.measure(f"latency_ms/{other}_b{batch}", c.b_s * 1e3)
            lab.measure(f"latency_ratio/{other}_over_simplenet_b{batch}", c.ratio)

    lab.compare(
        f"SimpleNet-310k accuracy >= ResNet-20's - {s.margin:.0%} (digits {s.image_size}x"
        f"{s.image_size}, {s.recipe.steps} steps each)",
        "acc", "simplenet", "resnet20", margin=-s.margin, note=f"{len(y_test)} test images",
    )  # fmt: skip
    p = {name: int(lab.value(f"params/cifar/{name}")) for name in cifar}
    lab.invariant(
        "SimpleNet-310k has fewer parameters than the deeper ResNet-32 (fixed by the configs)",
        p["simplenet"] < p["resnet32"],
        f"SimpleNet {p['simplenet']:,} vs ResNet-32 {p['resnet32']:,} "
        f"(ResNet-20 {p['resnet20']:,})",
    )
    b1, b2 = s.latency_batches[0], s.latency_batches[-1]
    ratio = {(o, b): lab.value(f"latency_ratio/{o}_over_simplenet_b{b}")
             for o in ("resnet20", "resnet32") for b in s.latency_batches}  # fmt: skip
    lab.check(
        "SimpleNet-310k has lower single-image latency than the deeper ResNet-32 (3x32x32)",
        ratio["resnet32", b1] > s.min_latency_ratio,
        f"ResNet-32 / SimpleNet = {ratio['resnet32', b1]:.2f}x at batch {b1} (needs > "
        f"{s.min_latency_ratio}; ResNet-20 / SimpleNet = {ratio['resnet20', b1]:.2f}x; at batch "
        f"{b2}: {ratio['resnet32', b2]:.2f}x and {ratio['resnet20', b2]:.2f}x)",
    )
    accs = {arm: lab.value("acc", arm) for arm in ("simplenet", "resnet20")}
    lab.figure("accuracy_latency", plot_accuracy_latency(accs, p, ratio, s))


def plot_accuracy_latency(accs: dict, params: dict, ratio: dict, s: Settings):
    """Accuracy on digits, parameters and latency ratios at the CIFAR shape."""
    fig = new_figure(figsize=(12, 3.6))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    names = ["simplenet", "resnet20"]
    colors = {"simplenet": "tab:blue", "resnet20": "tab:orange", "resnet32": "tab:red"}
    ax1.bar(range(2), [accs[n] for n in names], color=[colors[n] for n in names])
    ax1.set_xticks(range(2), [LABELS[n] for n in names])
    ax1.set_ylim(max(0.0, min(accs.values()) - 0.1), 1.0)
    ax1.set_ylabel("test accuracy")
    ax1.set_title(f"digits {s.image_size}x{s.image_size}, same steps and recipe")
    order = ["simplenet", "resnet20", "resnet32"]
    ax2.bar(range(3), [params[n] / 1e3 for n in order], color=[colors[n] for n in order])
    ax2.set_xticks(range(3), [LABELS[n] for n in order])
    ax2.set_ylabel("parameters (thousands), CIFAR shape")
    ax2.set_title("size")
    for i, batch in enumerate(s.latency_batches):
        ax3.bar(
            [i * 3 + j for j in range(2)],
            [ratio[o, batch] for o in ("resnet20", "resnet32")],
            color=["tab:orange", "tab:red"],
            label=["ResNet-20", "ResNet-32"] if i == 0 else None,
        )
    ax3.axhline(1.0, color="k", ls="--")
    ax3.set_xticks([i * 3 + 0.5 for i in range(len(s.latency_batches))],
                   [f"batch {b}" for b in s.latency_batches])  # fmt: skip
    ax3.set_ylabel("ResNet time / SimpleNet time")
    ax3.set_title("inference latency (3x32x32, CPU)")
    ax3.legend()
    fig.tight_layout()
    return fig
