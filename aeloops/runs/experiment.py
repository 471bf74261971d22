"""One training run from a ``TrainConfig``: the logic behind ``python -m aeloops.train``.

>>> config = TrainConfig(model="dense", dataset="mnist-sample", epochs=1)  # doctest: +SKIP
>>> history = run(config, RunDirectory("runs/demo"))                       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from aeloops.data.stream import ImageStream
from aeloops.files import replacing
from aeloops.memory import fits
from aeloops.models import registry
from aeloops.models.registry import MNIST_SHAPE
from aeloops.objectives import schedules
from aeloops.runs import record as run_record
from aeloops.runs import watching
from aeloops.runs.callbacks import FirstCallTimer, HistoryFile, PreemptionHandling, StopOnRequest
from aeloops.runs.checkpoints import Checkpointer
from aeloops.runs.config import OPTIMIZER_OPTIONS, VERSIONS_KEY, TrainConfig, software_versions
from aeloops.runs.datasets import (
    Datasets,
    fingerprint,
    load_datasets,
    read_images,
    scan_source,
    shape_datasets,
    spread_sample,
    stream_datasets,
)
from aeloops.runs.directory import (
    RunDirectory,
    is_chief_task,
    task_address,
    worker_scratch_dir,
    write_json,
    writing,
)
from aeloops.runs.objective import build_objective, unused_outputs
from aeloops.runs.tracking import MlflowTracking
from aeloops.runs.trainers import trainer_class
from aeloops.tensorboard.images import image_grid, write_png
from aeloops.tensorboard.summaries import SummaryWriter, reconstruction_rows
from aeloops.training import mode_probe
from aeloops.training.callbacks import Callback
from aeloops.training.optimizers import make_optimizer
from aeloops.training.recovery import Recovery
from aeloops.training.trainer import Trainer

__all__ = [
    "Datasets",
    "RunResult",
    "build_trainer",
    "load_datasets",
    "read_images",
    "shape_datasets",
    "make_optimizers",
    "make_strategy",
    "precision",
    "run",
]

# How many test images reconstructions.png and TensorBoard show.
GRID_EXAMPLES = 10


class RunResult(NamedTuple):
    """What a run leaves: its history and whether a stop request cut it short."""

    history: dict[str, list[float]]
    stopped: bool


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Returns the ``tf.distribute`` strategy called ``name``."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multiworker needs TF_CONFIG describing the cluster and this task.")
        _check_port_free(task_address())
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}; choose default, mirrored or multiworker.")


def _check_port_free(address: str | None) -> None:
    """Refuses a task address whose port another process holds: TensorFlow's gRPC server would fail in a traceback."""
    if address is None:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"TF_CONFIG gives this task the address {address!r}, which has no port; write host:port.")
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as probe:
        # As gRPC binds: a port left in TIME_WAIT by a worker that exited is free, a listening one is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", int(port)))
        except OSError as error:
            raise ValueError(
                f"TF_CONFIG gives this task {address}, but port {port} cannot be taken here ({error.strerror}): "
                "another process holds it (an earlier worker still running?); stop it or choose a free port."
            ) from None


def _fill_dataset_size(config: TrainConfig, model: keras.Model, count: int) -> TrainConfig:
    """Gives a model with a ``dataset_size`` option (beta-TC-VAE's estimator) the run's training count.

    Only when the run did not set it; set before the step is traced, and
    recorded in the config, so evaluate, export and a resume rebuild it so.
    """
    if not hasattr(model, "dataset_size") or "dataset_size" in config.model_options:
        return config
    model.dataset_size = count
    return dataclasses.replace(config, model_options={**config.model_options, "dataset_size": count})


def _saved_config(config: TrainConfig) -> dict:
    """Returns config.json's content: without run_dir, so `--config <run>/config.json` repeats the run elsewhere.

    ``versions`` records the software the run used; loading the file ignores it.
    """
    settings = dataclasses.replace(config, run_dir=None, resume=False).to_dict()
    return {**settings, VERSIONS_KEY: software_versions()}


def write_generated_images(
    model: keras.Model, run_dir: RunDirectory, image_shape: Sequence[int] | None = None, side: int = 15
) -> None:
    """Writes ``samples.png`` (decoded prior draws), ``latent_traversal.png`` and, for a 2-D code, ``latent_map.png``.

    The traversal sweeps each of the first ten code dimensions over [-3, 3]
    (a row each); the map decodes a ``side`` x ``side`` grid of codes
    spanning [-2, 2] on each axis: the Keras blog's "2-D manifold of digits".
    """
    write_png(run_dir.path / "samples.png", image_grid(np.split(model.sample(40, seed=0), 4), shape=image_shape))
    write_png(run_dir.path / "latent_traversal.png", image_grid(model.latent_traversal(), shape=image_shape))
    rows = getattr(model, "latent_map", lambda side: None)(side)
    if rows is not None:
        write_png(run_dir.path / "latent_map.png", image_grid(rows, shape=image_shape))


def make_optimizers(config: TrainConfig) -> keras.optimizers.Optimizer | dict[str, keras.optimizers.Optimizer]:
    """Returns the run's optimizer, or one per part of the model (``config.optimizers``)."""
    parts = {}
    for part, settings in config.optimizer_settings().items():
        options = {name: settings[name] for name in OPTIMIZER_OPTIONS}
        try:
            parts[part] = make_optimizer(
                settings["optimizer"], settings["learning_rate"], watching.learning_rate_schedule(config), **options
            )
        except ValueError as error:
            where = "" if part == "model" else f"optimizers.{part}: "
            raise ValueError(f"{where}{error}") from None
    return parts["model"] if list(parts) == ["model"] else parts


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


def build_trainer(
    config: TrainConfig, model: keras.Model | None = None, strategy: tf.distribute.Strategy | None = None
) -> Trainer:
    """Returns the trainer ``config`` describes (model, objective, optimizers, strategy), without data.

    Builds the model and the strategy unless given. Call it under
    ``precision(config)``; ``run`` does.
    """
    strategy = strategy or make_strategy(config.strategy)
    spec = registry.get(config.model)
    with strategy.scope():  # Models and optimizers belong to the strategy they are created under.
        # A run records its images' shape; one that predates the record trained on MNIST's.
        model = model or spec.build(config.image_shape or MNIST_SHAPE, **config.model_options)
        optimizers = make_optimizers(config)
    return trainer_class(spec, model)(
        model,
        build_objective(config, model),
        optimizers,
        mode=config.mode,
        steps_per_loop=config.steps_per_loop,
        strategy=strategy,
        seed=config.seed,
        on_nonfinite=config.on_nonfinite,
        recovery=recovery(config),
        dynamic_binarization=config.binarize == "dynamic",
    )


def recovery(config: TrainConfig) -> Recovery | None:
    """Returns how the run recovers from divergence: its ``Recovery`` under ``on_nonfinite = "rollback"``."""
    if config.on_nonfinite != "rollback":
        return None
    return Recovery(
        max_recoveries=config.max_recoveries,
        learning_rate_factor=float(config.rollback_lr_factor),
        spike_factor=None if config.spike_factor is None else float(config.spike_factor),
        spike_window=config.spike_window,
    )


@contextlib.contextmanager
def precision(config: TrainConfig) -> Iterator[None]:
    """Sets Keras's global dtype policy to ``config.precision`` for the block, then puts the old one back."""
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.precision)
    try:
        yield
    finally:  # The policy is process-wide; leave it as it was found.
        keras.mixed_precision.set_global_policy(previous_policy)


def _warn(message: str) -> None:
    """One line on stderr: something beside the run failed, and the run goes on."""
    print(f"aeloops.train: warning: {message}", file=sys.stderr, flush=True)


def run(
    config: TrainConfig,
    run_dir: RunDirectory,
    *,
    verbose: int = 2,
    log: Callable[[str], None] = print,
    stop_event: threading.Event | None = None,
    launched: float | None = None,
    mlflow: str | None = None,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Trains as ``config`` says, writing everything into ``run_dir``.

    With ``config.resume`` the newest checkpoint in ``run_dir`` is restored
    and training continues at its step; ``history.json`` keeps growing.
    ``launched``, a ``time.perf_counter()`` reading taken when the command
    started, makes the closing line count from then (TensorFlow's import
    included) and say when the first training step ended. ``mlflow``, a
    tracking URI (or ``MLFLOW_DEFAULT``), also logs the run to MLflow
    (``aeloops.runs.tracking``). ``callbacks`` join the run's own, last.
    """
    with precision(config):
        return _run(config, run_dir, verbose, log, stop_event, launched, mlflow, callbacks)


def _run(
    config: TrainConfig,
    run_dir: RunDirectory,
    verbose: int,
    log: Callable[[str], None],
    stop_event: threading.Event | None,
    launched: float | None,
    mlflow: str | None = None,
    extra_callbacks: Sequence[Callback] = (),
) -> RunResult:
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(config.strategy)
    files, streaming = scan_source(config, log)
    if not streaming:
        images, dataset_name = read_images(config, log, files)
        image_shape = images.shape
    else:
        image_shape = files.shape
    # config.json records the shape the model is built for, so evaluate and export rebuild it without the data.
    config = dataclasses.replace(config, image_shape=list(image_shape))
    with strategy.scope():  # Models and optimizers belong to the strategy they are created under.
        model = registry.get(config.model).build(image_shape, **config.model_options)
    # The weights are there; training adds their gradients and (Adam's) two moving averages, in float32.
    fits(
        3 * 4 * model.count_params(),
        f"Training model {config.model} ({model.count_params():,} parameters): its gradients and optimizer state",
        "lower its sizes (--list-models names its options; --set model.<option>=...) or the images' (--image-size)",
    )
    if not streaming:
        datasets = shape_datasets(images, dataset_name, model.example_shape, config)
        del images  # The model-shaped copies are what training reads.
    else:
        datasets = stream_datasets(files, model.example_shape, config, log)
    if len(datasets.train) < config.batch_size:
        raise ValueError(
            f"--batch-size {config.batch_size} is larger than the {len(datasets.train)} training examples; lower it."
        )
    config = _fill_dataset_size(config, model, len(datasets.train))
    steps_per_epoch = len(datasets.train) // config.batch_size
    left_out = len(datasets.train) - steps_per_epoch * config.batch_size
    if left_out and not config.resume:  # Said once, when the run begins: every step has one shape.
        log(f"Each epoch trains {steps_per_epoch} batches of {config.batch_size}: {left_out} of the "
            f"{len(datasets.train):,} training images sit each epoch out (others each epoch, as it shuffles).")
    config = watching.resolve(config, steps_per_epoch, has_validation=datasets.validation is not None)
    trainer = build_trainer(config, model, strategy)
    objective = trainer.objective
    watching.check_monitor(config, objective, has_validation=datasets.validation is not None)
    unused = unused_outputs(model, objective)
    if unused:
        names = ", ".join(repr(name) for name in unused)
        log(
            f"Note: no loss term reads the model's output {names}; add one with "
            f"--set objective.<name>.output={unused[0]} and .loss=... (docs/cli.md)."
        )
    # Under MultiWorkerMirroredStrategy only the chief writes the run directory;
    # the other workers take part in every save, into scratch directories.
    chief = config.strategy != "multiworker" or is_chief_task()
    # config.json records what the run uses, not what was asked: the dataset
    # after any fall-back, and the mode "auto" chose once it has (see below).
    config = dataclasses.replace(config, dataset=datasets.name)
    if stop_event is not None and stop_event.is_set():  # A signal during start-up.
        log("Stopped before training began; nothing was written.")
        return RunResult({}, stopped=True)
    if chief and not config.resume:
        run_dir.create(_saved_config(config))
    scratch = None if chief else worker_scratch_dir(run_dir.path) / "checkpoints"
    # Every checkpoint records what it was trained on and the history up to its step.
    history: dict[str, list[float]] = {}
    record = {
        "settings": run_record.settings(_saved_config(config)),
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
    stopper = watchers["early_stopping"]
    # A run that stopped early is finished: resuming it only writes its outputs again.
    epochs = stopper.state["stopped"] or config.epochs
    initial_epoch = min(int(trainer.step.numpy()) // steps_per_epoch, epochs)
    if resuming:
        log(f"Resuming {run_dir.path} at step {int(trainer.step.numpy())} (epoch {initial_epoch + 1}).")
        if chief:  # A resume may extend the run (--epochs); config.json keeps describing the whole run.
            trained = int(trainer.step.numpy()) // steps_per_epoch  # Never fewer epochs than were trained.
            write_json(run_dir.config, _saved_config(dataclasses.replace(config, epochs=max(config.epochs, trained))))
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
    )
    # history.json is written before the checkpoint: a kill between the two leaves it ahead, and a
    # resume rewrites it from the checkpoint's own history.
    first_call = FirstCallTimer()
    callbacks: list[Callback] = [first_call, *([HistoryFile(run_dir, history)] if chief else [])]
    # Watchers decide before the checkpoint of the epoch saves what they decided.
    callbacks += [*watchers.values(), checkpointer, *([summaries] if chief else [])]
    if config.strategy == "multiworker":
        callbacks.append(PreemptionHandling(strategy, checkpointer))
    if stop_event is not None:
        callbacks.append(StopOnRequest(stop_event, strategy if config.strategy == "multiworker" else None))
    tracker = None
    if mlflow is not None and chief:  # After HistoryFile: each epoch's row is in the history it copies.
        tracker = MlflowTracking(mlflow, run_dir, _saved_config(config), history, _warn)
        callbacks.append(tracker)
    callbacks += list(extra_callbacks)
    started = launched if launched is not None else time.perf_counter()
    try:
        trainer.fit(
            datasets.train,
            epochs=epochs,
            batch_size=config.batch_size,
            validation_data=datasets.validation,
            initial_epoch=initial_epoch,
            initial_step=int(trainer.step.numpy()),
            callbacks=callbacks,
            verbose=verbose,
        )
    except BaseException:
        if chief:  # HParams shows the run as failed, rather than forever unknown.
            summaries.write_status("failed")
        if tracker is not None:
            tracker.finish("FAILED")
        raise
    if trainer.mode_report is not None:
        log(mode_probe.describe(trainer.mode_report))
    if chief and config.mode == "auto" and int(trainer.mode_choice.numpy()):  # What "auto" chose.
        write_json(run_dir.config, _saved_config(dataclasses.replace(config, mode=trainer.mode)))
    if trainer.stop_training and not stopper.state["stopped"]:
        if tracker is not None:
            tracker.finish("KILLED")
        log(f"Stopped at step {int(trainer.step.numpy())}; checkpoint saved in {run_dir.checkpoints}.")
        return RunResult(history, stopped=True)
    if chief:
        log(stopper.describe())
        restored = config.restore_best and stopper.restore_best()
        if restored:
            log("model.keras and the pictures hold the best checkpoint's weights.")
        # Which model model.keras is, and the best one's place in the run.
        write_json(run_dir.best, {**stopper.summary(), "model.keras": "best" if restored else "last"})
    if not chief:
        log(f"Finished as a worker in {time.perf_counter() - started:.1f} s; the chief wrote {run_dir.path}.")
        return RunResult(history, stopped=False)
    outputs = trainer.predict(shown, batch_size=len(shown))
    with writing(run_dir.path):
        rows = [shown, *reconstruction_rows(objective, outputs)]
        write_png(run_dir.reconstructions, image_grid(rows, shape=datasets.image_shape))
        # What a run leaves for use carries the weights' moving average, if kept.
        with trainer.averaged_weights():
            if hasattr(model, "sample") and hasattr(model, "latent_traversal"):  # A generative model.
                write_generated_images(model, run_dir, datasets.image_shape)
            with replacing(run_dir.model, suffix=".partial.keras") as partial_model:
                model.save(partial_model)
    if tracker is not None:
        tracker.finish()
    began = f" (the first training step ended at {first_call.ended - started:.1f} s)" if first_call.ended else ""
    log(f"Finished in {time.perf_counter() - started:.1f} s{began}; the run is in {run_dir.path}.")
    log(f"  Reconstructions (inputs above, outputs below): {run_dir.reconstructions}")
    log(f"  TensorBoard: tensorboard --logdir {shlex.quote(str(run_dir.tensorboard))}  (then open http://localhost:6006)")
    if tracker is not None and tracker.where():
        log(f"  {tracker.where()}")
    return RunResult(history, stopped=False)
