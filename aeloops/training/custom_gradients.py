"""Lets a traced step's graph go: TensorFlow keeps every ``tf.custom_gradient`` traced in graph mode.

Traced, each ``tf.custom_gradient`` call registers its gradient function
under a fresh name in TensorFlow's process-wide gradient registry, and
nothing ever removes it; the function holds the tensors of the graph it was
traced in, and through them the graph, the model and the optimizer. Keras's
optimizers make one such call on every update (the gradients' all-reduce,
on one device too), so each trainer's training step, with its model and
optimizer, stayed in memory until the process ended: a sweep or a notebook
building many trainers grew without end, and each of Python's full garbage
collections walked all of it. Once a step's trace has returned it has taken
every gradient it will take, so its registrations can go.

>>> loop_step = releasing_custom_gradients(trainer.run_train_step)   # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from tensorflow.python.framework import ops

__all__ = ["releasing_custom_gradients"]

# The names tf.custom_gradient registers its graph-mode gradients under (custom_gradient.generate_name).
_PREFIX = "CustomGradient-"

Function = TypeVar("Function", bound=Callable[..., Any])


def _registry() -> dict[str, Any] | None:
    """TensorFlow's gradient registry, by name; None if its layout ever changes (nothing is then removed)."""
    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


def releasing_custom_gradients(step: Function) -> Function:
    """Returns ``step`` with the custom gradients each of its traces registers removed when the trace returns."""

    @functools.wraps(step)
    def released(*args: Any, **kwargs: Any) -> Any:
        registry = _registry()
        before = set(registry) if registry is not None else set()
        try:
            return step(*args, **kwargs)
        finally:
            if registry is not None:
                for name in [name for name in registry if name.startswith(_PREFIX) and name not in before]:
                    del registry[name]

    return released  # type: ignore[return-value]
