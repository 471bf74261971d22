"""A run's last phase: what a finished run leaves (pictures, model.keras, best.json) and its closing lines."""

from __future__ import annotations

import dataclasses
import shlex
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import keras
import numpy as np

from aeloops.files import replacing
from aeloops.runs.assemble import Assembled
from aeloops.runs.config import saved_config
from aeloops.runs.directory import RunDirectory, write_json, writing
from aeloops.runs.prepare import Prepared
from aeloops.tensorboard.images import image_grid, write_png
from aeloops.tensorboard.summaries import reconstruction_rows
from aeloops.training import mode_probe

__all__ = ["COLLAPSED_KL", "RunResult", "collapsed_code", "finish", "write_generated_images"]

# A KL under this many nats an image says the code carries next to nothing: a healthy VAE's is several nats.
COLLAPSED_KL = 0.01


class RunResult(NamedTuple):
    """What a run leaves: its history and whether a stop request cut it short."""

    history: dict[str, list[float]]
    stopped: bool


def finish(
    prepared: Prepared, assembled: Assembled, run_dir: RunDirectory, log: Callable[[str], None], started: float
) -> RunResult:
    """Says how training went and writes what the run leaves; a stopped run leaves its checkpoint only."""
    config, trainer, tracker = prepared.config, assembled.trainer, assembled.tracker
    stopper = assembled.watchers["early_stopping"]
    if trainer.mode_report is not None:
        log(mode_probe.describe(trainer.mode_report))
    if prepared.chief and config.mode == "auto" and int(trainer.mode_choice.numpy()):  # What "auto" chose.
        write_json(run_dir.config, saved_config(dataclasses.replace(config, mode=trainer.mode)))
    if trainer.stop_training and not stopper.state["stopped"]:
        if tracker is not None:
            tracker.finish("KILLED")
        log(f"Stopped at step {int(trainer.step.numpy())}; checkpoint saved in {run_dir.checkpoints}.")
        return RunResult(assembled.history, stopped=True)
    if not prepared.chief:
        log(f"Finished as a worker in {time.perf_counter() - started:.1f} s; the chief wrote {run_dir.path}.")
        return RunResult(assembled.history, stopped=False)
    log(stopper.describe())
    warning = collapsed_code(prepared.model, assembled.history)
    if warning:
        log(warning)
    restored = config.restore_best and stopper.restore_best()
    if restored:
        log("model.keras and the pictures hold the best checkpoint's weights.")
    # Which model model.keras is, and the best one's place in the run.
    write_json(run_dir.best, {**stopper.summary(), "model.keras": "best" if restored else "last"})
    _write_outputs(prepared, assembled, run_dir)
    if tracker is not None:
        tracker.finish()
    first_call = assembled.first_call
    began = f" (the first training step ended at {first_call.ended - started:.1f} s)" if first_call.ended else ""
    log(f"Finished in {time.perf_counter() - started:.1f} s{began}; the run is in {run_dir.path}.")
    log(f"  Reconstructions (inputs above, outputs below): {run_dir.reconstructions}")
    log(f"  TensorBoard: tensorboard --logdir {shlex.quote(str(run_dir.tensorboard))}  (then open http://localhost:6006)")
    if tracker is not None and tracker.where():
        log(f"  {tracker.where()}")
    return RunResult(assembled.history, stopped=False)


def collapsed_code(model: keras.Model, history: dict[str, list[float]]) -> str | None:
    """Returns a line saying the code collapsed (the last epoch's KL near 0 nats) and what to try, else None.

    A collapsed VAE decodes every code alike: its samples and reconstructions
    are one blur (a Gaussian decoder of near-binary images, as MNIST's, goes
    there within two epochs, its scale shrinking onto the black background).
    """
    kl = history.get("val_kl") or history.get("kl")
    if not kl or not kl[-1] < COLLAPSED_KL:
        return None
    if getattr(model, "likelihood", None) == "gaussian":
        advice = "for near-binary images such as MNIST, train it with --set model.likelihood=bernoulli"
    else:
        advice = ("warm the KL up from 0: --set objective.kl.schedule=linear_warmup --set "
                  "objective.kl.schedule_steps=5000")  # fmt: skip
    return (f"The code collapsed: the KL is {kl[-1]:.2g} nats an image, so the decoder ignores it and every sample "
            f"and reconstruction looks alike; {advice}.")


def _write_outputs(prepared: Prepared, assembled: Assembled, run_dir: RunDirectory) -> None:
    """Writes reconstructions.png, a generative model's pictures and model.keras."""
    trainer, model, shown = assembled.trainer, prepared.model, assembled.shown
    image_shape = prepared.datasets.image_shape
    outputs = trainer.predict(shown, batch_size=len(shown))
    with writing(run_dir.path):
        rows = [shown, *reconstruction_rows(trainer.objective, outputs)]
        write_png(run_dir.reconstructions, image_grid(rows, shape=image_shape))
        # What a run leaves for use carries the weights' moving average, if kept.
        with trainer.averaged_weights():
            if hasattr(model, "sample") and hasattr(model, "latent_traversal"):  # A generative model.
                write_generated_images(model, run_dir, image_shape)
            with replacing(run_dir.model, suffix=".partial.keras") as partial_model:
                model.save(partial_model)


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
