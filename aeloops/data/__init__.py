"""Data: MNIST and its variants, the bundled sample, user arrays, image folders and TFRecord shards.

Images come out as float32 in [0, 1] in their own shape, (height, width,
channels); ``to_model_inputs`` shapes them as a model declares. Each name is
imported when first used, so that reading a path's kind costs nothing.

>>> from aeloops.data import load_sample, to_model_inputs
>>> splits = load_sample()
>>> x_train = to_model_inputs(splits.train_images, (784,))
>>> x_train.dtype, float(x_train.max()) <= 1.0
(dtype('float32'), True)
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DATA_DIR_ENV",
    "SAMPLE_PATH",
    "BinarizedSplits",
    "DatasetUnavailableError",
    "ImageData",
    "Splits",
    "binarize",
    "image_dataset",
    "image_shape",
    "load_array_file",
    "load_binarized_mnist",
    "load_images",
    "load_mnist",
    "load_sample",
    "read_idx",
    "to_model_inputs",
]

_MODULES = {
    "aeloops.data.arrays": ("binarize", "image_shape", "load_array_file", "to_model_inputs"),
    "aeloops.data.mnist": (
        "DATA_DIR_ENV", "SAMPLE_PATH", "DatasetUnavailableError", "Splits", "load_mnist", "load_sample", "read_idx",
    ),
    "aeloops.data.binarized": ("BinarizedSplits", "load_binarized_mnist"),
    "aeloops.data.images": ("ImageData", "image_dataset", "load_images"),
}  # fmt: skip
_HOME = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'aeloops.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
