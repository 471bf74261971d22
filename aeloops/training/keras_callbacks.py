"""Keras callbacks in aeloops' loop: Keras's protocol, spoken by the outer loop beside aeloops' own callbacks.

``fit`` takes any ``keras.callbacks.Callback`` (Keras's own, Optuna's and
MLflow's, a lab's subclass) with Keras's meaning:

- ``set_model`` gets the model being trained, as Keras callbacks expect it:
  every attribute is the trainer's model's, and ``model.optimizer`` is the
  trainer's optimizer (for several, one with ``optimizers``, as Keras's
  callbacks read a multi-optimizer), and ``model.stop_training`` is the
  trainer's stop flag;
- ``set_params`` gets ``epochs``, ``steps`` (per epoch) and ``verbose``;
- ``on_epoch_end(epoch, logs)`` gets the epoch's history row (``loss``, every
  term, ``learning_rate``, ``val_*``); ``epoch`` counts from 0;
- ``on_train_batch_begin(batch)`` and ``on_train_batch_end(batch, logs)``
  are called around each compiled call of ``steps_per_loop`` steps, as
  Keras 3 calls them with ``steps_per_execution``: ``batch`` is the step's
  index in the epoch, from 0, of the call's first step (begin) and of its
  last (end), and ``logs`` are the epoch's running means so far;
- ``on_test_begin()`` and ``on_test_end(logs)`` surround validation, with the
  validation values named without ``val_``.

Setting ``model.stop_training`` stops training after the compiled call in
progress: at the epoch's end from ``on_epoch_end`` (``EarlyStopping``); from a
batch hook (``TerminateOnNaN``) within the epoch, which is then unfinished and
resumable as an interrupted run is. A learning rate a callback sets through
``model.optimizer.learning_rate`` is the optimizer's own variable: the
compiled step reads it, the history logs it and checkpoints save it. At
every point Keras callbacks run before aeloops' own, so a ``Checkpointer``
saves what they changed.

Keras callbacks that cannot work on this loop are refused, naming what does
their work here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import keras

from aeloops.training.callbacks import Callback

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = ["CallbackList", "ModelView", "OptimizerGroup"]

# Keras callbacks whose work aeloops does its own way, and what does it.
_REFUSED = {
    "BackupAndRestore": "aeloops.Checkpointer (exact resume, mid-epoch included): "
    "Checkpointer(trainer, directory).restore(), then fit as before",
    "TensorBoard": "aeloops.SummaryWriter(trainer, log_dir), which writes every term, pictures and gradients",
    "ProgbarLogger": "fit's own progress bar (verbose=1, or verbose=2 for a line per epoch)",
    "SwapEMAWeights": "Trainer(..., use_ema=True): validation and the model fit leaves use the moving averages",
    "OrbaxCheckpoint": "aeloops.Checkpointer",
}


class OptimizerGroup:
    """A trainer's several optimizers as Keras callbacks read a multi-optimizer: ``optimizers``, one per part."""

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer
        self.optimizers = list(trainer.optimizers.values())

    @property
    def iterations(self) -> Any:
        """The trainer's step (MLflow's callback reads it for its step count)."""
        return self._trainer.step

    def get_config(self) -> dict[str, Any]:
        """Returns each part's optimizer config, keyed by part."""
        return {part: optimizer.get_config() for part, optimizer in self._trainer.optimizers.items()}


class ModelView:
    """The model as Keras callbacks are given it: the trainer's model, with the trainer's optimizer and stop flag.

    Every attribute but ``optimizer`` and ``stop_training`` is the model's
    own, read and written through (``get_weights``, ``set_weights``,
    ``save``, ``summary``, ...). The two are not set on the model itself: an
    optimizer attached to it would enter its checkpoints and ``.keras`` file.
    """

    def __init__(self, trainer: Trainer) -> None:
        object.__setattr__(self, "_trainer", trainer)

    @property
    def optimizer(self) -> Any:
        """The trainer's optimizer, or an ``OptimizerGroup`` of its optimizers."""
        trainer = self._trainer
        return next(iter(trainer.optimizers.values())) if len(trainer.optimizers) == 1 else OptimizerGroup(trainer)

    @property
    def stop_training(self) -> bool:
        """The trainer's stop flag: set it to stop training (Keras's meaning)."""
        return bool(self._trainer.stop_training)

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        self._trainer.stop_training = bool(value)

    def __getattr__(self, name: str) -> Any:
        if name == "_trainer":  # Not set yet (a copy being made): no model to forward to.
            raise AttributeError(name)
        return getattr(self._trainer.model, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "stop_training":
            object.__setattr__(self, name, value)  # The property's setter.
        elif name == "optimizer":
            raise AttributeError(
                "model.optimizer is the aeloops Trainer's optimizer and cannot be replaced by a callback; set its "
                "learning_rate, or give the Trainer another optimizer (Trainer(..., optimizer=...))."
            )
        else:
            setattr(self._trainer.model, name, value)

    def __repr__(self) -> str:
        return f"<the model {self._trainer.model.name!r} of an aeloops Trainer>"


def is_keras_callback(callback: Any) -> bool:
    """Whether ``callback`` speaks Keras's protocol (``keras.callbacks.Callback``, or tf_keras's, by its methods)."""
    if isinstance(callback, Callback):
        return False
    return isinstance(callback, keras.callbacks.Callback) or all(
        callable(getattr(callback, name, None)) for name in ("set_model", "set_params", "on_epoch_end")
    )


def _refuse_unsupported(callback: Any) -> None:
    for cls in type(callback).__mro__:
        if cls.__name__ in _REFUSED and cls.__module__.startswith(("keras", "tf_keras")):
            raise ValueError(
                f"Keras's {cls.__name__} callback drives Keras's own fit and cannot work in aeloops' loop; "
                f"use {_REFUSED[cls.__name__]}."
            )


class CallbackList:
    """Calls aeloops' callbacks and Keras callbacks at each point of the outer loop, Keras's first."""

    def __init__(self, trainer: Trainer, callbacks: Sequence[Any], *, epochs: int, steps: int, verbose: int) -> None:
        """Sorts ``callbacks`` by protocol, refusing what fits neither, and gives Keras's their model and params."""
        self.trainer = trainer
        self.keras: list[Any] = []
        self.own: list[Any] = []
        for callback in callbacks:
            if is_keras_callback(callback):
                _refuse_unsupported(callback)
                self.keras.append(callback)
            elif callable(getattr(callback, "on_epoch_end", None)):
                self.own.append(callback)
            else:
                raise TypeError(
                    f"callbacks holds {callback!r}, which is neither an aeloops.Callback nor a "
                    "keras.callbacks.Callback; subclass one of them."
                )
        if self.keras:
            view = ModelView(trainer)
            for callback in self.keras:
                callback.set_model(view)
                callback.set_params({"epochs": epochs, "steps": steps, "verbose": verbose})

    def _own(self, hook: str, *arguments: Any) -> None:
        # aeloops callbacks written before a hook existed may lack it.
        for callback in self.own:
            method = getattr(callback, hook, None)
            if method is not None:
                method(self.trainer, *arguments)

    def train_begin(self) -> None:
        """Before the first step of the fit."""
        for callback in self.keras:
            callback.on_train_begin({})
        self._own("on_train_begin")

    def epoch_begin(self, epoch: int) -> None:
        """Before the epoch's first step (or the first step left, when it resumes)."""
        for callback in self.keras:
            callback.on_epoch_begin(epoch, {})
        self._own("on_epoch_begin", epoch)

    def loop_begin(self, batch: int) -> None:
        """Before a compiled call whose first step is the epoch's ``batch``-th (from 0)."""
        for callback in self.keras:
            callback.on_train_batch_begin(batch, {})

    def loop_end(self, batch: int, call_means: Mapping[str, float], epoch_means: Mapping[str, float]) -> None:
        """After a compiled call whose last step is the epoch's ``batch``-th (from 0).

        Keras callbacks get the epoch's running means, as Keras's metrics give
        them; aeloops' own get the call's means, as they always have.
        """
        for callback in self.keras:
            callback.on_train_batch_end(batch, dict(epoch_means))
        self._own("on_loop_end", call_means)

    def test_begin(self) -> None:
        """Before validation."""
        for callback in self.keras:
            callback.on_test_begin({})

    def test_end(self, logs: Mapping[str, float]) -> None:
        """After validation, with its values named without ``val_``."""
        for callback in self.keras:
            callback.on_test_end(dict(logs))

    def epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        """After the epoch and its validation, with the epoch's history row."""
        for callback in self.keras:
            callback.on_epoch_end(epoch, dict(logs))
        self._own("on_epoch_end", epoch, logs)

    def train_end(self, history: Mapping[str, list[float]], last_logs: Mapping[str, float]) -> None:
        """After the last epoch (or the stop)."""
        for callback in self.keras:
            callback.on_train_end(dict(last_logs))
        self._own("on_train_end", history)
