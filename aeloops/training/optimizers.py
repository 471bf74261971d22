"""Optimizers by name, with the learning rates the seed's runs need, and optimizers per part of a model.

>>> float(make_optimizer("adadelta").learning_rate)
1.0
>>> make_optimizer("adam", 1e-4, global_clipnorm=1.0, use_ema=True).global_clipnorm
1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import keras

from aeloops.training.options import OPTIMIZER_OPTIONS

__all__ = ["DEFAULT_LEARNING_RATES", "OptimizerSpec", "inner_optimizer", "make_optimizer", "names"]

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

# An optimizer, its name, or a mapping from parts of the model (attribute
# paths such as "encoder", "decoder" or "encoder.hidden") to either.
OptimizerSpec = str | keras.optimizers.Optimizer | Mapping[str, str | keras.optimizers.Optimizer]


def names() -> list[str]:
    """Returns the optimizer names ``make_optimizer`` accepts."""
    return sorted(DEFAULT_LEARNING_RATES)


def make_optimizer(
    optimizer: str | keras.optimizers.Optimizer,
    learning_rate: float | None = None,
    schedule: Callable[[float], float | keras.optimizers.schedules.LearningRateSchedule] | None = None,
    *,
    loss_scale: bool | None = None,
    **options: Any,
) -> keras.optimizers.Optimizer:
    """Returns a Keras optimizer from a name (or the instance given).

    ``schedule`` turns the learning rate (given, or the optimizer's
    default) into the one used, such as ``aeloops.runs.lr_schedules.schedule``.
    ``options`` are Keras optimizer arguments (``clipnorm``,
    ``global_clipnorm``, ``clipvalue``, ``use_ema``, ``ema_momentum``,
    ``gradient_accumulation_steps``); None leaves Keras's default. A named
    optimizer is wrapped in a ``LossScaleOptimizer`` when ``loss_scale`` is
    true (by default, under a ``mixed_float16`` global policy), as Keras's
    ``fit`` does.
    """
    unknown = sorted(set(options) - set(OPTIMIZER_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown optimizer option {unknown[0]!r}; choose from {', '.join(OPTIMIZER_OPTIONS)}.")
    options = {name: value for name, value in options.items() if value is not None}
    if isinstance(optimizer, keras.optimizers.Optimizer):
        if learning_rate is not None or schedule is not None or options:
            raise ValueError(
                "Pass learning_rate and optimizer options only with an optimizer name; "
                "an optimizer instance carries its own."
            )
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
    rate = float(learning_rate) if schedule is None else schedule(float(learning_rate))
    try:
        instance = type(keras.optimizers.get(name))(learning_rate=rate, **options)
    except ValueError as error:  # Keras's own checks (one clipping option, accumulation >= 2, ...).
        raise ValueError(f"Optimizer {name}: {' '.join(str(error).split())}") from None
    if loss_scale is None:
        loss_scale = keras.mixed_precision.global_policy().name == "mixed_float16"
    if loss_scale:
        instance = keras.optimizers.LossScaleOptimizer(instance)
    return instance


def inner_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """Returns the optimizer a ``LossScaleOptimizer`` wraps, or ``optimizer`` itself."""
    return getattr(optimizer, "inner_optimizer", optimizer)
