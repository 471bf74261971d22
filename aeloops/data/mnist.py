"""MNIST and Fashion-MNIST from IDX or npz files, and the bundled sample, as uint8 NumPy arrays.

>>> splits = load_sample()
>>> splits.train_images.shape, splits.train_images.dtype
((5000, 28, 28), dtype('uint8'))
"""

from __future__ import annotations

import gzip
import os
import pathlib
import zipfile
from typing import NamedTuple

import numpy as np

__all__ = ["DATA_DIR_ENV", "SAMPLE_PATH", "DatasetUnavailableError", "Splits", "load_mnist", "load_sample", "read_idx"]

DATA_DIR_ENV = "AELOOPS_DATA_DIR"
SAMPLE_PATH = pathlib.Path(__file__).parent / "sample" / "mnist_sample.npz"
VARIANTS = ("mnist", "fashion_mnist")

_IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_NPZ_NAMES = {"mnist": "mnist.npz", "fashion_mnist": "fashion_mnist.npz"}
_NPZ_KEYS = {
    "train_images": "x_train",
    "train_labels": "y_train",
    "test_images": "x_test",
    "test_labels": "y_test",
}
# IDX type codes (third byte of the magic number) and the dtypes they denote.
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetUnavailableError(ValueError):
    """Raised when a dataset is neither on disk nor downloadable."""


class Splits(NamedTuple):
    """A dataset's train and test images (uint8) and labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (gzipped when its name ends in ``.gz``) into an array."""
    path = pathlib.Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as stream:
            content = stream.read()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise ValueError(f"Cannot read IDX file {path}: {error}.") from None
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file: its magic number is {content[:4].hex()}.")
    dtype = np.dtype(_IDX_DTYPES[content[2]])
    rank = content[3]
    header_size = 4 + 4 * rank
    if len(content) < header_size:
        raise ValueError(f"IDX file {path} is truncated inside its header.")
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    expected = header_size + int(np.prod(shape)) * dtype.itemsize
    if len(content) != expected:
        raise ValueError(
            f"IDX file {path} holds {len(content)} bytes but its header {shape} "
            f"needs {expected}; the file is truncated or corrupt."
        )
    return np.frombuffer(content, dtype, offset=header_size).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _load_directory(directory: pathlib.Path, variant: str) -> Splits | None:
    paths = {key: _find_idx(directory, stem) for key, stem in _IDX_NAMES.items()}
    if all(paths.values()):
        return _checked_splits(Splits(**{key: read_idx(path) for key, path in paths.items()}), directory)
    npz_path = directory / _NPZ_NAMES[variant]
    if npz_path.is_file():
        return _checked_splits(_load_npz_splits(npz_path), npz_path)
    return None


def _load_npz_splits(path: pathlib.Path) -> Splits:
    try:
        with np.load(path) as archive:
            missing = sorted(set(_NPZ_KEYS.values()) - set(archive.files))
            if missing:
                raise ValueError(f"{path} lacks the arrays {missing}; it holds {sorted(archive.files)}.")
            return Splits(**{key: archive[name] for key, name in _NPZ_KEYS.items()})
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"Cannot read {path}: {error}.") from None


def _checked_splits(splits: Splits, source: object) -> Splits:
    for images, labels, split in (
        (splits.train_images, splits.train_labels, "train"),
        (splits.test_images, splits.test_labels, "test"),
    ):
        if images.ndim != 3 or len(images) != len(labels):
            raise ValueError(
                f"{source}: {split} images have shape {images.shape} and labels "
                f"{labels.shape}; expected (n, height, width) images with n labels."
            )
    return splits


def load_mnist(data_dir: str | os.PathLike | None = None, variant: str = "mnist", download: bool = True) -> Splits:
    """Loads MNIST or Fashion-MNIST as uint8 images and labels.

    Looks in ``data_dir`` (IDX files, gzipped or not, or ``mnist.npz``), else in
    ``$AELOOPS_DATA_DIR``, then in the Keras cache ``~/.keras/datasets``, and
    finally asks Keras to download it when ``download`` is true.

    Raises:
      DatasetUnavailableError: when none of those has it.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown dataset variant {variant!r}; choose one of {VARIANTS}.")
    if data_dir is not None:
        directory = pathlib.Path(data_dir)
        if not directory.is_dir():
            raise ValueError(f"Data directory {directory} does not exist.")
        splits = _load_directory(directory, variant)
        if splits is None:
            raise DatasetUnavailableError(
                f"{directory} holds neither the four {variant} IDX files "
                f"({', '.join(_IDX_NAMES.values())}, optionally .gz) nor {_NPZ_NAMES[variant]}."
            )
        return splits
    candidates = []
    if os.environ.get(DATA_DIR_ENV):
        candidates.append(pathlib.Path(os.environ[DATA_DIR_ENV]))
    keras_cache = pathlib.Path(os.environ.get("KERAS_HOME", pathlib.Path.home() / ".keras")) / "datasets"
    candidates += [keras_cache, keras_cache / variant.replace("_", "-")]
    for directory in candidates:
        if directory.is_dir():
            splits = _load_directory(directory, variant)
            if splits is not None:
                return splits
    if download:
        return _download(variant)
    raise DatasetUnavailableError(
        f"{variant} is not in {', '.join(map(str, candidates))}; pass --data-dir or set {DATA_DIR_ENV}."
    )


def _download(variant: str) -> Splits:
    import keras  # Deferred: only a download needs Keras here.

    loader = keras.datasets.mnist if variant == "mnist" else keras.datasets.fashion_mnist
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as error:  # Keras raises several kinds when offline.
        raise DatasetUnavailableError(
            f"{variant} is not on this machine and could not be downloaded ({type(error).__name__}); "
            f"pass --data-dir with the IDX files or set {DATA_DIR_ENV}."
        ) from None
    return Splits(x_train, y_train, x_test, y_test)


def load_sample() -> Splits:
    """Loads the MNIST sample bundled with aeloops (works with no network).

    It holds the first 5,000 training and first 1,000 test images of MNIST
    (LeCun, Cortes and Burges; CC BY-SA 3.0).
    """
    return _checked_splits(_load_npz_splits(SAMPLE_PATH), SAMPLE_PATH)
