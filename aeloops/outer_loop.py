"""The outer loop: epochs, progress, validation and callbacks around the trainer's compiled calls.

``Trainer`` inherits it; the inner loop (compiled steps) lives in
``aeloops.loop``. Everything here is plain Python between compiled calls:
no summary, progress bar or checkpoint runs inside XLA.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from aeloops.callbacks import Callback
from aeloops.objective import LAYER_LOSSES, TOTAL
from aeloops.sources import INPUT, DatasetSource, ResidentSource, as_arrays

__all__ = [
    "GRADIENT_NORM",
    "LOSS_SCALE_SKIPPED",
    "NONFINITE_POLICIES",
    "NONFINITE_STEPS",
    "NonFiniteLossError",
    "OuterLoop",
]

GRADIENT_NORM = "gradient_norm"
# Steps whose loss terms were NaN or Inf: counted per epoch, not averaged.
NONFINITE_STEPS = "skipped_steps"
NONFINITE_POLICIES = ("stop", "skip")
# Steps a mixed_float16 loss scaler skipped in an epoch.
LOSS_SCALE_SKIPPED = "loss_scale_skipped_steps"
# How many fixed examples fit(logdir=...) shows in TensorBoard.
SUMMARY_EXAMPLES = 8

Source = ResidentSource | DatasetSource
Data = Any  # np.ndarray, a dict of np.ndarray, or a tf.data.Dataset.


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss term turns NaN or Inf and the trainer is set to stop."""


class OuterLoop:
    """``fit`` and its epoch loop; mixed into ``Trainer``, whose compiled calls it drives."""

    def fit(
        self,
        data: Data,
        epochs: int = 1,
        batch_size: int = 32,
        *,
        shuffle: bool = True,
        validation_data: Data | None = None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        callbacks: Sequence[Callback] = (),
        verbose: int = 1,
        logdir: str | None = None,
        summary_every: int = 100,
    ) -> dict[str, list[float]]:
        """Trains for ``epochs`` epochs and returns a Keras-shaped history.

        Args:
          data: images as a NumPy array (the ``"input"`` entry), a dict of
            arrays with an ``"input"`` entry, or a ``tf.data.Dataset`` of such
            batches (already batched; ``batch_size`` and ``shuffle`` are then
            the dataset's own business).
          epochs: the epoch to stop after, counting ``initial_epoch``.
          batch_size: the global batch size; the last partial batch of an
            epoch is dropped so every step has the same shape.
          shuffle: reshuffle arrays every epoch, seeded by ``(seed, epoch)``.
          validation_data: like ``data``; evaluated after every epoch.
          initial_epoch: the epoch to start at, when resuming.
          steps_per_epoch: for a ``Dataset``; by default one pass of it.
          callbacks: ``Callback`` objects for checkpoints, summaries, ...
          verbose: 0 silent, 1 a progress bar, 2 one line per epoch.
          logdir: write TensorBoard summaries here (``aeloops.summaries``),
            with reconstructions of the first validation (else training)
            examples.
          summary_every: steps between scalar summaries when ``logdir`` is set.

        Returns:
          ``{"loss": [...], "<term>": [...], "val_loss": [...], ...}``, one
          float per epoch run.
        """
        _check_positive_int("epochs", epochs)
        _check_positive_int("batch_size", batch_size)
        if not 0 <= initial_epoch <= epochs:
            raise ValueError(f"initial_epoch must lie in [0, epochs={epochs}], got {initial_epoch}.")
        source = self._training_source(data, batch_size, steps_per_epoch)
        if logdir is not None:
            from aeloops.summaries import SummaryWriter  # Deferred: summaries imports the trainer.

            shown = next((d for d in (validation_data, data) if not isinstance(d, tf.data.Dataset)), None)
            examples = None if shown is None else as_arrays(shown, "data")[INPUT][:SUMMARY_EXAMPLES]
            callbacks = [*callbacks, SummaryWriter(self, logdir, summary_every, examples=examples)]
        history: dict[str, list[float]] = {}
        self.stop_training = False
        for callback in callbacks:
            callback.on_train_begin(self)
        for epoch in range(initial_epoch, epochs):
            progress = self._progress(verbose, epoch, epochs, source.steps_per_epoch)
            start = time.perf_counter()
            applied_before = int(self.optimizer.iterations.numpy())
            logs, steps_run = self._run_epoch(source, epoch, shuffle, batch_size, progress, callbacks)
            if logs is None:  # Stopped mid-epoch: a partial epoch leaves no history row.
                break
            logs["epoch_seconds"] = time.perf_counter() - start
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                # Keras's loss scaling skips overflowing steps without counting them as iterations.
                applied = int(self.optimizer.iterations.numpy()) - applied_before
                logs[LOSS_SCALE_SKIPPED] = float(steps_run - applied)
            logs["samples_per_second"] = steps_run * batch_size / logs["epoch_seconds"]
            if validation_data is not None:
                validation = self.evaluate(validation_data, batch_size=batch_size)
                logs.update({f"val_{name}": value for name, value in validation.items()})
            for name, value in logs.items():
                history.setdefault(name, []).append(value)
            if progress is not None:
                shown = [(name, value) for name, value in logs.items() if name != "epoch_seconds"]
                progress.update(source.steps_per_epoch, shown)
            for callback in callbacks:
                callback.on_epoch_end(self, epoch, logs)
            if self.stop_training:
                break
        for callback in callbacks:
            callback.on_train_end(self, history)
        return history

    def _run_epoch(
        self,
        source: Source,
        epoch: int,
        shuffle: bool,
        batch_size: int,
        progress: keras.utils.Progbar | None,
        callbacks: Sequence[Callback],
    ) -> tuple[dict[str, float] | None, int]:
        """Runs the rest of ``epoch``; returns its mean terms (None if stopped early) and steps run."""
        steps = source.steps_per_epoch
        done = int(self.step.numpy()) - epoch * steps
        # A resumed run restarts mid-epoch; anything else starts at step 0.
        done = done if 0 <= done < steps else 0
        run_loop = self._epoch_runner(source, epoch, shuffle, done)
        sums: dict[str, float] = {}
        counted = 0
        started = time.perf_counter()
        while done < steps:
            count = min(self.steps_per_loop, steps - done)
            results = {name: float(value) for name, value in run_loop(done, count).items()}
            if self.on_nonfinite == "stop" and results[NONFINITE_STEPS] > 0:
                self._raise_nonfinite(results)
            sums = {name: sums.get(name, 0.0) + value for name, value in results.items()}
            done += count
            counted += count
            if progress is not None and done < steps:  # fit() shows the epoch's last values.
                throughput = counted * batch_size / (time.perf_counter() - started)
                means = list(self._means(sums, counted).items())
                progress.update(done, [*means, ("samples_per_second", throughput)])
            for callback in callbacks:
                callback.on_loop_end(self, self._means(results, count))
            if self.stop_training and done < steps:
                return None, counted
        return self._means(sums, counted), counted

    def _means(self, sums: Mapping[str, float], steps: int) -> dict[str, float]:
        """Returns mean terms over the steps that were not skipped, and the skip count in skip mode."""
        skipped = sums.get(NONFINITE_STEPS, 0.0)
        means = {name: value / max(steps - skipped, 1) for name, value in sums.items() if name != NONFINITE_STEPS}
        if self.on_nonfinite == "skip":
            means[NONFINITE_STEPS] = float(round(skipped))
        return means

    def _raise_nonfinite(self, results: Mapping[str, float]) -> None:
        names = [
            name
            for name, value in results.items()
            if not math.isfinite(value) and name not in (TOTAL, GRADIENT_NORM, NONFINITE_STEPS)
        ]
        what = f"loss term {', '.join(map(repr, names))}" if names else "the gradient"
        raise NonFiniteLossError(
            f"The {what} became NaN or Inf at step {int(self.first_nonfinite_step.numpy())}; training stopped "
            "before saving it. Lower the learning rate or check the data, or skip such steps "
            "(on_nonfinite='skip', --on-nonfinite skip)."
        )

    def _progress(self, verbose: int, epoch: int, epochs: int, steps: int) -> keras.utils.Progbar | None:
        if verbose == 0:
            return None
        if verbose == 1:
            print(f"Epoch {epoch + 1}/{epochs}")
        names = (*self.objective.names, LAYER_LOSSES, TOTAL)
        # The loop passes running means itself, so Progbar must not average them.
        shown_as_is = ["samples_per_second", GRADIENT_NORM, *names, *(f"val_{name}" for name in names)]
        return keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=shown_as_is, unit_name="step")

    def _training_source(self, data: Data, batch_size: int, steps_per_epoch: int | None) -> Source:
        if isinstance(data, tf.data.Dataset):
            return DatasetSource(data, steps_per_epoch)
        arrays = as_arrays(data, "data")
        if len(arrays[INPUT]) < batch_size:
            raise ValueError(
                f"batch_size {batch_size} is larger than the {len(arrays[INPUT])} training "
                "examples; lower --batch-size."
            )
        if _is_distributed(self.strategy):
            dataset = tf.data.Dataset.from_tensor_slices(arrays)
            return DatasetSource(dataset, None, batch_size=batch_size, seed=self.seed)
        return ResidentSource(arrays, batch_size, self.seed)

    def _epoch_runner(self, source: Source, epoch: int, shuffle: bool, done: int) -> Callable[[int, int], dict]:
        """Returns ``run(first_step, count)``, which trains ``count`` steps of ``epoch``."""
        if isinstance(source, ResidentSource):
            batch_indices = source.batch_indices(epoch, shuffle)
            loop = self._loop_function("train_loop", self._train_loop_resident)
            return lambda first, count: loop(source.tensors, batch_indices, tf.constant(first), tf.constant(count))
        dataset = source.epoch_dataset(epoch, shuffle, done)
        iterator = iter(self.strategy.experimental_distribute_dataset(dataset))
        loop = self._loop_function("train_dataset_loop", self._train_loop_iterator, xla_allowed=False)
        return lambda first, count: loop(iterator, tf.constant(count))


def _is_distributed(strategy: tf.distribute.Strategy) -> bool:
    return strategy.num_replicas_in_sync > 1 or isinstance(
        strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
    )


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
