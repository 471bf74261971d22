"""Weight schedules: a loss term's weight as a function of the training step.

Each returns a callable ``schedule(step) -> float32 scalar`` to pass as a
``LossTerm`` weight; TensorBoard logs its value as ``weight/<term>``.

>>> kl = LossTerm("kl", output="kl", loss="sum", target=None,
...               weight=linear_warmup(1.0, steps=1000))        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

__all__ = ["Schedule", "constant", "cyclical", "describe", "linear_warmup"]

Schedule = Callable[[tf.Tensor], tf.Tensor]


def _check(name: str, value: float, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ValueError(f"{name} must be a number >= {minimum}, got {value!r}.")


def constant(weight: float) -> Schedule:
    """Returns a schedule that is ``weight`` at every step."""
    _check("weight", weight, 0.0)
    return _described(lambda step: tf.constant(float(weight), tf.float32), f"constant({weight:g})")


def linear_warmup(weight: float, steps: int, start: float = 0.0) -> Schedule:
    """Returns a schedule rising linearly from ``start`` to ``weight`` over ``steps`` steps, then flat."""
    _check("weight", weight, 0.0)
    _check("steps", steps, 1)
    _check("start", start, 0.0)

    def schedule(step: tf.Tensor) -> tf.Tensor:
        progress = tf.minimum(tf.cast(step, tf.float32) / float(steps), 1.0)
        return start + (weight - start) * progress

    return _described(schedule, f"linear_warmup({start:g} to {weight:g} over {steps} steps)")


def cyclical(weight: float, period: int, ramp_fraction: float = 0.5) -> Schedule:
    """Returns cyclical annealing (Fu et al., 2019): each period ramps 0 -> ``weight``, then holds.

    The ramp takes ``ramp_fraction`` of each ``period`` steps, the rest of
    the period stays at ``weight``; then the next period starts from 0.
    """
    _check("weight", weight, 0.0)
    _check("period", period, 1)
    if not 0.0 < ramp_fraction <= 1.0:
        raise ValueError(f"ramp_fraction must lie in (0, 1], got {ramp_fraction!r}.")
    ramp = float(period) * ramp_fraction

    def schedule(step: tf.Tensor) -> tf.Tensor:
        position = tf.cast(tf.math.floormod(tf.cast(step, tf.int64), period), tf.float32)
        return weight * tf.minimum(position / ramp, 1.0)

    return _described(schedule, f"cyclical({weight:g}, period {period} steps, ramp {ramp_fraction:g})")


def describe(weight: object) -> str | float:
    """Returns a weight as TensorBoard's HParams shows it: the number, or the schedule's description."""
    if not callable(weight):
        return float(weight)
    return getattr(weight, "description", getattr(weight, "__name__", "scheduled"))


def _described(schedule: Schedule, description: str) -> Schedule:
    schedule.description = description  # What HParams and the run's record show for it.
    return schedule
