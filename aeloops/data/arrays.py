"""User arrays: ``.npy`` / ``.npz`` files, images as model inputs, binarization.

``to_model_inputs`` turns images into float32 in [0, 1] shaped as a model
declares; ``image_shape`` says what shape a batch of images has per example,
as (height, width, channels).

>>> images = np.zeros((5, 28, 28), np.uint8)
>>> image_shape(images)
(28, 28, 1)
>>> to_model_inputs(images, (784,)).shape
(5, 784)
"""

from __future__ import annotations

import math
import os
import pathlib
import zipfile
from collections.abc import Sequence

import numpy as np

__all__ = ["binarize", "image_shape", "load_array_file", "npy_header", "to_model_inputs"]


def load_array_file(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Loads user images from ``.npy``, or from ``.npz`` (``key``, else ``x_train``, else its only array)."""
    path = pathlib.Path(path)
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"{path}: expected a .npy or .npz file.")
    if not path.is_file():
        raise ValueError(f"Data file {path} does not exist.")
    if path.suffix == ".npy":  # A header may declare more than the file holds: found out before allocating it.
        try:
            shape, dtype, offset = npy_header(path)
        except ValueError:  # Not a plain array of examples: np.load below says what it is.
            shape, dtype, offset = (), np.dtype(np.uint8), 0
        declared, held = math.prod(shape) * dtype.itemsize, path.stat().st_size - offset
        if shape and declared > held:
            raise ValueError(
                f"Cannot read {path}: its header declares {dtype} images of shape {shape} ({declared:,} bytes), but "
                f"the file holds {held:,} bytes after it; it is truncated or damaged."
            )
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"Cannot read {path}: it is truncated or not a NumPy file ({error}).") from None
    except MemoryError as error:
        raise ValueError(f"Cannot read {path}: its arrays need more memory than this machine has ({error}).") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        names = loaded.files
        chosen = key or ("x_train" if "x_train" in names else names[0] if len(names) == 1 else None)
        if chosen not in names:
            raise ValueError(f"{path} holds arrays {names}; name the one to use (expected 'x_train').")
        try:
            return loaded[chosen]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError) as error:
            raise ValueError(f"Cannot read array {chosen!r} of {path}: {error}.") from None


def image_shape(images: np.ndarray) -> tuple[int, int, int]:
    """Returns the (height, width, channels) of one image of ``images``, an array of examples.

    ``(n, h, w)`` is grey; ``(n, h, w, c)`` has ``c`` channels; a flat
    ``(n, d)`` is a square grey image when ``d`` is a square (MNIST's 784),
    else one row of ``d`` pixels.
    """
    shape = tuple(int(dim) for dim in np.shape(images)[1:])
    if len(shape) == 3:
        return shape
    if len(shape) == 2:
        return (*shape, 1)
    if len(shape) == 1:
        side = int(round(shape[0] ** 0.5))
        return (side, side, 1) if side * side == shape[0] else (1, shape[0], 1)
    raise ValueError(
        f"Arrays of images must have shape (n, d), (n, height, width) or (n, height, width, channels); "
        f"got {np.shape(images)}."
    )


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


def npy_header(path: str | os.PathLike) -> tuple[tuple[int, ...], np.dtype, int]:
    """Returns a ``.npy`` file's shape, dtype and data offset, from its header alone; refuses what rows cannot be."""
    try:
        with open(path, "rb") as stream:
            version = np.lib.format.read_magic(stream)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = read_header(stream)
            offset = stream.tell()
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read {os.fspath(path)} as a .npy file: {error}.") from None
    if fortran_order or dtype.hasobject or not shape:
        raise ValueError(f"{os.fspath(path)} must hold a C-ordered numeric array of examples, got {dtype} {shape}.")
    return tuple(shape), dtype, offset
