"""SNNK (arXiv 2310.13225): feed-forward layers as random-feature kernels, bundling, adapters."""

from archlab.papers.fields.snnk.model import (
    ACTIVATIONS,
    SPEC,
    BottleneckAdapter,
    BundledSNNK,
    FeatureMap,
    SNNKAdapter,
    SNNKConfig,
    SNNKError,
    SNNKLayer,
    SNNKStack,
    adapter_parameters,
    arccos_kernel,
    closed_form_weights,
    feature_width,
    gaussian_projection,
    get_activation,
)

__all__ = [
    "ACTIVATIONS",
    "SPEC",
    "BottleneckAdapter",
    "BundledSNNK",
    "FeatureMap",
    "SNNKAdapter",
    "SNNKConfig",
    "SNNKError",
    "SNNKLayer",
    "SNNKStack",
    "adapter_parameters",
    "arccos_kernel",
    "closed_form_weights",
    "feature_width",
    "gaussian_projection",
    "get_activation",
]
