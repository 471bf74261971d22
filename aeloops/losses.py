"""Per-example reconstruction losses.

Every loss here maps ``(target, prediction)`` to one value per example: it
averages over every axis but the first, the way Keras's built-in losses
average over the last axis and then over the remaining elements. Averaging
over the batch is the objective's job (see ``aeloops.objective``), so these
functions stay correct under a ``tf.distribute`` strategy.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

__all__ = [
    "LossFunction",
    "binary_crossentropy",
    "binary_crossentropy_from_logits",
    "get",
    "mean_absolute_error",
    "mean_per_example",
    "mean_squared_error",
]

LossFunction = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]

# Keras clips probabilities to [epsilon, 1 - epsilon] before taking logs.
_EPSILON = 1e-7


# Helpers marked do_not_convert hold no control flow that depends on a tensor, so
# AutoGraph need not rewrite them: each rewrite costs time in every process's first trace.
@tf.autograph.experimental.do_not_convert
def mean_per_example(values: tf.Tensor) -> tf.Tensor:
    """Averages ``values`` over every axis but the batch axis."""
    values = tf.convert_to_tensor(values)
    if values.shape.rank is not None and values.shape.rank <= 1:
        return values
    return tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)


@tf.autograph.experimental.do_not_convert
def mean_squared_error(target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    """Per-example mean of ``(target - prediction) ** 2``."""
    return mean_per_example(tf.math.squared_difference(target, prediction))


@tf.autograph.experimental.do_not_convert
def mean_absolute_error(target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    """Per-example mean of ``|target - prediction|``."""
    return mean_per_example(tf.abs(target - prediction))


@tf.autograph.experimental.do_not_convert
def binary_crossentropy(target: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
    """Per-example binary cross-entropy of probabilities, clipped like Keras."""
    probabilities = tf.clip_by_value(probabilities, _EPSILON, 1.0 - _EPSILON)
    values = -(target * tf.math.log(probabilities) + (1.0 - target) * tf.math.log(1.0 - probabilities))
    return mean_per_example(values)


@tf.autograph.experimental.do_not_convert
def binary_crossentropy_from_logits(target: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-example binary cross-entropy computed from logits.

    Fused with the sigmoid, so it is stable for large logits and its gradient
    never vanishes the way a clipped probability's does.
    """
    values = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
    return mean_per_example(values)


_BY_NAME: dict[str, LossFunction] = {
    "mse": mean_squared_error,
    "mean_squared_error": mean_squared_error,
    "mae": mean_absolute_error,
    "mean_absolute_error": mean_absolute_error,
    "bce": binary_crossentropy,
    "binary_crossentropy": binary_crossentropy,
    "bce_logits": binary_crossentropy_from_logits,
    "binary_crossentropy_from_logits": binary_crossentropy_from_logits,
}


def get(identifier: str | LossFunction) -> LossFunction:
    """Returns the loss function named ``identifier``, or ``identifier`` itself.

    >>> get("mse") is mean_squared_error
    True
    """
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]
    raise ValueError(f"Unknown loss {identifier!r}; expected a callable or one of {sorted(_BY_NAME)}.")
