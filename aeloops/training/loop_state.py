"""Where a trainer's fits stand between calls: the outer loop's own record, saved beside the variables.

The outer loop (``aeloops.training.outer_loop``) keeps it; a ``Checkpointer``
saves it in the run record (``to_record``) and puts it back
(``restore``), so a fit resumed mid-epoch reports every step's mean and
returns the interrupted fit's whole history.

>>> state = LoopState(completed_epochs=2)
>>> LoopState.from_record(state.to_record()).completed_epochs
2
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["EpochProgress", "LoopState", "LoopStateMixin"]


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


@dataclasses.dataclass
class LoopState:
    """What the outer loop keeps between compiled calls and between fits.

    Attributes:
      completed_epochs: whole epochs trained; the next fit starts its count there.
      run_first_epoch: the first epoch of a fit that has not reached its end
        (interrupted, or restored from its checkpoint): the next fit
        finishes it, counting its epochs from there. None once it ended.
      epoch_progress: the epoch in progress, None between epochs.
      history: the rows of the fit in progress or last run.
    """

    completed_epochs: int = 0
    run_first_epoch: int | None = None
    epoch_progress: EpochProgress | None = None
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """Returns the state as the run record's JSON-ready entries."""
        progress = self.epoch_progress
        return {
            "epoch_progress": None if progress is None else progress.to_json(),
            "completed_epochs": self.completed_epochs,
            "run_first_epoch": self.run_first_epoch,
            # The fit's rows so far: a fit that finishes it returns its whole history.
            "fit_history": self.history,
        }

    def restore(self, record: Mapping[str, Any]) -> None:
        """Takes the state from a run record's entries (``to_record``'s)."""
        progress = record.get("epoch_progress")
        self.epoch_progress = None if progress is None else EpochProgress.from_json(progress)
        if "completed_epochs" in record:  # Checkpoints before aeloops kept the count leave it as it is.
            self.completed_epochs = int(record["completed_epochs"])
            self.run_first_epoch = record.get("run_first_epoch")
            rows = record.get("fit_history", {})
            self.history = {name: list(values) for name, values in rows.items()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LoopState:
        """Returns the state a run record's entries describe."""
        state = cls()
        state.restore(record)
        return state


class LoopStateMixin:
    """The ``Trainer``'s view of its ``LoopState`` (``self.loop_state``), by the names ``fit`` has always used."""

    loop_state: LoopState

    @property
    def completed_epochs(self) -> int:
        """Whole epochs trained: the next fit starts its count there (saved in checkpoints)."""
        return self.loop_state.completed_epochs

    @completed_epochs.setter
    def completed_epochs(self, value: int) -> None:
        self.loop_state.completed_epochs = value

    @property
    def run_first_epoch(self) -> int | None:
        """The first epoch of a fit that has not reached its end; None once it ended (saved in checkpoints)."""
        return self.loop_state.run_first_epoch

    @run_first_epoch.setter
    def run_first_epoch(self, value: int | None) -> None:
        self.loop_state.run_first_epoch = value

    @property
    def epoch_progress(self) -> EpochProgress | None:
        """The epoch in progress, as ``fit`` left it after its last compiled call (saved in checkpoints)."""
        return self.loop_state.epoch_progress

    @epoch_progress.setter
    def epoch_progress(self, value: EpochProgress | None) -> None:
        self.loop_state.epoch_progress = value

    @property
    def fit_history(self) -> dict[str, list[float]]:
        """The history of the fit in progress or last run: what it returns, saved in checkpoints."""
        return self.loop_state.history

    def keep_fit_history(self, history: dict[str, list[float]]) -> None:
        """Makes ``history`` (its rows so far, filled in place) the fit's history."""
        self.loop_state.history = history
