"""Datasets: MNIST and Fashion-MNIST from IDX or npz files, the bundled sample, user arrays.

Everything here returns NumPy arrays; ``to_model_inputs`` turns images into
float32 in [0, 1] shaped as a model declares. The ``Trainer`` takes those
arrays (kept resident on the device) or any ``tf.data.Dataset``.

>>> splits = load_sample()
>>> x_train = to_model_inputs(splits.train_images, (784,))
>>> x_train.dtype, float(x_train.max()) <= 1.0
(dtype('float32'), True)
"""

from __future__ import annotations

import gzip
import os
import pathlib
import zipfile
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "DATA_DIR_ENV",
    "DatasetUnavailableError",
    "Splits",
    "binarize",
    "load_array_file",
    "load_mnist",
    "load_sample",
    "read_idx",
    "to_model_inputs",
]

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


def load_array_file(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Loads user images from ``.npy``, or from ``.npz`` (``key``, else ``x_train``, else its only array)."""
    path = pathlib.Path(path)
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"{path}: expected a .npy or .npz file.")
    if not path.is_file():
        raise ValueError(f"Data file {path} does not exist.")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"Cannot read {path}: it is truncated or not a NumPy file ({error}).") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        names = loaded.files
        chosen = key or ("x_train" if "x_train" in names else names[0] if len(names) == 1 else None)
        if chosen not in names:
            raise ValueError(f"{path} holds arrays {names}; name the one to use (expected 'x_train').")
        try:
            return loaded[chosen]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"Cannot read array {chosen!r} of {path}: {error}.") from None


def to_model_inputs(images: np.ndarray, example_shape: Sequence[int], name: str = "images") -> np.ndarray:
    """Returns ``images`` as float32 in [0, 1] with shape ``(n, *example_shape)``.

    uint8 images are divided by 255; float images must already lie in [0, 1].

    Raises:
      ValueError: for an empty array, a size that does not reshape, a
        non-numeric dtype, non-finite values or values outside [0, 1].
    """
    images = np.asarray(images)
    example_shape = tuple(example_shape)
    if images.ndim == 0 or len(images) == 0:
        raise ValueError(f"{name} is empty; it needs at least one example.")
    example_size = int(np.prod(example_shape))
    if int(np.prod(images.shape[1:])) != example_size:
        raise ValueError(
            f"{name} have shape {images.shape[1:]} per example, which does not reshape to the "
            f"model's input shape {example_shape}."
        )
    if images.dtype == np.uint8:
        return (images.reshape((len(images), *example_shape)) / np.float32(255.0)).astype(np.float32, copy=False)
    if not (np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)):
        raise ValueError(f"{name} have dtype {images.dtype}; expected uint8 or a float type.")
    images = images.astype(np.float32).reshape((len(images), *example_shape))
    if not np.all(np.isfinite(images)):
        raise ValueError(f"{name} contain NaN or Inf values; clean the data before training.")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{name} range over [{low:g}, {high:g}]; scale them to [0, 1] (divide uint8 pixels by 255).")
    return images


def binarize(images: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """Returns ``images`` (in [0, 1]) as float32 zeros and ones, by ``"threshold"`` or ``"fixed"``.

    ``"threshold"`` sets the pixels above 0.5; ``"fixed"`` draws each pixel
    once, 1 with its intensity as the probability, from ``seed``: the same
    seed gives the same images. (``"dynamic"``, a new draw at every step, is
    the trainer's: ``Trainer(dynamic_binarization=True)``.)

    >>> binarize(np.array([[0.2, 0.7]], np.float32), "threshold")
    array([[0., 1.]], dtype=float32)
    """
    images = np.asarray(images, np.float32)
    if method == "threshold":
        return (images > 0.5).astype(np.float32)
    if method == "fixed":
        return (np.random.default_rng(seed).random(images.shape, dtype=np.float32) < images).astype(np.float32)
    raise ValueError(f"binarize method must be 'threshold' or 'fixed', got {method!r}.")
