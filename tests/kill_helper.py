"""Runs ``python -m aeloops.train`` and kills itself with SIGKILL (or signals itself) at a chosen point.

Usage: ``python -m tests.kill_helper POINT STEP -- <train arguments>`` where
POINT is one of ``step`` (after the compiled call that reaches STEP),
``validation`` (inside the first evaluation at or after STEP), ``save`` (once
the checkpoint of STEP is fully written) or ``mid_save`` (while writing the
checkpoint of STEP: part of its files exist, the state file is not updated).
A test stand-in for a crash, a preemption or an OOM kill. With POINT
prefixed ``term-`` (``term-step``, ``term-validation``) the process sends
itself SIGTERM there instead, as a preemption notice would, and carries on;
with ``int2-`` it sends itself SIGINT twice, as a user pressing Ctrl-C twice.
"""

from __future__ import annotations

import os
import signal
import sys

from aeloops import train
from aeloops.runs import checkpoints
from aeloops.tensorboard import summaries
from aeloops.training import outer_loop

_SIGNAL = [signal.SIGKILL]
_SENT = []


def _die() -> None:
    if not _SENT:  # A notice is sent once; a kill ends everything anyway.
        _SENT.append(True)
        for number in _SIGNAL:
            os.kill(os.getpid(), number)


def install(point: str, at_step: int) -> None:
    """Patches the library so that the process dies (or is signalled) at ``point``."""
    if point.startswith("term-"):
        _SIGNAL[0], point = signal.SIGTERM, point[len("term-") :]
    elif point.startswith("int2-"):  # Ctrl-C pressed twice.
        _SIGNAL[:], point = [signal.SIGINT, signal.SIGINT], point[len("int2-") :]
    if point == "step":
        original_loop_end = summaries.SummaryWriter.on_loop_end

        def on_loop_end(self, trainer, logs):
            original_loop_end(self, trainer, logs)
            if int(trainer.step.numpy()) >= at_step:
                _die()

        summaries.SummaryWriter.on_loop_end = on_loop_end
    elif point == "validation":
        original_evaluate = outer_loop.evaluate

        def evaluate(trainer, data, batch_size=256):
            if int(trainer.step.numpy()) >= at_step:
                _die()
            return original_evaluate(trainer, data, batch_size)

        outer_loop.evaluate = evaluate  # What fit() calls for validation.
    elif point in ("save", "mid_save"):
        original_save = checkpoints.Checkpointer.save

        def save(self):
            step = int(self.trainer.step.numpy())
            if step >= at_step and point == "mid_save":
                # The data file of a checkpoint being written, cut short.
                partial = os.path.join(self.directory, f"ckpt-{step}_temp", "part-00000-of-00001.data-00000-of-00001")
                os.makedirs(os.path.dirname(partial), exist_ok=True)
                with open(partial, "wb") as stream:
                    stream.write(b"\0" * 1000)
                _die()
            result = original_save(self)
            if step >= at_step:
                _die()
            return result

        checkpoints.Checkpointer.save = save
    else:
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    point, step, separator, *arguments = sys.argv[1:]
    assert separator == "--", "usage: POINT STEP -- <train arguments>"
    install(point, int(step))
    sys.exit(train.main(arguments))
