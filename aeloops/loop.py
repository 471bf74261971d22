"""The Trainer: compiled train and eval steps (the inner loop) and ``fit`` (the outer loop).

The inner loop runs ``steps_per_loop`` steps per call inside one
``tf.function`` (a ``tf.range`` loop, with the step count passed as a tensor so
nothing retraces). Each step computes the model's outputs and the objective's
terms under a ``GradientTape`` and applies the gradient of ``"loss"``.
``mode`` picks how it runs: ``"xla"`` (``jit_compile=True``), ``"graph"``
(``tf.function`` without XLA) or ``"eager"`` (plain Python, for debugging).

Data arrives two ways. NumPy arrays stay resident on the device and each
epoch's shuffle is a permutation of indices gathered inside the compiled loop,
so the host does no per-batch work. A ``tf.data.Dataset`` (and any data under a
distribution strategy other than the default) is iterated inside the compiled
loop with ``next(iterator)``. The outer loop (epochs, validation, progress,
callbacks for checkpoints and summaries) is plain Python around both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from aeloops.models.base import Autoencoder
from aeloops.objective import LAYER_LOSSES, TOTAL, Objective
from aeloops.optimizers import make_optimizer
from aeloops.outer_loop import (
    GRADIENT_NORM,
    NONFINITE_POLICIES,
    NONFINITE_STEPS,
    NonFiniteLossError,
    OuterLoop,
    _check_positive_int,
    _is_distributed,
)
from aeloops.sources import INPUT, DatasetSource, ResidentSource, as_arrays, as_batch_dict, to_tensors

__all__ = ["GRADIENT_NORM", "MODES", "NONFINITE_STEPS", "NonFiniteLossError", "Trainer", "resolve_mode"]


MODES = ("auto", "xla", "graph", "eager")
# The batch entry that carries padding weights through a distributed evaluation.
_WEIGHT = "_sample_weight"

Source = ResidentSource | DatasetSource
Batch = Mapping[str, tf.Tensor]
Data = Any  # np.ndarray, a dict of np.ndarray, or a tf.data.Dataset.


def resolve_mode(mode: str, model: keras.Model, strategy: tf.distribute.Strategy | None = None) -> str:
    """Returns the concrete mode for ``mode``; ``"auto"`` picks XLA unless it is known to be slower or unsupported.

    On a CPU, XLA compiles convolutions to much slower code than TensorFlow's
    oneDNN kernels (about 10x for the seed's conv model), so ``"auto"`` means
    ``"graph"`` for a model with convolution kernels (weights of rank 3 or
    more) when no GPU is visible, and under a distribution strategy (as in
    Keras's ``fit``); ``"xla"`` otherwise.

    Raises:
      ValueError: for ``"xla"`` under a multi-device strategy on CPUs, which
        TensorFlow cannot compile (each replica's variables live on its own
        CPU device, and XLA may not reach across them).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    distributed = strategy is not None and _is_distributed(strategy)
    on_gpus = bool(tf.config.list_logical_devices("GPU"))
    if mode == "xla" and distributed and strategy.num_replicas_in_sync > 1 and not on_gpus:
        raise ValueError(
            "mode='xla' under a distribution strategy over several CPU devices is not supported by "
            "TensorFlow (XLA cannot reach variables on other devices); use mode='graph'."
        )
    if mode != "auto":
        return mode
    has_convolutions = any(len(variable.shape) >= 3 for variable in model.trainable_variables)
    if distributed or (has_convolutions and not on_gpus):
        return "graph"
    return "xla"


class Trainer(OuterLoop):
    """Trains an ``Autoencoder`` on an ``Objective`` with a compiled custom loop.

    Args:
      model: the autoencoder, created under ``strategy.scope()``.
      objective: the loss terms; defaults to ``model.default_objective()``.
      optimizer: a Keras optimizer or its name (``"adadelta"`` by name uses a
        learning rate of 1.0, see ``aeloops.optimizers``).
      learning_rate: overrides the named optimizer's learning rate.
      mode: ``"xla"``, ``"graph"``, ``"eager"`` or ``"auto"`` (see ``resolve_mode``).
      steps_per_loop: training steps per compiled call.
      strategy: a ``tf.distribute.Strategy``; the default strategy when None.
      seed: seeds the per-epoch shuffles, so a resumed run sees the same order.

    >>> model = DenseAutoencoder(input_shape=(784,))        # doctest: +SKIP
    >>> trainer = Trainer(model, optimizer="adam", mode="xla")  # doctest: +SKIP
    >>> history = trainer.fit(x_train, epochs=2, batch_size=256,
    ...                       validation_data=x_test)        # doctest: +SKIP
    >>> sorted(history)                                     # doctest: +SKIP
    ['bce', 'loss', 'val_bce', 'val_loss']
    """

    def __init__(
        self,
        model: Autoencoder,
        objective: Objective | None = None,
        optimizer: str | keras.optimizers.Optimizer = "adam",
        *,
        learning_rate: float | None = None,
        mode: str = "auto",
        steps_per_loop: int = 1,
        strategy: tf.distribute.Strategy | None = None,
        seed: int = 0,
        on_nonfinite: str = "stop",
    ) -> None:
        if not isinstance(model, keras.Model):
            raise TypeError(f"model must be a keras.Model, got {type(model).__name__}.")
        if isinstance(steps_per_loop, bool) or not isinstance(steps_per_loop, int) or steps_per_loop < 1:
            raise ValueError(f"steps_per_loop must be a positive int, got {steps_per_loop!r}.")
        if objective is None:
            objective = model.default_objective()
        if not isinstance(objective, Objective):
            raise TypeError(f"objective must be an aeloops Objective, got {type(objective).__name__}.")
        self.model = model
        self.objective = objective
        self.steps_per_loop = steps_per_loop
        self.seed = int(seed)
        self.strategy = strategy or tf.distribute.get_strategy()
        mode = resolve_mode(mode, model, self.strategy)
        self.mode = mode
        if on_nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"on_nonfinite must be one of {NONFINITE_POLICIES}, got {on_nonfinite!r}.")
        if on_nonfinite == "skip" and _is_distributed(self.strategy):
            raise ValueError("on_nonfinite='skip' is not supported under a distribution strategy; use 'stop'.")
        self.on_nonfinite = on_nonfinite
        with self.strategy.scope():
            self.optimizer = make_optimizer(optimizer, learning_rate)
            self.optimizer.build(model.trainable_variables)
            # The project's own step: a loss-scaling optimizer skips steps
            # without counting them in optimizer.iterations.
            self.step = tf.Variable(
                0,
                dtype=tf.int64,
                trainable=False,
                name="step",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            # The first step whose loss terms were not finite (-1: none yet).
            self.first_nonfinite_step = tf.Variable(
                -1,
                dtype=tf.int64,
                trainable=False,
                name="first_nonfinite_step",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
        self.trace_counts = {"train": 0, "eval": 0, "predict": 0}
        # Set (by a callback or a signal handler) to stop after the current compiled call.
        self.stop_training = False
        self._functions: dict[str, Callable[..., Any]] = {}

    # ------------------------------------------------------------------
    # Per-replica steps: what one replica does with one batch.

    def _replica_train_step(self, batch: Batch) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            outputs = self.model(batch[INPUT], training=True)
            terms = self.objective(outputs, batch, self.step, layer_losses=self.model.losses)
            loss = terms[TOTAL]
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                loss = self.optimizer.scale_loss(loss)
        variables = self.model.trainable_variables
        gradients = tape.gradient(loss, variables)
        norm = self._global_gradient_norm(gradients)
        finite = tf.reduce_all(tf.stack([tf.math.is_finite(value) for value in terms.values()]))
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # Overflowing scaled gradients are the loss scaler's business: it
            # skips those steps itself and lowers the scale.
            norm = norm / tf.cast(self.optimizer.dynamic_scale, norm.dtype)
        else:
            finite = tf.logical_and(finite, tf.math.is_finite(norm))
        if self.on_nonfinite == "skip":
            tf.cond(finite, lambda: self._apply(gradients, variables), tf.no_op)
            terms = {name: tf.where(finite, value, 0.0) for name, value in terms.items()}
            norm = tf.where(finite, norm, 0.0)
        else:
            self._apply(gradients, variables)
        self.first_nonfinite_step.assign(
            tf.where(tf.logical_or(finite, self.first_nonfinite_step >= 0), self.first_nonfinite_step, self.step)
        )
        self.step.assign_add(1)
        replicas = self.strategy.num_replicas_in_sync
        # Replicas' values are summed by _distributed, so each reports its share.
        return {
            **terms,
            GRADIENT_NORM: norm / replicas,
            NONFINITE_STEPS: tf.cast(tf.logical_not(finite), tf.float32) / replicas,
        }

    def _global_gradient_norm(self, gradients: list[tf.Tensor]) -> tf.Tensor:
        """Returns the norm of the step's whole gradient, summed over replicas.

        Each replica holds only its share of the gradient; under a
        multi-replica strategy this costs one extra all-reduce per step.
        """
        if self.strategy.num_replicas_in_sync > 1:
            context = tf.distribute.get_replica_context()
            gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        return tf.linalg.global_norm(gradients)

    def _apply(self, gradients: list[tf.Tensor], variables: list[tf.Variable]) -> tf.Operation:
        self.optimizer.apply_gradients(zip(gradients, variables))
        return tf.no_op()

    def _replica_eval_step(self, batch: Batch, weights: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        outputs = self.model(batch[INPUT], training=False)
        return self.objective(outputs, batch, self.step, sample_weight=weights, layer_losses=self.model.losses)

    def _distributed(self, replica_fn: Callable[..., dict[str, tf.Tensor]], *args: Any) -> dict[str, tf.Tensor]:
        """Runs ``replica_fn`` on every replica and sums the results.

        Term values are per-replica sums divided by the global batch size, so
        their sum over replicas is the global mean.
        """
        per_replica = self.strategy.run(replica_fn, args=args)
        return {
            name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            for name, value in per_replica.items()
        }

    # ------------------------------------------------------------------
    # Inner loops: several steps per call, returning sums of term values.

    def _train_loop_resident(
        self, data: Batch, batch_indices: tf.Tensor, first: tf.Tensor, count: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        self.trace_counts["train"] += 1

        def step_at(position: tf.Tensor) -> dict[str, tf.Tensor]:
            batch = _gather_batch(data, batch_indices, position)
            return self._distributed(self._step_function("train_step"), batch)

        # The first step runs before the loop so the sums' structure is known.
        sums = step_at(first)
        for offset in tf.range(1, count):
            sums = _add(sums, step_at(first + tf.cast(offset, first.dtype)))
        return sums

    def _train_loop_iterator(self, iterator: Any, count: tf.Tensor) -> dict[str, tf.Tensor]:
        self.trace_counts["train"] += 1
        step = self._step_function("train_step")
        sums = self._distributed(step, next(iterator))
        for _ in tf.range(1, count):
            sums = _add(sums, self._distributed(step, next(iterator)))
        return sums

    def _eval_loop_resident(self, data: Batch, batch_indices: tf.Tensor, weights: tf.Tensor) -> dict[str, tf.Tensor]:
        self.trace_counts["eval"] += 1

        def step_at(position: tf.Tensor) -> dict[str, tf.Tensor]:
            batch = _gather_batch(data, batch_indices, position)
            return self._distributed(self._step_function("eval_step"), batch, tf.gather(weights, position))

        sums = step_at(tf.constant(0))
        for position in tf.range(1, tf.shape(batch_indices)[0]):
            sums = _add(sums, step_at(position))
        return sums

    def _eval_step_iterator(self, batch: Batch) -> dict[str, tf.Tensor]:
        self.trace_counts["eval"] += 1
        batch = dict(batch)
        weights = batch.pop(_WEIGHT, None)
        return self._distributed(self._step_function("eval_step"), batch, weights)

    def _term_gradient_norms(self, batch: Batch) -> dict[str, tf.Tensor]:
        weighted_terms = {}
        with tf.GradientTape(persistent=True) as tape:
            outputs = self.model(batch[INPUT], training=True)
            terms = self.objective(outputs, batch, self.step, layer_losses=self.model.losses)
            for term in self.objective.terms:
                weighted_terms[term.name] = term.weight_at(self.step) * terms[term.name]
            if LAYER_LOSSES in terms:
                weighted_terms[LAYER_LOSSES] = terms[LAYER_LOSSES]
        variables = self.model.trainable_variables
        norms = {}
        for name, weighted in weighted_terms.items():
            # global_norm skips the None gradients of variables a term does not reach.
            norms[name] = tf.linalg.global_norm(tape.gradient(weighted, variables))
        del tape
        return norms

    def term_gradient_norms(self, batch: Data) -> dict[str, float]:
        """Returns the norm of each weighted term's gradient on ``batch``, without training.

        Shows which term drives the update: TensorBoard plots these beside
        the terms. Weights are taken at the current step.
        """
        arrays = as_arrays(batch, "batch")
        function = self._loop_function("term_gradient_norms", self._term_gradient_norms, xla_allowed=False)
        return {name: float(value) for name, value in function(to_tensors(arrays)).items()}

    def _predict_step(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        self.trace_counts["predict"] += 1
        return self.model(inputs, training=False)

    def _step_function(self, name: str) -> Callable[..., dict[str, tf.Tensor]]:
        """Returns the per-replica step, XLA-compiled on its own where needed.

        Under a distribution strategy XLA must compile the per-replica
        function, not the whole loop (TF cannot lift variable creation out of
        a jit-compiled ``strategy.run``).
        """
        replica_fn = self._replica_train_step if name == "train_step" else self._replica_eval_step
        if self.mode != "xla" or self._whole_loop_is_compiled():
            return replica_fn
        return self._compiled(name, replica_fn, jit_compile=True)

    def _whole_loop_is_compiled(self) -> bool:
        return self.mode == "xla" and not _is_distributed(self.strategy)

    def _compiled(self, name: str, function: Callable[..., Any], jit_compile: bool = False) -> Callable[..., Any]:
        """Wraps ``function`` once per name and caches it, like Keras's trainer."""
        if self.mode == "eager":
            return function
        if name not in self._functions:
            self._functions[name] = tf.function(function, jit_compile=jit_compile, reduce_retracing=True)
        return self._functions[name]

    def _loop_function(self, name: str, function: Callable[..., Any], xla_allowed: bool = True) -> Callable[..., Any]:
        return self._compiled(name, function, jit_compile=xla_allowed and self._whole_loop_is_compiled())

    # ------------------------------------------------------------------
    # The outer loop.

    def evaluate(self, data: Data, batch_size: int = 256) -> dict[str, float]:
        """Returns every term's mean over ``data``.

        Arrays are evaluated exactly, every example counted once: the last
        batch is padded to full size and the padding has weight 0, so every
        batch has one static shape. A ``Dataset``'s batches are averaged
        alike, a short last batch weighing as much as a full one.
        """
        _check_positive_int("batch_size", batch_size)
        if isinstance(data, tf.data.Dataset):
            sums, batches = self._evaluate_dataset(data.map(as_batch_dict))
            return {name: value / batches for name, value in sums.items()}
        arrays = as_arrays(data, "validation_data")
        count = len(arrays[INPUT])
        batches = math.ceil(count / batch_size)
        padded = np.arange(batches * batch_size)
        weights = (padded < count).astype(np.float32).reshape(batches, batch_size)
        indices = np.where(padded < count, padded, 0).astype(np.int32).reshape(batches, batch_size)
        if _is_distributed(self.strategy):
            table = {name: value[indices.reshape(-1)] for name, value in arrays.items()}
            table[_WEIGHT] = weights.reshape(-1)
            sums, _ = self._evaluate_dataset(tf.data.Dataset.from_tensor_slices(table).batch(batch_size))
        else:
            loop = self._loop_function("eval_loop", self._eval_loop_resident)
            sums = loop(to_tensors(arrays), tf.constant(indices), tf.constant(weights))
        return {name: float(value) * batch_size / count for name, value in sums.items()}

    def _evaluate_dataset(self, dataset: tf.data.Dataset) -> tuple[dict[str, float], int]:
        """Returns the sums of each term's per-batch values over ``dataset``, and the batch count."""
        step = self._loop_function("eval_dataset_step", self._eval_step_iterator, xla_allowed=False)
        sums: dict[str, float] = {}
        batches = 0
        for batch in self.strategy.experimental_distribute_dataset(dataset):
            results = step(batch)
            sums = {name: sums.get(name, 0.0) + float(value) for name, value in results.items()}
            batches += 1
        if not batches:
            raise ValueError("The evaluation data is empty.")
        return sums, batches

    def predict(self, data: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Returns the model's outputs for ``data``, computed in compiled batches."""
        _check_positive_int("batch_size", batch_size)
        inputs = as_arrays(data, "data")[INPUT]
        step = self._loop_function("predict_step", self._predict_step)
        pieces: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size]
            size = len(batch)
            if size < batch_size:  # Pad to keep one static shape, then trim.
                batch = np.concatenate([batch, np.zeros((batch_size - size, *batch.shape[1:]), batch.dtype)])
            for name, value in step(tf.constant(batch)).items():
                pieces.setdefault(name, []).append(value.numpy()[:size])
        return {name: np.concatenate(parts) for name, parts in pieces.items()}


def _gather_batch(data: Batch, batch_indices: tf.Tensor, position: tf.Tensor) -> dict[str, tf.Tensor]:
    """Returns the batch at row ``position`` of the index table, from the resident tensors."""
    # tf.gather, not slicing: XLA would treat a sliced position as a
    # compile-time constant and recompile for every value.
    indices = tf.gather(batch_indices, position)
    return {name: tf.gather(tensor, indices) for name, tensor in data.items()}


def _add(left: dict[str, tf.Tensor], right: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {name: left[name] + right[name] for name in left}
