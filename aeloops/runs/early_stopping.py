"""Early stopping and the best model: watch a value each epoch, keep the best checkpoint, stop when it stalls.

>>> stopper = EarlyStopping(trainer, "runs/x/checkpoints/best", patience=5)  # doctest: +SKIP
>>> trainer.fit(images, epochs=100, validation_data=test, callbacks=[checkpointer, stopper])  # doctest: +SKIP
>>> stopper.state                   # {"best": 0.091, "best_epoch": 37, "wait": 5, ...}  # doctest: +SKIP
>>> stopper.restore_best()          # the trainer as it was at its best epoch  # doctest: +SKIP

Its decisions depend only on ``state`` (a dict of JSON values); hand it to
the run's checkpointer (``checkpointer.track("early_stopping",
stopper.state)``) and a run killed and resumed makes the same decisions
as one left alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aeloops.runs.checkpoints import Checkpointer
from aeloops.training.callbacks import TIMINGS, Callback

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = ["EarlyStopping", "Watch"]

MODES = ("min", "max")


class Watch:
    """Whether a monitored value improved: by more than ``min_delta``, downwards (``min``) or upwards (``max``).

    >>> Watch("val_loss", min_delta=0.01).improves(0.5, best=0.505)
    False
    """

    def __init__(self, monitor: str, min_delta: float = 0.0, mode: str = "min") -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must name a logged value, such as 'val_loss', got {monitor!r}.")
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not min_delta >= 0:
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}.")
        if mode not in MODES:
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
        self.monitor, self.min_delta, self.mode = monitor, float(min_delta), mode

    def value(self, logs: Mapping[str, float]) -> float:
        """Returns the monitored value of an epoch's logs, refusing a name they do not hold."""
        if self.monitor not in logs:
            names = ", ".join(sorted(name for name in logs if name not in TIMINGS))
            raise ValueError(f"Cannot monitor {self.monitor!r}: the epoch logged {names}; choose one of those.")
        return float(logs[self.monitor])

    def improves(self, value: float, best: float | None) -> bool:
        """Returns whether ``value`` beats ``best`` (None: nothing yet) by more than ``min_delta``."""
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta


class EarlyStopping(Callback):
    """Keeps the best checkpoint of a monitored value and, with ``patience``, stops once it stalls.

    Args:
      trainer: the trainer being fitted (its whole state is what a best
        checkpoint holds).
      best_directory: where the best checkpoint is kept (one at a time),
        apart from the rolling checkpoints.
      monitor: a value of the epoch's logs: ``"val_loss"``, ``"loss"``, a
        term or its ``val_`` copy, a gradient norm, ...
      patience: stop after this many epochs without improvement; None
        only keeps the best checkpoint.
      min_delta: the least change that counts as an improvement.
      mode: ``"min"`` (losses) or ``"max"``.
    """

    def __init__(
        self,
        trainer: Trainer,
        best_directory: str | os.PathLike,
        monitor: str = "val_loss",
        patience: int | None = None,
        min_delta: float = 0.0,
        mode: str = "min",
    ) -> None:
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
            raise ValueError(f"patience must be a positive integer (epochs) or None, got {patience!r}.")
        self.watch = Watch(monitor, min_delta, mode)
        self.patience = patience
        self.trainer = trainer
        self.best = Checkpointer(trainer, best_directory, max_to_keep=1)
        # Everything a decision depends on; checkpointed by the run (see the module docstring).
        self.state: dict[str, Any] = {"best": None, "best_epoch": None, "best_step": None, "wait": 0, "stopped": None}

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Mapping[str, float]) -> None:
        value = self.watch.value(logs)
        if self.watch.improves(value, self.state["best"]):
            self.state.update(best=value, best_epoch=epoch + 1, best_step=int(trainer.step.numpy()), wait=0)
            self.best.metadata.update(monitor=self.watch.monitor, value=value, epoch=epoch + 1)
            self.best.save()
            return
        self.state["wait"] += 1
        if self.patience is not None and self.state["wait"] >= self.patience:
            self.state["stopped"] = epoch + 1
            trainer.stop_training = True

    def restore_best(self) -> bool:
        """Restores the trainer to its best checkpoint; returns False when none was kept."""
        return self.best.restore()

    def summary(self) -> dict[str, Any]:
        """Returns what best.json records: the monitor, the best value, its epoch and step, and any early stop."""
        return {
            "monitor": self.watch.monitor,
            "mode": self.watch.mode,
            "best": self.state["best"],
            "best_epoch": self.state["best_epoch"],
            "best_step": self.state["best_step"],
            "stopped_early_at_epoch": self.state["stopped"],
        }

    def describe(self) -> str:
        """Returns one line on the best epoch and, if it stopped the run, when and why."""
        monitor = self.watch.monitor
        if self.state["best"] is None:
            return f"{monitor} never took a finite value; no best checkpoint was kept."
        line = f"Best {monitor} {self.state['best']:.6g} at epoch {self.state['best_epoch']}"
        if self.state["stopped"] is not None:
            epochs = "epoch" if self.patience == 1 else "epochs"
            line += f"; stopped early at epoch {self.state['stopped']} ({self.patience} {epochs} without improvement)"
        return line + "."
