"""Checkpoints: everything the next training step depends on, saved and restored.

A checkpoint holds the trainer, a ``tf.Module``: its model, every optimizer
(slots and moving averages included), its step, and whatever a ``Trainer``
subclass holds as attributes (a discriminator, its optimizer, variables,
a ``tf.random.Generator``); and the state of every Keras ``SeedGenerator``
(noise and dropout layers), which Keras keeps out of checkpoints. The data
order needs no saving: each epoch's shuffle is seeded by ``(seed, epoch)``
and the position inside it follows from the step.
``tf.train.CheckpointManager`` writes atomically and prunes old checkpoints.

Beside the trainer, each checkpoint holds a run record (JSON in a string
variable): the sums of the epoch in progress (``Trainer.epoch_progress``), so
a resumed epoch's history row is exact, and whatever ``metadata`` the
caller keeps current (the CLI keeps its settings, a fingerprint of the data
and the history), which can be read without building the model
(``aeloops.runs.checkpoint_files.read_record``).
"""

from __future__ import annotations

import gc
import json
import os
import re
import shlex
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from aeloops.runs import checkpoint_files
from aeloops.runs.directory import RunWriteError
from aeloops.training.callbacks import Callback
from aeloops.training.recovery import seed_generator_states

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = ["Checkpointer"]


def _restore_into(objects: dict[str, Any], prefix: str) -> str | None:
    """Restores checkpoint ``prefix`` into ``objects``; returns the first line of what went wrong, or None."""
    checkpoint = tf.train.Checkpoint(**objects)
    problem = None
    try:
        # Every object the trainer holds must come back: a part left out
        # would resume from its initial value, silently. (The checkpoint
        # may hold more: TensorFlow's preemption handler adds its own.)
        checkpoint.restore(prefix).assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError, OSError) as error:
        unbound = re.search(r"Found (\d+) Python objects that were not bound.*?path=([^,\s]+)", str(error), re.DOTALL)
        if unbound:  # TensorFlow lists the objects with their values; the count and a name say it.
            problem = f"{unbound[1]} of the trainer's objects have no value in it, {unbound[2]} among them"
        else:
            problem = checkpoint_files.first_line(error)
    if problem is not None:
        # A failed restore leaves TensorFlow's coordinator to log every value
        # it did not restore when collected; the failure is reported once, by us.
        del checkpoint
        with checkpoint_files.quiet_tensorflow_logs():
            gc.collect()
    return problem


def _write_cause(error: BaseException) -> str:
    """Returns what a failed save says of its cause ("No space left on device"), without TensorFlow's op names."""
    if isinstance(error, OSError) and error.strerror:  # "No space left on device", not "[Errno 28] No space ...".
        return error.strerror
    # The whole first line: the cause comes after the temporary file's path, which may be long.
    text = (str(error).strip() or type(error).__name__).splitlines()[0]
    text = re.sub(r"\{\{.*?\}\}\s*", "", text)  # "{{function_node ...SaveV2...}}"
    text = re.sub(r"\s*\[Op:\w+\]$", "", text)
    return text.rsplit("; ", 1)[-1][:200]  # "<temporary file>; File too large": the cause is last.


class Checkpointer(Callback):
    """Saves ``trainer`` every epoch (and on demand) and restores the latest save.

    Restoring, then calling ``fit`` as the run that saved it called it,
    finishes that run from the saved step: the same weights and history,
    bit for bit, as if it had never stopped (``fit``'s ``epochs`` count from
    that run's first epoch; a run saved complete trains no further unless
    given more).

    >>> import tempfile, aeloops
    >>> images = aeloops.to_model_inputs(aeloops.load_sample().train_images[:256], (784,))
    >>> run_dir = tempfile.TemporaryDirectory()
    >>> trainer = aeloops.Trainer(aeloops.DenseAutoencoder(input_shape=(784,)), mode="graph")
    >>> checkpointer = Checkpointer(trainer, run_dir.name)
    >>> checkpointer.restore()          # a new directory: nothing to restore
    False
    >>> history = trainer.fit(images, epochs=2, batch_size=64, callbacks=[checkpointer], verbose=0)
    >>> again = aeloops.Trainer(aeloops.DenseAutoencoder(input_shape=(784,)), mode="graph")  # a new process, say
    >>> Checkpointer(again, run_dir.name).restore(), again.completed_epochs
    (True, 2)
    >>> more = again.fit(images, epochs=3, batch_size=64, verbose=0)   # that run, on to epoch 3
    >>> len(more["loss"]), again.completed_epochs                      # its history, every epoch
    (3, 3)
    >>> run_dir.cleanup()
    """

    def __init__(
        self,
        trainer: Trainer,
        directory: str | os.PathLike,
        max_to_keep: int = 3,
        write_directory: str | os.PathLike | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Reads checkpoints from ``directory``; writes them there too unless ``write_directory`` is given.

        Under ``MultiWorkerMirroredStrategy`` every worker must take part in
        a save; a non-chief worker passes a scratch ``write_directory`` so
        that only the chief writes the run's own checkpoints.
        ``metadata`` (JSON-ready values) is saved with every checkpoint as
        it is at that moment; ``restore`` puts the saved one in
        ``restored_metadata``.
        """
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be at least 1, got {max_to_keep}.")
        self.trainer = trainer
        self.read_directory = os.fspath(directory)
        self.directory = os.fspath(write_directory if write_directory is not None else directory)
        self.metadata = metadata if metadata is not None else {}
        self.restored_metadata: dict[str, Any] | None = None
        self._tracked: dict[str, dict[str, Any]] = {}
        trainer.check_checkpointable()
        # A list naming files outside the directory is refused before the manager adopts (and prunes) them.
        for checked in dict.fromkeys((self.read_directory, self.directory)):
            checkpoint_files.check_state_file(checked)
        # A state file lost or damaged is rebuilt from the checkpoint files before the manager reads it.
        self.repair = checkpoint_files.repair_state_file(self.read_directory)
        # A save killed before it merged left its folder: no later save would remove it.
        checkpoint_files.remove_temporary(self.directory)
        self.run_record = tf.Variable("", dtype=tf.string, trainable=False, name="run_record")
        self._objects = {"trainer": trainer, "seed_generators": seed_generator_states(trainer)}
        self.checkpoint = tf.train.Checkpoint(**self._objects, run_record=self.run_record)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.directory, max_to_keep=max_to_keep, checkpoint_name=checkpoint_files.PREFIX
        )

    def track(self, name: str, state: dict[str, Any]) -> None:
        """Saves ``state`` (JSON values its owner keeps current) with every checkpoint; ``restore`` refills it in place.

        What early stopping and plateau reductions decide depends on such
        state; tracked, a killed and resumed run decides as one left alone.
        """
        self.metadata[name] = state
        self._tracked[name] = state

    @property
    def latest_to_restore(self) -> str | None:
        """The newest checkpoint of the directory checkpoints are read from.

        Raises:
          ValueError: when a newer checkpoint than that lost its index file:
            restoring an older one silently would rewind the run, and its
            next save would overwrite the orphaned data.
        """
        same = self.read_directory == self.directory
        latest = self.latest if same else tf.train.latest_checkpoint(self.read_directory)
        newest = checkpoint_files.numbers(self.read_directory)
        lost = [number for number in checkpoint_files.orphans(self.read_directory) if not newest or number > newest[-1]]
        if lost:
            orphan = os.path.join(self.read_directory, f"{checkpoint_files.PREFIX}-{lost[-1]}")
            raise ValueError(self._damaged(orphan, "its .index file is missing"))
        return latest

    @property
    def latest(self) -> str | None:
        """The prefix of the newest checkpoint whose files exist, or None.

        A checkpoint whose files were moved away (say, because they were
        damaged) is passed over for the one before it.
        """
        for prefix in reversed(self.manager.checkpoints):
            if tf.io.gfile.exists(f"{prefix}.index"):
                return prefix
        return None

    def read_latest_record(self) -> dict[str, Any] | None:
        """Returns the run record of the newest checkpoint without restoring it (None if it has none).

        Raises:
          ValueError: when that checkpoint is damaged, with what to do.
        """
        latest = self.latest_to_restore
        if latest is None:
            return None
        try:
            return checkpoint_files.read_record(latest)
        except ValueError as error:
            raise ValueError(self._damaged(latest, str(error))) from None

    def restore(self) -> bool:
        """Restores the newest checkpoint; returns False when there is none.

        Raises:
          ValueError: when the checkpoint is damaged or does not fit the
            trainer, saying which and what to do; nothing is removed.
        """
        latest = self.latest_to_restore
        if latest is None:
            return False
        try:
            has_record = checkpoint_files.read_record(latest) is not None
        except ValueError:
            has_record = True  # Unreadable: the restore below fails and says why.
        # A checkpoint written without a run record (by a plain tf.train.Checkpoint) restores without one.
        objects = {**self._objects, "run_record": self.run_record} if has_record else self._objects
        with self.trainer.raw_weights():  # Raw weights come back into the variables, averages into the slots.
            problem = _restore_into(objects, latest)
        if problem is not None:
            raise ValueError(self._diagnose(latest, problem)) from None
        record = json.loads(self.run_record.numpy().decode("utf-8") or "{}") if has_record else {}
        self.restored_metadata = record.get("metadata")
        for name, state in self._tracked.items():
            if name in (self.restored_metadata or {}):
                state.clear()
                state.update(self.restored_metadata[name])
        self.trainer.loop_state.restore(record)
        return True

    def _diagnose(self, latest: str, mismatch: str) -> str:
        """Tells a damaged checkpoint from one that does not fit, and says what to do about each."""
        problem = checkpoint_files.damage(latest)
        if problem is not None:
            return self._damaged(latest, problem)
        return (
            f"Checkpoint {latest} is intact but does not fit this trainer ({mismatch}): the model, its "
            "settings or the trainer's code differ from those it was saved with. Put them back as they were "
            "to resume; nothing was changed."
        )

    def _damaged(self, latest: str, problem: str) -> str:
        """The message for a damaged newest checkpoint: move it aside (never delete) if an older one loads."""
        name = os.path.basename(latest)
        older = [
            f"{checkpoint_files.PREFIX}-{number}"
            for number in reversed(checkpoint_files.numbers(self.read_directory))
            if f"{checkpoint_files.PREFIX}-{number}" != name
        ]
        intact = next(
            (other for other in older if checkpoint_files.damage(os.path.join(self.read_directory, other)) is None),
            None,
        )
        if intact is None:
            return f"Checkpoint {latest} is damaged ({problem}) and no other checkpoint loads; start a new run."
        aside = shlex.quote(os.path.join(self.read_directory, "damaged"))
        # Quoted, so the command is safe to paste for any path; the glob stays outside the quotes.
        return (
            f"Checkpoint {latest} is damaged ({problem}); {intact} is intact. To resume from it, move the damaged "
            f"files aside (nothing else changes): mkdir -p {aside} && mv {shlex.quote(latest)}.* {aside}/"
        )

    def save(self) -> str | None:
        """Saves now, numbered by the step, unless this step is already saved."""
        step = int(self.trainer.step.numpy())
        if self.latest is not None and self.latest.endswith(f"{checkpoint_files.PREFIX}-{step}"):
            return None
        trainer = self.trainer
        record = {"metadata": self.metadata, **trainer.loop_state.to_record()}
        self.run_record.assign(json.dumps(record))
        previous = self.latest
        try:
            with trainer.raw_weights():  # What training goes on from, even after fit left the averages in.
                return self.manager.save(checkpoint_number=step)
        except (tf.errors.OpError, OSError) as error:
            # What is on disk, not what the manager recorded: a save may be whole but for the list naming it.
            names = [f"{checkpoint_files.PREFIX}-{number}" for number in checkpoint_files.numbers(self.directory)]
            whole = [name for name in names if checkpoint_files.damage(os.path.join(self.directory, name)) is None]
            newest = whole[-1] if whole else os.path.basename(previous or "")
            # Of this directory only: a run's best checkpoints live apart from its others.
            kept = f"{newest} and those before it are intact" if newest else "Nothing had been saved there yet"
            raise RunWriteError(
                f"Cannot save a checkpoint in {self.directory}: {_write_cause(error)}. {kept}; free space or fix "
                "the permissions, then --resume."
            ) from None

    def on_train_begin(self, trainer: Trainer) -> None:
        # A save before the first step makes a run resumable from its very start.
        if self.latest is None:
            self.save()

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict) -> None:
        self.save()

    def on_train_end(self, trainer: Trainer, history: dict) -> None:
        self.save()
