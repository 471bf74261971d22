"""Image grids of inputs and reconstructions, written as PNG by TensorFlow itself.

>>> grid = image_grid([inputs, reconstructions])   # doctest: +SKIP
>>> write_png("reconstructions.png", grid)         # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from aeloops.files import replacing

__all__ = ["as_images", "image_grid", "labeled_grid", "write_png"]


def as_images(batch: np.ndarray, shape: Sequence[int] | None = None) -> np.ndarray:
    """Returns a batch as ``(n, height, width, channels)`` float images clipped to [0, 1].

    ``shape``, the images' (height, width, channels), reshapes model inputs
    of any shape (a dense model's flat vectors) back into pictures. Without
    it: a square number of values is a square grey image (MNIST's 784),
    other flat vectors one-row images, and (n, h, w) grey images.
    """
    batch = np.asarray(batch, np.float32)
    count = len(batch)
    if shape is not None and int(np.prod(shape)) == int(np.prod(batch.shape[1:])):
        batch = batch.reshape(count, *shape)
    elif batch.ndim == 2:
        side = int(round(np.sqrt(batch.shape[1])))
        batch = batch.reshape(count, side, side) if side * side == batch.shape[1] else batch[:, None, :]
    elif batch.ndim > 4 or (batch.ndim == 4 and batch.shape[-1] not in (1, 3)):
        batch = batch.reshape(count, batch.shape[1], -1)
    if batch.ndim == 3:
        batch = batch[..., None]
    return np.clip(batch, 0.0, 1.0)


def image_grid(rows: Sequence[np.ndarray], padding: int = 2, shape: Sequence[int] | None = None) -> np.ndarray:
    """Returns a uint8 ``(height, width, channels)`` grid: one row per batch, one column per example.

    ``shape`` is the images' own (see ``as_images``); grey images give one channel, colour three.
    """
    rows = [as_images(row, shape) for row in rows]
    count, height, width, channels = rows[0].shape
    if any(row.shape != rows[0].shape for row in rows):
        raise ValueError(f"Every row needs shape {rows[0].shape}; got {[row.shape for row in rows]}.")
    grid = np.ones(
        (len(rows) * (height + padding) + padding, count * (width + padding) + padding, channels), np.float32
    )
    for row_index, row in enumerate(rows):
        top = padding + row_index * (height + padding)
        for column, image in enumerate(row):
            left = padding + column * (width + padding)
            grid[top : top + height, left : left + width] = image
    return (grid * 255.0 + 0.5).astype(np.uint8)


# TensorBoard fits a picture to its card, about 400 pixels wide by default: a font a thirtieth of the
# picture's width is still about 13 pixels there (names' ink 9 to 11), however many examples it holds.
LABEL_FRACTION = 1 / 30


def labeled_grid(
    rows: Sequence[np.ndarray], labels: Sequence[str], scale: int | None = None, shape: Sequence[int] | None = None
) -> np.ndarray:
    """Returns ``image_grid(rows)`` enlarged ``scale`` times, each row under its name ("" for no name).

    The default scale brings each image to about 84 pixels (3 for MNIST);
    names are written above their rows, a thirtieth of the picture's
    width tall, so they stay legible when TensorBoard shrinks the picture
    to its card.
    """
    if len(labels) != len(rows):
        raise ValueError(f"Give one label per row: {len(rows)} rows, {len(labels)} labels.")
    from PIL import Image, ImageDraw, ImageFont  # Deferred: only pictures with words need it.

    padding = 2
    strips = [image_grid([row], padding, shape) for row in rows]
    if scale is None:
        scale = max(1, round(84 / (strips[0].shape[0] - 2 * padding)))
    strips = [np.repeat(np.repeat(strip, scale, axis=0), scale, axis=1) for strip in strips]
    width, channels = strips[0].shape[1], strips[0].shape[2]
    font = ImageFont.load_default(size=max(12, round(width * LABEL_FRACTION)))
    band = round(font.size * 1.5)
    parts = []
    for strip, label in zip(strips, labels):
        if label:
            words = Image.new("L", (width, band), 255)
            ImageDraw.Draw(words).text((padding * scale, band // 2), label, fill=0, font=font, anchor="lm")
            parts.append(np.repeat(np.asarray(words, np.uint8)[..., None], channels, axis=-1))
        parts.append(strip[: -padding * scale])  # Rows share the padding between them.
    parts.append(strips[-1][-padding * scale :])
    return np.concatenate(parts)


def write_png(path: str | os.PathLike, grid: np.ndarray) -> None:
    """Writes a uint8 ``(height, width, channels)`` array as a PNG file, atomically."""
    with replacing(path) as partial:
        partial.write_bytes(tf.io.encode_png(grid).numpy())
