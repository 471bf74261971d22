"""A decoder likelihood for continuous images: a Gaussian with one learned scale, on uniformly dequantized pixels.

A Bernoulli likelihood is a proper density only for binary pixels. For 8-bit
images (grey or colour) the papers that report bits per dimension model
the pixels' bins: each value k in 0..255 becomes ``y = (k + u) / 256`` with
u ~ U(0, 1), and a density p(y) on [0, 1) bounds the bins' probability from
below (Theis et al. 2016):

    -log P(k) <= E_u[-log p(y)] + D log 256         (D pixel values)

Here p(y|z) is N(y; mean, sigma^2) per pixel value with the decoder's
``"reconstruction"`` as the mean and one learned ``log_scale`` (the sigma-VAE
of Rybkin et al. 2021). ``DequantizedGaussian`` returns each example's
-log p(y|z) in nats; the discrete likelihood adds D log 256, and bits per
dimension divide by D log 2.

>>> layer = DequantizedGaussian()
>>> nll = layer(tf.fill([2, 4], 0.5), tf.fill([2, 4], 0.5), training=False)
>>> [round(float(value), 4) for value in nll]   # 4 x (log 0.1 + log(2 pi) / 2) and a tiny squared error
[-5.5338, -5.5338]
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

__all__ = ["BINS", "LIKELIHOODS", "PIXEL_NLL", "DequantizedGaussian", "bits_per_dimension", "dequantize"]

# 8-bit images: the values a pixel takes.
BINS = 256
# A decoder's likelihoods: Bernoulli pixels (binary images), or this module's Gaussian (8-bit images).
LIKELIHOODS = ("bernoulli", "gaussian")
# The output a model with a Gaussian decoder likelihood gives: -log p(y|z) per example, in nats.
PIXEL_NLL = "pixel_nll"
_LOG_2PI = math.log(2.0 * math.pi)
_SCALE_PACE = 10.0


def dequantize(images: tf.Tensor, noise: tf.Tensor, bins: int = BINS) -> tf.Tensor:
    """Returns ``(k + noise) / bins`` for images scaled to [0, 1] from values k in 0..bins-1."""
    images = tf.cast(images, tf.float32)
    return (tf.round(images * (bins - 1)) + tf.cast(noise, tf.float32)) / bins


def bits_per_dimension(negative_log_density: float, dimensions: int, bins: int = BINS) -> float:
    """Returns bits per value from -log p(y) in nats over ``dimensions`` dequantized values.

    That is (nll + D log bins) / (D log 2): the discrete likelihood's bound, per value, in bits.
    """
    return (negative_log_density + dimensions * math.log(bins)) / (dimensions * math.log(2.0))


@keras.saving.register_keras_serializable(package="aeloops")
class DequantizedGaussian(keras.layers.Layer):
    """-log N(y; mean, sigma^2) summed over each example, y the images dequantized; sigma one learned weight.

    In training each call draws new noise u (from a seed generator, so a
    resumed run draws what an uninterrupted one would); otherwise u = 1/2,
    the bin's middle, so validation moves only with the weights.

    Args:
      bins: the values a pixel takes (256 for 8-bit images).
      initial_scale: sigma before training; 0.1 is near what a trained
        decoder's error settles to, so the reconstruction drives the
        gradient from the first step.
      seed: the seed of the dequantization noise.
    """

    def __init__(self, bins: int = BINS, initial_scale: float = 0.1, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}.")
        if not initial_scale > 0:
            raise ValueError(f"initial_scale must be > 0, got {initial_scale!r}.")
        self.bins, self.initial_scale, self.seed = bins, float(initial_scale), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # The weight is log sigma's change from its start, in tenths: Adam moves a weight by about its learning
        # rate a step, whatever the gradient, and log sigma itself would need thousands of steps to reach the
        # decoder's error; tenths let it get there within the first epochs.
        self.log_scale_change = self.add_weight(shape=(), initializer="zeros", name="log_scale_change", dtype="float32")

    @property
    def log_scale(self) -> tf.Tensor:
        """log sigma, the Gaussian's log standard deviation."""
        return math.log(self.initial_scale) + _SCALE_PACE * self.log_scale_change

    def targets(self, images: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Returns the dequantized images: a fresh draw of u in training, the bins' middles otherwise."""
        if training:
            noise = keras.random.uniform(tf.shape(images), seed=self.seed_generator)
        else:
            noise = tf.fill(tf.shape(images), 0.5)
        return dequantize(images, noise, self.bins)

    def negative_log_density(self, targets: tf.Tensor, mean: tf.Tensor) -> tf.Tensor:
        """Returns -log p(targets | mean) in nats per example, summed over every value (float32)."""
        mean = tf.cast(mean, tf.float32)
        standardized = (tf.reshape(targets, tf.shape(mean)) - mean) * tf.exp(-self.log_scale)
        per_value = 0.5 * tf.square(standardized) + self.log_scale + 0.5 * _LOG_2PI
        return tf.reduce_sum(tf.reshape(per_value, [tf.shape(mean)[0], -1]), axis=1)

    def call(self, images: tf.Tensor, mean: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return self.negative_log_density(self.targets(images, training), mean)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bins": self.bins, "initial_scale": self.initial_scale, "seed": self.seed}
