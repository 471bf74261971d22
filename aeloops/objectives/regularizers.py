"""Activity regularizers: per-example penalties on a named activation.

Reduction: each penalty sums over the activation's units for one example and
the objective then averages over the global batch. With a weight ``w`` this
equals Keras 3.14+'s ``activity_regularizer=regularizers.l1(w)``, which is
``w * sum(|a|) / batch_size`` (earlier Keras 3 did not divide by the batch
size; aeloops always does).
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["l1_activity", "l2_activity", "sum_activity"]


def _sum_per_example(values: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)


def l1_activity(activation: tf.Tensor) -> tf.Tensor:
    """Per-example L1 norm of ``activation``: ``sum(|a|)`` over its units."""
    return _sum_per_example(tf.abs(activation))


def l2_activity(activation: tf.Tensor) -> tf.Tensor:
    """Per-example squared L2 norm of ``activation``: ``sum(a ** 2)``."""
    return _sum_per_example(tf.square(activation))


def sum_activity(activation: tf.Tensor) -> tf.Tensor:
    """Per-example sum of ``activation`` over its units (e.g. a VAE's per-dimension KL)."""
    return _sum_per_example(activation)
