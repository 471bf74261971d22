"""Callbacks: hooks of the trainer's outer loop (checkpoints, summaries, stopping)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aeloops.training.loop_state import EpochProgress  # Public here first.

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = ["TIMINGS", "Callback", "EpochProgress"]

# The values of an epoch's logs that time the run rather than measure the model.
TIMINGS = ("epoch_seconds", "samples_per_second", "validation_seconds")


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
