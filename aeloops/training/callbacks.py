"""Callbacks: hooks of the trainer's outer loop (checkpoints, summaries, stopping)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = ["TIMINGS", "Callback", "EpochProgress"]

# The values of an epoch's logs that time the run rather than measure the model.
TIMINGS = ("epoch_seconds", "samples_per_second", "validation_seconds")


@dataclasses.dataclass(frozen=True)
class EpochProgress:
    """How far ``fit`` is through an epoch: the sum of every value over its first ``steps`` steps.

    ``fit`` keeps it in ``Trainer.epoch_progress`` after each compiled call
    (None between epochs); checkpoints save it, so an epoch resumed from a
    mid-epoch checkpoint reports the mean over all of its steps, exactly
    as if it had not been interrupted.

    >>> EpochProgress(epoch=0, steps=10, sums={"loss": 2.5}).to_json()["steps"]
    10
    """

    epoch: int
    steps: int
    sums: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        """Returns the progress as JSON-ready values (floats keep every bit through JSON)."""
        return {"epoch": self.epoch, "steps": self.steps, "sums": dict(self.sums)}

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> EpochProgress:
        """Returns the progress ``to_json`` described."""
        return cls(int(values["epoch"]), int(values["steps"]), {k: float(v) for k, v in values["sums"].items()})


class Callback:
    """Hooks the outer loop calls; subclass and override what you need.

    ``logs`` hold Python floats: the running means of every term.
    """

    def on_train_begin(self, trainer: Trainer) -> None:
        """Called once before the first step."""

    def on_loop_end(self, trainer: Trainer, logs: Mapping[str, float]) -> None:
        """Called after each compiled call of ``steps_per_loop`` steps."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Mapping[str, float]) -> None:
        """Called after each epoch (and its validation), ``epoch`` counting from 0."""

    def on_train_end(self, trainer: Trainer, history: Mapping[str, list[float]]) -> None:
        """Called once after the last epoch."""
