"""TensorBoard summaries, written by the outer loop, never inside the compiled step.

A run's log directory holds two TensorBoard runs, Keras's two:

- ``train/``: everything the train step returns (every objective term,
  unweighted, and the weighted ``loss``), the step's ``gradient_norm``
  (before clipping; ``clipped_gradient_norm`` where the optimizer clips),
  ``gradient_norm/<term>`` (the norm of each weighted
  term's own gradient, on a fixed batch; with ``gradient_cosines``, also
  ``gradient_cosine/<term>/<other>``), ``weight/<term>`` for scheduled
  terms and ``learning_rate``, every ``every_steps`` steps; ``epoch_<term>``,
  ``epoch_seconds``, ``validation_seconds`` and ``samples_per_second`` by epoch; histograms of each
  layer's weights, by epoch; the training step's op graph, once, after the
  first compiled call; the run's config as text, once; the run's
  hyperparameters (the values in effect) for the HParams dashboard, named
  by ``trial_id``, and its end: finished, stopped (still running, as far as
  HParams can say) or failed. HParams reads a row's metrics from its own
  run, so the validation metrics are here too, by epoch, as ``val_<term>``
  (the names of the history and the progress bar).
- ``validation/``: the same ``epoch_<term>`` tags (TensorBoard overlays the
  two runs), an image of fixed examples above their reconstructions (one row
  per reconstructing term, each row named, enlarged to be read), a histogram
  of the codes of a larger fixed subset (a thousand validation images from
  the CLI), and for a generative model digits decoded from fixed prior draws
  (``samples``) and, under the same heading, each code dimension swept
  (``samples/latent_traversal``) and the map of a 2-D code's space
  (``samples/latent_map``), by epoch. (Headings sort so that the
  reconstructions come first: TensorBoard opens the first two.)
- ``train/plugins/profile/``: a profile of the steps in ``profile_steps``, if asked.
- ``train/projector-codes-*``, ``projector_config.pbtxt``, ``sprite.png``,
  ``metadata.tsv``: the codes of the histogram's examples for the
  Projector, at the end of training, each with its thumbnail and label.

>>> writer = SummaryWriter(trainer, "runs/x/tensorboard", every_steps=100,
...                        examples=x_test[:8])                  # doctest: +SKIP
>>> trainer.fit(x_train, callbacks=[writer])                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector
from tensorboard.plugins.hparams import api as hparams_api
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import summary as hparams_summary

from aeloops.data.sources import INPUT
from aeloops.files import replacing
from aeloops.objectives import schedules
from aeloops.objectives.objective import Objective
from aeloops.tensorboard.histograms import write_histogram
from aeloops.tensorboard.images import as_images, image_grid, labeled_grid, write_png
from aeloops.tensorboard.term_norms import TermGradientNorms
from aeloops.training.callbacks import TIMINGS, Callback
from aeloops.training.compiled import is_distributed
from aeloops.training.custom_gradients import releasing_custom_gradients
from aeloops.training.optimizers import inner_optimizer

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = ["SummaryWriter", "reconstruction_labels", "reconstruction_rows", "trainer_settings", "training_step_graph"]

# The name of the codes in the Projector's checkpoint.
PROJECTOR_TENSOR = "codes/.ATTRIBUTES/VARIABLE_VALUE"
# HParams session statuses: a stopped run can be resumed, so it is still running.
_STATUSES = {"finished": api_pb2.STATUS_SUCCESS, "stopped": api_pb2.STATUS_RUNNING, "failed": api_pb2.STATUS_FAILURE}


def _sprite(images: np.ndarray) -> np.ndarray:
    """Returns the Projector's sprite: thumbnails in a square grid, row by row, without padding."""
    side = int(np.ceil(np.sqrt(len(images))))
    filled = np.concatenate([images, np.zeros((side * side - len(images), *images.shape[1:]), images.dtype)])
    return image_grid(np.split(filled, side), padding=0)


def trainer_settings(trainer: Trainer) -> dict[str, float | str]:
    """What a trainer built from Python runs with, as flat values: model class, mode, seed, optimizers, weights."""
    values: dict[str, float | str] = {
        "model": type(trainer.model).__name__,
        "mode": trainer.requested_mode,
        "seed": trainer.seed,
        "steps_per_loop": trainer.steps_per_loop,
        "precision": getattr(getattr(trainer.model, "dtype_policy", None), "name", "float32"),
        **trainer.learning_rates(),
    }
    for part, optimizer in trainer.optimizers.items():
        values["optimizer" if part == "model" else f"optimizer/{part}"] = type(inner_optimizer(optimizer)).__name__
    for term in trainer.objective.terms:
        values[f"weight/{term.name}"] = schedules.describe(term.weight)
    return values


def _as_run(values: Mapping[str, object], trainer: Trainer) -> dict[str, object]:
    """Returns ``values`` with what the trainer settled filled in: the mode "auto" chose, the default rate used."""
    resolved = dict(values)
    if resolved.get("mode") == "auto" and trainer.mode_report is not None:
        resolved["mode"] = trainer.mode
    rates = trainer.learning_rates()
    if "learning_rate" in resolved and resolved["learning_rate"] is None and "learning_rate" in rates:
        resolved["learning_rate"] = rates["learning_rate"]
    return resolved


def training_step_graph(trainer: Trainer, example_shape: tuple[int, ...]) -> tf.Graph:
    """Returns the op graph of one training step (``run_train_step``), as the compiled loop calls it.

    The step's own graph, not the loop's, whose XLA-compiled graph
    TensorFlow exports empty: the one the loop traced, else (in eager mode)
    traced here in graph mode. Under a distribution strategy, the graph of
    the model's forward pass.
    """
    spec = tf.TensorSpec((None, *example_shape), tf.float32)
    if is_distributed(trainer.strategy):
        return tf.function(lambda inputs: trainer.model(inputs, training=False)).get_concrete_function(spec).graph
    traced = trainer.step_graph()
    if traced is not None:
        return traced

    # Traced here, the step's optimizer update would leave its graph in TensorFlow's gradient registry for good.
    @releasing_custom_gradients
    def step(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return trainer.run_train_step({INPUT: inputs})

    return tf.function(step).get_concrete_function(spec).graph


def reconstruction_labels(objective: Objective) -> list[str]:
    """Returns the name of each row ``reconstruction_rows`` gives: the output each reconstructing term reads."""
    names = [term.output for term in objective.terms if term.target == "input"]
    return ["reconstruction"] if len(names) <= 1 else names


def reconstruction_rows(objective: Objective, outputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Returns one image row per term that reconstructs the input, in [0, 1]."""
    rows = []
    for term in objective.terms:
        if term.target == "input":
            output = np.asarray(outputs[term.output], np.float32)
            # A sigmoid written with tanh does not overflow for large logits.
            rows.append(0.5 * (1 + np.tanh(0.5 * output)) if term.loss == "bce_logits" else output)
    return rows or [np.asarray(outputs["reconstruction"])]


class SummaryWriter(Callback):
    """Writes a run's TensorBoard summaries; see the module docstring for what and where.

    Args:
      trainer: the trainer whose run this records.
      logdir: the run's TensorBoard directory.
      every_steps: the cadence of step scalars.
      examples: a few fixed inputs (validation images, say) whose
        reconstructions and per-term gradient norms are summarized.
      histogram_examples: more fixed inputs (a thousand, say) whose codes'
        histogram is summarized, and whose codes the Projector shows at the
        end of training, with each input's thumbnail; ``examples`` when not given.
      labels: the class of each of ``histogram_examples``, for the Projector's metadata.
      config: the run's settings, written as text once; by default the
        trainer's (``trainer_settings``), as from Python.
      hparams: hyperparameters for the HParams dashboard (flat, scalar
        values); by default the trainer's settings, so a run from Python
        gets its row too. No experiment summary is written, so TensorBoard
        takes the union of every run's hyperparameters as its columns.
      trial_id: the name the HParams dashboard gives this run (its directory, say).
      profile_steps: ``(first, last)`` steps to profile, or None.
      projector_every: also write the Projector's codes every this many
        epochs (the Projector shows the newest); at the end only when None.
      gradient_cosines: also write, with the per-term gradient norms, the
        cosine between each pair of terms' gradients on ``examples``
        (``gradient_cosine/<term>/<other>``: negative where they conflict).
      image_shape: the images' (height, width, channels), to picture inputs
        a model takes flat or row by row; guessed from their shape when None.
    """

    def __init__(
        self,
        trainer: Trainer,
        logdir: str | os.PathLike,
        every_steps: int = 100,
        *,
        examples: np.ndarray | None = None,
        histogram_examples: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        config: Mapping[str, object] | None = None,
        hparams: Mapping[str, object] | None = None,
        trial_id: str | None = None,
        profile_steps: tuple[int, int] | None = None,
        projector_every: int | None = None,
        gradient_cosines: bool = False,
        image_shape: Sequence[int] | None = None,
        epoch_scalars: Callable[[Trainer, int], Mapping[str, float]] | None = None,
        epoch_scalars_every: int = 1,
    ) -> None:
        if every_steps < 1:
            raise ValueError(f"every_steps must be at least 1, got {every_steps}.")
        if profile_steps is not None and not 0 <= profile_steps[0] < profile_steps[1]:
            raise ValueError(f"profile_steps must be (first, last) with 0 <= first < last, got {profile_steps}.")
        self.trainer = trainer
        # Measured every epoch_scalars_every epochs, written on the validation side as samples/<name>.
        self.epoch_scalars, self.epoch_scalars_every = epoch_scalars, epoch_scalars_every
        self.logdir = os.fspath(logdir)
        self.every_steps = every_steps
        self.examples = None if examples is None else np.asarray(examples)
        self.term_norms = TermGradientNorms(trainer)
        self.histogram_examples = self.examples if histogram_examples is None else np.asarray(histogram_examples)
        self.labels = None if labels is None else np.asarray(labels)
        self.config = dict(config) if config is not None else None
        self.hparams = dict(hparams) if hparams is not None else None
        self._settings_by_default = (config is None, hparams is None)
        self.trial_id = trial_id
        self.profile_steps = profile_steps
        self.projector_every = projector_every
        self.gradient_cosines = bool(gradient_cosines)
        self.image_shape = None if image_shape is None else tuple(image_shape)
        # The train run also holds the HParams row, the config text, the profile and the Projector.
        self.train_dir = os.path.join(self.logdir, "train")
        self.train_writer = tf.summary.create_file_writer(self.train_dir)
        self.validation_writer = tf.summary.create_file_writer(os.path.join(self.logdir, "validation"))
        self._last_written_step = -1
        self._profiling = False
        self._graph_written = False
        self._settled = False
        self._started = time.time()
        self._codes_at: tuple[int, np.ndarray] | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        step = int(trainer.step.numpy())
        self._last_written_step = step
        self._profile(step, trainer.steps_per_loop)
        self._started = time.time()
        default_config, default_hparams = self._settings_by_default
        if default_config or default_hparams:  # Read now: learning rates as this run starts.
            settings = trainer_settings(trainer)
            self.config = settings if default_config else self.config
            self.hparams = settings if default_hparams else self.hparams
        if trainer.requested_mode != "auto" or int(trainer.mode_choice.numpy()):
            self._settle(trainer)  # The mode is settled: no need to wait for auto's choice.

    def on_loop_end(self, trainer: Trainer, logs: Mapping[str, float]) -> None:
        step = int(trainer.step.numpy())
        self._profile(step, trainer.steps_per_loop)
        if trainer.mode_report is not None:  # "auto" has chosen: HParams and the config can say what runs.
            self._settle(trainer)
        if not self._graph_written and self.examples is not None:
            # Written after the first compiled call, which traced the step: its
            # graph is written as traced (in eager mode the step is traced here,
            # once AutoGraph has converted its code, which makes it cheaper).
            self._graph_written = True
            with self.train_writer.as_default(step=step):
                tf.summary.graph(training_step_graph(trainer, self.examples.shape[1:]))
        # A compiled call runs several steps; write once per crossed multiple.
        if step // self.every_steps == self._last_written_step // self.every_steps:
            return
        self._last_written_step = step
        with self.train_writer.as_default(step=step):
            # Scheduled weights are among the logs, averaged as the terms are.
            for name, value in {**logs, **trainer.learning_rates()}.items():
                tf.summary.scalar(name, value)
            if self.examples is not None:
                norms, cosines = self.term_norms.measure(self.examples, cosines=self.gradient_cosines)
                for name, norm in norms.items():
                    tf.summary.scalar(f"gradient_norm/{name}", norm)
                for (name, other), cosine in cosines.items():
                    tf.summary.scalar(f"gradient_cosine/{name}/{other}", cosine)

    def _generated_images(self, trainer: Trainer) -> None:
        """For a generative model: digits decoded from prior draws, each code dimension swept, the 2-D code's map."""
        sample = getattr(trainer.model, "sample", None)
        if sample is None:
            return
        with trainer.averaged_weights():
            draws = np.split(sample(32, seed=0), 4)  # The same draws every epoch.
            labels = ["prior draws", "", "", ""]
            tf.summary.image("samples", labeled_grid(draws, labels, shape=self.image_shape)[None])
            latent_map = getattr(trainer.model, "latent_map", lambda: None)()
            traversal = getattr(trainer.model, "latent_traversal", lambda: None)()
        if latent_map is not None:
            grid = labeled_grid(latent_map, [""] * len(latent_map), scale=2, shape=self.image_shape)
            tf.summary.image("samples/latent_map", grid[None])
        if traversal is not None:
            labels = [f"z{index + 1}" for index in range(len(traversal))]
            tf.summary.image("samples/latent_traversal", labeled_grid(traversal, labels, shape=self.image_shape)[None])

    def write_projector(self, trainer: Trainer) -> None:
        """Writes the codes of ``histogram_examples`` for TensorBoard's Projector, with thumbnails and labels."""
        # In train/, not the directory above: TensorBoard's Projector looks for a checkpoint in each run's
        # directory and then its parent, so codes above train/ and validation/ showed as two more Projector
        # runs of bare, unlabelled points, and opened on one of them.
        directory = pathlib.Path(self.train_dir)
        codes = self._codes(trainer)
        codes = codes.reshape(len(codes), -1).astype(np.float32)
        # Saved beside the config, whose Projector finds the newest checkpoint
        # there: no absolute path, so a run directory can move.
        tf.train.Checkpoint(codes=tf.Variable(codes)).save(str(directory / "projector-codes"))
        images = as_images(self.histogram_examples, self.image_shape)
        config = projector.ProjectorConfig()
        embedding = config.embeddings.add(tensor_name=PROJECTOR_TENSOR)
        embedding.sprite.image_path = "sprite.png"
        embedding.sprite.single_image_dim.extend([images.shape[2], images.shape[1]])
        write_png(directory / "sprite.png", _sprite(images))
        if self.labels is not None:
            with replacing(directory / "metadata.tsv") as partial:
                # One label a line: a class name's own tabs and line breaks would split it.
                rows = (" ".join(str(label).split()) or "?" for label in self.labels)
                partial.write_text("".join(f"{row}\n" for row in rows), encoding="utf-8")
            embedding.metadata_path = "metadata.tsv"
        projector.visualize_embeddings(str(directory), config)

    def _codebook_usage(self, trainer: Trainer) -> None:
        """For a VQ-VAE: how many codebook entries the held-out examples' codes use, how evenly, and which."""
        usage = getattr(trainer.model, "codebook_usage", None)
        if usage is None:
            return
        with trainer.averaged_weights():
            counts = usage(self.histogram_examples)
        share = counts / counts.sum()
        tf.summary.scalar("codebook/entries_used", int(np.count_nonzero(counts)))
        tf.summary.scalar("codebook/perplexity", float(np.exp(-np.sum(share * np.log(share + 1e-10)))))
        write_histogram("codebook/usage", np.repeat(np.arange(len(counts)), counts), buckets=len(counts))

    def _codes(self, trainer: Trainer) -> np.ndarray:
        """Returns the codes of ``histogram_examples`` at the trainer's step, computed once per step."""
        step = int(trainer.step.numpy())
        if self._codes_at is None or self._codes_at[0] != step:
            self._codes_at = (step, trainer.predict(self.histogram_examples, batch_size=256)["code"])
        return self._codes_at[1]

    def _settle(self, trainer: Trainer) -> None:
        """Writes, once, the HParams session and the config text, as the run runs (auto's choice, the rate used)."""
        if self._settled:
            return
        self._settled = True
        if self.config is not None:
            text = json.dumps(_as_run(self.config, trainer), indent=2, sort_keys=True)
            with self.train_writer.as_default(step=int(trainer.step.numpy())):
                tf.summary.text("config", f"```\n{text}\n```")
        if self.hparams is not None:
            # A session per run and no experiment summary: TensorBoard then shows
            # every run's hyperparameters, and every scalar of train/, as columns.
            with self.train_writer.as_default():
                values = _as_run(self.hparams, trainer)
                hparams_api.hparams(values, trial_id=self.trial_id, start_time_secs=self._started)

    def write_status(self, outcome: str) -> None:
        """Ends the HParams session: ``"finished"``, ``"stopped"`` (resumable) or ``"failed"``."""
        self._settle(self.trainer)  # A run that ended before auto chose still gets its row and config.
        if self.hparams is None:
            return
        status = _STATUSES[outcome]
        with self.train_writer.as_default():
            end = hparams_summary.session_end_pb(status, end_time_secs=time.time())
            tf.summary.experimental.write_raw_pb(end.SerializeToString(), step=0)
        self.train_writer.flush()

    def _profile(self, step: int, steps_per_loop: int) -> None:
        """Starts the profiler before the compiled call that runs step ``first``; stops it once ``last`` is passed.

        Called between compiled calls: the profile covers whole calls, so a
        window inside one call (10:20 with 50 steps a call) profiles that call.
        """
        if self.profile_steps is None:
            return
        first, last = self.profile_steps
        if not self._profiling and step < last and step + steps_per_loop > first:
            tf.profiler.experimental.start(self.train_dir)  # A run's step, in its run.
            self._profiling = True
        elif self._profiling and step >= last:
            tf.profiler.experimental.stop()
            self._profiling = False
            self.profile_steps = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Mapping[str, float]) -> None:
        # An epoch's summaries at the epoch's number as the terminal and history.json count it, from 1.
        number = epoch + 1
        with self.train_writer.as_default(step=number):
            for name, value in logs.items():
                # Validation metrics as the history names them, for HParams, which reads only this run.
                tf.summary.scalar(name if name in TIMINGS or name.startswith("val_") else f"epoch_{name}", value)
            for variable in trainer.model.trainable_variables:
                write_histogram(variable.path, variable.numpy())
        with self.validation_writer.as_default(step=number):
            for name, value in logs.items():
                if name.startswith("val_"):
                    tf.summary.scalar(f"epoch_{name[len('val_') :]}", value)
            if self.examples is not None:
                outputs = trainer.predict(self.examples, batch_size=len(self.examples))
                rows = reconstruction_rows(trainer.objective, outputs)
                labels = ["input", *reconstruction_labels(trainer.objective)]
                grid = labeled_grid([self.examples, *rows], labels, shape=self.image_shape)
                tf.summary.image("reconstructions", grid[None])
            if self.histogram_examples is not None:
                write_histogram("code", self._codes(trainer))
                self._codebook_usage(trainer)
            self._generated_images(trainer)
            if self.epoch_scalars is not None and number % self.epoch_scalars_every == 0:
                for name, value in self.epoch_scalars(trainer, epoch).items():
                    tf.summary.scalar(f"samples/{name}", value)
        if self.projector_every and (epoch + 1) % self.projector_every == 0 and self.histogram_examples is not None:
            self.write_projector(trainer)
        self.train_writer.flush()
        self.validation_writer.flush()

    def on_train_end(self, trainer: Trainer, history: Mapping[str, list[float]]) -> None:
        self.write_status("stopped" if trainer.stop_training else "finished")
        if self.histogram_examples is not None:
            self.write_projector(trainer)
        if self._profiling:
            tf.profiler.experimental.stop()
            self._profiling = False
        self.train_writer.flush()
        self.validation_writer.flush()
