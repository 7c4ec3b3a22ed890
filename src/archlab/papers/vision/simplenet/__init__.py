"""SimpleNet (HasanPour et al., 2016): see ``model.py`` and README.md."""

from archlab.papers.vision.simplenet.model import (
    CIFAR_5M,
    CIFAR_310K,
    CIFAR_460K,
    SPEC,
    VARIANTS,
    SimpleNet,
    SimpleNetConfig,
    parse_layer,
)

__all__ = [
    "CIFAR_5M",
    "CIFAR_310K",
    "CIFAR_460K",
    "SPEC",
    "VARIANTS",
    "SimpleNet",
    "SimpleNetConfig",
    "parse_layer",
]
