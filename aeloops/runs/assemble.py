"""A run's second phase: the trainer, its checkpoints restored, and the callbacks and summaries around it.

``assemble`` creates the run directory (or reads a resumed one): from here
on the run has written something.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from collections.abc import Callable, Sequence

import numpy as np

from aeloops.data.stream import ImageStream
from aeloops.objectives import schedules
from aeloops.runs import record as run_record
from aeloops.runs import watching
from aeloops.runs.callbacks import FirstCallTimer, HistoryFile, PreemptionHandling, StopOnRequest
from aeloops.runs.checkpoints import Checkpointer
from aeloops.runs.config import OPTIMIZER_OPTIONS, TrainConfig, saved_config
from aeloops.runs.datasets import fingerprint, spread_sample
from aeloops.runs.directory import RunDirectory, worker_scratch_dir, write_json
from aeloops.runs.objective import unused_outputs
from aeloops.runs.prepare import Prepared
from aeloops.runs.sample_watch import sample_scalars
from aeloops.runs.tracking import MlflowTracking
from aeloops.runs.trainers import build_trainer
from aeloops.tensorboard.summaries import SummaryWriter
from aeloops.training.callbacks import Callback
from aeloops.training.trainer import Trainer

__all__ = ["GRID_EXAMPLES", "Assembled", "assemble", "hyperparameters"]

# How many test images reconstructions.png and TensorBoard show.
GRID_EXAMPLES = 10


@dataclasses.dataclass
class Assembled:
    """The trainer and everything around it, ready to train: what ``fit`` is given and what the outputs read."""

    trainer: Trainer
    checkpointer: Checkpointer
    watchers: dict[str, Callback]
    summaries: SummaryWriter
    tracker: MlflowTracking | None
    callbacks: list[Callback]
    history: dict[str, list[float]]
    epochs: int
    initial_epoch: int
    shown: np.ndarray  # The examples reconstructions.png shows.
    first_call: FirstCallTimer


def assemble(
    prepared: Prepared,
    run_dir: RunDirectory,
    log: Callable[[str], None],
    stop_event: threading.Event | None,
    mlflow: str | None,
    extra_callbacks: Sequence[Callback],
) -> Assembled | None:
    """Builds the trainer, writes or restores the run, and lines up its callbacks; None if stopped before."""
    config, datasets, chief = prepared.config, prepared.datasets, prepared.chief
    trainer = build_trainer(config, prepared.model, prepared.strategy)
    watching.check_monitor(config, trainer.objective, has_validation=datasets.validation is not None)
    unused = unused_outputs(prepared.model, trainer.objective)
    if unused:
        names = ", ".join(repr(name) for name in unused)
        log(
            f"Note: no loss term reads the model's output {names}; add one with "
            f"--set objective.<name>.output={unused[0]} and .loss=... (docs/cli.md)."
        )
    if stop_event is not None and stop_event.is_set():  # A signal during start-up.
        log("Stopped before training began; nothing was written.")
        return None
    if chief and not config.resume:
        run_dir.create(saved_config(config))
    # The other workers take part in every save, into scratch directories.
    scratch = None if chief else worker_scratch_dir(run_dir.path) / "checkpoints"
    # Every checkpoint records what it was trained on and the history up to its step.
    history: dict[str, list[float]] = {}
    record = {
        "settings": run_record.settings(saved_config(config)),
        "data": {
            "train": fingerprint(datasets.train),
            "validation": fingerprint(datasets.validation),
        },
        "dataset": config.dataset,
    }
    checkpointer = Checkpointer(
        trainer, run_dir.checkpoints, config.keep_checkpoints, write_directory=scratch, metadata=record
    )
    checkpointer.track("history", history)
    # The best checkpoint, early stopping and plateau reductions; their state is in every checkpoint.
    watchers = watching.make_watchers(config, trainer, (scratch or run_dir.checkpoints) / "best")
    for name, watcher in watchers.items():
        checkpointer.track(name, watcher.state)
    resuming = config.resume and checkpointer.latest_to_restore is not None
    if config.resume and not resuming:  # Killed while its first checkpoint was being written, say.
        log(f"{run_dir.path} stopped before its first checkpoint; starting it again from step 0 with its settings.")
    if resuming:
        run_record.restore(checkpointer, record, history, run_dir, chief, log)
    # A run that stopped early is finished: resuming it only writes its outputs again.
    epochs = watchers["early_stopping"].state["stopped"] or config.epochs
    step = int(trainer.step.numpy())
    initial_epoch = min(step // prepared.steps_per_epoch, epochs)
    if resuming:
        log(f"Resuming {run_dir.path} at step {step} (epoch {initial_epoch + 1}).")
        if chief:  # A resume may extend the run (--epochs); config.json keeps describing the whole run.
            trained = step // prepared.steps_per_epoch  # Never fewer epochs than were trained.
            write_json(run_dir.config, saved_config(dataclasses.replace(config, epochs=max(config.epochs, trained))))
    summaries, shown = _summaries(prepared, trainer, run_dir, log)
    # history.json is written before the checkpoint: a kill between the two leaves it ahead, and a
    # resume rewrites it from the checkpoint's own history.
    first_call = FirstCallTimer()
    callbacks: list[Callback] = [first_call, *([HistoryFile(run_dir, history)] if chief else [])]
    # Watchers decide before the checkpoint of the epoch saves what they decided.
    callbacks += [*watchers.values(), checkpointer, *([summaries] if chief else [])]
    if config.strategy == "multiworker":
        callbacks.append(PreemptionHandling(prepared.strategy, checkpointer))
    if stop_event is not None:
        callbacks.append(StopOnRequest(stop_event, prepared.strategy if config.strategy == "multiworker" else None))
    tracker = None
    if mlflow is not None and chief:  # After HistoryFile: each epoch's row is in the history it copies.
        tracker = MlflowTracking(mlflow, run_dir, saved_config(config), history, _warn)
        callbacks.append(tracker)
    callbacks += list(extra_callbacks)
    return Assembled(
        trainer, checkpointer, watchers, summaries, tracker, callbacks, history, epochs, initial_epoch, shown,
        first_call,
    )  # fmt: skip


def _summaries(
    prepared: Prepared, trainer: Trainer, run_dir: RunDirectory, log: Callable[[str], None]
) -> tuple[SummaryWriter, np.ndarray]:
    """Returns the run's TensorBoard writer and the examples its pictures (and reconstructions.png) show."""
    config, datasets = prepared.config, prepared.datasets
    # Fixed examples for the pictures (the first few) and the codes' histogram and Projector (1,000): a seeded
    # sample taking each class in turn where there are labels, so class folders in sorted order show them all.
    fixed = datasets.validation
    if fixed is None:
        fixed = datasets.train.images(1000) if isinstance(datasets.train, ImageStream) else datasets.train
    labels = None if datasets.labels is None else np.asarray(datasets.labels)[: len(fixed)]
    chosen = spread_sample(labels, len(fixed), 1000, config.seed)
    fixed = fixed[chosen]
    labels = None if labels is None else datasets.label_names(labels[chosen])
    shown = fixed[:GRID_EXAMPLES]
    summaries = SummaryWriter(
        trainer,
        run_dir.tensorboard,
        config.summary_every,
        examples=shown,
        histogram_examples=fixed,
        labels=labels,
        config=config.to_dict(),
        hparams=hyperparameters(config, trainer),
        trial_id=run_dir.path.name,
        profile_steps=config.profile_window(),
        projector_every=config.projector_every,
        gradient_cosines=config.gradient_cosines,
        image_shape=datasets.image_shape,
        epoch_scalars=sample_scalars(trainer, config, datasets, log) if config.fid_every else None,
        epoch_scalars_every=config.fid_every or 1,
    )
    return summaries, shown


def hyperparameters(config: TrainConfig, trainer: Trainer) -> dict[str, float | str]:
    """Returns what TensorBoard's HParams dashboard shows of the run: the values in effect, not the requests.

    The dataset as given, the images' shape (``28x28x1``), the epochs, the
    validation images' source and streaming; learning rates as numbers (one
    per part), the model's options changed, the optimizer options, the
    mode (``auto`` until it has chosen), every term's weight (a schedule by
    its description).
    """
    if config.validation_data is not None and config.validation:
        validation = config.validation_data
    elif config.validation_split is not None and config.validation:
        validation = f"{config.validation_split:g} of the training images"
    else:
        validation = "the test split" if config.validation else "none"
    values: dict[str, float | str] = {
        "model": config.model,
        "dataset": config.dataset,
        # What tells runs of one model apart besides its settings: the images' size and colours, the
        # length of the run, where validation came from and whether the images streamed from disk.
        "image_shape": "x".join(map(str, config.image_shape or ())) or "the data's own",
        "epochs": config.epochs,
        "validation": validation,
        "stream": config.stream,
        "batch_size": config.batch_size,
        "mode": config.mode,  # "auto" until it has chosen; SummaryWriter writes the choice.
        "precision": config.precision,
        "seed": config.seed,
        **trainer.learning_rates(),
    }
    for option, value in config.model_options.items():  # Lists as text: HParams columns hold scalars.
        values[f"model/{option}"] = value if isinstance(value, (int, float, str)) else json.dumps(value)
    for part, settings in config.optimizer_settings().items():
        prefix = "" if part == "model" else f"{part}/"
        values[f"{prefix}optimizer"] = settings["optimizer"]
        for option in OPTIMIZER_OPTIONS:
            if option == "ema_momentum" and not settings["use_ema"]:
                continue  # A momentum without a moving average means nothing.
            if settings[option] is not None and settings[option] is not False:
                values[f"{prefix}{option}"] = settings[option]
    for term in trainer.objective.terms:
        values[f"weight/{term.name}"] = schedules.describe(term.weight)
    return values


def _warn(message: str) -> None:
    """One line on stderr: something beside the run failed, and the run goes on."""
    print(f"aeloops.train: warning: {message}", file=sys.stderr, flush=True)
