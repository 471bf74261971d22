"""How gradients become updates: optimizers per part, clipping, loss scaling, replicas, moving averages.

The helpers behind ``Trainer.optimize`` and ``Trainer.averaged_weights``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from aeloops.training.checks import check_loss_scaled, computes_in_float16
from aeloops.training.optimizers import OptimizerSpec, inner_optimizer, make_optimizer
from aeloops.training.options import LIBRARY_SCOPE

__all__ = [
    "Plan",
    "all_reduce",
    "average_pairs",
    "check_strategy",
    "clip",
    "clips",
    "gradients",
    "loss_scale",
    "plan",
    "resolve_parts",
    "swap",
]


def resolve_parts(
    model: keras.Model, optimizer: OptimizerSpec, learning_rate: float | None, options: dict[str, Any]
) -> dict[str, tuple[keras.optimizers.Optimizer, list[tf.Variable]]]:
    """Returns ``{part: (optimizer, variables)}`` covering every trainable variable once.

    Named optimizers scale losses when the model computes in float16; an
    instance that does not is refused with the fix.
    """
    scaled = computes_in_float16(model)
    if not isinstance(optimizer, Mapping):
        instance = make_optimizer(optimizer, learning_rate, loss_scale=scaled, **options)
        check_loss_scaled(instance, model, "optimizer=")
        return {"model": (instance, list(model.trainable_variables))}
    if learning_rate is not None or options:
        raise ValueError("With one optimizer per part, give each part its own learning rate and options.")
    parts, owner = {}, {}
    for path, part_optimizer in optimizer.items():
        target = model
        for attribute in path.split("."):  # "encoder.hidden_layers.0": attributes, and list indices.
            if attribute.isdigit() and isinstance(target, Sequence) and int(attribute) < len(target):
                target = target[int(attribute)]
            else:
                target = getattr(target, attribute, None)
        if not isinstance(target, keras.layers.Layer):
            raise ValueError(f"optimizer part {path!r} names no layer of {type(model).__name__} (model.{path}).")
        variables = list(target.trainable_variables)
        for variable in variables:
            if id(variable) in owner:
                first = owner[id(variable)]
                raise ValueError(f"{variable.path} belongs to two optimizer parts, {first!r} and {path!r}.")
            owner[id(variable)] = path
        parts[path] = (make_optimizer(part_optimizer, loss_scale=scaled), variables)
        check_loss_scaled(parts[path][0], model, f"The optimizer of part {path!r}")
    missing = [variable.path for variable in model.trainable_variables if id(variable) not in owner]
    if missing:
        raise ValueError(f"No optimizer part covers {', '.join(missing[:3])}; add a part for them.")
    # In the model's own order, whatever order the mapping came in (a config
    # file may sort it): the gradient's norm is then summed the same way.
    position = {id(variable): index for index, variable in enumerate(model.trainable_variables)}
    return dict(sorted(parts.items(), key=lambda item: min((position[id(v)] for v in item[1][1]), default=-1)))


def by_part(
    variables: Sequence[tf.Variable], parts: Sequence[tuple[keras.optimizers.Optimizer, Sequence[tf.Variable]]]
) -> list[tuple[keras.optimizers.Optimizer, list[tf.Variable]]]:
    """Returns ``variables`` grouped by the part (of ``parts``: optimizer and its variables) that holds each."""
    owner = {id(v): index for index, (_, part_variables) in enumerate(parts) for v in part_variables}
    grouped: dict[int, list[tf.Variable]] = {}
    for variable in variables:
        if id(variable) not in owner:
            name = getattr(variable, "path", variable.name)
            raise ValueError(
                f"{name} is not a trainable variable of the model, so no optimizer of the trainer's updates it; "
                "pass optimizer= for it (an optimizer the trainer holds, built in __init__)."
            )
        grouped.setdefault(owner[id(variable)], []).append(variable)
    return [(parts[index][0], grouped[index]) for index in sorted(grouped)]


def reordered(values: Sequence[Any], variables: Sequence[tf.Variable], order: Sequence[tf.Variable]) -> list[Any]:
    """Returns ``values`` (one per variable of ``variables``) in the order of ``order``, the same variables."""
    by_variable = {id(variable): value for variable, value in zip(variables, values)}
    return [by_variable[id(variable)] for variable in order]


def learning_rates(optimizers: Mapping[str, keras.optimizers.Optimizer]) -> dict[str, float]:
    """Returns the rate in effect: ``{"learning_rate": ...}``, or ``learning_rate/<part>`` for each part."""
    rates = {}
    for part, part_optimizer in optimizers.items():
        key = "learning_rate" if len(optimizers) == 1 else f"learning_rate/{part}"
        rates[key] = float(tf.convert_to_tensor(inner_optimizer(part_optimizer).learning_rate))
    return rates


def check_strategy(optimizers: Mapping[str, keras.optimizers.Optimizer], strategy: tf.distribute.Strategy) -> None:
    """Refuses an optimizer created outside ``strategy`` (its variables would not be mirrored)."""
    for part, optimizer in optimizers.items():
        if getattr(inner_optimizer(optimizer), "_distribution_strategy", strategy) is not strategy:
            where = "The optimizer" if part == "model" else f"The optimizer of part {part!r}"
            raise ValueError(
                f"{where} was created outside the trainer's strategy; create it under `with strategy.scope():` "
                "(or pass its name and let the trainer create it)."
            )


# Helpers marked do_not_convert hold no control flow that depends on a tensor, so
# AutoGraph need not rewrite them: each rewrite costs time in every process's first trace.
@tf.autograph.experimental.do_not_convert
def loss_scale(parts: Sequence[tuple[keras.optimizers.Optimizer, Any]]) -> tf.Tensor | None:
    """Returns the parts' dynamic loss scale when they scale losses (``mixed_float16``), else None."""
    scaling = [isinstance(opt, keras.optimizers.LossScaleOptimizer) for opt, _ in parts]
    if not any(scaling):
        return None
    if not all(scaling):
        raise ValueError("One update cannot mix loss-scaling optimizers with others; optimize them separately.")
    return tf.cast(tf.convert_to_tensor(parts[0][0].dynamic_scale), tf.float32)


def all_reduce(gradients: Sequence[tf.Tensor | None]) -> list[tf.Tensor | None]:
    """Returns ``gradients`` summed over replicas, Nones kept in place."""
    present = [g for g in gradients if g is not None]
    summed = iter(tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, present))
    return [None if g is None else next(summed) for g in gradients]


@tf.autograph.experimental.do_not_convert
def clips(optimizer: keras.optimizers.Optimizer) -> bool:
    """Returns whether ``optimizer`` clips gradients (``clipnorm``, ``global_clipnorm`` or ``clipvalue``)."""
    inner = inner_optimizer(optimizer)
    return bool(inner.clipnorm or inner.global_clipnorm or inner.clipvalue)


def clip(optimizer: keras.optimizers.Optimizer, gradients: list[tf.Tensor | None]) -> list[tf.Tensor | None]:
    """Returns ``gradients`` clipped as ``optimizer``'s options say (Keras's rules, on whole gradients)."""
    inner = inner_optimizer(optimizer)
    if inner.clipnorm:
        return [None if g is None else tf.clip_by_norm(g, inner.clipnorm) for g in gradients]
    if inner.global_clipnorm:
        present = [g for g in gradients if g is not None]
        clipped = iter(tf.clip_by_global_norm(present, inner.global_clipnorm)[0])
        return [None if g is None else next(clipped) for g in gradients]
    if inner.clipvalue:
        return [None if g is None else tf.clip_by_value(g, -inner.clipvalue, inner.clipvalue) for g in gradients]
    return gradients


def average_pairs(optimizers: Any) -> list[tuple[tf.Variable, tf.Variable]]:
    """Returns ``(variable, moving average)`` pairs of every optimizer that keeps averages (``use_ema``)."""
    pairs = []
    for optimizer in optimizers:
        inner = inner_optimizer(optimizer)
        if inner.use_ema:
            # Keras keeps the averages beside the variables they follow, in order.
            for variable, average in zip(inner._trainable_variables, inner._model_variables_moving_average):
                if average is not None:
                    pairs.append((variable, average))
    return pairs


def swap(pairs: Sequence[tuple[tf.Variable, tf.Variable]]) -> None:
    """Exchanges each variable's value with its moving average's, exactly."""
    for variable, average in pairs:
        current = tf.identity(variable.value)
        variable.assign(average.value)
        average.assign(current)


@tf.autograph.experimental.do_not_convert
def gradients(
    loss: tf.Tensor, tape: tf.GradientTape, parts: Sequence[tuple[keras.optimizers.Optimizer, list]], replicas: int
) -> list[tf.Tensor | None]:
    """Returns the gradient of ``loss`` for the parts' variables, in order: the global batch's, unscaled.

    Each replica's loss is its share of the global mean, so the sum over
    replicas is the gradient of the mean. Under loss scaling the scale
    enters through the tape's output gradient (so the tape may be closed)
    and is divided out again here: the values are the true gradient.
    """
    with tf.name_scope(LIBRARY_SCOPE):
        scale = loss_scale(parts)
    variables = [variable for _, part_variables in parts for variable in part_variables]
    with tf.name_scope("gradient_tape/"):  # Where the tape puts the backward pass; its sums too.
        raw = tape.gradient(loss, variables, output_gradients=None if scale is None else scale)
    with tf.name_scope(LIBRARY_SCOPE):
        summed = all_reduce(raw) if replicas > 1 else list(raw)
        if scale is None:
            return summed
        # Scales are powers of two: dividing and multiplying again is exact.
        return [None if g is None else g * (1.0 / scale) for g in summed]


@dataclasses.dataclass
class Plan:
    """One update, computed but not applied: ``apply()`` applies it; the rest is what the step logs of it."""

    apply: Callable[[], tf.Operation]
    norm: tf.Tensor
    clipped_norm: tf.Tensor | None
    finite: tf.Tensor
    loss_scale_skipped: tf.Tensor | None

    def apply_where(self, condition: tf.Tensor | None) -> None:
        """Applies the update, only where ``condition`` holds when one is given (``tf.cond``, in the graph)."""
        with tf.name_scope("optimizer/"):  # Every update, its optimizers' own bookkeeping included.
            if condition is None:
                self.apply()
            else:
                tf.cond(condition, self.apply, tf.no_op)


@tf.autograph.experimental.do_not_convert
def plan(
    gradients: Sequence[tf.Tensor | None],
    parts: Sequence[tuple[keras.optimizers.Optimizer, list]],
    replicas: int,
    loss: tf.Tensor | None = None,
) -> Plan:
    """Returns the update of each ``(optimizer, variables)`` part by ``gradients`` (the global batch's, unscaled).

    The norm is taken before clipping. Each replica hands its optimizer its
    share of the gradient (Keras sums replicas' gradients), times the loss
    scale where the optimizer scales losses (it divides by it again).
    """
    with tf.name_scope(LIBRARY_SCOPE):  # The optimizers' own ops, in apply(), keep their scopes.
        scale = loss_scale(parts)
        present = [g for g in gradients if g is not None]
        norm = tf.linalg.global_norm(present) if present else tf.constant(0.0)
        finite = tf.constant(True) if loss is None else tf.math.is_finite(tf.cast(loss, tf.float32))
        loss_scale_skipped = None
        if scale is None:
            finite = tf.logical_and(finite, tf.math.is_finite(norm))
        else:  # Overflowing scaled gradients are the loss scaler's business.
            loss_scale_skipped = tf.cast(tf.logical_not(tf.math.is_finite(norm)), tf.float32)
        steps, clipped, offset = [], [], 0
        any_clipping = any(clips(part_optimizer) for part_optimizer, _ in parts)
        share = 1.0 if scale is None else scale
        if replicas > 1:
            share = share / replicas
        for part_optimizer, part_variables in parts:
            part = list(gradients[offset : offset + len(part_variables)])
            offset += len(part_variables)
            if not clips(part_optimizer):
                clipped.extend(g for g in part if g is not None)  # It counts as it is in the clipped norm.
            else:
                clipped_part = clip(part_optimizer, part)
                clipped.extend(g for g in clipped_part if g is not None)
                if replicas > 1:
                    # Keras clips each replica's share before summing them; clip
                    # the sum instead, as one device would, and hand each replica
                    # its share (which the optimizer's own clipping then leaves be).
                    part = clipped_part
            if scale is not None or replicas > 1:
                part = [None if g is None else g * share for g in part]
            steps.append((part_optimizer, part, part_variables))

    def apply() -> tf.Operation:
        for part_optimizer, part_gradients, part_variables in steps:
            part_optimizer.apply_gradients([(g, v) for g, v in zip(part_gradients, part_variables) if g is not None])
        return tf.no_op()

    with tf.name_scope(LIBRARY_SCOPE):
        clipped_norm = tf.linalg.global_norm(clipped) if any_clipping else None
    return Plan(apply, norm, clipped_norm, finite, loss_scale_skipped)
