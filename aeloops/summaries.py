"""TensorBoard summaries, written outside the compiled step.

``train/`` gets every objective term (unweighted) and the weighted total every
``every_steps`` steps, plus epoch means as ``epoch_<term>`` by epoch, the
learning rate and samples/s; ``validation/`` gets the same ``epoch_<term>``
tags, so TensorBoard draws training and validation on one chart.

>>> writer = SummaryWriter(trainer, "runs/x/tensorboard", every_steps=100)  # doctest: +SKIP
>>> trainer.fit(images, callbacks=[writer])                                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from aeloops.loop import Callback, Trainer

__all__ = ["SummaryWriter"]

_TIMING = ("epoch_seconds", "samples_per_second")


class SummaryWriter(Callback):
    """Writes a run's scalars (and its config, once) for TensorBoard."""

    def __init__(
        self,
        trainer: Trainer,
        logdir: str | os.PathLike,
        every_steps: int = 100,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if every_steps < 1:
            raise ValueError(f"every_steps must be at least 1, got {every_steps}.")
        self.trainer = trainer
        self.logdir = os.fspath(logdir)
        self.every_steps = every_steps
        self.config = dict(config) if config is not None else None
        self.train_writer = tf.summary.create_file_writer(os.path.join(self.logdir, "train"))
        self.validation_writer = tf.summary.create_file_writer(os.path.join(self.logdir, "validation"))
        self._last_written_step = -1

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.config is not None:
            with self.train_writer.as_default(step=int(trainer.step.numpy())):
                text = json.dumps(self.config, indent=2, sort_keys=True)
                tf.summary.text("config", f"```\n{text}\n```")
            self.train_writer.flush()

    def on_loop_end(self, trainer: Trainer, logs: Mapping[str, float]) -> None:
        step = int(trainer.step.numpy())
        # A compiled call runs several steps; write once per crossed multiple.
        if step // self.every_steps == self._last_written_step // self.every_steps:
            return
        self._last_written_step = step
        with self.train_writer.as_default(step=step):
            for name, value in logs.items():
                tf.summary.scalar(name, value)
            tf.summary.scalar("learning_rate", float(trainer.optimizer.learning_rate))

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Mapping[str, float]) -> None:
        with self.train_writer.as_default(step=epoch):
            for name, value in logs.items():
                if not name.startswith("val_"):
                    tf.summary.scalar(name if name in _TIMING else f"epoch_{name}", value)
        with self.validation_writer.as_default(step=epoch):
            for name, value in logs.items():
                if name.startswith("val_"):
                    tf.summary.scalar(f"epoch_{name[len('val_') :]}", value)
        self.train_writer.flush()
        self.validation_writer.flush()

    def on_train_end(self, trainer: Trainer, history: Mapping[str, list[float]]) -> None:
        self.train_writer.flush()
        self.validation_writer.flush()
