"""The Trainer: the researcher's train step, and the library's guarantees around it.

A ``Trainer`` has three public levers, as Keras's ``Model`` and Orbit's
trainers do:

- ``compute_terms(batch, training)``: the forward pass and the objective, a
  dict of every term and ``"loss"``. Training, evaluation, per-term gradient
  norms and summaries all go through it.
- ``train_step(batch)``: one replica's training step: a ``GradientTape``,
  then ``self.optimize(loss, tape)``. Override it to change training; the
  dict it returns is logged like the terms.
- ``test_step(batch)``: one replica's evaluation step.

Around the step, out of reach of an override, the library counts steps,
applies the non-finite policy, scales losses for mixed precision, sums
replicas' shares, and reports gradient norms (``optimize`` does the last
three for every update it applies). A ``Trainer`` is a ``tf.Module``: every
model, optimizer and variable it or a subclass holds is saved by
``tf.train.Checkpoint(trainer=trainer)``.

>>> class TwoOptimizers(Trainer):                                    # doctest: +SKIP
...     def train_step(self, batch):
...         with tf.GradientTape() as tape:
...             terms = self.compute_terms(batch, training=True)
...         self.optimize(terms["loss"], tape)   # one optimizer per part
...         return terms
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from aeloops.data.sources import INPUT, SAMPLE_WEIGHT, bernoulli_draw
from aeloops.objectives.objective import TOTAL, Objective
from aeloops.training import checks, outer_loop
from aeloops.training import updates as gradient_updates
from aeloops.training.averages import WeightAverages, WeightAveragesMixin
from aeloops.training.compiled import is_distributed
from aeloops.training.functions import CompiledFunctions, CompiledFunctionsMixin
from aeloops.training.loop_state import LoopState, LoopStateMixin
from aeloops.training.optimizers import OptimizerSpec
from aeloops.training.options import LIBRARY_SCOPE
from aeloops.training.recovery import Recovery, RecoveryState, Rollback, scale_schedules
from aeloops.training.step_records import (
    GRADIENT_NORM,
    NONFINITE_STEPS,
    FirstNonfinite,
    Update,
    check_updates,
    library_values,
)

__all__ = ["GRADIENT_NORM", "NONFINITE_STEPS", "NonFiniteLossError", "Trainer"]

NonFiniteLossError = outer_loop.NonFiniteLossError
Batch = Mapping[str, tf.Tensor]
Data = Any  # np.ndarray, a dict of np.ndarray, or a tf.data.Dataset.


class _Cache:
    """Python state a checkpoint must not see: the step's updates, the parts' optimizers, diagnostics."""

    def __init__(self, parts: list[tuple[keras.optimizers.Optimizer, list[tf.Variable]]]) -> None:
        # MirroredStrategy runs each replica's step in a thread of its own.
        self.local = threading.local()
        self.parts = parts
        # What went wrong at the first non-finite step, for the message (its variable is out of checkpoints).
        self.first_nonfinite: FirstNonfinite | None = None
        # Under on_nonfinite="rollback", what keeps the state before each call (Trainer.rollback), once built.
        self.rollback: Rollback | None = None


class Trainer(CompiledFunctionsMixin, WeightAveragesMixin, LoopStateMixin, tf.Module):
    """Trains an ``Autoencoder`` on an ``Objective`` with a compiled custom loop.

    Args:
      model: the autoencoder, created under ``strategy.scope()``.
      objective: the loss terms; defaults to ``model.default_objective()``.
      optimizer: a Keras optimizer, its name (``"adadelta"`` by name uses a
        learning rate of 1.0, see ``aeloops.training.optimizers``), or a dict giving
        parts of the model their own: ``{"encoder": "adam", "decoder":
        keras.optimizers.Adam(1e-4)}`` (keys are attribute paths of the
        model; together the parts must cover every trainable variable).
      learning_rate: overrides the named optimizer's learning rate.
      optimizer_options: Keras options for named optimizers (``clipnorm``,
        ``global_clipnorm``, ``clipvalue``, ``use_ema``, ``ema_momentum``,
        ``gradient_accumulation_steps``).
      mode: ``"xla"``, ``"graph"``, ``"eager"`` or ``"auto"`` (see
        ``aeloops.training.compiled.resolve_mode``).
      steps_per_loop: training steps per compiled call.
      strategy: a ``tf.distribute.Strategy``; the default strategy when None.
      seed: seeds the per-epoch shuffles, so a resumed run sees the same order.
      on_nonfinite: ``"stop"`` (raise after the compiled call), ``"skip"``
        (leave the weights untouched on such steps and count them), or
        ``"rollback"`` (put back the state before the compiled call, skip its
        batches and go on; see ``aeloops.training.recovery``).
      recovery: with ``"rollback"``, how many times, whether the learning
        rate is lowered, and whether loss spikes roll back too
        (``aeloops.Recovery``; its defaults when None).
      dynamic_binarization: replace each training batch's ``"input"`` (in
        [0, 1]) with a new Bernoulli draw of its pixels at every step, keyed
        by ``seed`` and the step (so a resumed run draws the same), for a
        Bernoulli likelihood on MNIST as Burda et al. train it. Evaluation
        batches are left as they are: binarize them once
        (``aeloops.data.binarize(x, "fixed")``).

    >>> model = DenseAutoencoder(input_shape=(784,))        # doctest: +SKIP
    >>> trainer = Trainer(model, optimizer="adam", mode="xla")  # doctest: +SKIP
    >>> history = trainer.fit(x_train, epochs=2, batch_size=256,
    ...                       validation_data=x_test)        # doctest: +SKIP
    >>> sorted(history)                                     # doctest: +SKIP
    ['bce', 'loss', 'val_bce', 'val_loss']
    """

    def __init__(
        self,
        model: keras.Model,
        objective: Objective | None = None,
        optimizer: OptimizerSpec = "adam",
        *,
        learning_rate: float | None = None,
        optimizer_options: Mapping[str, Any] | None = None,
        mode: str = "auto",
        steps_per_loop: int = 1,
        strategy: tf.distribute.Strategy | None = None,
        seed: int = 0,
        on_nonfinite: str = "stop",
        recovery: Recovery | None = None,
        dynamic_binarization: bool = False,
    ) -> None:
        super().__init__(name="trainer")
        self.model = model
        self.objective = checks.check_arguments(model, objective, steps_per_loop, on_nonfinite, recovery)
        self.steps_per_loop = steps_per_loop
        self.seed = int(seed)
        self.strategy = strategy or tf.distribute.get_strategy()
        if on_nonfinite == "skip" and is_distributed(self.strategy):
            raise ValueError("on_nonfinite='skip' is not supported under a distribution strategy; use 'stop'.")
        self.on_nonfinite = on_nonfinite
        # How "rollback" recovers (None under the other policies); a plain value, out of checkpoints.
        self.recovery = (recovery or Recovery()) if on_nonfinite == "rollback" else None
        self.dynamic_binarization = bool(dynamic_binarization)
        self.requested_mode = mode
        steps = {"train": self.run_train_step, "test": self.run_test_step}
        # What compiling makes and the mode in use (aeloops.training.functions): out of checkpoints.
        self._functions = CompiledFunctions(model, self.strategy, mode, steps)
        with self.strategy.scope():
            parts = gradient_updates.resolve_parts(model, optimizer, learning_rate, dict(optimizer_options or {}))
            self.optimizers = {part: part_optimizer for part, (part_optimizer, _) in parts.items()}
            gradient_updates.check_strategy(self.optimizers, self.strategy)
            for part_optimizer, variables in parts.values():
                part_optimizer.build(variables)
            # The project's own step: a loss-scaling optimizer skips steps
            # without counting them in optimizer.iterations.
            self.step = _counter("step", 0)
            # The first step whose loss terms were not finite (-1: none yet).
            self.first_nonfinite_step = _counter("first_nonfinite_step", -1)
            first_nonfinite = FirstNonfinite()
            # The mode "auto" chose (aeloops.training.mode_probe.CHOICES; 0 before it has):
            # checkpointed, so a resumed run compiles as the run it continues did.
            self.mode_choice = _counter("mode_choice", 0)
            # Only a rolling-back trainer holds its state, so other trainers' checkpoints are as they were.
            self.recovery_state = RecoveryState(self.recovery.spike_window) if on_nonfinite == "rollback" else None
        self._cache = _Cache(list(parts.values()))
        self._averages = WeightAverages(self.optimizers.values())
        self._cache.first_nonfinite = first_nonfinite
        if self.recovery_state is not None:
            scale_schedules(self, self.recovery_state)
        # Set (by a callback or a signal handler) to stop after the current compiled call.
        self.stop_training = False
        # Where its fits stand (epochs done, the epoch in progress, the fit's rows): the outer loop's record,
        # saved by checkpoints in their run record.
        self.loop_state = LoopState()

    # ------------------------------------------------------------------
    # The researcher's levers.

    def compute_terms(self, batch: Batch, training: bool) -> dict[str, tf.Tensor]:
        """Returns the objective on ``batch``: every term's value and the weighted ``"loss"``.

        Values are each replica's share of the global batch mean
        (``tf.nn.compute_average_loss``), so their sum over replicas is the
        mean. Evaluation batches carry ``"sample_weight"`` (0 for padding);
        an override should pass it on to the objective.
        """
        outputs = self.model(batch[INPUT], training=training)
        return self.objective(
            outputs, batch, self.step, sample_weight=batch.get(SAMPLE_WEIGHT), layer_losses=self.model.losses
        )

    def train_step(self, batch: Batch) -> dict[str, tf.Tensor]:
        """One replica's training step: returns the dict to log (every term and ``"loss"``).

        Override it to change training. Apply every update with
        ``self.optimize(loss, tape, ...)``, which scales the loss under mixed
        precision, honours the non-finite policy and reports gradient norms.
        Returned values are summed over replicas: return each replica's
        share of a mean, as ``compute_terms`` and ``tf.nn.compute_average_loss`` do.
        """
        with tf.GradientTape() as tape:
            terms = self.compute_terms(batch, training=True)
        self.optimize(terms[TOTAL], tape)
        return terms

    def test_step(self, batch: Batch) -> dict[str, tf.Tensor]:
        """One replica's evaluation step: returns the dict to log with a ``val_`` prefix."""
        return self.compute_terms(batch, training=False)

    # Not converted by AutoGraph: its control flow is Python's own (tf.cond where a
    # tensor decides), and converting it cost about 0.1 s of every trace. An
    # override is converted as usual.
    @tf.autograph.experimental.do_not_convert
    def optimize(
        self,
        loss: tf.Tensor,
        tape: tf.GradientTape,
        variables: Sequence[tf.Variable] | None = None,
        optimizer: keras.optimizers.Optimizer | None = None,
        *,
        name: str | None = None,
        when: tf.Tensor | bool | None = None,
    ) -> tf.Tensor:
        """Applies the gradient of ``loss`` (recorded on ``tape``) and returns its global norm.

        ``self.apply_gradients(self.gradients(loss, tape, variables,
        optimizer), variables, optimizer, name=name, when=when, loss=loss)``:
        see those two for what it does. By default every part of the model
        gets its own optimizer's update (the trainer's single optimizer, or
        one per part). Pass ``variables`` and ``optimizer`` to update
        something else, a discriminator say, and a ``name`` for each further
        update: its gradient norms are logged as ``<name>_gradient_norm``.
        """
        gradients = self.gradients(loss, tape, variables, optimizer)
        return self.apply_gradients(gradients, variables, optimizer, name=name, when=when, loss=loss)

    @tf.autograph.experimental.do_not_convert
    def gradients(
        self,
        loss: tf.Tensor,
        tape: tf.GradientTape,
        variables: Sequence[tf.Variable] | None = None,
        optimizer: keras.optimizers.Optimizer | None = None,
    ) -> list[tf.Tensor | None]:
        """Returns the gradient of ``loss`` (recorded on ``tape``) for each of ``variables``, as values.

        The values are the gradient of the global batch's loss: summed over
        replicas, with mixed precision's loss scaling undone (the loss is
        scaled by the scale of ``optimizer``, the one that will apply them),
        so they may be compared, projected or combined freely and then
        passed to ``apply_gradients``. ``variables`` default to
        ``self.model.trainable_variables``, in that order; None where a
        variable has no gradient.
        """
        variables = self._variables(variables)
        parts = self._parts(variables, optimizer)
        values = gradient_updates.gradients(loss, tape, parts, self.strategy.num_replicas_in_sync)
        # The parts list the variables grouped by optimizer: put the values back in the caller's order.
        return gradient_updates.reordered(values, [v for _, part in parts for v in part], variables)

    @tf.autograph.experimental.do_not_convert
    def apply_gradients(
        self,
        gradients: Sequence[tf.Tensor | None],
        variables: Sequence[tf.Variable] | None = None,
        optimizer: keras.optimizers.Optimizer | None = None,
        *,
        name: str | None = None,
        when: tf.Tensor | bool | None = None,
        loss: tf.Tensor | None = None,
    ) -> tf.Tensor:
        """Applies ``gradients`` (values, as ``gradients`` returns them) to ``variables``; returns their global norm.

        Everything ``optimize`` promises holds: each variable is updated by
        its part's optimizer (or by ``optimizer``), loss-scaled under
        ``mixed_float16``; the norm before clipping is logged as
        ``gradient_norm`` (``<name>_gradient_norm`` for a named update) and,
        where the optimizer clips, ``clipped_gradient_norm``; the moving
        averages (``use_ema``) follow; and under ``on_nonfinite="skip"`` an
        update whose gradient (or ``loss``, if given) is NaN or Inf is not
        applied. Call ``self.optimizer.apply_gradients`` directly and none
        of that happens: under ``mixed_float16`` it would even divide the
        update by a loss scale that was never applied.

        ``when``, a boolean tensor, applies the update only where it is true
        (``when=self.step % 5 == 0``: every fifth step). Use it rather than
        an ``if`` on a tensor around the call, whose branch would hide the
        update's norms from the step's logs; the norm is logged every step,
        applied or not.
        """
        variables = self._variables(variables)
        gradients = list(gradients)
        if len(gradients) != len(variables):
            raise ValueError(f"apply_gradients got {len(gradients)} gradients for {len(variables)} variables.")
        parts = self._parts(variables, optimizer)
        ordered = gradient_updates.reordered(gradients, variables, [v for _, part in parts for v in part])
        plan = gradient_updates.plan(ordered, parts, self.strategy.num_replicas_in_sync, loss)
        condition = plan.finite if self.on_nonfinite == "skip" else None
        if when is not None:
            when = tf.convert_to_tensor(when, tf.bool)
            condition = when if condition is None else tf.logical_and(condition, when)
        plan.apply_where(condition)
        recorded = getattr(self._cache.local, "updates", None)
        if recorded is not None:
            recorded.append(Update(name, plan.norm, plan.clipped_norm, plan.finite, plan.loss_scale_skipped))
        return plan.norm

    def _variables(self, variables: Sequence[tf.Variable] | None) -> list[tf.Variable]:
        return list(self.model.trainable_variables if variables is None else variables)

    def _parts(
        self, variables: list[tf.Variable], optimizer: keras.optimizers.Optimizer | None
    ) -> list[tuple[keras.optimizers.Optimizer, list[tf.Variable]]]:
        """Returns ``(optimizer, variables)`` pairs: ``optimizer`` for all, or each variable's part's optimizer."""
        if optimizer is not None:
            checks.check_loss_scaled(optimizer, self.model, "the optimizer passed to optimize/apply_gradients")
            return [(optimizer, variables)]
        return gradient_updates.by_part(variables, self._cache.parts)

    # ------------------------------------------------------------------
    # The library's wrappers: what runs around every step, whoever wrote it.

    def run_train_step(self, batch: Batch) -> dict[str, tf.Tensor]:
        """Runs ``train_step`` on one replica with the library's bookkeeping; returns what the loop sums."""
        # The library's bookkeeping goes in one scope of the graph, the step's own ops around it.
        with tf.name_scope(LIBRARY_SCOPE):
            step = self.step.read_value()
            if self.dynamic_binarization:
                batch = {**batch, INPUT: bernoulli_draw(batch[INPUT], self.seed, step)}
        checks.check_held_optimizers(self)  # While tracing: a subclass's optimizers exist by now.
        self._cache.local.updates = updates = []
        try:
            returned = self.train_step(batch)
        finally:
            self._cache.local.updates = None
        with tf.name_scope(LIBRARY_SCOPE):
            results = checks.check_results(returned, self._origin("train_step"))
            check_updates(updates, self.on_nonfinite)
            values, finite = library_values(
                results, updates, self.objective, step, self.strategy.num_replicas_in_sync, self.on_nonfinite == "skip"
            )
            newly = tf.logical_and(tf.logical_not(finite), self.first_nonfinite_step < 0)
            self._cache.first_nonfinite.note(newly, results, updates)
            self.first_nonfinite_step.assign(tf.where(newly, step, self.first_nonfinite_step))
            self.step.assign_add(1)
        return values

    def run_test_step(self, batch: Batch) -> dict[str, tf.Tensor]:
        """Runs ``test_step`` on one replica; returns what the evaluation loop sums."""
        return checks.check_results(self.test_step(batch), self._origin("test_step"))

    def _origin(self, method: str) -> str:
        """Names what returned a step's dict for errors: ``compute_terms`` when the step is Trainer's own."""
        if getattr(type(self), method) is getattr(Trainer, method):
            return f"compute_terms (called by {method})"
        return method

    # ------------------------------------------------------------------
    # The guarantees' state: recovery, non-finite diagnostics, optimizers, moving averages.

    def rollback(self) -> Rollback | None:
        """Under ``on_nonfinite="rollback"``, what keeps the state before each compiled call; None otherwise.

        Built once, so its compiled reads and writes are traced once.
        """
        if self.recovery is not None and self._cache.rollback is None:
            self._cache.rollback = Rollback(self)
        return self._cache.rollback

    def first_nonfinite_values(self) -> list[str]:
        """What was not finite at the first non-finite step: its loss terms, and ``"gradient"`` if it was."""
        return self._cache.first_nonfinite.values()

    def first_nonfinite_subject(self) -> str:
        """Names what went NaN or Inf first: ``"the loss terms 'bce' and 'kl'"``, or ``"the gradient"``."""
        return self._cache.first_nonfinite.subject()

    @property
    def optimizer(self) -> keras.optimizers.Optimizer:
        """The trainer's optimizer, when it has one for the whole model (see ``optimizers`` otherwise)."""
        if len(self.optimizers) > 1:
            parts = list(self.optimizers)
            raise AttributeError(f"This trainer has one optimizer per part: trainer.optimizers[...] for {parts}.")
        return next(iter(self.optimizers.values()))

    def learning_rates(self) -> dict[str, float]:
        """Returns the learning rate in effect: ``{"learning_rate": ...}``, or one per part."""
        return gradient_updates.learning_rates(self.optimizers)

    def check_checkpointable(self) -> None:
        """Raises a ValueError naming any state this trainer holds that a checkpoint would drop or restore wrongly."""
        problems = checks.checkpoint_problems(self)
        if problems:
            raise ValueError("; ".join(problems) + ".")

    # ------------------------------------------------------------------
    # The outer loop (aeloops.training.outer_loop), as methods.

    def fit(self, data: Data, epochs: int = 1, batch_size: int = 32, **kwargs: Any) -> dict[str, list[float]]:
        """Trains for ``epochs`` epochs; returns a Keras-shaped history (see ``aeloops.training.outer_loop.fit``)."""
        return outer_loop.fit(self, data, epochs, batch_size, **kwargs)

    def evaluate(self, data: Data, batch_size: int = 256) -> dict[str, float]:
        """Returns every term's mean over ``data`` (see ``aeloops.training.outer_loop.evaluate``)."""
        return outer_loop.evaluate(self, data, batch_size)

    def predict(self, data: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Returns the model's outputs for ``data`` (see ``aeloops.training.outer_loop.predict``)."""
        return outer_loop.predict(self, data, batch_size)


def _counter(name: str, initial: int) -> tf.Variable:
    return tf.Variable(
        initial, dtype=tf.int64, trainable=False, name=name, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA
    )
