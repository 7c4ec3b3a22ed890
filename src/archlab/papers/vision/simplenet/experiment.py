"""Miniature reproduction of SimpleNet: a plain 13-layer network against residual networks.

1. Accuracy: SimpleNet-310k (the paper's slim CIFAR network, 1 input channel) and ResNet-20
   (He et al.'s CIFAR network, ``archlab.baselines.resnet``, 0.27M parameters) are trained with
   the shared engine on the same data, steps and recipe (AdamW, cosine schedule, batch 64) from
   the same seed: scikit-learn's handwritten digits upsampled to 16 x 16, with random crops
   (padding 2) and Gaussian pixel noise, tested on 50 held-out images per class.
2. Size and latency at the paper's CIFAR shape (3 x 32 x 32, 10 classes): parameters of
   SimpleNet-310k, ResNet-20 and ResNet-32 (0.47M), and single-image inference latency of
   SimpleNet against each ResNet, timed alternately in one process
   (``archlab.measure.compare_latency``); the batch-64 ratios are reported too.

The paper trains on CIFAR-10/100, SVHN, MNIST and ImageNet for hundreds of epochs with its own
schedule; here each network gets about a minute of one CPU core.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from archlab.baselines.resnet import ResNet, ResNetConfig
from archlab.data import Augment, image_batches, load_digits_images, split_per_class
from archlab.engine import fit_steps
from archlab.lab.inference import evaluate_accuracy
from archlab.lab.losses import classification_loss
from archlab.lab.profiling import compare_latency, one_thread
from archlab.lab.result import Budget, Result
from archlab.papers.vision.simplenet.model import (
    CIFAR_310K,
    SPEC,
    TINY,
    SimpleNet,
    SimpleNetConfig,
)

RESNET20 = ResNetConfig(widths=(16, 32, 64), depths=(3, 3, 3))
RESNET32 = ResNetConfig(widths=(16, 32, 64), depths=(5, 5, 5))


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    layers: tuple[str, ...]
    pointwise_padding: int  # 0 as the paper's Caffe prototxt, 1 as the PyTorch port
    image_size: int
    n_test_per_class: int
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    noise: float
    latency_repeats: int
    margin: float  # SimpleNet may trail ResNet-20 by at most this much accuracy


SMOKE = Sizes(
    layers=TINY, pointwise_padding=1, image_size=16, n_test_per_class=5, steps=3,
    batch_size=16, lr=2e-3, weight_decay=5e-4, warmup_steps=1, noise=0.1, latency_repeats=2,
    margin=0.01,
)  # fmt: skip
QUICK = Sizes(
    layers=CIFAR_310K, pointwise_padding=1, image_size=16, n_test_per_class=50, steps=120,
    batch_size=64, lr=4e-3, weight_decay=5e-4, warmup_steps=10, noise=0.1, latency_repeats=15,
    margin=0.01,
)  # fmt: skip
BUDGETS = {"smoke": SMOKE, "quick": QUICK}


class NoisyCrops:
    """Random crop (zero padding) then additive Gaussian pixel noise, clamped to [0, 1]."""

    def __init__(self, padding: int, noise: float):
        self.crop = Augment(crop_padding=padding)
        self.noise = noise

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:  # (B, C, H, W)
        x = self.crop(x, generator)
        return (x + self.noise * torch.randn(x.shape, generator=generator)).clamp_(0.0, 1.0)


def load_data(sizes: Sizes, seed: int):
    """Digits at ``image_size``: (train images, labels), (test images, labels)."""
    images, labels = load_digits_images(size=sizes.image_size)
    test_idx, train_idx = split_per_class(labels, sizes.n_test_per_class, seed=12345 + seed)
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def make_models(sizes: Sizes, seed: int, n_channels: int = 1) -> dict[str, nn.Module]:
    """SimpleNet and ResNet-20 for the digits, each initialised from ``seed``."""
    torch.manual_seed(seed)
    simplenet = SimpleNet(
        SimpleNetConfig(
            layers=sizes.layers,
            n_channels=n_channels,
            image_size=sizes.image_size,
            pointwise_padding=sizes.pointwise_padding,
        )
    )
    torch.manual_seed(seed)
    resnet = ResNet(ResNetConfig(n_channels=n_channels, widths=(16, 32, 64), depths=(3, 3, 3)))
    return {"simplenet": simplenet, "resnet20": resnet}


def train(model: nn.Module, data, test: tuple[Tensor, Tensor], sizes: Sizes, seed: int):
    """Train with the engine; returns (test accuracy, seconds)."""
    seconds = fit_steps(
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
        grad_clip=None,
        seed=seed,
    )
    return evaluate_accuracy(model, *test), seconds


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run(budget: Budget, seed: int) -> Result:
    """Train SimpleNet and ResNet-20 on digits, compare sizes and latency; check the claim."""
    import matplotlib

    matplotlib.use("Agg")
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(
        slug=SPEC.slug, title=SPEC.title, claim=SPEC.claim, budget=budget.value, seed=seed
    )
    m = result.metrics
    with one_thread():
        (x_train, y_train), test = load_data(sizes, seed)
        data = image_batches(x_train, y_train, NoisyCrops(padding=2, noise=sizes.noise))
        accs: dict[str, float] = {}
        for name, model in make_models(sizes, seed).items():
            acc, secs = train(model, data, test, sizes, seed)
            accs[name] = acc
            m[f"acc/{name}"] = acc
            m[f"train_s/{name}"] = secs

        # Size and latency at the paper's CIFAR shape.
        torch.manual_seed(seed)
        cifar = {
            "simplenet": SimpleNet(
                SimpleNetConfig(layers=sizes.layers, pointwise_padding=sizes.pointwise_padding)
            ),
            "resnet20": ResNet(RESNET20),
            "resnet32": ResNet(RESNET32),
        }
        for name, model in cifar.items():
            m[f"params/{name}"] = n_params(model)
            model.eval()
        latency: dict[str, dict[int, float]] = {"resnet20": {}, "resnet32": {}}
        with torch.no_grad():
            for batch in (1, 64):
                x = torch.rand(batch, 3, 32, 32)
                for other in ("resnet20", "resnet32"):
                    c = compare_latency(
                        partial(cifar["simplenet"], x),
                        partial(cifar[other], x),
                        repeats=sizes.latency_repeats if batch == 1 else 3,
                        warmup=1 if batch == 1 else 0,
                    )
                    latency[other][batch] = c.ratio
                    m[f"latency_ms/simplenet_vs_{other}_b{batch}"] = c.a_s * 1e3
                    m[f"latency_ms/{other}_b{batch}"] = c.b_s * 1e3
                    m[f"latency_ratio/{other}_over_simplenet_b{batch}"] = c.ratio

    s_acc, r_acc = accs["simplenet"], accs["resnet20"]
    n_test = len(test[1])
    result.check(
        f"SimpleNet-310k accuracy >= ResNet-20's - {sizes.margin:.0%} (digits 16x16, "
        f"{sizes.steps} steps each)",
        s_acc >= r_acc - sizes.margin,
        f"SimpleNet {s_acc:.4f} vs ResNet-20 {r_acc:.4f} on {n_test} test images",
    )
    p = {k: int(m[f"params/{k}"]) for k in cifar}
    result.check(
        "SimpleNet-310k has fewer parameters than the deeper ResNet-32",
        p["simplenet"] < p["resnet32"],
        f"SimpleNet {p['simplenet']:,} vs ResNet-32 {p['resnet32']:,} "
        f"(ResNet-20 {p['resnet20']:,})",
    )
    r20, r32 = latency["resnet20"][1], latency["resnet32"][1]
    result.check(
        "SimpleNet-310k has lower single-image latency than the deeper ResNet-32 (3x32x32)",
        r32 > 1.0,
        f"ResNet-32 / SimpleNet = {r32:.2f}x at batch 1 (ResNet-20 / SimpleNet = {r20:.2f}x; "
        f"at batch 64: {latency['resnet32'][64]:.2f}x and {latency['resnet20'][64]:.2f}x)",
    )
    result.figures["accuracy_latency"] = _plot(accs, p, latency)
    return result


def _plot(accs: dict, params: dict, latency: dict):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(12, 3.6))
    names = ["simplenet", "resnet20"]
    labels = {"simplenet": "SimpleNet-310k", "resnet20": "ResNet-20", "resnet32": "ResNet-32"}
    colors = {"simplenet": "tab:blue", "resnet20": "tab:orange", "resnet32": "tab:red"}
    ax1.bar(range(2), [accs[n] for n in names], color=[colors[n] for n in names])
    ax1.set_xticks(range(2), [labels[n] for n in names])
    lo = min(accs.values())
    ax1.set_ylim(max(0.0, lo - 0.1), 1.0)
    ax1.set_ylabel("test accuracy")
    ax1.set_title("digits 16x16, same steps and recipe")
    order = ["simplenet", "resnet20", "resnet32"]
    ax2.bar(range(3), [params[n] / 1e3 for n in order], color=[colors[n] for n in order])
    ax2.set_xticks(range(3), [labels[n] for n in order])
    ax2.set_ylabel("parameters (thousands), CIFAR shape")
    ax2.set_title("size")
    for i, batch in enumerate((1, 64)):
        ratios = [latency[o][batch] for o in ("resnet20", "resnet32")]
        ax3.bar(
            [i * 3 + j for j in range(2)],
            ratios,
            color=["tab:orange", "tab:red"],
            label=["ResNet-20", "ResNet-32"] if i == 0 else None,
        )
    ax3.axhline(1.0, color="k", ls="--")
    ax3.set_xticks([0.5, 3.5], ["batch 1", "batch 64"])
    ax3.set_ylabel("ResNet time / SimpleNet time")
    ax3.set_title("inference latency (3x32x32, CPU)")
    ax3.legend()
    fig.tight_layout()
    return fig
