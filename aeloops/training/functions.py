"""A trainer's compiled functions: each built once per step, kind and mode, and the mode they run in.

The ``Trainer`` holds the step; this object holds what compiling it
produced, which a checkpoint must not see: the ``tf.function`` of each loop
(``aeloops.training.compiled``), how often each was traced, the graph the
training loop was traced into, and what ``mode="auto"`` measured.

>>> functions = CompiledFunctions(model, strategy, "graph",
...                               {"train": trainer.run_train_step, "test": trainer.run_test_step})  # doctest: +SKIP
>>> loop = functions.loop("train", "resident")                       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import keras
import tensorflow as tf

from aeloops.training import checks
from aeloops.training.compiled import build_loop, build_predict_loop, is_distributed, resolve_mode
from aeloops.training.mode_probe import CHOICES

__all__ = ["CompiledFunctions", "CompiledFunctionsMixin"]

Step = Callable[[Mapping[str, tf.Tensor]], dict[str, tf.Tensor]]


class CompiledFunctions:
    """Compiles a trainer's steps into loops once per (step, kind, mode), and keeps the mode in use.

    Args:
      model: the trainer's model (for the forward pass ``predict`` runs).
      strategy: the trainer's strategy.
      mode: the mode asked for (``"auto"`` starts in graph mode).
      steps: ``{"train": ..., "test": ...}``: the per-replica steps the loops run.
    """

    def __init__(
        self, model: keras.Model, strategy: tf.distribute.Strategy, mode: str, steps: Mapping[str, Step]
    ) -> None:
        self._model = model
        self._strategy = strategy
        self._steps = {**steps, "train": self._recording(steps["train"])}
        # The graph the training step was last traced into, apart from its loop: what TensorBoard draws.
        self._step_graph: tf.Graph | None = None
        self.mode = resolve_mode(mode, model, strategy)
        self._functions: dict[tuple[str, str, str], Callable[..., Any]] = {}
        self.trace_counts = {"train": 0, "eval": 0, "predict": 0}
        # The graph the training loop was last traced into, by mode: what auto inspects.
        self._train_graphs: dict[str, tf.Graph] = {}
        # What mode="auto" measured and chose (aeloops.training.mode_probe), once it has.
        self.report: dict[str, Any] | None = None

    def loop(self, method: str, kind: str) -> Callable[..., dict[str, tf.Tensor]]:
        """Returns the loop of ``kind`` over the ``"train"`` or ``"test"`` step, in the current mode."""
        key = (method, kind, self.mode)
        if key not in self._functions:
            counter = "train" if method == "train" else "eval"

            def count_trace() -> None:
                self.trace_counts[counter] += 1
                if method == "train":
                    self._train_graphs[key[2]] = tf.compat.v1.get_default_graph()

            self._functions[key] = checks.plain_step_errors(
                build_loop(self._steps[method], kind, mode=self.mode, strategy=self._strategy, on_trace=count_trace)
            )
        return self._functions[key]

    def _recording(self, step: Step) -> Step:
        """``step``, noting the graph it is traced into (not in eager mode, which traces nothing)."""

        def traced(batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            if not tf.executing_eagerly():
                self._step_graph = tf.compat.v1.get_default_graph()
            return step(batch)

        return traced

    def step_graph(self) -> tf.Graph | None:
        """Returns the graph the training step was last traced into on its own; None before a compiled loop ran."""
        return self._step_graph

    def predict(self) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
        """Returns the compiled forward pass over many batches (``compiled.build_predict_loop``)."""
        key = ("predict", "batch", self.mode)
        if key not in self._functions:

            def count_trace() -> None:
                self.trace_counts["predict"] += 1

            self._functions[key] = build_predict_loop(
                self._model, mode=self.mode, strategy=self._strategy, on_trace=count_trace
            )
        return self._functions[key]

    def use(self, mode: str) -> None:
        """Runs the loops in ``mode`` from now on; each mode's loops are compiled once and kept."""
        self.mode = resolve_mode(mode, self._model, self._strategy)

    @property
    def auto_candidates(self) -> tuple[str, ...]:
        """What ``mode="auto"`` chooses between: XLA is no option across several replicas."""
        return ("graph",) if is_distributed(self._strategy) else ("graph", "xla")

    def traced_graph(self) -> tf.Graph | None:
        """Returns the graph the current mode's training loop was last traced into; None before its trace."""
        return self._train_graphs.get(self.mode)


class CompiledFunctionsMixin:
    """The ``Trainer``'s methods over its ``CompiledFunctions`` (``self._functions``) and its mode.

    Needs ``self._functions`` and ``self.mode_choice`` (the checkpointed
    counter of what ``"auto"`` chose).
    """

    _functions: CompiledFunctions
    mode_choice: tf.Variable

    def loop_function(self, method: str, kind: str) -> Callable[..., dict[str, tf.Tensor]]:
        """Returns the compiled loop of ``kind`` (``training.compiled``) over the ``"train"`` or ``"test"`` step.

        Built once per (method, kind, mode) and cached, so nothing retraces,
        even when ``"auto"`` switches modes back and forth while it measures.
        """
        return self._functions.loop(method, kind)

    def predict_function(self) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
        """Returns the compiled forward pass ``predict`` uses (``aeloops.training.compiled.build_predict_loop``)."""
        return self._functions.predict()

    @property
    def mode(self) -> str:
        """The mode the compiled loops run in now: ``"xla"``, ``"graph"`` or ``"eager"``."""
        return self._functions.mode

    def use_mode(self, mode: str) -> None:
        """Runs the compiled loops in ``mode`` from now on (compiled once per mode; see ``loop_function``)."""
        self._functions.use(mode)

    @property
    def auto_candidates(self) -> tuple[str, ...]:
        """What ``mode="auto"`` chooses between: XLA is no option across several replicas."""
        return self._functions.auto_candidates

    @property
    def mode_report(self) -> dict[str, Any] | None:
        """What ``mode="auto"`` timed and chose, why, and what measuring cost; None until it has chosen."""
        return self._functions.report

    def settle_mode(self, mode: str, report: dict[str, Any]) -> None:
        """Keeps ``mode`` for the rest of the run, as ``mode="auto"`` chose it (checkpointed), and why."""
        self.use_mode(mode)
        self.mode_choice.assign(next(number for number, name in CHOICES.items() if name == mode))
        self._functions.report = report

    def traced_graph(self) -> tf.Graph | None:
        """Returns the graph the current mode's training loop was last traced into; None before its trace."""
        return self._functions.traced_graph()

    def step_graph(self) -> tf.Graph | None:
        """Returns the graph the training step was last traced into, apart from its loop; None before it was."""
        return self._functions.step_graph()

    @property
    def trace_counts(self) -> dict[str, int]:
        """How often each kind of loop was traced: stays at one per kind once warm."""
        return self._functions.trace_counts
