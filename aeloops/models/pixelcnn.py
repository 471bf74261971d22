"""A PixelCNN over a VQ-VAE's grid of code indices: the learned prior that lets a VQ-VAE generate.

van den Oord et al. (2017) fit an autoregressive prior to the indices a
trained VQ-VAE's encoder chooses, then generate by drawing indices one
position at a time and decoding the codebook entries they name. This one is
a small PixelCNN (van den Oord et al. 2016): a masked 7x7 convolution that
sees only the positions before each one (rows above, and to the left in its
row), then residual blocks of masked 3x3 convolutions that may also see the
position itself, then one logit per codebook entry at every position.

It is a plain Keras model of the indices (as floats, as the trainer feeds
arrays) to ``{"logits": (n, height, width, entries)}``, trained by
``aeloops.Trainer`` on ``prior_objective()`` like any model: checkpointed,
resumable, in any mode.

>>> prior = PixelCNN(grid=(7, 7), entries=64)
>>> prior(tf.zeros([2, 7, 7]))["logits"].shape
TensorShape([2, 7, 7, 64])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from aeloops.objectives.objective import LossTerm, Objective

__all__ = ["MaskedConv2D", "PixelCNN", "categorical_nll", "prior_objective"]


@keras.saving.register_keras_serializable(package="aeloops")
class MaskedConv2D(keras.layers.Layer):
    """A 'same' convolution whose kernel sees only earlier positions: rows above, and the left of its own row.

    ``kind="A"`` leaves the position itself out (the first layer, which
    must not see the index it predicts); ``"B"`` lets it in (later layers,
    whose input at a position already depends only on earlier ones).
    """

    def __init__(self, filters: int, kernel_size: int, kind: str = "B", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kind not in ("A", "B"):
            raise ValueError(f"kind must be 'A' or 'B', got {kind!r}.")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, so the kernel has a centre; got {kernel_size}.")
        self.filters, self.kernel_size, self.kind = int(filters), int(kernel_size), kind
        self.convolution = keras.layers.Conv2D(self.filters, self.kernel_size, padding="same")

    def build(self, input_shape: Sequence[int | None]) -> None:
        self.convolution.build(input_shape)
        centre = self.kernel_size // 2
        mask = np.zeros((self.kernel_size, self.kernel_size, 1, 1), np.float32)
        mask[:centre] = 1.0  # Every row above.
        mask[centre, : centre + (self.kind == "B")] = 1.0  # The left of its own row, and itself for "B".
        self.mask = mask

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        kernel = self.convolution.kernel * self.mask
        outputs = tf.nn.conv2d(inputs, kernel, strides=1, padding="SAME")
        return tf.nn.bias_add(outputs, self.convolution.bias)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size, "kind": self.kind}


@keras.saving.register_keras_serializable(package="aeloops")
class PixelCNN(keras.Model):
    """An autoregressive model of a grid of ``entries``-way indices: ``{"logits": (n, height, width, entries)}``.

    Args:
      grid: the (height, width) of the index grid (a VQ-VAE's code grid).
      entries: how many values each index takes (its codebook's entries).
      filters: channels of every hidden layer.
      blocks: residual blocks after the first, masked 7x7 layer.
    """

    def __init__(
        self, grid: Sequence[int] = (7, 7), entries: int = 64, filters: int = 64, blocks: int = 4, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.grid = tuple(int(side) for side in grid)
        self.entries, self.filters, self.blocks = int(entries), int(filters), int(blocks)
        self.first = MaskedConv2D(self.filters, 7, "A", name="masked_a")
        # Each residual block: 1x1 in, masked 3x3, 1x1 out (three lists, which Keras tracks as layers).
        self.inward = [keras.layers.Conv2D(self.filters // 2, 1, name=f"block_{i}_in") for i in range(self.blocks)]
        self.masked = [MaskedConv2D(self.filters // 2, 3, "B", name=f"block_{i}_masked") for i in range(self.blocks)]
        # No bias before the residual sum: grappler otherwise tries (and loudly fails) to fuse conv, bias, add, relu.
        self.outward = [
            keras.layers.Conv2D(self.filters, 1, use_bias=False, name=f"block_{i}_out") for i in range(self.blocks)
        ]
        self.head = keras.layers.Conv2D(self.filters, 1, name="head")
        self.logits = keras.layers.Conv2D(self.entries, 1, name="logits")
        self(tf.zeros((1, *self.grid)))  # Built now, so a checkpoint or a saved file holds every weight.

    def call(self, indices: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        hidden = self.first(tf.one_hot(tf.cast(indices, tf.int32), self.entries))
        for inward, masked, outward in zip(self.inward, self.masked, self.outward):
            hidden += outward(tf.nn.relu(masked(tf.nn.relu(inward(tf.nn.relu(hidden))))))
        return {"logits": self.logits(tf.nn.relu(self.head(tf.nn.relu(hidden))))}

    def sample(self, count: int, seed: int = 0) -> np.ndarray:
        """Returns ``count`` index grids drawn one position at a time, in reading order; the same for the same seed."""
        indices = tf.zeros((count, *self.grid), tf.float32)
        # XLA, which also keeps grappler from trying (and loudly failing) to fuse the residual adds.
        forward = tf.function(lambda grid: self(grid, training=False)["logits"], jit_compile=True)
        height, width = self.grid
        for position in range(height * width):
            row, column = divmod(position, width)
            logits = forward(indices)[:, row, column]
            drawn = tf.random.stateless_categorical(logits, 1, seed=[seed, position], dtype=tf.int32)[:, 0]
            update = tf.one_hot(row * width + column, height * width) * 1.0
            indices += tf.reshape(update, (1, height, width)) * tf.cast(drawn, tf.float32)[:, None, None]
        return indices.numpy().astype(np.int64)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "grid": list(self.grid),
            "entries": self.entries,
            "filters": self.filters,
            "blocks": self.blocks,
        }


def categorical_nll(target: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Returns each position's negative log-probability (nats) of the index ``target`` holds there."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(target, tf.int32), logits=logits)


def prior_objective() -> Objective:
    """Returns the prior's objective: the negative log-likelihood of a grid of indices, in nats, summed over it."""
    return Objective([LossTerm("nll", output="logits", loss=categorical_nll, reduction="sum")])
