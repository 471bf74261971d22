"""Per-example reconstruction losses.

Every loss here maps ``(target, prediction)`` to one value per example: it
averages over every axis but the first, the way Keras's built-in losses
average over the last axis and then over the remaining elements. Averaging
over the batch is the objective's job (see ``aeloops.objectives.objective``), so these
functions stay correct under a ``tf.distribute`` strategy.

Each also has an element-wise form (``elementwise(name)``), which a
``LossTerm`` reduces per example by mean (per pixel, the default) or by sum
(per image: a cross-entropy summed over pixels is a negative log-likelihood
in nats, what a VAE's ELBO needs).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

__all__ = [
    "REDUCTIONS",
    "LossFunction",
    "binary_crossentropy",
    "binary_crossentropy_from_logits",
    "elementwise",
    "get",
    "mean_absolute_error",
    "mean_per_example",
    "mean_squared_error",
    "reduce_per_example",
]

LossFunction = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
# How a term's values are reduced over each example's axes.
REDUCTIONS = ("mean", "sum")

# Keras clips probabilities to [epsilon, 1 - epsilon] before taking logs.
_EPSILON = 1e-7


# Helpers marked do_not_convert hold no control flow that depends on a tensor, so
# AutoGraph need not rewrite them: each rewrite costs time in every process's first trace.
@tf.autograph.experimental.do_not_convert
def reduce_per_example(values: tf.Tensor, reduction: str = "mean") -> tf.Tensor:
    """Reduces ``values`` over every axis but the batch axis, by ``"mean"`` or ``"sum"``.

    >>> reduce_per_example(tf.ones([2, 3, 4]), "sum").numpy()
    array([12., 12.], dtype=float32)
    """
    values = tf.convert_to_tensor(values)
    if values.shape.rank is not None and values.shape.rank <= 1:
        return values
    flat = tf.reshape(values, [tf.shape(values)[0], -1])
    return tf.reduce_sum(flat, axis=1) if reduction == "sum" else tf.reduce_mean(flat, axis=1)


@tf.autograph.experimental.do_not_convert
def mean_per_example(values: tf.Tensor) -> tf.Tensor:
    """Averages ``values`` over every axis but the batch axis."""
    return reduce_per_example(values, "mean")


@tf.autograph.experimental.do_not_convert
def _squared_error(target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    return tf.math.squared_difference(target, prediction)


@tf.autograph.experimental.do_not_convert
def _absolute_error(target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    return tf.abs(target - prediction)


@tf.autograph.experimental.do_not_convert
def _crossentropy(target: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
    probabilities = tf.clip_by_value(probabilities, _EPSILON, 1.0 - _EPSILON)
    return -(target * tf.math.log(probabilities) + (1.0 - target) * tf.math.log(1.0 - probabilities))


@tf.autograph.experimental.do_not_convert
def _crossentropy_from_logits(target: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)


@tf.autograph.experimental.do_not_convert
def mean_squared_error(target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    """Per-example mean of ``(target - prediction) ** 2``."""
    return mean_per_example(_squared_error(target, prediction))


@tf.autograph.experimental.do_not_convert
def mean_absolute_error(target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    """Per-example mean of ``|target - prediction|``."""
    return mean_per_example(_absolute_error(target, prediction))


@tf.autograph.experimental.do_not_convert
def binary_crossentropy(target: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
    """Per-example binary cross-entropy of probabilities, clipped like Keras."""
    return mean_per_example(_crossentropy(target, probabilities))


@tf.autograph.experimental.do_not_convert
def binary_crossentropy_from_logits(target: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-example binary cross-entropy computed from logits.

    Fused with the sigmoid, so it is stable for large logits and its gradient
    never vanishes the way a clipped probability's does.
    """
    return mean_per_example(_crossentropy_from_logits(target, logits))


_BY_NAME: dict[str, tuple[LossFunction, LossFunction]] = {
    "mse": (mean_squared_error, _squared_error),
    "mean_squared_error": (mean_squared_error, _squared_error),
    "mae": (mean_absolute_error, _absolute_error),
    "mean_absolute_error": (mean_absolute_error, _absolute_error),
    "bce": (binary_crossentropy, _crossentropy),
    "binary_crossentropy": (binary_crossentropy, _crossentropy),
    "bce_logits": (binary_crossentropy_from_logits, _crossentropy_from_logits),
    "binary_crossentropy_from_logits": (binary_crossentropy_from_logits, _crossentropy_from_logits),
}


def get(identifier: str | LossFunction) -> LossFunction:
    """Returns the loss function named ``identifier``, or ``identifier`` itself.

    >>> get("mse") is mean_squared_error
    True
    """
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier][0]
    raise ValueError(f"Unknown loss {identifier!r}; expected a callable or one of {sorted(_BY_NAME)}.")


def elementwise(name: str) -> LossFunction:
    """Returns the built-in loss ``name`` before its per-example reduction: one value per element.

    >>> elementwise("mse")(tf.zeros([2, 3]), tf.ones([2, 3])).shape
    TensorShape([2, 3])
    """
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ValueError(f"Unknown loss {name!r}; expected one of {sorted(_BY_NAME)}.")
    return _BY_NAME[name][1]
