"""Learning-rate schedules: constant, warm-up then cosine decay, step decay, and reduction on a plateau.

Cosine and step decay are Keras ``LearningRateSchedule`` objects, functions
of the optimizer's own step, so they resume with it; the plateau reduction
is a callback that lowers the optimizer's learning-rate variable, which
checkpoints hold, and keeps its own state in a dict of JSON values that the
run's checkpointer saves (``checkpointer.track``).

>>> round(float(schedule("cosine", 1e-3, warmup_steps=100, decay_steps=900)(100)), 6)  # the peak after warm-up
0.001
>>> round(float(schedule("step", 1e-3, decay_steps=10, factor=0.5)(25)), 8)
0.00025
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import keras
import tensorflow as tf

from aeloops.runs.early_stopping import Watch
from aeloops.training.callbacks import Callback
from aeloops.training.optimizers import inner_optimizer

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = ["ReduceOnPlateau", "StepDecay", "schedule"]


@keras.saving.register_keras_serializable(package="aeloops")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``base * factor ** (step // every)``, never below ``minimum``."""

    def __init__(self, base: float, every: int, factor: float, minimum: float = 0.0) -> None:
        self.base, self.every, self.factor, self.minimum = float(base), int(every), float(factor), float(minimum)

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        drops = tf.floor(tf.cast(step, tf.float32) / self.every)
        return tf.maximum(self.base * tf.pow(self.factor, drops), self.minimum)

    def get_config(self) -> dict[str, Any]:
        return {"base": self.base, "every": self.every, "factor": self.factor, "minimum": self.minimum}


def schedule(
    kind: str,
    base: float,
    *,
    warmup_steps: int = 0,
    decay_steps: int | None = None,
    factor: float = 0.5,
    minimum: float = 0.0,
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Returns the learning rate (a float) or schedule of ``kind`` starting from ``base``.

    ``"constant"`` and ``"plateau"`` give ``base`` itself (a plateau is
    handled by ``ReduceOnPlateau``); ``"cosine"`` warms up linearly from 0
    over ``warmup_steps`` and then decays to ``minimum`` over
    ``decay_steps`` (Keras's ``CosineDecay``); ``"step"`` multiplies by
    ``factor`` every ``decay_steps``.

    Raises:
      ValueError: for settings that would make the rate negative, NaN or
        rise where it should fall.
    """
    if not (isinstance(base, (int, float)) and math.isfinite(base) and base > 0):
        raise ValueError(f"The base learning rate must be a positive number, got {base!r}.")
    if not 0 <= minimum < base:
        raise ValueError(f"min_learning_rate must lie in [0, {base:g}) (the base learning rate), got {minimum!r}.")
    if kind in ("constant", "plateau"):
        return float(base)
    if decay_steps is None or decay_steps < 1:
        raise ValueError(f"lr_schedule {kind!r} needs decay_steps >= 1, got {decay_steps!r}.")
    if kind == "cosine":
        warm = warmup_steps > 0
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warm else float(base),
            decay_steps=int(decay_steps),
            alpha=minimum / base,
            warmup_target=float(base) if warm else None,
            warmup_steps=int(warmup_steps),
        )
    if kind == "step":
        if not 0 < factor < 1:
            raise ValueError(f"lr_factor must lie between 0 and 1, got {factor!r}.")
        return StepDecay(base, decay_steps, factor, minimum)
    raise ValueError(f"Unknown lr_schedule {kind!r}; choose constant, cosine, step or plateau.")


class ReduceOnPlateau(Callback):
    """Multiplies every optimizer's learning rate by ``factor`` after ``patience`` epochs without improvement.

    As Keras's ``ReduceLROnPlateau``, on the same ``Watch`` as early
    stopping; the rate never goes below ``minimum``. Its decisions depend
    only on ``state``; hand that to the run's checkpointer.
    """

    def __init__(
        self,
        optimizers: Iterable[keras.optimizers.Optimizer],
        monitor: str = "val_loss",
        factor: float = 0.5,
        patience: int = 3,
        min_delta: float = 0.0,
        minimum: float = 0.0,
    ) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"factor must lie between 0 and 1, got {factor!r}.")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive integer (epochs), got {patience!r}.")
        self.optimizers = [inner_optimizer(optimizer) for optimizer in optimizers]
        self.watch = Watch(monitor, min_delta)
        self.factor, self.patience, self.minimum = float(factor), patience, float(minimum)
        self.state: dict[str, Any] = {"best": None, "wait": 0, "reductions": []}

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Mapping[str, float]) -> None:
        value = self.watch.value(logs)
        if self.watch.improves(value, self.state["best"]):
            self.state.update(best=value, wait=0)
            return
        self.state["wait"] += 1
        if self.state["wait"] < self.patience:
            return
        self.state["wait"] = 0
        for optimizer in self.optimizers:
            optimizer.learning_rate = max(float(optimizer.learning_rate) * self.factor, self.minimum)
        self.state["reductions"].append(epoch + 1)
