"""Image grids of inputs and reconstructions, written as PNG by TensorFlow itself.

>>> grid = image_grid([inputs, reconstructions])   # doctest: +SKIP
>>> write_png("reconstructions.png", grid)         # doctest: +SKIP
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

__all__ = ["as_images", "image_grid", "labeled_grid", "write_png"]


def as_images(batch: np.ndarray) -> np.ndarray:
    """Returns a batch as ``(n, height, width)`` float images clipped to [0, 1].

    Flat 784-vectors become 28x28; a trailing channel axis of 1 is dropped;
    other flat vectors become one-row images.
    """
    batch = np.asarray(batch, np.float32)
    count = len(batch)
    if batch.ndim == 4 and batch.shape[-1] == 1:
        batch = batch[..., 0]
    elif batch.ndim == 2:
        side = int(round(np.sqrt(batch.shape[1])))
        batch = batch.reshape(count, side, side) if side * side == batch.shape[1] else batch[:, None, :]
    elif batch.ndim != 3:
        batch = batch.reshape(count, batch.shape[1], -1)
    return np.clip(batch, 0.0, 1.0)


def image_grid(rows: Sequence[np.ndarray], padding: int = 2) -> np.ndarray:
    """Returns a uint8 ``(height, width, 1)`` grid: one row per batch, one column per example."""
    rows = [as_images(row) for row in rows]
    count, height, width = rows[0].shape
    if any(row.shape != rows[0].shape for row in rows):
        raise ValueError(f"Every row needs shape {rows[0].shape}; got {[row.shape for row in rows]}.")
    grid = np.ones((len(rows) * (height + padding) + padding, count * (width + padding) + padding), np.float32)
    for row_index, row in enumerate(rows):
        top = padding + row_index * (height + padding)
        for column, image in enumerate(row):
            left = padding + column * (width + padding)
            grid[top : top + height, left : left + width] = image
    return (grid * 255.0 + 0.5).astype(np.uint8)[..., None]


def labeled_grid(rows: Sequence[np.ndarray], labels: Sequence[str], scale: int = 3) -> np.ndarray:
    """Returns ``image_grid(rows)`` enlarged ``scale`` times, each row named in a margin on its left.

    TensorBoard shows images at their own size: a 28-pixel digit needs
    enlarging to be read, and a row of reconstructions its name.
    """
    if len(labels) != len(rows):
        raise ValueError(f"Give one label per row: {len(rows)} rows, {len(labels)} labels.")
    from PIL import Image, ImageDraw, ImageFont  # Deferred: only pictures with words need it.

    padding = 2
    grid = image_grid(rows, padding)[..., 0]
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    font = ImageFont.load_default(size=4 * scale + 2)
    margin = 8 + max(int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(label, font=font)) for label in labels)
    canvas = Image.new("L", (margin + grid.shape[1], grid.shape[0]), 255)
    canvas.paste(Image.fromarray(grid), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    row_height = (grid.shape[0] - padding * scale) // len(rows)
    for index, label in enumerate(labels):
        middle = padding * scale + index * row_height + row_height // 2
        draw.text((4, middle), label, fill=0, font=font, anchor="lm")
    return np.asarray(canvas, np.uint8)[..., None]


def write_png(path: str | os.PathLike, grid: np.ndarray) -> None:
    """Writes a uint8 ``(height, width, channels)`` array as a PNG file, atomically."""
    path = pathlib.Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(tf.io.encode_png(grid).numpy())
    os.replace(partial, path)
