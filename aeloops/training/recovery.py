"""Recovery from divergence: roll back a compiled call whose loss went bad, lower the rate, go on.

With ``on_nonfinite="rollback"`` the outer loop keeps, in memory, the
trainer's whole state as it was before each compiled call: every variable a
checkpoint holds (weights, optimizer slots and moving averages, counters, the
learning rate, whatever a subclass holds, noise layers' seeds). When a call
ends with a non-finite loss or gradient, or its mean loss spikes above
``spike_factor`` times the median of the last ``spike_window`` calls, that
state comes back, the learning rate is multiplied by
``learning_rate_factor``, and training goes on from the next call's batches:
the bad call's batches are skipped (the step counter still counts them, as
it counts the steps ``"skip"`` skips). At most ``max_recoveries`` times in a
run; the next bad call stops it as ``"stop"`` does.

What a recovery changes lives in variables (the count, the spike rule's
window, the lowered rate) that checkpoints hold, so a run that recovered,
was killed and resumed ends as the run left alone does.

>>> policy = Recovery(max_recoveries=5, learning_rate_factor=0.5, spike_factor=10.0)
>>> trainer = Trainer(model, on_nonfinite="rollback", recovery=policy)   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from aeloops.objectives.objective import TOTAL
from aeloops.training.optimizers import inner_optimizer
from aeloops.training.step_records import NONFINITE_STEPS, RECOVERIES, ROLLED_BACK_STEPS

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = [
    "RECOVERIES",
    "ROLLED_BACK_STEPS",
    "Recovery",
    "RecoveryState",
    "Rollback",
    "ScaledSchedule",
    "scale_schedules",
    "state_variables",
]


@dataclasses.dataclass(frozen=True)
class Recovery:
    """How ``on_nonfinite="rollback"`` recovers, and what else counts as diverging.

    Args:
      max_recoveries: rollbacks allowed in the whole run (resumes included);
        the next bad call stops training.
      learning_rate_factor: multiplies every optimizer's learning rate at
        each rollback (1: leave it); a schedule's rates are scaled from then on.
      spike_factor: also roll back a call whose mean loss exceeds this
        many times the median of the last ``spike_window`` calls' (None: only
        non-finite values roll back).
      spike_window: how many accepted calls the median is taken over; the
        spike rule waits until that many have run.
    """

    max_recoveries: int = 3
    learning_rate_factor: float = 1.0
    spike_factor: float | None = None
    spike_window: int = 20

    def __post_init__(self) -> None:
        if isinstance(self.max_recoveries, bool) or not isinstance(self.max_recoveries, int) or self.max_recoveries < 1:
            raise ValueError(f"max_recoveries must be a positive int, got {self.max_recoveries!r}.")
        if not (_is_number(self.learning_rate_factor) and 0 < self.learning_rate_factor <= 1):
            raise ValueError(f"learning_rate_factor must lie in (0, 1], got {self.learning_rate_factor!r}.")
        if self.spike_factor is not None and not (_is_number(self.spike_factor) and self.spike_factor > 1):
            raise ValueError(f"spike_factor must be a number above 1 (or None), got {self.spike_factor!r}.")
        if isinstance(self.spike_window, bool) or not isinstance(self.spike_window, int) or self.spike_window < 1:
            raise ValueError(f"spike_window must be a positive int, got {self.spike_window!r}.")


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


class RecoveryState(tf.Module):
    """What a recovering run carries across a resume: rollbacks so far and the spike rule's recent losses."""

    def __init__(self, window: int) -> None:
        super().__init__(name="recovery")
        scalar = {"trainable": False, "aggregation": tf.VariableAggregation.ONLY_FIRST_REPLICA}
        self.recoveries = tf.Variable(0, dtype=tf.int64, name="recoveries", **scalar)
        # The mean loss of each of the last `window` accepted calls, a ring indexed by `accepted`.
        self.losses = tf.Variable(tf.zeros([window], tf.float64), name="losses", **scalar)
        self.accepted = tf.Variable(0, dtype=tf.int64, name="accepted", **scalar)
        # What scheduled learning rates are multiplied by (ScaledSchedule): lowered at each rollback.
        self.rate_scale = tf.Variable(1.0, dtype=tf.float32, name="rate_scale", **scalar)


def seed_generator_states(trainer: Trainer) -> list[tf.Variable]:
    """Returns the SeedGenerator states of every Keras layer the trainer holds, once each.

    Keras keeps them out of a layer's checkpoint, so they are saved and
    rolled back beside it.
    """
    layers = [trainer.model, *trainer._flatten(predicate=lambda value: isinstance(value, keras.layers.Layer))]
    states, seen = [], set()
    for layer in layers:
        for variable in layer.variables:
            if variable.name == "seed_generator_state" and id(variable) not in seen:
                seen.add(id(variable))
                states.append(variable)
    return states


def _value(variable: Any) -> tf.Tensor:
    """A variable's value: a Keras variable's own, uncast."""
    return variable.value if isinstance(variable, keras.Variable) else variable.read_value()


def state_variables(trainer: Trainer) -> list[Any]:
    """Returns every variable of the trainer's state, once each: what a checkpoint holds of it."""
    found = [
        value
        for value in tf.train.TrackableView(trainer).descendants()
        if isinstance(value, (tf.Variable, keras.Variable))
    ]
    unique = {id(variable): variable for variable in [*found, *seed_generator_states(trainer)]}
    return list(unique.values())


class Rollback:
    """The outer loop's side of ``on_nonfinite="rollback"``: keeps the state before a call, judges the call.

    ``before_call()`` keeps the state; ``verdict(results, count)`` says why a
    call must be undone (None when it is good); ``accept`` counts a good
    call in the spike rule's window; ``recover`` undoes a bad one and returns
    the line that says so; ``give_up`` puts the kept state back for good.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.policy: Recovery = trainer.recovery
        self.state: RecoveryState = trainer.recovery_state
        variables = state_variables(trainer)
        step_index = next(index for index, variable in enumerate(variables) if variable is trainer.step)

        # One compiled call reads every variable, one writes them back: per-variable reads from Python
        # cost more than a small model's step. The values read share the variables' buffers until the
        # next update copies them (TensorFlow's copy-on-write), so keeping them is cheap.
        @tf.function
        def read() -> list[tf.Tensor]:
            return [_value(variable) for variable in variables]

        @tf.function
        def write(values: list[tf.Tensor]) -> None:
            for variable, value in zip(variables, values):
                variable.assign(value)

        self._read, self._write = read, write
        self._step_index = step_index
        self._kept: list[tf.Tensor] = []
        self.first_step = 0

    def before_call(self) -> None:
        """Keeps the trainer's state as it is now, before a compiled call."""
        self._kept = self._read()
        self.first_step = int(self._kept[self._step_index])

    def verdict(self, results: Mapping[str, float], count: int) -> str | None:
        """Returns why the call that gave ``results`` over ``count`` steps must be rolled back, or None."""
        if results[NONFINITE_STEPS] > 0:
            step = int(self.trainer.first_nonfinite_step.numpy())
            return f"{self.trainer.first_nonfinite_subject()} became NaN or Inf at step {step}"
        if self.policy.spike_factor is None:
            return None
        loss = results[TOTAL] / count
        accepted = int(self.state.accepted.numpy())
        if accepted >= self.policy.spike_window:
            median = float(np.median(self.state.losses.numpy()))
            factor = self.policy.spike_factor
            if loss > factor * median:
                return f"the loss spiked to {loss:.4g}, over {factor:g} times its running median {median:.4g}"
        return None

    def accept(self, results: Mapping[str, float], count: int) -> None:
        """Counts a good call's mean loss in the spike rule's window."""
        if self.policy.spike_factor is None:
            return
        accepted = int(self.state.accepted.numpy())
        self.state.losses[accepted % self.policy.spike_window].assign(results[TOTAL] / count)
        self.state.accepted.assign_add(1)

    def roll_back(self, skipped: int) -> None:
        """Puts the kept state back; the step counter goes on past the ``skipped`` steps."""
        self._write(self._kept)
        self.trainer.step.assign_add(skipped)

    @property
    def recoveries(self) -> int:
        """Rollbacks made in the run so far."""
        return int(self.state.recoveries.numpy())

    def recover(self, reason: str, count: int) -> str:
        """Rolls the call back, lowers the rates; returns the line that tells the user."""
        self.roll_back(count)
        self.state.recoveries.assign_add(1)
        before = self.trainer.learning_rates()  # As rolled back: a schedule's rate at the kept step.
        if self.policy.learning_rate_factor != 1:
            lower_rates(self.trainer, self.state, self.policy.learning_rate_factor)
        after = self.trainer.learning_rates()
        rates = "; ".join(
            f"{name} {before[name]:.3g} -> {after[name]:.3g}" for name in before if before[name] != after[name]
        )
        first, last = self.first_step, self.first_step + count - 1
        steps = f"step {first}" if count == 1 else f"steps {first}-{last}"
        return (
            f"Recovery {self.recoveries} of {self.policy.max_recoveries}: {reason}; rolled back to step "
            f"{first} and skipped the batches of {steps}" + (f"; {rates}" if rates else "") + "."
        )

    def give_up(self) -> None:
        """Puts the last good state back before training stops: the model in memory is that state."""
        self.roll_back(0)


@keras.saving.register_keras_serializable(package="aeloops")
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning-rate schedule times a variable: how a rollback lowers a scheduled rate."""

    def __init__(self, schedule: keras.optimizers.schedules.LearningRateSchedule, scale: tf.Variable | float) -> None:
        self.schedule = schedule
        self.scale = scale

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        rate = self.schedule(step)
        return rate * tf.cast(self.scale, rate.dtype)

    def get_config(self) -> dict[str, Any]:
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "scale": float(self.scale)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ScaledSchedule:
        return cls(keras.saving.deserialize_keras_object(config["schedule"]), config["scale"])


def scale_schedules(trainer: Trainer, state: RecoveryState) -> None:
    """Makes every scheduled learning rate follow ``state.rate_scale``, which a rollback lowers."""
    for part_optimizer in trainer.optimizers.values():
        inner = inner_optimizer(part_optimizer)
        rate = inner._learning_rate  # Keras keeps a schedule here; its public property evaluates it.
        if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule) and not isinstance(rate, ScaledSchedule):
            inner.learning_rate = ScaledSchedule(rate, state.rate_scale)


def lower_rates(trainer: Trainer, state: RecoveryState, factor: float) -> None:
    """Multiplies every optimizer's learning rate by ``factor``: a constant's variable, a schedule's scale."""
    state.rate_scale.assign(state.rate_scale * factor)
    for part_optimizer in trainer.optimizers.values():
        inner = inner_optimizer(part_optimizer)
        if not isinstance(inner._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            inner.learning_rate.assign(inner.learning_rate * factor)
