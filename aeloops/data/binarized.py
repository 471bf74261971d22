"""Larochelle and Murray's binarized MNIST: the fixed binarization likelihood papers report on.

Three text files, ``binarized_mnist_{train,valid,test}.amat`` (gzipped or
not), of 50,000 / 10,000 / 10,000 lines of 784 zeros and ones.

>>> splits = load_binarized_mnist("../shared/data/binarized_mnist")  # doctest: +SKIP
>>> splits.train_images.shape, splits.validation_images.shape, splits.test_images.shape  # doctest: +SKIP
((50000, 28, 28), (10000, 28, 28), (10000, 28, 28))
"""

from __future__ import annotations

import gzip
import itertools
import os
import pathlib
import zlib
from typing import NamedTuple

import numpy as np

__all__ = ["AMAT_FILES", "BinarizedSplits", "load_binarized_mnist"]

# The files as Larochelle and Murray's site and TensorFlow Datasets' binarized_mnist name them.
AMAT_FILES = {"train": "binarized_mnist_train.amat", "validation": "binarized_mnist_valid.amat",
              "test": "binarized_mnist_test.amat"}  # fmt: skip


class BinarizedSplits(NamedTuple):
    """The three splits as uint8 (n, 28, 28) images of 0 and 255 (so that dividing by 255 gives 0 and 1)."""

    train_images: np.ndarray
    validation_images: np.ndarray
    test_images: np.ndarray


def _find(directory: pathlib.Path, name: str) -> pathlib.Path:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise ValueError(
        f"{directory} holds no {name} (or {name}.gz); binarized MNIST needs all of {', '.join(AMAT_FILES.values())}."
    )


def _read_amat(path: pathlib.Path, examples: int | None) -> np.ndarray:
    try:
        with gzip.open(path, "rt") if path.suffix == ".gz" else path.open(encoding="ascii") as stream:
            lines = list(itertools.islice(stream, examples))
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as error:
        raise ValueError(f"Cannot read {path}: {error}.") from None
    # One C parse of the whole text: 50,000 lines of 784 words are too many for Python strings.
    try:
        values = np.fromstring("".join(lines), dtype=np.uint8, sep=" ")
    except ValueError:  # A word that is not a number.
        values = np.zeros(0, np.uint8)
    if not lines or values.size != 784 * len(lines) or values.max() > 1:
        raise ValueError(f"{path}: expected lines of 784 zeros and ones, as Larochelle and Murray's files hold.")
    return (values * np.uint8(255)).reshape(len(lines), 28, 28)


def load_binarized_mnist(directory: str | os.PathLike, examples: int | None = None) -> BinarizedSplits:
    """Reads the three splits from ``directory``; ``examples`` keeps only the first of each (for quick checks).

    Raises:
      ValueError: naming a missing or malformed file.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise ValueError(f"Data directory {directory} does not exist.")
    return BinarizedSplits(*(_read_amat(_find(directory, name), examples) for name in AMAT_FILES.values()))
