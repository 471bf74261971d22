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


def labeled_grid(
    rows: Sequence[np.ndarray], labels: Sequence[str], scale: int | None = None, shape: Sequence[int] | None = None
) -> np.ndarray:
    """Returns ``image_grid(rows)`` enlarged ``scale`` times, each row named in a margin on its left.

    TensorBoard shows images at their own size: a 28-pixel digit needs
    enlarging to be read, and a row of reconstructions its name. The
    default scale brings each image to about 84 pixels (3 for MNIST).
    """
    if len(labels) != len(rows):
        raise ValueError(f"Give one label per row: {len(rows)} rows, {len(labels)} labels.")
    from PIL import Image, ImageDraw, ImageFont  # Deferred: only pictures with words need it.

    padding = 2
    grid = image_grid(rows, padding, shape)
    if scale is None:
        height = (grid.shape[0] - padding) // len(rows) - padding
        scale = max(1, round(84 / height))
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    colour = grid.shape[-1] == 3
    mode, white, black = ("RGB", (255, 255, 255), (0, 0, 0)) if colour else ("L", 255, 0)
    font = ImageFont.load_default(size=14)
    margin = 8 + max(int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(label, font=font)) for label in labels)
    canvas = Image.new(mode, (margin + grid.shape[1], grid.shape[0]), white)
    canvas.paste(Image.fromarray(grid if colour else grid[..., 0]), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    row_height = (grid.shape[0] - padding * scale) // len(rows)
    for index, label in enumerate(labels):
        middle = padding * scale + index * row_height + row_height // 2
        draw.text((4, middle), label, fill=black, font=font, anchor="lm")
    canvas = np.asarray(canvas, np.uint8)
    return canvas if colour else canvas[..., None]


def write_png(path: str | os.PathLike, grid: np.ndarray) -> None:
    """Writes a uint8 ``(height, width, channels)`` array as a PNG file, atomically."""
    with replacing(path) as partial:
        partial.write_bytes(tf.io.encode_png(grid).numpy())
