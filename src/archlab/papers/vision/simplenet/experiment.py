"""Miniature reproduction of SimpleNet: a plain 13-layer network against a residual network.

One comparator throughout: ResNet-20 (He et al.'s CIFAR network, ``archlab.baselines.resnet``,
0.27M parameters), the residual network of SimpleNet-310k's size.

1. Accuracy: SimpleNet-310k (the paper's slim CIFAR network, 1 input channel, 1x1 convolutions
   padded by 0 as the current official code) and ResNet-20 are each tuned with ``lab.tune``
   over the same learning-rate grid (every candidate from the same init stream, on the same
   batch stream, with the same recipe: ``CLASSIFY`` with weight decay 5e-4 and no clipping;
   AdamW, cosine schedule, batch 64), picked on validation accuracy, on scikit-learn's
   handwritten digits upsampled to 16 x 16 with random crops (padding 2) and Gaussian pixel
   noise. The 1,797 digits are cut into train / validation / test by
   ``archlab.lab.protocol.split_indices`` from the run's ``split`` stream; the test split is
   evaluated once, after the choice. ResNet-20 passes a health check (beats the majority class
   by a margin, its loss curve has flattened) before the comparison.
2. Latency at the paper's CIFAR shape (3 x 32 x 32, 10 classes, eval mode) of SimpleNet-310k
   against ResNet-20 at several batch sizes, timed alternately in one process
   (``archlab.lab.profiling.compare_latency``) on inputs from the ``latency-input/b<B>``
   streams (untrained networks from the init stream). The parameter count of SimpleNet-310k
   is fixed by the config (an invariant: the official builder's 312,362).

The paper trains on CIFAR-10/100, SVHN, MNIST and ImageNet for hundreds of epochs with its own
schedule; here each network gets well under a minute of one CPU core per learning rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from archlab.baselines.resnet import ResNet, ResNetConfig
from archlab.data import Augment, image_batches, load_digits_images
from archlab.lab import Lab, Recipe, evaluate_accuracy, evaluating
from archlab.lab.plots import new_figure
from archlab.lab.profiling import compare_latency
from archlab.lab.protocol import split_indices
from archlab.lab.tasks import CLASSIFY
from archlab.papers.vision.simplenet.model import CIFAR_310K, TINY, SimpleNet, SimpleNetConfig

RESNET20 = ResNetConfig(widths=(16, 32, 64), depths=(3, 3, 3))
LABELS = {"simplenet": "SimpleNet-310k", "resnet20": "ResNet-20"}


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    recipe: Recipe
    lrs: tuple[float, ...]  # the learning-rate grid of both arms (picked on validation)
    layers: tuple[str, ...]
    expected_params: int  # at the CIFAR shape: the official builder's count (312,362 for 310k)
    pointwise_padding: int  # 0 as the current official PyTorch code and the Caffe prototxt
    image_size: int
    n_val: int
    n_test: int
    crop_padding: int
    noise: float
    latency_batches: tuple[int, ...]
    latency_repeats: int
    margin: float  # SimpleNet may trail ResNet-20 by at most this much accuracy
    health_margin: float  # ResNet-20 must beat the majority class by this much accuracy
    max_flattening: float  # ResNet-20's loss fell by at most this over the last quarter
    min_latency_ratio: float  # ResNet-20 / SimpleNet time must reach this at every batch


BUDGETS = {
    "smoke": Settings(
        recipe=CLASSIFY.recipe(steps=3, batch_size=16, lr=4e-3, weight_decay=5e-4,
                               warmup_steps=1, grad_clip=None),
        lrs=(4e-3,), layers=TINY, expected_params=58_906, pointwise_padding=0, image_size=16,
        n_val=50, n_test=50, crop_padding=2, noise=0.1, latency_batches=(1, 8), latency_repeats=2,
        margin=0.01, health_margin=0.0, max_flattening=1.0, min_latency_ratio=1.0,
    ),
    "quick": Settings(
        recipe=CLASSIFY.recipe(steps=200, batch_size=64, lr=4e-3, weight_decay=5e-4,
                               warmup_steps=10, grad_clip=None, curve_points=10),
        lrs=(4e-3, 1.2e-2), layers=CIFAR_310K, expected_params=312_362,
        pointwise_padding=0, image_size=16,
        n_val=300, n_test=500, crop_padding=2, noise=0.1, latency_batches=(1, 8, 32),
        latency_repeats=7, margin=0.01, health_margin=0.5, max_flattening=0.2,
        min_latency_ratio=1.0,
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


def load_data(s: Settings, generator: torch.Generator):
    """Digits at ``image_size`` cut into (train, val, test), each ``(images, labels)``."""
    images, labels = load_digits_images(size=s.image_size)
    parts = split_indices(len(labels), s.n_val, s.n_test, generator)
    return tuple((images[idx], labels[idx]) for idx in parts)


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


def run(lab: Lab) -> None:
    """Tune SimpleNet and ResNet-20 on digits, time both at the CIFAR shape; check the claim."""
    s: Settings = lab.settings
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_data(s, lab.rng("split"))
    data = image_batches(x_train, y_train, NoisyCrops(s.crop_padding, s.noise))
    models = {}
    for arm, make in make_models(s).items():
        models[arm] = lab.tune(
            arm, make, CLASSIFY.loss, data, s.recipe, lrs=s.lrs,
            score=lambda m: evaluate_accuracy(m, x_val, y_val),
        )  # fmt: skip
    for arm, model in models.items():  # the test split, once, after every choice
        lab.measure(f"acc/{arm}", evaluate_accuracy(model, x_test, y_test))
    majority = int(torch.bincount(y_train).argmax())
    lab.measure("acc/majority", (y_test == majority).float().mean())

    # Latency at the paper's CIFAR shape (untrained networks).
    cifar_cfg = SimpleNetConfig(layers=s.layers, pointwise_padding=s.pointwise_padding)
    cifar = {
        "simplenet": lab.build("cifar/simplenet", partial(SimpleNet, cifar_cfg)),
        "resnet20": lab.build("cifar/resnet20", partial(ResNet, RESNET20)),
    }
    for batch in s.latency_batches:
        x = torch.rand(batch, 3, 32, 32, generator=lab.rng(f"latency-input/b{batch}"))
        with evaluating(cifar["simplenet"]), evaluating(cifar["resnet20"]):
            c = compare_latency(
                partial(cifar["simplenet"], x), partial(cifar["resnet20"], x),
                repeats=s.latency_repeats, warmup=1,
            )  # fmt: skip
        lab.measure(f"latency_ms/simplenet_b{batch}", c.a_s * 1e3)
        lab.measure(f"latency_ms/resnet20_b{batch}", c.b_s * 1e3)
        lab.measure(f"latency_ratio/resnet20_over_simplenet_b{batch}", c.ratio)

    lab.health(
        "resnet20", "acc", ("majority class", lab.value("acc/majority")),
        margin=s.health_margin, max_flattening=s.max_flattening,
    )  # fmt: skip
    lab.compare(
        f"SimpleNet-310k accuracy >= ResNet-20's - {s.margin:.0%} (digits {s.image_size}x"
        f"{s.image_size}, {s.recipe.steps} steps, lr picked on validation for each)",
        "acc", "simplenet", "resnet20", margin=-s.margin,
        note=f"{len(y_test)} test images; lr {lab.value('lr/simplenet'):g} vs "
        f"{lab.value('lr/resnet20'):g}",
    )  # fmt: skip
    ratio = {b: lab.value(f"latency_ratio/resnet20_over_simplenet_b{b}") for b in s.latency_batches}
    ms = {b: (lab.value(f"latency_ms/simplenet_b{b}"), lab.value(f"latency_ms/resnet20_b{b}"))
          for b in s.latency_batches}  # fmt: skip
    lab.check(
        f"SimpleNet-310k is not slower than ResNet-20 at batch sizes {list(s.latency_batches)} "
        f"(3x32x32; ResNet-20 / SimpleNet time >= {s.min_latency_ratio} at each)",
        all(r >= s.min_latency_ratio for r in ratio.values()),
        "; ".join(
            f"batch {b}: {ratio[b]:.2f}x ({ms[b][0]:.1f} vs {ms[b][1]:.1f} ms)"
            for b in s.latency_batches
        ),  # fmt: skip
    )
    p = {name: int(lab.value(f"params/cifar/{name}")) for name in cifar}
    lab.invariant(
        "SimpleNet has the official builder's parameter count (fixed by the config)",
        p["simplenet"] == s.expected_params,
        f"SimpleNet {p['simplenet']:,} (official {s.expected_params:,}); ResNet-20 "
        f"{p['resnet20']:,}",
    )
    accs = {arm: lab.value("acc", arm) for arm in ("simplenet", "resnet20")}
    lab.figure("accuracy_latency", plot_accuracy_latency(accs, p, ratio, s))


def plot_accuracy_latency(accs: dict, params: dict, ratio: dict, s: Settings):
    """Accuracy on digits, parameters and latency ratios at the CIFAR shape."""
    fig = new_figure(figsize=(12, 3.6))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    names = ["simplenet", "resnet20"]
    colors = ["tab:blue", "tab:orange"]
    ax1.bar(range(2), [accs[n] for n in names], color=colors)
    ax1.set_xticks(range(2), [LABELS[n] for n in names])
    ax1.set_ylim(max(0.0, min(accs.values()) - 0.1), 1.0)
    ax1.set_ylabel("test accuracy")
    ax1.set_title(f"digits {s.image_size}x{s.image_size}, lr tuned on validation")
    ax2.bar(range(2), [params[n] / 1e3 for n in names], color=colors)
    ax2.set_xticks(range(2), [LABELS[n] for n in names])
    ax2.set_ylabel("parameters (thousands), CIFAR shape")
    ax2.set_title("size")
    batches = list(s.latency_batches)
    ax3.bar(range(len(batches)), [ratio[b] for b in batches], color="tab:orange")
    ax3.axhline(1.0, color="k", ls="--")
    ax3.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax3.set_ylabel("ResNet-20 time / SimpleNet time")
    ax3.set_title("inference latency (3x32x32, CPU; > 1: SimpleNet faster)")
    fig.tight_layout()
    return fig
