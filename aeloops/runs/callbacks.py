"""The outer-loop callbacks of a CLI run: its history file, stop requests, preemption handling, start-up time."""

from __future__ import annotations

import threading
import time

import tensorflow as tf

from aeloops.runs.checkpoints import Checkpointer
from aeloops.runs.directory import RunDirectory, write_json
from aeloops.training.callbacks import Callback
from aeloops.training.trainer import Trainer

__all__ = ["FirstCallTimer", "HistoryFile", "PreemptionHandling", "StopOnRequest"]


class HistoryFile(Callback):
    """Appends each finished epoch to history.json, so a kill loses at most one epoch."""

    def __init__(self, run_dir: RunDirectory, history: dict[str, list[float]]) -> None:
        self.run_dir = run_dir
        self.history = history

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        for name, value in logs.items():
            self.history.setdefault(name, []).append(value)
        self.history.setdefault("epoch", []).append(epoch + 1)
        write_json(self.run_dir.history, self.history)


class FirstCallTimer(Callback):
    """Notes when the first compiled training call of a run ended (``time.perf_counter()``).

    What a user waits for before training starts: TensorFlow's import, the
    data, tracing and compiling. Put it first among the callbacks, so no
    other callback's work counts.
    """

    def __init__(self) -> None:
        self.ended: float | None = None

    def on_loop_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self.ended is None:
            self.ended = time.perf_counter()


class PreemptionHandling(Callback):
    """TensorFlow's preemption handling for ``MultiWorkerMirroredStrategy``.

    ``tf.distribute.experimental.PreemptionCheckpointHandler`` watches every
    worker for SIGTERM; after each compiled call all workers ask it whether
    one was signalled, and if so they save a checkpoint together and stop.
    """

    def __init__(self, strategy: tf.distribute.Strategy, checkpointer: Checkpointer) -> None:
        self.preempted = False
        config = tf.distribute.experimental.TerminationConfig(exit_fn=self._on_preemption)
        self.handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            strategy.cluster_resolver, checkpointer.manager, termination_config=config
        )

    def _on_preemption(self) -> None:
        self.preempted = True  # Stop as a signalled run does, instead of exiting at once.

    def on_loop_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        self.handler.save_checkpoint_if_preempted()
        if self.preempted:
            trainer.stop_training = True


class StopOnRequest(Callback):
    """Stops training after the current compiled call once ``event`` is set.

    With a multi-worker ``strategy`` the workers agree first (a SUM all-reduce
    of their flags after every compiled call), so a signal to one worker
    stops all of them at the same step and they save together.
    """

    def __init__(self, event: threading.Event, strategy: tf.distribute.Strategy | None = None) -> None:
        self.event = event
        self.strategy = strategy
        self._agree = None if strategy is None else tf.function(self._requests_across_workers)

    def _requests_across_workers(self, requested: tf.Tensor) -> tf.Tensor:
        flags = self.strategy.run(lambda: tf.identity(requested))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, flags, axis=None)

    def _check(self, trainer: Trainer) -> None:
        requested = self.event.is_set()
        if self._agree is not None:
            requested = float(self._agree(tf.constant(float(requested)))) > 0
        if requested:
            trainer.stop_training = True

    # Checked at every point where stopping loses nothing: before the first
    # step, after each compiled call, and after each epoch's validation.
    def on_train_begin(self, trainer: Trainer) -> None:
        self._check(trainer)

    def on_loop_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        self._check(trainer)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        self._check(trainer)
