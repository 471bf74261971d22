"""Checkpoints: everything the next training step depends on, saved and restored.

A checkpoint holds the trainer, a ``tf.Module``: its model, every optimizer
(slots and moving averages included), its step, and whatever a ``Trainer``
subclass holds as attributes (a discriminator, its optimizer, variables,
a ``tf.random.Generator``); and the state of every Keras ``SeedGenerator``
(noise and dropout layers), which Keras keeps out of checkpoints. The data
order needs no saving: each epoch's shuffle is seeded by ``(seed, epoch)``
and the position inside it follows from the step.
``tf.train.CheckpointManager`` writes atomically and prunes old checkpoints.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import keras
import tensorflow as tf

from aeloops.callbacks import Callback

if TYPE_CHECKING:
    from aeloops.loop import Trainer

__all__ = ["Checkpointer"]


def _seed_generator_states(trainer: Trainer) -> list[tf.Variable]:
    """Returns the SeedGenerator states of every Keras layer the trainer holds, once each."""
    layers = [trainer.model, *trainer._flatten(predicate=lambda value: isinstance(value, keras.layers.Layer))]
    states, seen = [], set()
    for layer in layers:
        for variable in layer.variables:
            if variable.name == "seed_generator_state" and id(variable) not in seen:
                seen.add(id(variable))
                states.append(variable)
    return states


class Checkpointer(Callback):
    """Saves ``trainer`` every epoch (and on demand) and restores the latest save.

    >>> checkpointer = Checkpointer(trainer, "runs/x/checkpoints")  # doctest: +SKIP
    >>> checkpointer.restore()           # False when there is nothing yet  # doctest: +SKIP
    >>> trainer.fit(images, callbacks=[checkpointer])                       # doctest: +SKIP
    """

    def __init__(
        self,
        trainer: Trainer,
        directory: str | os.PathLike,
        max_to_keep: int = 3,
        write_directory: str | os.PathLike | None = None,
    ) -> None:
        """Reads checkpoints from ``directory``; writes them there too unless ``write_directory`` is given.

        Under ``MultiWorkerMirroredStrategy`` every worker must take part in
        a save; a non-chief worker passes a scratch ``write_directory`` so
        that only the chief writes the run's own checkpoints.
        """
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be at least 1, got {max_to_keep}.")
        self.trainer = trainer
        self.read_directory = os.fspath(directory)
        self.directory = os.fspath(write_directory if write_directory is not None else directory)
        trainer.check_checkpointable()
        self.checkpoint = tf.train.Checkpoint(trainer=trainer, seed_generators=_seed_generator_states(trainer))
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.directory, max_to_keep=max_to_keep, checkpoint_name="ckpt"
        )

    @property
    def latest_to_restore(self) -> str | None:
        """The newest checkpoint of the directory checkpoints are read from."""
        if self.read_directory == self.directory:
            return self.latest
        return tf.train.latest_checkpoint(self.read_directory)

    @property
    def latest(self) -> str | None:
        """The prefix of the newest checkpoint whose files exist, or None.

        A checkpoint whose files were removed (say, because they were
        corrupt) is passed over for the one before it.
        """
        for prefix in reversed(self.manager.checkpoints):
            if tf.io.gfile.exists(f"{prefix}.index"):
                return prefix
        return None

    def restore(self) -> bool:
        """Restores the newest checkpoint; returns False when there is none.

        Raises:
          ValueError: when the checkpoint is unreadable or does not fit the model.
        """
        latest = self.latest_to_restore
        if latest is None:
            return False
        try:
            status = self.checkpoint.restore(latest)
            # Every object the trainer holds must come back: a part left out
            # would resume from its initial value, silently. (The checkpoint
            # may hold more: TensorFlow's preemption handler adds its own.)
            status.assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError, OSError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(
                f"Cannot restore checkpoint {latest}: {first_line[:300]}. "
                f"It is corrupt or from a different model; delete {os.path.basename(latest)}.* to resume "
                "from the checkpoint before it."
            ) from None
        return True

    def save(self) -> str | None:
        """Saves now, numbered by the step, unless this step is already saved."""
        step = int(self.trainer.step.numpy())
        if self.latest is not None and self.latest.endswith(f"ckpt-{step}"):
            return None
        return self.manager.save(checkpoint_number=step)

    def on_train_begin(self, trainer: Trainer) -> None:
        # A save before the first step makes a run resumable from its very start.
        if self.latest is None:
            self.save()

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict) -> None:
        self.save()

    def on_train_end(self, trainer: Trainer, history: dict) -> None:
        self.save()
