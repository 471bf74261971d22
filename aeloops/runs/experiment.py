"""One training run from a ``TrainConfig``: the logic behind ``python -m aeloops.train``, in its phases.

A run is four calls, each in the module named for it: ``prepare`` (the data,
the model and the final config), ``assemble`` (the trainer, its checkpoints
and callbacks, the run directory), ``train`` (below) and ``finish`` (what a
finished run leaves, and its closing lines).

>>> config = TrainConfig(model="dense", dataset="mnist-sample", epochs=1)  # doctest: +SKIP
>>> history = run(config, RunDirectory("runs/demo"))                       # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from aeloops.runs.assemble import Assembled, assemble, hyperparameters
from aeloops.runs.config import TrainConfig
from aeloops.runs.datasets import Datasets, load_datasets, read_images, shape_datasets
from aeloops.runs.directory import RunDirectory
from aeloops.runs.outputs import RunResult, finish, write_generated_images
from aeloops.runs.prepare import Prepared, prepare
from aeloops.runs.trainers import build_trainer, make_optimizers, make_strategy, precision, recovery
from aeloops.training.callbacks import Callback

__all__ = [  # The phases' own names, offered here as before.
    "Datasets",
    "RunResult",
    "build_trainer",
    "hyperparameters",
    "load_datasets",
    "make_optimizers",
    "make_strategy",
    "precision",
    "read_images",
    "recovery",
    "run",
    "shape_datasets",
    "train",
    "write_generated_images",
]


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
        prepared = prepare(config, log)
        assembled = assemble(prepared, run_dir, log, stop_event, mlflow, callbacks)
        if assembled is None:  # A stop requested during start-up: nothing was written.
            return RunResult({}, stopped=True)
        started = launched if launched is not None else time.perf_counter()
        train(prepared, assembled, verbose)
        return finish(prepared, assembled, run_dir, log, started)


def train(prepared: Prepared, assembled: Assembled, verbose: int) -> None:
    """Trains the assembled run from its step to its last epoch, or until a callback or a signal stops it."""
    trainer = assembled.trainer
    try:
        trainer.fit(
            prepared.datasets.train,
            epochs=assembled.epochs,
            batch_size=prepared.config.batch_size,
            validation_data=prepared.datasets.validation,
            initial_epoch=assembled.initial_epoch,
            initial_step=int(trainer.step.numpy()),
            callbacks=assembled.callbacks,
            verbose=verbose,
        )
    except BaseException:
        if prepared.chief:  # HParams shows the run as failed, rather than forever unknown.
            assembled.summaries.write_status("failed")
        if assembled.tracker is not None:
            assembled.tracker.finish("FAILED")
        raise
