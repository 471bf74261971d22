"""What the library records around every training step, whoever wrote it: updates, norms, non-finite steps.

``Trainer.optimize`` notes each update it applies as an ``Update``;
``Trainer.run_train_step`` checks them (``check_updates``) and turns them,
with the step's own results, into the values the loop sums
(``library_values``), under the keys named here; ``FirstNonfinite`` keeps
what went wrong at the first step that was not finite.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import tensorflow as tf

from aeloops.objectives.objective import TOTAL, Objective, StepError

__all__ = [
    "COUNTS",
    "GRADIENT_NORM",
    "LOSS_SCALE_SKIPPED",
    "NONFINITE_STEPS",
    "RECOVERIES",
    "ROLLED_BACK_STEPS",
    "WEIGHTED_PREFIX",
    "WEIGHT_PREFIX",
    "FirstNonfinite",
    "Update",
    "check_updates",
    "library_values",
    "nonfinite_mask",
]

# Keys the library adds to what a train step returns.
GRADIENT_NORM = "gradient_norm"
# Steps whose loss terms were NaN or Inf: counted per epoch, not averaged.
NONFINITE_STEPS = "skipped_steps"
# Steps a mixed_float16 loss scaler skipped: counted, not averaged.
LOSS_SCALE_SKIPPED = "loss_scale_skipped_steps"
# A scheduled weight, and the weighted term it multiplies (summed, so that
# the logged weight is the one that gives the logged loss; see outer_loop.means).
WEIGHT_PREFIX = "weight/"
WEIGHTED_PREFIX = "_weighted/"
# What a rollback (aeloops.training.recovery) adds to an epoch's row: its recoveries and the steps they undid.
RECOVERIES = "recoveries"
ROLLED_BACK_STEPS = "rolled_back_steps"
# Values counted per epoch rather than averaged.
COUNTS = (NONFINITE_STEPS, LOSS_SCALE_SKIPPED, RECOVERIES, ROLLED_BACK_STEPS)


@dataclasses.dataclass
class Update:
    """What ``optimize`` saw of one update, for the wrapper around the step."""

    name: str | None
    norm: tf.Tensor
    clipped_norm: tf.Tensor | None
    finite: tf.Tensor
    loss_scale_skipped: tf.Tensor | None


def check_updates(updates: Sequence[Update], on_nonfinite: str) -> None:
    """Refuses updates the step's logs could not report: made in a branch, named twice, or missing for "skip"."""
    graph = tf.compat.v1.get_default_graph()
    if any(getattr(update.norm, "graph", graph) is not graph for update in updates):
        raise StepError(
            "train_step called optimize() inside an if (or tf.cond) on a tensor, whose branch hides the "
            "update from the step; pass the condition instead: self.optimize(loss, tape, ..., when=condition)."
        )
    names = [update.name for update in updates]
    if len(set(names)) != len(names):
        raise ValueError(f"train_step applied several updates named {names}; give each optimize() call its own name.")
    if on_nonfinite == "skip" and not updates:
        raise ValueError(
            "on_nonfinite='skip' needs train_step to apply its updates with self.optimize(loss, tape, ...), "
            "which skips non-finite ones."
        )


def nonfinite_mask(results: Mapping[str, tf.Tensor], updates: Sequence[Update]) -> tuple[list[str], tf.Tensor]:
    """Names a step's values (not the total) and ``"gradient"``; returns them and a bit for each that is not finite.

    At the first non-finite step it says what went wrong first: a term, or a
    gradient while every term was finite (a step dividing by a zero norm).
    """
    names = [name for name in results if name != TOTAL]
    flags = [tf.logical_not(tf.reduce_all(tf.math.is_finite(results[name]))) for name in names]
    if updates:
        names.append("gradient")
        flags.append(tf.logical_not(tf.reduce_all(tf.stack([tf.math.is_finite(u.norm) for u in updates]))))
    mask = tf.constant(0, tf.int64)
    for index, flag in enumerate(flags[:63]):  # One bit each in an int64.
        mask += tf.cast(flag, tf.int64) * (1 << index)
    return names[:63], mask


def library_values(
    results: Mapping[str, tf.Tensor],
    updates: Sequence[Update],
    objective: Objective,
    step: tf.Tensor,
    replicas: int,
    skip_nonfinite: bool,
) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """Returns the step's results with the library's own values added, and whether the step was finite.

    The library's values: each update's gradient norms, scheduled weights and
    the terms they weight, loss-scale skips and the non-finite count. Under
    ``skip_nonfinite`` a non-finite step's values are zeroed (it counts only
    as skipped).
    """
    finite = tf.reduce_all(tf.stack([tf.math.is_finite(v) for v in results.values()] + [u.finite for u in updates]))
    # Replicas' values are summed, so a value every replica holds whole is reported as a share.
    library = {}
    for update in updates:
        prefix = "" if update.name is None else f"{update.name}_"
        library[f"{prefix}{GRADIENT_NORM}"] = update.norm
        if update.clipped_norm is not None:
            library[f"{prefix}clipped_{GRADIENT_NORM}"] = update.clipped_norm
    if skip_nonfinite:
        results = {name: tf.where(finite, value, 0.0) for name, value in results.items()}
        library = {name: tf.where(finite, value, 0.0) for name, value in library.items()}
    library = {name: value / replicas for name, value in library.items()}
    for term in objective.terms:
        if callable(term.weight) and term.name in results:
            weight = term.weight_at(step)
            library[f"{WEIGHT_PREFIX}{term.name}"] = weight / replicas
            library[f"{WEIGHTED_PREFIX}{term.name}"] = weight * results[term.name]
    skips = [u.loss_scale_skipped for u in updates if u.loss_scale_skipped is not None]
    if skips:
        library[LOSS_SCALE_SKIPPED] = tf.reduce_max(tf.stack(skips)) / replicas
    library[NONFINITE_STEPS] = tf.cast(tf.logical_not(finite), tf.float32) / replicas
    return {**results, **library}, finite


class FirstNonfinite:
    """What was not finite at a trainer's first non-finite step: diagnostic only, so kept out of checkpoints.

    Create it under the trainer's strategy scope. ``note`` runs in every
    step (in the graph); ``subject`` names the culprit for the error message.
    """

    def __init__(self) -> None:
        # The values a step reports (its terms, then "gradient"), as traced.
        self.names: list[str] = []
        # A bit for each of them that was not finite at the first non-finite step.
        self.mask = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="first_nonfinite_mask",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )  # fmt: skip

    def note(self, newly: tf.Tensor, results: Mapping[str, tf.Tensor], updates: Sequence[Update]) -> None:
        """Keeps which of the step's values were not finite, if ``newly`` (this is the first non-finite step)."""
        self.names, mask = nonfinite_mask(results, updates)
        self.mask.assign(tf.where(newly, mask, self.mask))

    def values(self) -> list[str]:
        """What was not finite at the first non-finite step: its loss terms, and ``"gradient"`` if it was."""
        mask = int(self.mask.numpy())
        return [name for index, name in enumerate(self.names) if mask >> index & 1]

    def subject(self) -> str:
        """Names what went NaN or Inf first: ``"the loss terms 'bce' and 'kl'"``, or ``"the gradient"``."""
        # Its loss terms, not the gradients nor their norms, which NaN terms make NaN anyway.
        terms = [repr(name) for name in self.values() if name != "gradient" and not name.endswith(GRADIENT_NORM)]
        if not terms:
            return "the gradient"
        listed = terms[0] if len(terms) == 1 else f"{', '.join(terms[:-1])} and {terms[-1]}"
        return f"the loss term{'s' if len(terms) > 1 else ''} {listed}"
