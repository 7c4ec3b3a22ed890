"""Running trained models over whole held-out tensors: in eval mode, without gradients, in
batches, on the model's device, with the results back on the CPU (the caller's mode restored).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without any)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``with evaluating(model):`` eval mode and no gradients inside; the mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def predict(
    model: nn.Module,
    inputs: Tensor,
    batch_size: int = 64,
    fn: Callable[[nn.Module, Tensor], Tensor] | None = None,
) -> Tensor:
    """``fn(model, batch)`` (default ``model(batch)``) over ``inputs`` (n, ...) in batches.

    Inputs move to the model's device batch by batch; outputs come back to the CPU and are
    concatenated along the first dimension.
    """
    fn = fn or (lambda m, x: m(x))
    device = model_device(model)
    with evaluating(model):
        outs = [
            fn(model, inputs[i : i + batch_size].to(device)).cpu()
            for i in range(0, len(inputs), batch_size)
        ]
    return torch.cat(outs)


def evaluate_accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 256):
    """Accuracy of a classifier ``(B, ...) -> (B, K)`` over a whole tensor dataset."""
    pred = predict(model, images, batch_size, fn=lambda m, x: m(x).argmax(-1))
    return (pred == labels.cpu()).float().mean().item()


def predict_labels(model: nn.Module, images: Tensor, batch_size: int = 32) -> Tensor:
    """Arg-max label maps of a segmentation model: ``(N, C, *S)`` -> ``(N, *S)`` int64 labels
    from ``(B, K, *S)`` logits."""
    return predict(model, images, batch_size, fn=lambda m, x: m(x).argmax(1))
