"""The outer loop: epochs, progress, validation and callbacks around a trainer's compiled calls.

Plain Python between compiled calls, as Orbit's controller is: no summary,
progress bar or checkpoint runs inside XLA. It drives the trainer through a
small public interface: ``loop_function(method, kind)`` for compiled loops,
``use_averages(...)``, ``learning_rates()``, ``rollback()``,
``first_nonfinite_step``, ``stop_training``, ``steps_per_loop``,
``on_nonfinite``, ``strategy``, ``seed``, ``model`` and ``objective``; where
its fits stand is its own record, ``trainer.loop_state``
(``aeloops.training.loop_state``). Evaluation and predictions are in
``aeloops.training.inference``, the progress bar in
``aeloops.training.progress``.

>>> history = fit(trainer, x_train, epochs=2, batch_size=256)   # doctest: +SKIP
>>> history == trainer.fit(...)      # the same function, as a method   # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from aeloops.data.sources import (
    INPUT,
    DatasetSource,
    ResidentSource,
    StrategyArraySource,
    as_arrays,
    check_dataset,
    reshuffles_each_iteration,
)
from aeloops.training.compiled import is_distributed
from aeloops.training.inference import check_positive_int, check_targets, evaluate, predict
from aeloops.training.keras_callbacks import CallbackList
from aeloops.training.loop_state import EpochProgress
from aeloops.training.mode_probe import ModeProbe
from aeloops.training.progress import ProgressBar, progress_bar, shown
from aeloops.training.recovery import Rollback
from aeloops.training.step_records import (
    COUNTS,
    LOSS_SCALE_SKIPPED,
    NONFINITE_STEPS,
    RECOVERIES,
    ROLLED_BACK_STEPS,
    WEIGHT_PREFIX,
    WEIGHTED_PREFIX,
)

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = [
    "DivergedError",
    "NonFiniteLossError",
    "check_targets",
    "evaluate",
    "fit",
    "predict",
]

# The longest a compiled call should run, in seconds: a stop (Ctrl-C, SIGTERM, a callback) is honoured
# between calls, so a run whose steps are slow runs fewer per call rather than keep a stop waiting.
CALL_SECONDS = 10.0

Source = ResidentSource | DatasetSource | StrategyArraySource
Data = Any  # np.ndarray, a dict of np.ndarray, a tf.data.Dataset, or a source of its own epochs (ImageStream).


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss term turns NaN or Inf and the trainer is set to stop."""


class DivergedError(FloatingPointError):
    """Raised when a rolling-back trainer diverges once more after its last allowed recovery."""


def fit(
    trainer: Trainer,
    data: Data,
    epochs: int = 1,
    batch_size: int = 32,
    *,
    shuffle: bool = True,
    validation_data: Data | None = None,
    initial_epoch: int | None = None,
    initial_step: int | None = None,
    steps_per_epoch: int | None = None,
    callbacks: Sequence[Any] = (),
    verbose: int = 1,
) -> dict[str, list[float]]:
    """Trains ``trainer`` for ``epochs`` epochs and returns a Keras-shaped history of the epochs run.

    A trainer counts the epochs it has trained (``completed_epochs``), and
    each ``fit`` continues the count: a second ``fit(x, epochs=2)`` trains
    epochs 3 and 4, with their own shuffles, and TensorBoard's epochs go on
    increasing. A fit that did not reach its end (interrupted, or restored
    from one of its checkpoints by ``Checkpointer.restore``) is finished by
    the next one, from the step it reached: ``epochs`` then counts from the
    interrupted fit's first epoch, so calling it again as it was called
    gives the uninterrupted run's weights and history, bit for bit.

    Args:
      trainer: the ``Trainer`` whose compiled steps run.
      data: images as a NumPy array (the ``"input"`` entry), a dict of
        arrays with an ``"input"`` entry, or a ``tf.data.Dataset`` of such
        batches (already batched; ``batch_size`` and ``shuffle`` are then
        the dataset's own business).
      epochs: how many epochs this fit trains, counted from its first (see
        above); with ``initial_epoch``, Keras's meaning: the epoch to stop
        after, counting ``initial_epoch``.
      batch_size: the global batch size; the last partial batch of an
        epoch is dropped so every step has the same shape.
      shuffle: reshuffle arrays every epoch, seeded by ``(seed, epoch)``.
      validation_data: like ``data``; evaluated after every epoch.
      initial_epoch: Keras's: the epoch to start at, whatever the trainer
        has trained (``0`` starts the count again).
      initial_step: with ``initial_epoch``, when resuming from a checkpoint
        taken mid-epoch, the global step it holds: the first epoch then
        skips the batches it already trained on.
      steps_per_epoch: for a ``Dataset``; by default one pass of it.
      callbacks: aeloops ``Callback`` objects (checkpoints with
        ``Checkpointer``, TensorBoard with ``aeloops.SummaryWriter``, ...)
        and any ``keras.callbacks.Callback``, with Keras's meaning
        (``aeloops.training.keras_callbacks`` says how each hook is called).
      verbose: 0 silent, 1 a progress bar, 2 one line per epoch.

    Returns:
      ``{"loss": [...], "<term>": [...], "val_loss": [...], ...}``, one
      float per epoch run: whatever the train step returns, the gradient
      norms, ``weight/<term>`` for scheduled weights, and ``val_`` copies of
      what the test step returns.
    """
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    first_epoch, end, done = _span(trainer, epochs, initial_epoch, initial_step)
    source = _training_source(trainer, data, batch_size, steps_per_epoch)
    if initial_step is not None:
        done = initial_step - first_epoch * source.steps_per_epoch
        done = done if 0 <= done < source.steps_per_epoch else 0
    # A fit that finishes an unfinished one returns that fit's whole history: its rows so far come back.
    finishing = initial_epoch is None and trainer.loop_state.run_first_epoch is not None
    history = {name: list(values) for name, values in trainer.loop_state.history.items()} if finishing else {}
    trainer.loop_state.history = history
    trainer.stop_training = False
    trainer.use_averages(False)  # Train the raw weights, whatever the last fit left in the model.
    trainer.loop_state.run_first_epoch = end - epochs if initial_epoch is None else initial_epoch
    probe = ModeProbe(trainer, remaining_steps=(end - first_epoch) * source.steps_per_epoch - done)
    hooks = CallbackList(trainer, callbacks, epochs=end, steps=source.steps_per_epoch, verbose=verbose)
    rollback = trainer.rollback()
    hooks.train_begin()
    logs: dict[str, float] = {}
    for epoch in range(first_epoch, end):
        if trainer.stop_training:  # Asked to stop before this epoch began (say, during validation).
            break
        hooks.epoch_begin(epoch)
        progress = progress_bar(verbose, epoch, end, source.steps_per_epoch)
        start = time.perf_counter()
        if epoch != first_epoch:
            done = 0
        carried = trainer.loop_state.epoch_progress if done else None
        if carried is not None and (carried.epoch, carried.steps) != (epoch, done):
            carried = None  # Progress of another epoch or step: this epoch's row counts the steps run now.
        epoch_logs, steps_run = _run_epoch(
            trainer, source, epoch, shuffle, batch_size, progress, hooks, probe, rollback, done, carried
        )
        if epoch_logs is None:  # Stopped mid-epoch: checkpoints keep the epoch_progress for the resume.
            break
        logs = epoch_logs
        trainer.loop_state.completed_epochs = epoch + 1
        logs.update(trainer.learning_rates())  # The rate in effect at the epoch's end, schedules included.
        logs["epoch_seconds"] = time.perf_counter() - start
        logs["samples_per_second"] = steps_run * batch_size / logs["epoch_seconds"]
        if validation_data is not None:
            validation_started = time.perf_counter()
            hooks.test_begin()
            validation = evaluate(trainer, validation_data, batch_size=batch_size)
            hooks.test_end(validation)
            logs.update({f"val_{name}": value for name, value in validation.items()})
            logs["validation_seconds"] = time.perf_counter() - validation_started
        for name, value in logs.items():
            history.setdefault(name, []).append(value)
        if progress is not None:
            progress.update(source.steps_per_epoch, shown(logs))
        hooks.epoch_end(epoch, logs)
        if trainer.stop_training:
            break
    if trainer.loop_state.epoch_progress is None:  # Not stopped mid-epoch: this fit is over, the next starts its own.
        trainer.loop_state.run_first_epoch = None
    hooks.train_end(history, logs)
    trainer.use_averages(True)  # As Keras's fit leaves them: the model serves what evaluation measured.
    return history


def _span(trainer: Trainer, epochs: int, initial_epoch: int | None, initial_step: int | None) -> tuple[int, int, int]:
    """Returns the first epoch this fit runs, the epoch it stops before, and the steps of the first already run."""
    if initial_epoch is not None:
        if not 0 <= initial_epoch <= epochs:
            raise ValueError(f"initial_epoch must lie in [0, epochs={epochs}], got {initial_epoch}.")
        return initial_epoch, epochs, 0
    if initial_step is not None:
        raise ValueError("initial_step needs initial_epoch (the epoch that step falls in).")
    first = trainer.loop_state.completed_epochs
    begun = trainer.loop_state.run_first_epoch if trainer.loop_state.run_first_epoch is not None else first
    progress = trainer.loop_state.epoch_progress
    done = progress.steps if progress is not None and progress.epoch == first else 0
    reached = first + 1 if done else first  # An epoch partly trained must be finished.
    if begun + epochs < reached:
        where = f"is partway through epoch {first + 1}" if done else f"has trained to epoch {first}"
        raise ValueError(
            f"This trainer's unfinished fit began at epoch {begun + 1} and {where}, past epochs={epochs}; "
            f"pass epochs={reached - begun} or more to finish it."
        )
    return first, begun + epochs, done


def _run_epoch(
    trainer: Trainer,
    source: Source,
    epoch: int,
    shuffle: bool,
    batch_size: int,
    progress: ProgressBar | None,
    hooks: CallbackList,
    probe: ModeProbe,
    rollback: Rollback | None,
    done: int,
    carried: EpochProgress | None,
) -> tuple[dict[str, float] | None, int]:
    """Runs ``epoch`` from its step ``done``; returns its mean values (None if stopped early) and steps run.

    ``carried`` holds the sums of the epoch's steps before ``done``, run
    before a resume; the means then cover the whole epoch.
    """
    steps = source.steps_per_epoch
    run_loop = _epoch_runner(trainer, source, epoch, shuffle, done)
    sums: dict[str, float] = dict(carried.sums) if carried is not None else {}
    counted = done if carried is not None else 0
    steps_run = 0
    started = time.perf_counter()
    step_seconds = 0.0  # The last call's seconds per step, once one has run.
    while done < steps:
        count = min(probe.steps_for_call(trainer.steps_per_loop), steps - done)
        # Rollback undoes whole calls, so its calls keep their planned length: a resume cuts them alike.
        if step_seconds and rollback is None:
            count = max(1, min(count, int(CALL_SECONDS / step_seconds)))
        hooks.loop_begin(done)
        if rollback is not None:
            rollback.before_call()
        traced = dict(trainer.trace_counts)
        call_started = time.perf_counter()
        results = {name: float(value) for name, value in run_loop(done, count).items()}
        call_seconds = time.perf_counter() - call_started
        # A call that traced (and compiled) its loop timed the tracing, not the steps: it would cut the next call.
        if trainer.trace_counts == traced:
            step_seconds = call_seconds / count
        if probe.record(count, call_seconds):
            run_loop = _epoch_runner(trainer, source, epoch, shuffle, done + count)
        if trainer.on_nonfinite == "stop" and results[NONFINITE_STEPS] > 0:
            _raise_nonfinite(trainer)
        call_means = None
        if rollback is not None:
            results, call_means = _judge(rollback, results, count, progress)
        sums = {name: sums.get(name, 0.0) + value for name, value in results.items()}
        done += count
        counted += count
        steps_run += count
        trainer.loop_state.epoch_progress = EpochProgress(epoch, done, sums)
        so_far = means(trainer, sums, counted)
        if progress is not None and done < steps:  # fit() shows the epoch's last values.
            throughput = steps_run * batch_size / (time.perf_counter() - started)
            progress.update(done, [*shown(so_far), ("samples_per_second", throughput)])
        hooks.loop_end(done - 1, call_means or means(trainer, results, count), so_far)
        if trainer.stop_training and done < steps:
            return None, steps_run
    trainer.loop_state.epoch_progress = None  # The epoch is whole: its row goes to the history, not to checkpoints.
    return means(trainer, sums, counted), steps_run


def means(trainer: Trainer, sums: Mapping[str, float], steps: int) -> dict[str, float]:
    """Returns the mean of each summed value over the steps that were not skipped; counts stay counts.

    A scheduled weight is reported as ``sum(weight * term) / sum(term)``:
    the weight that, applied to the term's logged mean, gives its share of
    the logged ``loss`` (a plain mean of the weight would not, as the weight
    and the term change together).
    """
    skipped = sums.get(NONFINITE_STEPS, 0.0) + sums.get(ROLLED_BACK_STEPS, 0.0)
    # An epoch whose every step was skipped has no mean: NaN (null in history.json), not a made-up 0.
    divisor = steps - skipped if steps - skipped >= 1 else math.nan
    result = {}
    for name, value in sums.items():
        if name in COUNTS:
            if name in _POLICY_COUNTS.get(trainer.on_nonfinite, (name,)):
                result[name] = float(round(value))
        elif name.startswith(WEIGHTED_PREFIX):
            continue
        elif name.startswith(WEIGHT_PREFIX):
            term = name[len(WEIGHT_PREFIX) :]
            weighted, total = sums.get(f"{WEIGHTED_PREFIX}{term}", 0.0), sums.get(term, 0.0)
            result[name] = weighted / total if total != 0 else value / steps
        else:
            result[name] = value / divisor
    return result


# The counts a non-finite policy reports; the others' are always 0 under it.
_POLICY_COUNTS = {
    "stop": (LOSS_SCALE_SKIPPED,),
    "skip": (NONFINITE_STEPS, LOSS_SCALE_SKIPPED),
    "rollback": (LOSS_SCALE_SKIPPED, RECOVERIES, ROLLED_BACK_STEPS),
}


def _judge(
    rollback: Rollback, results: dict[str, float], count: int, progress: ProgressBar | None
) -> tuple[dict[str, float], dict[str, float] | None]:
    """Keeps a good call's results; rolls a bad one back and returns what stands for it, with its hooks' logs."""
    reason = rollback.verdict(results, count)
    if reason is None:
        rollback.accept(results, count)
        return {**results, RECOVERIES: 0.0, ROLLED_BACK_STEPS: 0.0}, None
    if rollback.recoveries >= rollback.policy.max_recoveries:
        rollback.give_up()
        raise DivergedError(
            f"After {rollback.recoveries} recoveries, the most allowed (max_recoveries, --max-recoveries), {reason}; "
            f"training stopped with the state of step {rollback.first_step} in memory, before saving it. Allow more "
            "recoveries, lower the learning rate at each (learning_rate_factor, --rollback-lr-factor) or from the "
            "start, or check the data."
        )
    line = rollback.recover(reason, count)
    if progress is not None:
        progress.write_line(line)
    # The call's values are undone: only its counts stand, for the epoch's row and the hooks.
    counts = {RECOVERIES: 1.0, ROLLED_BACK_STEPS: float(count)}
    return {**dict.fromkeys(results, 0.0), **counts}, counts


def _raise_nonfinite(trainer: Trainer) -> None:
    step = int(trainer.first_nonfinite_step.numpy())
    subject = trainer.first_nonfinite_subject()
    if subject != "the gradient":  # What the first non-finite step computed, not what NaN weights made of later steps.
        what = f"{subject[0].upper()}{subject[1:]} became NaN or Inf at step {step}"
        advice = "Lower the learning rate or check the data, or go on past such steps"
    else:
        what = f"The gradient became NaN or Inf at step {step} while every loss term was finite"
        advice = (
            "A train step that divides by a norm that can be zero (gradient surgery, say) needs "
            "tf.math.divide_no_nan; else lower the learning rate, or go on past such steps"
        )
    raise NonFiniteLossError(
        f"{what}; training stopped before saving it. {advice}: skip each (on_nonfinite='skip', --on-nonfinite "
        "skip) or roll back to the state before it (on_nonfinite='rollback', --on-nonfinite rollback)."
    )


def _is_source(data: Data) -> bool:
    """Whether ``data`` makes its own epochs (``aeloops.data.stream.ImageStream``, say): ``epoch_dataset``."""
    return hasattr(data, "epoch_dataset") and hasattr(data, "steps_per_epoch")


def _training_source(trainer: Trainer, data: Data, batch_size: int, steps_per_epoch: int | None) -> Source:
    if _is_source(data):
        return data
    if isinstance(data, tf.data.Dataset):
        check_dataset(data, getattr(trainer.model, "example_shape", None), "data")
        if reshuffles_each_iteration(data):
            warnings.warn(
                "This dataset draws a new order each epoch (shuffle's reshuffle_each_iteration=True) from a seed no "
                "checkpoint holds: a run resumed from a checkpoint sees another order. For an exact resume, shuffle "
                "with reshuffle_each_iteration=False and a seed of the epoch's, or pass arrays (docs/library.md).",
                stacklevel=3,
            )
        return DatasetSource(data, steps_per_epoch)
    arrays = as_arrays(data, "data")
    check_targets(trainer, arrays, "data")
    if len(arrays[INPUT]) < batch_size:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {len(arrays[INPUT])} training examples; lower --batch-size."
        )
    if is_distributed(trainer.strategy):  # Global batches in one device's order: the same steps as one device.
        return StrategyArraySource(arrays, batch_size, trainer.seed)
    return ResidentSource(arrays, batch_size, trainer.seed)


def _epoch_runner(trainer: Trainer, source: Source, epoch: int, shuffle: bool, done: int) -> Callable[[int, int], dict]:
    """Returns ``run(first_step, count)``, which trains ``count`` steps of ``epoch``."""
    if isinstance(source, ResidentSource):
        batch_indices = source.batch_indices(epoch, shuffle)
        loop = trainer.loop_function("train", "resident")
        return lambda first, count: loop(source.tensors, batch_indices, tf.constant(first), tf.constant(count))
    if isinstance(trainer.strategy, tf.distribute.MultiWorkerMirroredStrategy) and hasattr(source, "worker_dataset"):
        # Each worker reads its own files (shards by file) instead of every worker reading everything.
        iterator = iter(trainer.strategy.distribute_datasets_from_function(
            lambda context: source.worker_dataset(epoch, shuffle, done, context)
        ))  # fmt: skip
    else:
        dataset = source.epoch_dataset(epoch, shuffle, done)
        iterator = iter(trainer.strategy.experimental_distribute_dataset(dataset))
    loop = trainer.loop_function("train", "iterator")
    return lambda first, count: loop(iterator, tf.constant(count))
