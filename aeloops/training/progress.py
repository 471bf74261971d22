"""What a fit shows while it runs: Keras's progress bar, fed running means, with each logged line labelled."""

from __future__ import annotations

import contextlib
import io
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from aeloops.training.step_records import COUNTS

__all__ = ["ProgressBar", "progress_bar", "shown"]


def shown(logs: Mapping[str, float]) -> list[tuple[str, float]]:
    """What the progress bar shows of ``logs``: timings and counts of what did not happen are for the history."""
    return [
        (name, value) for name, value in logs.items() if not name.endswith("_seconds") and (value or name not in COUNTS)
    ]


def progress_bar(verbose: int, epoch: int, epochs: int, steps: int) -> ProgressBar | None:
    """Returns the bar of an epoch for ``verbose`` (None when 0), after printing its label where a bar is drawn."""
    if verbose == 0:
        return None
    label = f"Epoch {epoch + 1}/{epochs}"
    if verbose == 1:
        print(label)
    # The loop passes running means itself, so Progbar must not average them.
    return ProgressBar(steps, verbose=verbose, unit_name="step", label=label)


class ProgressBar(keras.utils.Progbar):
    """A progress bar that shows the values it is given, without averaging them again.

    With ``verbose=2`` (one line an epoch: a pipe, a log file, ``--quiet``)
    the line starts with its ``label`` ("Epoch 3/20"), which Keras's line
    lacks, so a log says which epoch each line is.
    """

    # On a pipe or with --quiet, a slow epoch still shows it is alive: a line at least this often (seconds).
    PIPE_INTERVAL = 30.0

    def __init__(self, target: int, *, label: str = "", **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self.label = label
        self._last_line = time.monotonic()
        self._bar_open = False

    def write_line(self, line: str) -> None:
        """Writes a line of its own between the bar's updates (below the bar's open line on a terminal)."""
        sys.stdout.write(("\n" if self._bar_open else "") + line + "\n")
        sys.stdout.flush()
        self._bar_open = False

    def update(self, current: int, values: Sequence[tuple[str, float]] | None = None, finalize: bool | None = None):
        self.stateful_metrics.update(name for name, _ in values or ())
        if self.verbose != 2 or not self.label:
            drawn_before = self._last_update
            super().update(current, values, finalize)
            if self._last_update != drawn_before:  # Keras drew (it skips draws closer than its interval).
                self._bar_open = self.verbose == 1 and current < self.target  # The line awaits the next draw.
            return
        if finalize is None and current < self.target and time.monotonic() - self._last_line >= self.PIPE_INTERVAL:
            finalize = True  # Keras's one-line format, mid-epoch: "40/78 - 31s - 775ms/step - loss: ...".
        line = io.StringIO()
        with contextlib.redirect_stdout(line):
            super().update(current, values, finalize)
        if line.getvalue():
            sys.stdout.write(f"{self.label} - {line.getvalue()}")
            sys.stdout.flush()
            self._last_line = time.monotonic()
