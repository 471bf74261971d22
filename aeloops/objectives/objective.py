"""The training objective: a weighted sum of named loss terms.

A ``LossTerm`` reads one named model output, compares it with a named entry
of the batch (or, for an activity regularizer, with nothing), and yields one
value per example. ``Objective`` averages each term over the global batch,
weights it and adds the terms up. Nothing is hidden: Keras layer losses
(``activity_regularizer``, ``add_loss``) become a term named
``"layer_losses"`` rather than vanishing from a hand-written loop.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Union

import tensorflow as tf

from aeloops.objectives import losses as losses_lib
from aeloops.objectives import regularizers

__all__ = ["LAYER_LOSSES", "TOTAL", "LossTerm", "Objective", "StepError", "Weight"]

TOTAL = "loss"
LAYER_LOSSES = "layer_losses"

# A weight is a constant or a function of the training step (an int64 tensor).
Weight = Union[float, Callable[[tf.Tensor], tf.Tensor]]

_REGULARIZERS = {"l1": regularizers.l1_activity, "l2": regularizers.l2_activity, "sum": regularizers.sum_activity}


class StepError(ValueError):
    """A mistake in an objective or in what a step returns, found while the step is traced.

    The trainer's compiled loops raise it as it was raised, without the
    trace through TensorFlow's own code that comes with it.
    """


@dataclasses.dataclass(frozen=True)
class LossTerm:
    """One named, weighted, per-example term of an objective.

    Args:
      name: the key this term's value has in histories and summaries.
      output: the model output the term reads, e.g. ``"logits"`` or ``"code"``.
      loss: a per-example function, or its name. With a ``target`` it is
        called as ``loss(target, prediction)`` (names from
        ``aeloops.objectives.losses.get``); without one as ``loss(activation)`` (names
        ``"l1"``, ``"l2"``, ``"sum"``). Any extra axes of its result are averaged.
      target: the batch entry to compare with (``"input"`` for plain
        reconstruction, ``"clean"`` for denoising), or ``None`` for a
        regularizer that reads the output alone.
      weight: a float, or a function of the step returning a scalar.
      reduction: how each example's values are reduced over their axes:
        ``"mean"`` (per pixel, the Keras convention) or ``"sum"`` (per
        image: a cross-entropy summed over the pixels is a negative
        log-likelihood in nats, the scale of a VAE's KL term). A loss that
        already returns one value per example is used as it is.

    >>> bce = LossTerm("bce", output="logits", loss="bce_logits")
    >>> sparsity = LossTerm("l1", output="code", loss="l1", target=None,
    ...                     weight=1e-4)
    >>> nats = LossTerm("bce", output="logits", loss="bce_logits", reduction="sum")
    """

    name: str
    output: str
    loss: str | Callable[..., tf.Tensor]
    target: str | None = "input"
    weight: Weight = 1.0
    reduction: str = "mean"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"LossTerm name must be a non-empty string, got {self.name!r}.")
        if self.name in (TOTAL, LAYER_LOSSES):
            raise ValueError(
                f"LossTerm name {self.name!r} is reserved for the objective's own entries; choose another name."
            )
        if not isinstance(self.output, str) or not self.output:
            raise ValueError(f"LossTerm {self.name!r}: output must name a model output, got {self.output!r}.")
        if isinstance(self.loss, str):
            names = _REGULARIZERS if self.target is None else None
            if names is not None and self.loss not in names:
                raise ValueError(
                    f"LossTerm {self.name!r} has no target, so its loss must be a "
                    f"callable or one of {sorted(names)}, got {self.loss!r}."
                )
            if names is None:
                losses_lib.get(self.loss)  # Raises a ValueError naming the choices.
        elif not callable(self.loss):
            raise TypeError(
                f"LossTerm {self.name!r}: loss must be a name or a callable, got {type(self.loss).__name__}."
            )
        if self.reduction not in losses_lib.REDUCTIONS:
            raise ValueError(
                f"LossTerm {self.name!r}: reduction must be one of {losses_lib.REDUCTIONS}, got {self.reduction!r}."
            )
        if not callable(self.weight):
            if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)):
                raise TypeError(
                    f"LossTerm {self.name!r}: weight must be a number or a function of the step, got {self.weight!r}."
                )
            if not math.isfinite(self.weight) or self.weight < 0:
                raise ValueError(f"LossTerm {self.name!r}: weight must be finite and >= 0, got {self.weight}.")

    @property
    def function(self) -> Callable[..., tf.Tensor]:
        """The per-example function this term applies."""
        if not isinstance(self.loss, str):
            return self.loss
        if self.target is None:
            return _REGULARIZERS[self.loss]
        return losses_lib.get(self.loss)

    def per_example(self, outputs: Mapping[str, tf.Tensor], batch: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Returns this term's float32 value for each example of the batch."""
        if self.output not in outputs:
            raise StepError(
                f"LossTerm {self.name!r} reads output {self.output!r}, but the model "
                f"returns {sorted(outputs)}; point the term at one of those."
            )
        prediction = tf.cast(outputs[self.output], tf.float32)
        if self.target is None:
            values = self.function(prediction)
        else:
            if self.target not in batch:
                raise StepError(
                    f"LossTerm {self.name!r} compares with batch entry {self.target!r}, "
                    f"but the batch holds {sorted(batch)}."
                )
            target = tf.cast(batch[self.target], tf.float32)
            # A built-in loss by name is reduced here, by this term's reduction.
            function = losses_lib.elementwise(self.loss) if isinstance(self.loss, str) else self.function
            values = function(target, prediction)
        values = tf.convert_to_tensor(values)
        if values.shape.rank == 0:
            raise StepError(
                f"LossTerm {self.name!r}: its loss returned a scalar; it must return one value per "
                "example (shape (batch, ...)), leaving the batch average to the objective."
            )
        return losses_lib.reduce_per_example(tf.cast(values, tf.float32), self.reduction)

    def weight_at(self, step: tf.Tensor | int) -> tf.Tensor:
        """Returns the term's weight at ``step`` as a float32 scalar."""
        if callable(self.weight):
            return tf.cast(self.weight(tf.convert_to_tensor(step, tf.int64)), tf.float32)
        return tf.constant(self.weight, tf.float32)


class Objective:
    """A weighted sum of named ``LossTerm``s.

    Calling it returns a dict with every term's value, unweighted and
    averaged over the global batch, plus ``"loss"``, the weighted total that
    the trainer differentiates.

    >>> objective = Objective([
    ...     LossTerm("bce", output="logits", loss="bce_logits"),
    ...     LossTerm("l1", output="code", loss="l1", target=None, weight=1e-4),
    ... ])
    >>> objective.names
    ('bce', 'l1')
    """

    def __init__(self, terms: Sequence[LossTerm]) -> None:
        terms = tuple(terms)
        if not terms:
            raise ValueError("An Objective needs at least one LossTerm.")
        for term in terms:
            if not isinstance(term, LossTerm):
                raise TypeError(f"Objective terms must be LossTerm, got {type(term).__name__}.")
        names = [term.name for term in terms]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"LossTerm names must be unique; repeated: {duplicates}.")
        self.terms = terms

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the terms, in order."""
        return tuple(term.name for term in self.terms)

    def __repr__(self) -> str:
        return f"Objective({list(self.terms)!r})"

    def __call__(
        self,
        outputs: Mapping[str, tf.Tensor],
        batch: Mapping[str, tf.Tensor],
        step: tf.Tensor | int = 0,
        *,
        global_batch_size: int | tf.Tensor | None = None,
        sample_weight: tf.Tensor | None = None,
        layer_losses: Sequence[tf.Tensor] = (),
    ) -> dict[str, tf.Tensor]:
        """Returns each term's value and the weighted total under ``"loss"``.

        Args:
          outputs: the model's dict of named outputs.
          batch: the batch's dict of named tensors (``"input"`` at least).
          step: the training step, for scheduled weights.
          global_batch_size: the batch size across all replicas; terms are
            per-example sums divided by it, so a strategy's SUM-reduction of
            replica values gives the global mean. Defaults to this batch's
            size times the number of replicas.
          sample_weight: optional per-example weights, e.g. 0 for padding.
          layer_losses: ``model.losses``; their sum becomes the
            ``"layer_losses"`` term, divided by the replica count once.
        """
        values: dict[str, tf.Tensor] = {}
        # One scope, so a traced step's graph reads model -> objective -> optimizer.
        with tf.name_scope("objective"):
            total = tf.constant(0.0, tf.float32)
            for term in self.terms:
                per_example = term.per_example(outputs, batch)
                value = tf.nn.compute_average_loss(
                    per_example, sample_weight=sample_weight, global_batch_size=global_batch_size
                )
                values[term.name] = value
                total += term.weight_at(step) * value
            if layer_losses:
                summed = tf.add_n([tf.cast(loss, tf.float32) for loss in layer_losses])
                values[LAYER_LOSSES] = tf.nn.scale_regularization_loss(summed)
                total += values[LAYER_LOSSES]
            values[TOTAL] = total
        return values
