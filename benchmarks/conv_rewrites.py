"""The conv model's layers rewritten with other TensorFlow ops that compute the same numbers, for timing.

Each class keeps the Keras layer's variables (a ``Conv2D``'s kernel and bias)
and replaces only how ``call`` computes; ``rewritten`` makes ``keras.layers``
hand them out while a model is built. Timed by ``benchmarks.conv_profile
--rewrites``; none is faster than oneDNN's kernels in graph mode on the
machines in RESULTS.md, so aeloops' models keep Keras's layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import tensorflow as tf

__all__ = ["BroadcastUpSampling2D", "ReshapeMaxPooling2D", "ShiftedConv2D", "VARIANTS", "rewritten"]


class ShiftedConv2D(keras.layers.Conv2D):
    """A stride-1 convolution as one matrix product to ``kh * kw * filters`` maps, then their shifted sum."""

    def convolution_op(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        kh, kw, channels_in, channels_out = kernel.shape
        if self.padding == "same":
            inputs = tf.pad(inputs, [[0, 0], [kh // 2, (kh - 1) // 2], [kw // 2, (kw - 1) // 2], [0, 0]])
        height, width = inputs.shape[1] - kh + 1, inputs.shape[2] - kw + 1
        weights = tf.reshape(tf.transpose(kernel, [2, 0, 1, 3]), [channels_in, kh * kw * channels_out])
        maps = tf.einsum("bhwc,ck->bhwk", inputs, weights)
        outputs = 0.0
        for row in range(kh):
            for column in range(kw):
                first = (row * kw + column) * channels_out
                outputs += maps[:, row : row + height, column : column + width, first : first + channels_out]
        return outputs


class ReshapeMaxPooling2D(keras.layers.MaxPooling2D):
    """2x2, stride-2 max-pooling ('same') as a reshape and a maximum over the two window axes."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        _, height, width, channels = inputs.shape
        if height % 2 or width % 2:  # 'same' pads the odd side's last window with nothing that can win.
            inputs = tf.pad(inputs, [[0, 0], [0, height % 2], [0, width % 2], [0, 0]], constant_values=-float("inf"))
            height, width = height + height % 2, width + width % 2
        windows = tf.reshape(inputs, [-1, height // 2, 2, width // 2, 2, channels])
        return tf.reduce_max(windows, axis=[2, 4])


class BroadcastUpSampling2D(keras.layers.UpSampling2D):
    """2x nearest up-sampling as a broadcast and a reshape (its gradient: a reshape and a sum)."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        _, height, width, channels = inputs.shape
        copies = tf.broadcast_to(inputs[:, :, None, :, None, :], [tf.shape(inputs)[0], height, 2, width, 2, channels])
        return tf.reshape(copies, [-1, 2 * height, 2 * width, channels])


# What conv_profile --rewrites times: each rewrite alone, then together.
VARIANTS = {
    "as built": {},
    "max-pooling as reshape and max": {"pool": True},
    "up-sampling as broadcast": {"upsample": True},
    "output conv (1 filter) as product and shifts": {"single_filter_conv": True},
    "every conv as product and shifts": {"conv": True},
    "pooling, up-sampling and output conv": {"pool": True, "upsample": True, "single_filter_conv": True},
}


@contextlib.contextmanager
def rewritten(
    pool: bool = False, upsample: bool = False, conv: bool = False, single_filter_conv: bool = False
) -> Iterator[None]:
    """While open, ``keras.layers`` hands out the chosen rewritten layers (models built then use them)."""
    originals = keras.layers.Conv2D, keras.layers.MaxPooling2D, keras.layers.UpSampling2D
    plain_conv = originals[0]

    def conv2d(filters: int, *args: object, **kwargs: object) -> keras.layers.Layer:
        rewrite = conv or (single_filter_conv and filters == 1)
        return (ShiftedConv2D if rewrite else plain_conv)(filters, *args, **kwargs)

    keras.layers.Conv2D = conv2d if conv or single_filter_conv else plain_conv
    keras.layers.MaxPooling2D = ReshapeMaxPooling2D if pool else originals[1]
    keras.layers.UpSampling2D = BroadcastUpSampling2D if upsample else originals[2]
    try:
        yield
    finally:
        keras.layers.Conv2D, keras.layers.MaxPooling2D, keras.layers.UpSampling2D = originals
