"""Shared tasks: the losses, metric functions and recipe defaults of tasks several papers share
(classify, segment, restore, count, language-model), so that a paper's experiment is its models
plus overrides; and the image-classification ``Task`` that ``archlab train`` uses for image
classifiers.

``CLASSIFY.recipe(steps=600, batch_size=64, lr=2e-3)`` is a ``Recipe`` with the task's defaults
(optimiser, schedule, weight decay, clipping) and the given fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.data.augment import Augment
from archlab.data.images import (
    TEXTURED_SHAPES_CLASSES,
    image_batches,
    load_mnist_subset,
    split_per_class,
    textured_shapes,
)
from archlab.errors import ArchlabError
from archlab.lab.inference import evaluate_accuracy
from archlab.lab.losses import (
    ce_dice_loss,
    charbonnier,
    classification_loss,
    density_mse,
)
from archlab.lab.recipe import Recipe


@dataclass(frozen=True)
class SharedTask:
    """A task several papers share.

    Attributes:
        name: ``classify`` | ``segment`` | ``restore`` | ``count`` | ``language-model``.
        loss: the engine loss ``(model, batch) -> (loss, metrics)``.
        defaults: ``Recipe`` fields every paper of the task starts from.
    """

    name: str
    loss: Callable[[nn.Module, Any], tuple[Tensor, dict]]
    defaults: dict[str, Any] = field(default_factory=dict)

    def recipe(self, **fields: Any) -> Recipe:
        """A ``Recipe`` of this task's defaults with ``fields`` (steps, batch_size, lr, ...)."""
        return Recipe(**{**self.defaults, **fields})


def segmentation_loss(model: nn.Module, batch: tuple[Tensor, Tensor]):
    """Cross-entropy + soft Dice of logits ``(B, K, *S)`` against labels ``(B, *S)``."""
    x, y = batch
    return ce_dice_loss(model(x), y), {}


def restoration_loss(model: nn.Module, batch: tuple[Tensor, Tensor]):
    """Charbonnier loss of ``model(degraded)`` against the clean image."""
    degraded, clean = batch
    return charbonnier(model(degraded), clean), {}


def counting_loss(model: nn.Module, batch: tuple[Tensor, Tensor]):
    """Density-map MSE (summed per image) of ``model(image)`` against the target density."""
    x, density = batch
    return density_mse(model(x), density), {}


def language_model_loss(model: nn.Module, batch: Tensor):
    """Next-token cross-entropy of ``model(tokens[:, :-1])`` (B, T, V) against ``tokens[:, 1:]``."""
    logits = model(batch[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten()), {}


_ADAMW_COSINE = dict(optimizer="adamw", schedule="cosine", grad_clip=1.0)
CLASSIFY = SharedTask("classify", classification_loss, dict(_ADAMW_COSINE, weight_decay=0.05))
SEGMENT = SharedTask("segment", segmentation_loss, dict(_ADAMW_COSINE, weight_decay=1e-4))
RESTORE = SharedTask("restore", restoration_loss, dict(_ADAMW_COSINE))
COUNT = SharedTask("count", counting_loss, dict(_ADAMW_COSINE, weight_decay=1e-4))
LANGUAGE_MODEL = SharedTask(
    "language-model", language_model_loss, dict(_ADAMW_COSINE, weight_decay=0.01)
)


def image_classification_task(
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
):
    """A ``Task`` for ``archlab train``: cross-entropy on a batch stream, test accuracy.

    Args:
        train: images (n, C, H, W) and labels (n,).
        test: held-out images and labels, evaluated with ``archlab.lab.evaluate_accuracy``.
        augment: optional ``(images, generator) -> images`` for the training stream.
    """
    from archlab.registry import Task

    def eval_fn(model) -> dict[str, float]:
        return {"test_acc": evaluate_accuracy(model, *test)}

    return Task(data=image_batches(*train, augment), loss_fn=classification_loss, eval_fn=eval_fn)


def textured_shapes_task(
    image_size: int, n_channels: int, n_classes: int, seed: int, n_train: int = 5000
):
    """``image_classification_task`` on textured shapes (random crops and flips), for any
    RGB 10-class image classifier; 1000 test images drawn from another seed.

    Raises:
        ArchlabError: if the model is not RGB (``n_channels=3``) with ``n_classes=10``.
    """
    if n_channels != 3 or n_classes != len(TEXTURED_SHAPES_CLASSES):
        raise ArchlabError(
            "the textured-shapes task needs n_channels=3 and n_classes=10; got "
            f"n_channels={n_channels}, n_classes={n_classes}"
        )
    train = textured_shapes(n_train, seed=seed, size=image_size)
    test = textured_shapes(1000, seed=1_000_003 + seed, size=image_size)
    return image_classification_task(train, test, Augment(crop_padding=image_size // 8, flip=True))


def default_image_task(image_size: int, n_channels: int, n_classes: int, seed: int):
    """``archlab train`` data for an image classifier: textured shapes for RGB models, the MNIST
    subset (100 test images per class, random-crop shifts) for grey ones."""

    if n_channels == 3:
        return textured_shapes_task(image_size, n_channels, n_classes, seed)
    if n_channels != 1 or n_classes != 10:
        raise ArchlabError(
            "archlab train needs n_channels=3 (textured shapes) or 1 (MNIST) and n_classes=10; "
            f"got n_channels={n_channels}, n_classes={n_classes}"
        )
    images, labels = load_mnist_subset(size=image_size)
    test, train = split_per_class(labels, 100, seed=12345)
    shift = Augment(crop_padding=max(1, image_size // 16))
    return image_classification_task(
        (images[train], labels[train]), (images[test], labels[test]), shift
    )
