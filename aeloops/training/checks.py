"""Checks ``Trainer`` makes of what it is given, so that mistakes fail early with the fix, never silently.

>>> check_results({"loss": tf.constant(1.0)}, "train_step")["loss"].dtype   # doctest: +SKIP
tf.float32
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from aeloops.objectives.objective import Objective, StepError
from aeloops.training.optimizers import inner_optimizer
from aeloops.training.options import NONFINITE_POLICIES
from aeloops.training.recovery import Recovery
from aeloops.training.step_records import (
    GRADIENT_NORM,
    LOSS_SCALE_SKIPPED,
    NONFINITE_STEPS,
    WEIGHT_PREFIX,
    WEIGHTED_PREFIX,
)

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = [
    "attributes",
    "check_loss_scaled",
    "check_outputs",
    "check_results",
    "checkpoint_problems",
    "plain_step_errors",
    "refuse_keras_steps",
]

# Names the library adds to a step's results; a train step must not return them.
RESERVED = (GRADIENT_NORM, NONFINITE_STEPS, LOSS_SCALE_SKIPPED)


def refuse_keras_steps(model: keras.Model) -> None:
    """Refuses a model whose own ``train_step``/``test_step`` would be silently ignored."""
    for method in ("train_step", "test_step"):
        owner = next(cls for cls in type(model).__mro__ if method in vars(cls))
        if not owner.__module__.startswith(("keras", "aeloops.models")):
            raise ValueError(
                f"{type(model).__name__} overrides Keras's {method}, which aeloops.Trainer never calls; "
                f"move that code into a Trainer subclass's {method} (see docs/train-step.md)."
            )


def check_outputs(model: keras.Model, objective: Objective) -> None:
    """Refuses a term that reads an output the model does not return, now rather than deep in a trace."""
    if getattr(model, "example_shape", None) is None or not hasattr(model, "output_names"):
        return
    outputs = model.output_names()
    for term in objective.terms:
        if term.output not in outputs:
            raise ValueError(
                f"LossTerm {term.name!r} reads output {term.output!r}, but the model returns {list(outputs)}; "
                "point the term at one of those."
            )


def computes_in_float16(model: keras.Model) -> bool:
    """Whether ``model`` was built under ``mixed_float16``: its gradients need loss scaling."""
    return getattr(getattr(model, "dtype_policy", None), "name", None) == "mixed_float16"


def check_loss_scaled(optimizer: Any, model: keras.Model, what: str) -> None:
    """Refuses an optimizer that does not scale losses for a model that computes in float16."""
    if (
        isinstance(optimizer, keras.optimizers.Optimizer)
        and computes_in_float16(model)
        and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    ):
        raise ValueError(
            f"{what} is a {type(optimizer).__name__} that does not scale losses, but the model computes in "
            "float16 (mixed_float16), where small gradients underflow to zero; wrap it when you create it: "
            "keras.optimizers.LossScaleOptimizer(optimizer), or pass the optimizer by name."
        )


def check_arguments(
    model: Any, objective: Objective | None, steps_per_loop: Any, on_nonfinite: Any, recovery: Any
) -> Objective:
    """Refuses a ``Trainer``'s arguments that cannot train, each in one line; returns the objective to use."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}.")
    refuse_keras_steps(model)
    if isinstance(steps_per_loop, bool) or not isinstance(steps_per_loop, int) or steps_per_loop < 1:
        raise ValueError(f"steps_per_loop must be a positive int, got {steps_per_loop!r}.")
    if objective is None:
        objective = model.default_objective()
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be an aeloops Objective, got {type(objective).__name__}.")
    check_outputs(model, objective)
    if on_nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"on_nonfinite must be one of {NONFINITE_POLICIES}, got {on_nonfinite!r}.")
    if recovery is not None and on_nonfinite != "rollback":
        raise ValueError(f"recovery= takes effect only with on_nonfinite='rollback', not {on_nonfinite!r}.")
    if recovery is not None and not isinstance(recovery, Recovery):
        raise TypeError(f"recovery must be an aeloops.Recovery, got {type(recovery).__name__}.")
    return objective


def check_held_optimizers(trainer: Trainer) -> None:
    """Refuses, under ``mixed_float16``, any optimizer the trainer holds that does not scale losses."""
    for path, value in attributes(trainer):
        check_loss_scaled(value, trainer.model, f"trainer.{path}")


# Helpers marked do_not_convert hold no control flow that depends on a tensor, so
# AutoGraph need not rewrite them: each rewrite costs time in every process's first trace.
# A vector a step returns is logged one component a value, up to this many.
MAX_COMPONENTS = 64


@tf.autograph.experimental.do_not_convert
def check_results(results: Any, method: str) -> dict[str, tf.Tensor]:
    """Returns a step's results as float32 scalars, refusing anything else and the library's own names.

    A vector (a KL divergence per latent dimension, say) of up to
    ``MAX_COMPONENTS`` values becomes one scalar a component, named
    ``<name>/<index>`` (zero-padded, so they sort in order).
    """
    if not isinstance(results, Mapping):
        raise StepError(f"{method} must return a dict of scalar tensors to log, got {type(results).__name__}.")
    checked = {}
    for name, value in results.items():
        value = tf.convert_to_tensor(value)
        if name in RESERVED or name.startswith((WEIGHT_PREFIX, WEIGHTED_PREFIX)):
            raise StepError(f"{method} returned {name!r}, a name the library logs itself; rename it.")
        value = tf.cast(value, tf.float32)
        if value.shape.rank == 0:
            checked[name] = value
            continue
        size = value.shape[0] if value.shape.rank == 1 else None
        if size is None or size > MAX_COMPONENTS:
            raise StepError(
                f"{method} returned {name!r} with shape {value.shape}; return scalars, or vectors of at most "
                f"{MAX_COMPONENTS} values of a static length (each is logged as {name}/<index>): reduce it first."
            )
        width = len(str(size - 1))
        for index in range(size):
            checked[f"{name}/{index:0{width}d}"] = value[index]
    return checked


def attributes(trainer: Trainer) -> Iterator[tuple[str, Any]]:
    """Yields ``(path, value)`` for the trainer's attributes, looking into dicts and lists."""
    pending = [(name, value) for name, value in vars(trainer).items() if not name.startswith("_")]
    while pending:
        path, value = pending.pop()
        yield path, value
        if isinstance(value, Mapping):
            pending.extend((f"{path}[{key!r}]", item) for key, item in value.items())
        elif isinstance(value, (list, tuple)):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))


def checkpoint_problems(trainer: Trainer) -> list[str]:
    """Returns what the trainer holds that a checkpoint would drop or restore wrongly, each with its fix."""
    problems = []
    for path, value in attributes(trainer):
        if isinstance(value, keras.optimizers.Optimizer) and not inner_optimizer(value).built:
            problems.append(
                f"trainer.{path} is an optimizer with no variables yet, so its slots would be left out of "
                f"checkpoints; build it in __init__: self.{path}.build(<its variables>)"
            )
        elif isinstance(value, keras.layers.Layer) and not value.built:
            problems.append(f"trainer.{path} is a Keras layer that is not built; build it in __init__")
        elif isinstance(value, (np.random.Generator, np.random.RandomState, random.Random)):
            problems.append(
                f"trainer.{path} is a {type(value).__name__}, whose state checkpoints cannot hold; "
                "use a tf.random.Generator"
            )
    return problems


def plain_step_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps a compiled loop so that a ``StepError`` raised while tracing it reaches the caller as raised.

    AutoGraph re-raises errors from traced code as a new exception whose
    message holds a trace through the library; the original is kept as
    its context.
    """

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            original = _step_error_in(error)
            if original is None:
                raise
            raise original.with_traceback(None) from None

    return call


def _step_error_in(error: BaseException) -> StepError | None:
    """Returns the ``StepError`` that ``error`` is or was raised in handling, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, StepError) and "in user code:" not in str(error):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
