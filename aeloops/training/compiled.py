"""One builder for every compiled loop: train or test steps, resident arrays, iterators or single batches.

The builder takes a per-replica step (a function of one batch returning a
dict of scalar tensors) and returns a function that runs it under the
strategy and sums the results over replicas and over steps:

- ``"resident"``: ``loop(data, batch_indices, first, count)`` gathers each
  batch from device-resident tensors by a row of an index table and runs
  ``count`` steps from row ``first``, in a ``tf.while_loop``;
- ``"iterator"``: ``loop(iterator, count)`` takes ``count`` batches from an
  (optionally distributed) iterator;
- ``"batch"``: ``loop(batch)`` runs one step on one (distributed) batch.

``first`` and ``count`` are tensors, so a loop traces (and XLA compiles) once whatever it is
asked to run. ``mode`` decides the compilation, as Keras's
``make_train_function`` does: ``"eager"`` runs plain Python, ``"graph"``
wraps the loop in ``tf.function``, ``"xla"`` compiles the whole loop with
XLA, or only the per-replica step where XLA cannot reach (``next(iterator)``,
and ``strategy.run`` across devices).

>>> loop = build_loop(trainer.run_train_step, "resident", mode="graph",
...                   strategy=trainer.strategy)              # doctest: +SKIP
>>> sums = loop(tensors, batch_indices, tf.constant(0), tf.constant(50))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import keras
import tensorflow as tf

from aeloops.training.custom_gradients import releasing_custom_gradients
from aeloops.training.options import MODES

# The step-record keys live with the records; named here too, where they were first public.
from aeloops.training.step_records import (
    GRADIENT_NORM,
    LOSS_SCALE_SKIPPED,
    NONFINITE_STEPS,
    WEIGHT_PREFIX,
    WEIGHTED_PREFIX,
)

__all__ = [
    "GRADIENT_NORM",
    "KINDS",
    "LOSS_SCALE_SKIPPED",
    "NONFINITE_STEPS",
    "WEIGHTED_PREFIX",
    "WEIGHT_PREFIX",
    "build_loop",
    "build_predict_loop",
    "gather_batch",
    "is_distributed",
    "resolve_mode",
]

KINDS = ("resident", "iterator", "batch")

Step = Callable[[Mapping[str, tf.Tensor]], dict[str, tf.Tensor]]


def is_distributed(strategy: tf.distribute.Strategy) -> bool:
    """Returns whether ``strategy`` runs steps through replicas (more than the default strategy)."""
    return strategy.num_replicas_in_sync > 1 or isinstance(
        strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
    )


def resolve_mode(mode: str, model: keras.Model, strategy: tf.distribute.Strategy | None = None) -> str:
    """Returns the mode a trainer starts in: ``mode`` itself, or graph mode for ``"auto"``.

    ``"auto"`` does not guess: ``fit`` times graph mode and then XLA on the
    run's first steps and keeps the faster (``aeloops.training.mode_probe``); which
    one wins depends on the model and the machine (XLA's convolutions are
    slower than oneDNN's on CPUs; a nested ``GradientTape`` makes XLA
    compile on every call).

    Raises:
      ValueError: for ``"xla"`` under a multi-device strategy on CPUs, which
        TensorFlow cannot compile (each replica's variables live on its own
        CPU device, and XLA may not reach across them).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    distributed = strategy is not None and is_distributed(strategy)
    on_gpus = bool(tf.config.list_logical_devices("GPU"))
    if mode == "xla" and distributed and strategy.num_replicas_in_sync > 1 and not on_gpus:
        raise ValueError(
            "mode='xla' under a distribution strategy over several CPU devices is not supported by "
            "TensorFlow (XLA cannot reach variables on other devices); use mode='graph'."
        )
    # "auto" starts in graph mode; fit() then times XLA against it (aeloops.training.mode_probe).
    return "graph" if mode == "auto" else mode


def build_loop(
    step: Step,
    kind: str,
    *,
    mode: str,
    strategy: tf.distribute.Strategy,
    on_trace: Callable[[], None] = lambda: None,
) -> Callable[..., dict[str, tf.Tensor]]:
    """Returns ``step`` run under ``strategy`` as a loop of ``kind``, compiled as ``mode`` says.

    ``on_trace`` is called each time the loop is traced (once per call in
    eager mode), so callers can check that nothing retraces.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    whole_loop_in_xla = mode == "xla" and kind != "iterator" and not is_distributed(strategy)
    if mode != "eager":
        # A function of its own, traced once per loop: the loops below call the step twice (the first step, then
        # the loop's body), which inlined traced it twice; called, its graph is reused (a quarter to a third off
        # a loop's tracing). Where XLA cannot compile the whole loop (next(iterator), variables created inside
        # strategy.run) it compiles this, what one replica does; else it compiles the call with the loop.
        step = _compile(step, jit_compile=mode == "xla" and not whole_loop_in_xla)

    def run(*args: Any) -> dict[str, tf.Tensor]:
        per_replica = strategy.run(step, args=args)
        # Replicas report shares of global means, so their sum is the value. Steps are summed in float64, whose
        # 53 bits hold sums of float32 values of like size exactly: an epoch's means then do not depend on how
        # its steps were split into calls (auto's short timed calls, a mid-epoch resume, a repeat of an auto run
        # in the mode it chose).
        return {
            name: tf.cast(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None), tf.float64)
            for name, value in per_replica.items()
        }

    # The loops are tf.while_loop with no maximum trip count. AutoGraph's
    # `for ... in tf.range(1, count)` gives XLA one, which XLA takes as a
    # compile-time constant: every new `count` (a probe's 1 and 10 steps, an
    # epoch's shorter last call) then compiled the whole loop again.
    def resident(data: Mapping[str, tf.Tensor], batch_indices: tf.Tensor, first: tf.Tensor, count: tf.Tensor):
        on_trace()
        # The first step runs before the loop so the sums' structure is known.
        sums = run(gather_batch(data, batch_indices, first))

        def body(offset: tf.Tensor, sums: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
            return offset + 1, _add(sums, run(gather_batch(data, batch_indices, first + offset)))

        return tf.while_loop(lambda offset, _: offset < count, body, (tf.ones_like(first), sums))[1]

    def iterator_loop(iterator: Any, count: tf.Tensor):
        on_trace()
        sums = run(next(iterator))

        def body(offset: tf.Tensor, sums: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
            return offset + 1, _add(sums, run(next(iterator)))

        return tf.while_loop(lambda offset, _: offset < count, body, (tf.ones_like(count), sums))[1]

    def one_batch(batch: Mapping[str, tf.Tensor]):
        on_trace()
        return run(batch)

    loop = {"resident": resident, "iterator": iterator_loop, "batch": one_batch}[kind]
    if mode == "eager":
        return loop
    return _compile(loop, jit_compile=whole_loop_in_xla)


def build_predict_loop(
    model: keras.Model, *, mode: str, strategy: tf.distribute.Strategy, on_trace: Callable[[], None] = lambda: None
) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """Returns the model's forward pass over many batches: ``(batches, batch_size, ...)`` in, outputs concatenated.

    The model runs on each batch in a ``tf.range`` loop, so one call does
    many batches, as the training loop does; compiled as ``mode`` says.
    """

    def call(batch: tf.Tensor) -> dict[str, tf.Tensor]:
        return model(batch, training=False)

    # Called twice below: traced once as a function of its own (see build_loop).
    call = call if mode == "eager" else _compile(call, jit_compile=False)

    def forward(batches: tf.Tensor) -> dict[str, tf.Tensor]:
        on_trace()
        # The first batch runs before the loop so the outputs' names and shapes are known.
        first = call(batches[0])
        count = tf.shape(batches)[0]
        arrays = {
            name: tf.TensorArray(value.dtype, size=count, element_shape=value.shape).write(0, value)
            for name, value in first.items()
        }
        for index in tf.range(1, count):
            outputs = call(tf.gather(batches, index))
            arrays = {name: array.write(index, outputs[name]) for name, array in arrays.items()}
        return {name: array.concat() for name, array in arrays.items()}

    if mode == "eager":
        return forward
    return _compile(forward, jit_compile=mode == "xla" and not is_distributed(strategy))


def _compile(function: Callable[..., Any], *, jit_compile: bool) -> Callable[..., Any]:
    """Returns ``function`` as a ``tf.function`` that lets its traces go, without TensorFlow's retracing warning."""
    # Released: else each trace's optimizer update stays in TensorFlow's gradient registry for good, and the
    # graph, model and optimizer with it.
    compiled = tf.function(releasing_custom_gradients(function), jit_compile=jit_compile, reduce_retracing=True)
    # TensorFlow counts traces by code object, so a process that builds several
    # trainers (a notebook, a sweep) is warned of "excessive retracing" although
    # each trainer traces its own loops once; trainers count their own traces
    # (Trainer.trace_counts). TensorFlow's own loaded SavedModels set this too.
    compiled._omit_frequent_tracing_warning = True
    return compiled


# Helpers marked do_not_convert hold no control flow that depends on a tensor, so
# AutoGraph need not rewrite them: each rewrite costs time in every process's first trace.
@tf.autograph.experimental.do_not_convert
def gather_batch(data: Mapping[str, tf.Tensor], batch_indices: tf.Tensor, position: tf.Tensor) -> dict[str, tf.Tensor]:
    """Returns the batch at row ``position`` of the index table, from the resident tensors."""
    # tf.gather, not slicing: XLA would treat a sliced position as a
    # compile-time constant and recompile for every value.
    indices = tf.gather(batch_indices, position)
    return {name: tf.gather(tensor, indices) for name, tensor in data.items()}


@tf.autograph.experimental.do_not_convert
def _add(left: dict[str, tf.Tensor], right: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {name: left[name] + right[name] for name in left}
