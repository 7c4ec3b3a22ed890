"""SimpleNet: Lets keep it simple, Using simple architectures to outperform deeper and more
complex architectures.

HasanPour, Rouhani, Fayyaz, Sabokrou, 2016, arXiv 1608.06037.
Paper card, deviations and measured results: README.md beside this file.

A plain 13-layer stack without shortcuts: every layer is ``conv -> BatchNorm -> ReLU`` (3x3
convolutions, except layers 11 and 12 which are 1x1), 2x2 max-pooling after layers 4, 7, 9 and
12 ("late downsampling"), Dropout2d after every layer that is not followed by a pool and after
every pool, then a global max-pool over the remaining map, dropout and one linear classifier.
Convolution weights are Xavier-uniform with ReLU gain. The architecture is data: ``layers`` is a
tuple of strings, ``"64"`` a 3x3 convolution with 64 filters, ``"2048k1"`` a 1x1 convolution,
``"p"`` a max-pool, exactly as the official PyTorch code's ``cfg`` lists (Coderx7/SimpleNet_Pytorch,
``Cifar/models/simplenet.py``). Module names and indices (``features.N``, ``classifier``) follow
that code, so its CIFAR state dicts map one to one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.nn.patch import check_images
from archlab.registry import PaperSpec

POOL = "p"

CIFAR_5M = (
    "64", "128", "128", "128", "p", "128", "128", "256", "p", "256", "256", "p",
    "512", "2048k1", "256k1", "p", "256",
)  # fmt: skip
"""The paper's CIFAR-10/100 network (5,498,378 parameters with 10 classes)."""

CIFAR_310K = (
    "64", "32", "32", "32", "p", "32", "32", "64", "p", "64", "64", "p",
    "128", "256k1", "64k1", "p", "64",
)  # fmt: skip
"""The slim 310k variant (312,362 parameters with 10 classes)."""

CIFAR_460K = (
    "32", "32", "32", "64", "p", "64", "64", "64", "p", "64", "64", "p",
    "96", "96k1", "96k1", "p", "100",
)  # fmt: skip
"""The official code's ``simplenet_cifar_460k`` (385,790 parameters with 10 classes)."""

TINY = (
    "16", "16", "16", "16", "p", "16", "16", "32", "p", "32", "32", "p",
    "32", "64k1", "32k1", "p", "32",
)  # fmt: skip
"""Same 13-layer layout, narrow (for tests and CPU smoke runs)."""


def parse_layer(item: str) -> tuple[int, int] | None:
    """``"64"`` -> (64, 3); ``"2048k1"`` -> (2048, 1); ``"p"`` -> None (a 2x2 max-pool).

    Raises:
        ValueError: for anything else, naming the expected forms.
    """
    text = item.strip().lower()
    if text == POOL:
        return None
    kernel = 3
    if text.endswith("k1"):
        text, kernel = text[:-2], 1
    if not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"layer {item!r} must be a filter count ('64'), a 1x1 convolution ('2048k1') or "
            f"'p' (2x2 max-pool)"
        )
    return int(text), kernel


@dataclass(frozen=True)
class SimpleNetConfig:
    """Hyper-parameters of SimpleNet (the official code's arguments, CIFAR stride mode 0).

    Attributes:
        layers: the architecture as data; each entry is a 3x3 convolution's filter count
            (``"128"``), a 1x1 convolution (``"2048k1"``) or a 2x2 max-pool (``"p"``).
        n_channels: input channels C.
        n_classes: outputs K.
        image_size: input height = width; inputs of another size are rejected.
        bn_momentum: BatchNorm momentum in torch's convention (0.05, i.e. Caffe's moving
            average fraction 0.95).
        bn_eps: BatchNorm epsilon (1e-5 in the official code).
        dropout: Dropout2d rate after every convolution not followed by a pool (and not the
            last one) and after every pool (0.0 in the official code's CIFAR configs, 0.2 in the
            Caffe prototxt of the 95.32 % CIFAR-10 run).
        head_dropout: dropout after the global max-pool (official default 0.0).
        pointwise_padding: zero padding of the 1x1 convolutions: 0 as the current official
            PyTorch code (``cifar/models/simplenet.py``, since its 2023 refactoring) and the
            Caffe prototxt; an earlier version of the PyTorch port padded them by 1 (the map
            grows by 2 per side). Parameter counts are the same.
    """

    layers: tuple[str, ...] = CIFAR_5M
    n_channels: int = 3
    n_classes: int = 10
    image_size: int = 32
    bn_momentum: float = 0.05
    bn_eps: float = 1e-5
    dropout: float = 0.0
    head_dropout: float = 0.0
    pointwise_padding: int = 0

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("layers must list at least one convolution")
        parsed = [parse_layer(item) for item in self.layers]
        if parsed[-1] is None:
            raise ValueError("the last entry of layers must be a convolution, not 'p'")
        for name in ("n_channels", "n_classes", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        n_pools = sum(p is None for p in parsed)
        if self.image_size < 2**n_pools:
            raise ValueError(
                f"image_size={self.image_size} is too small for {n_pools} 2x2 max-pools "
                f"(need >= {2**n_pools})"
            )
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.head_dropout < 1.0:
            raise ValueError("dropout and head_dropout must be in [0, 1)")
        if not 0.0 < self.bn_momentum <= 1.0 or self.bn_eps <= 0:
            raise ValueError("bn_momentum must be in (0, 1] and bn_eps > 0")
        if self.pointwise_padding < 0:
            raise ValueError(f"pointwise_padding must be >= 0, got {self.pointwise_padding}")

    @property
    def n_conv_layers(self) -> int:
        """Number of convolution layers (13 for the paper's networks)."""
        return sum(parse_layer(item) is not None for item in self.layers)


class SimpleNet(nn.Module):
    """SimpleNet classifier: (B, C, H, W) images -> (B, K) logits.

    Attributes:
        features: ``nn.Sequential`` of conv/BN/ReLU(/Dropout2d) and pool/Dropout2d modules in
            the official order (its indices match the official state dict).
        classifier: the linear head on the globally max-pooled features.
    """

    def __init__(self, cfg: SimpleNetConfig):
        super().__init__()
        self.cfg = cfg
        parsed = [parse_layer(item) for item in cfg.layers]
        modules: list[nn.Module] = []
        d_in = cfg.n_channels
        for i, layer in enumerate(parsed):
            if layer is None:
                modules += [nn.MaxPool2d(2, 2), nn.Dropout2d(cfg.dropout)]
                continue
            width, kernel = layer
            padding = 1 if kernel == 3 else cfg.pointwise_padding
            modules += [
                nn.Conv2d(d_in, width, kernel, padding=padding),
                nn.BatchNorm2d(width, eps=cfg.bn_eps, momentum=cfg.bn_momentum),
                nn.ReLU(inplace=True),
            ]
            is_last = i == len(parsed) - 1
            if not is_last and parsed[i + 1] is not None:  # no dropout right before a pool
                modules.append(nn.Dropout2d(cfg.dropout))
            d_in = width
        self.features = nn.Sequential(*modules)
        self.classifier = nn.Linear(d_in, cfg.n_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform convolutions with ReLU gain (as the official code); torch defaults
        for biases, BatchNorm and the classifier."""
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain("relu"))

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, D)
        """The globally max-pooled features before the head's dropout."""
        cfg = self.cfg
        check_images(x, cfg.n_channels, cfg.image_size, self.classifier.weight.dtype)
        h = self.features(x)  # (B, D, H', W')
        return torch.amax(h, dim=(2, 3))  # (B, D): global max-pool

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K)
        h = self.forward_features(x)
        h = F.dropout(h, self.cfg.head_dropout, self.training)
        return self.classifier(h)


VARIANTS = {
    "tiny": SimpleNetConfig(layers=TINY),
    "cifar_310k": SimpleNetConfig(layers=CIFAR_310K),
    "cifar_460k": SimpleNetConfig(layers=CIFAR_460K),
    "cifar_5m": SimpleNetConfig(layers=CIFAR_5M),
}


def _example_input(model: SimpleNet, batch_size: int) -> tuple[Tensor]:
    cfg = model.cfg
    return (torch.rand(batch_size, cfg.n_channels, cfg.image_size, cfg.image_size),)


SPEC = PaperSpec(
    slug="simplenet",
    family="vision",
    title=(
        "Lets keep it simple, Using simple architectures to outperform deeper and more complex "
        "architectures"
    ),
    arxiv="1608.06037",
    claim=(
        "A plain 13-layer conv/BN/ReLU network with late max-pooling matches a residual network "
        "of similar size (within 1 point) with fewer parameters and lower latency than deeper "
        "residual networks."
    ),
    config=SimpleNetConfig,
    build=SimpleNet,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"image-classifier"}),
    fidelity="faithful",
    experiment="archlab.papers.vision.simplenet.experiment",
)
