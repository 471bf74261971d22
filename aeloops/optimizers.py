"""Optimizers by name, with the learning rates the seed's runs need.

>>> make_optimizer("adadelta").learning_rate.numpy()
1.0
"""

from __future__ import annotations

import math

import keras

__all__ = ["DEFAULT_LEARNING_RATES", "make_optimizer", "names"]

# Adadelta's learning rate is 1.0 in its paper and in Keras 1, which the
# Keras blog used; Keras 3 defaults to 0.001, with which the blog's
# autoencoders stall near a binary cross-entropy of 0.69.
DEFAULT_LEARNING_RATES = {
    "adam": 0.001,
    "adamw": 0.001,
    "adadelta": 1.0,
    "adagrad": 0.001,
    "rmsprop": 0.001,
    "sgd": 0.01,
    "nadam": 0.001,
}


def names() -> list[str]:
    """Returns the optimizer names ``make_optimizer`` accepts."""
    return sorted(DEFAULT_LEARNING_RATES)


def make_optimizer(
    optimizer: str | keras.optimizers.Optimizer, learning_rate: float | None = None
) -> keras.optimizers.Optimizer:
    """Returns a Keras optimizer from a name (or the instance given).

    Under a ``mixed_float16`` policy a named optimizer is wrapped in a
    ``LossScaleOptimizer``, as Keras's ``fit`` does.
    """
    if isinstance(optimizer, keras.optimizers.Optimizer):
        if learning_rate is not None:
            raise ValueError("Pass learning_rate only with an optimizer name, not an optimizer instance.")
        return optimizer
    if not isinstance(optimizer, str) or optimizer.lower() not in DEFAULT_LEARNING_RATES:
        raise ValueError(f"Unknown optimizer {optimizer!r}; choose one of {names()} or pass an instance.")
    name = optimizer.lower()
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATES[name]
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, (int, float))
        or not (math.isfinite(learning_rate) and learning_rate > 0)
    ):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}.")
    instance = keras.optimizers.get({"class_name": name, "config": {"learning_rate": float(learning_rate)}})
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        instance = keras.optimizers.LossScaleOptimizer(instance)
    return instance
