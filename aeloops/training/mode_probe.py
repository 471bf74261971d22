"""How ``mode="auto"`` chooses between graph and XLA: by timing both on the run's first real steps.

>>> probe = ModeProbe(trainer, remaining_steps=9370)  # doctest: +SKIP
>>> probe.record(steps, seconds)     # after each compiled call; True when the trainer's mode changed  # doctest: +SKIP
>>> trainer.mode_report              # what was measured and chosen, and what measuring cost  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tensorflow as tf

    from aeloops.training.trainer import Trainer

__all__ = ["CHOICES", "ModeProbe", "XlaRecompileWarning", "describe", "has_convolutions"]

# The values of Trainer.mode_choice, a checkpointed counter: 0 while undecided.
CHOICES = {1: "xla", 2: "graph"}
# XLA is tried only when the rest of the run in graph mode would take this many
# times graph mode's tracing and compilation (its first, one-step call less a
# step at the steady rate). XLA's first call (tracing and compiling, once
# whatever the step count) cost 1.2 to 2.0 times that on seven models (their
# mode_report, the machine loaded). A program with convolutions, which XLA ran 2x to 16x slower on
# this project's CPUs, waits for a run where trying and losing (that
# compilation and the slow timed steps, about 2.3 times the tracing) costs
# at most about 15% of the rest; one without, where whole fixed-XLA runs were
# a fifth to a third shorter (dense, iwae, aae) and only a model that
# recompiles on every call lost, tries once that gain would repay the
# compilation. A short run stays in graph mode.
TRY_XLA_AFTER = 15.0
TRY_XLA_AFTER_WITHOUT_CONVOLUTIONS = 6.0
# The forward operations of convolutions and transposed convolutions.
CONVOLUTION_OPS = frozenset(
    {"Conv", "Conv2D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "Conv3DBackpropInputV2"}
)
# XLA must be this much faster per step to be chosen: timings are noisy.
MARGIN = 0.95
# Each mode's first timed call runs this many steps: it is mostly tracing (and
# XLA's compiling), which the loops do once whatever their step count, since
# they take it as a tensor.
FIRST_CALL_STEPS = 1
# A rate is timed on a call of a fifth of ``steps_per_loop`` steps: the
# sooner a mode's rate is known, the fewer steps the slower one runs (iwae's
# graph mode took 46 to 52 ms a step, against XLA's 28). A call shorter than
# MIN_TIMED_SECONDS is too short to time (dense's 10 steps last about 12 ms):
# the rate is then timed on a whole call.
RATE_FRACTION = 5
MIN_TIMED_SECONDS = 0.2
# A mode's rate is taken from at most this many calls (epochs of a few steps cut calls short).
MAX_TIMED_CALLS = 4


class XlaRecompileWarning(RuntimeWarning):
    """XLA's second call took as long as its first: it recompiles, or is slow here (explicit ``mode="xla"``)."""


class ModeProbe:
    """Times the first compiled training calls and settles a trainer's mode.

    With ``mode="auto"`` the trainer starts in graph mode, which compiles
    fast and is never far from the best. The probe times a one-step call
    (mostly tracing) and then a call for the steady rate (a fifth of
    ``steps_per_loop``, or a whole call when that is too short to time); if
    the rest of the run is long enough (see ``TRY_XLA_AFTER``; sooner for a
    program without convolutions) it then times XLA the same way, with a
    call to warm up before the rate's, and keeps the faster mode per step,
    switching back without compiling again. The outer loop asks
    ``steps_for_call`` how many steps each call runs. Every timed step is a
    real training step, so what measuring costs is only the slower mode's
    calls beyond what the faster would have taken; ``mode_report`` says it.
    The choice is checkpointed (``Trainer.mode_choice``): a resumed run takes
    it up without measuring again.

    With an explicit ``mode="xla"`` it only warns when XLA's second call takes
    about as long as its first, which includes the compilation: XLA then
    compiles on every call, or is slow for the model on this device.
    """

    # Calls shorter than this are too noisy to judge a recompilation by.
    MIN_FIRST_CALL_SECONDS = 0.2

    def __init__(self, trainer: Trainer, remaining_steps: int | None = None) -> None:
        self.trainer = trainer
        self.remaining_steps = remaining_steps
        self.count: int | None = None
        self.steps_per_loop: int | None = None
        self.steps_seen = 0
        self.times: dict[str, list[float]] = {"graph": [], "xla": []}
        self.steps: dict[str, list[int]] = {"graph": [], "xla": []}
        # What decided whether XLA was tried: the program's convolutions, the run's length over the tracing.
        self.facts: dict[str, Any] = {}
        choice = int(trainer.mode_choice.numpy())
        self.active = trainer.requested_mode == "auto" and trainer.auto_candidates == ("graph", "xla")
        if trainer.requested_mode == "auto" and choice:
            trainer.use_mode(CHOICES[choice])  # Chosen before this run was resumed.
            self.active = False
        self.watch_recompiles = trainer.requested_mode == "xla"

    def steps_for_call(self, steps_per_loop: int) -> int:
        """Returns how many steps the next compiled call should run: fewer while the modes are being timed."""
        self.steps_per_loop = steps_per_loop
        if not self.active:
            return steps_per_loop
        mode = self.trainer.mode
        calls = len(self.steps[mode])
        if not calls:
            return min(FIRST_CALL_STEPS, steps_per_loop)  # Tracing and compiling: one step is enough.
        if calls > (1 if mode == "graph" else 2):
            return steps_per_loop  # The rate's call was too short to time: a whole call.
        if mode == "xla" and not self.facts.get("convolutions", True):
            # As long as graph mode's rate call, which XLA's is compared with. XLA's first call after compiling
            # warms up (dense ran it at graph mode's rate, later ones 30% faster): a second call of that length
            # comes before the one XLA's rate is read from.
            return self.steps["graph"][-1]
        # XLA ran convolutions 2x to 16x slower here: a fifth of a call is long enough to time them.
        return max(steps_per_loop // RATE_FRACTION, 1)

    def record(self, count: int, seconds: float) -> bool:
        """Records the call ``steps_for_call`` planned: its steps and length; True when the trainer's mode changed."""
        self.steps_seen += count
        if self.watch_recompiles:
            self._watch(count, seconds)
            return False
        if not self.active:
            return False
        mode = self.trainer.mode
        self.times[mode].append(seconds)
        self.steps[mode].append(count)
        # Graph mode: a first call, then its rate. XLA: a first call, one to warm up, then its rate.
        if len(self.times[mode]) < (2 if mode == "graph" else 3) or not self._timed_enough(mode):
            return False
        if mode == "graph":
            return self._after_graph()
        return self._after_xla()

    def _timed_enough(self, mode: str) -> bool:
        """Whether ``mode``'s last call gives its rate: long enough to time, a whole call, or the last allowed."""
        return (
            self.times[mode][-1] >= MIN_TIMED_SECONDS
            or self.steps[mode][-1] >= self.steps_per_loop
            or len(self.times[mode]) >= MAX_TIMED_CALLS
        )

    def _watch(self, count: int, seconds: float) -> None:
        """For explicit XLA: compares its first two calls of one length (an epoch's last call may be shorter)."""
        if self.count is None:
            self.count = count
        if count != self.count:
            return
        self.times["xla"].append(seconds)
        if len(self.times["xla"]) == 2:
            self.watch_recompiles = False
            self._warn_if_recompiling(*self.times["xla"])

    def _rate(self, mode: str) -> float:
        """Seconds per step of ``mode``'s last (steady) call."""
        return self.times[mode][-1] / self.steps[mode][-1]

    def _after_graph(self) -> bool:
        first = self.times["graph"][0]
        remaining = None if self.remaining_steps is None else self.remaining_steps - self.steps_seen
        rest = None if remaining is None else remaining * self._rate("graph")
        graph = getattr(self.trainer, "traced_graph", lambda: None)()
        convolutions = graph is None or has_convolutions(graph)  # Unknown: the cautious threshold.
        threshold = TRY_XLA_AFTER if convolutions else TRY_XLA_AFTER_WITHOUT_CONVOLUTIONS
        tracing = max(first - self.steps["graph"][0] * self._rate("graph"), 0.0)
        self.facts = {"convolutions": convolutions, "rest_over_tracing": None}
        if rest is not None:
            self.facts["rest_over_tracing"] = round(rest / max(tracing, 1e-9), 1)
        if rest is not None and rest < threshold * tracing:
            kind = "a program with convolutions" if convolutions else "a program without convolutions"
            return self._choose(
                "graph",
                f"the rest of the run ({rest:.1f} s) was too short to repay compiling XLA (under {threshold:g} "
                f"times graph mode's tracing, {tracing:.1f} s, for {kind})",
            )
        self.trainer.use_mode("xla")
        return True

    def _after_xla(self) -> bool:
        graph_rate, xla_rate = self._rate("graph"), self._rate("xla")
        chosen = "xla" if xla_rate < MARGIN * graph_rate else "graph"
        return self._choose(chosen, f"{1000 * graph_rate:.3g} ms/step in graph mode, {1000 * xla_rate:.3g} in XLA")

    def _choose(self, mode: str, reason: str) -> bool:
        self.active = False
        changed = mode != self.trainer.mode
        # Compiled already in either mode: switching back costs nothing.
        report = _report(mode, reason, self.times, self.steps)
        self.trainer.settle_mode(mode, {**report, "steps_per_call": self.steps_per_loop, **self.facts})
        return changed

    def _warn_if_recompiling(self, first: float, second: float) -> None:
        if first < self.MIN_FIRST_CALL_SECONDS or second < 0.5 * first:
            return
        warnings.warn(
            f"XLA's second training call took about as long as its first ({first:.2f} s, then {second:.2f} s "
            f"for {self.count} steps each): it compiles again on every call (as for a model with a nested "
            "GradientTape, whose weights XLA folds into the program) or runs slowly for this model here (as "
            "convolutions do on CPUs); mode='auto' (--mode auto) times graph mode against it.",
            XlaRecompileWarning,
            stacklevel=5,
        )


def has_convolutions(graph: tf.Graph) -> bool:
    """Returns whether ``graph``, or a function it calls (a loop's body, a replica's step), holds a convolution."""
    graph_def = graph.as_graph_def()
    operations = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        operations.update(node.op for node in function.node_def)
    return not operations.isdisjoint(CONVOLUTION_OPS)


def _report(mode: str, reason: str, times: dict[str, list[float]], steps: dict[str, list[int]]) -> dict[str, Any]:
    """What ``mode_report`` holds: the choice, why, the calls timed, and the seconds measuring cost."""
    rate = times[mode][-1] / steps[mode][-1]  # The steady call: graph mode's second, XLA's third.
    other = "xla" if mode == "graph" else "graph"
    # The losing mode's calls, beyond what the chosen mode would have taken for their steps.
    cost = max(sum(times[other]) - sum(steps[other]) * rate, 0.0)
    return {
        "mode": mode,
        "reason": reason,
        "seconds": {name: [round(value, 4) for value in values] for name, values in times.items() if values},
        "steps": {name: values for name, values in steps.items() if values},
        "measuring_cost_seconds": round(cost, 3),
    }


def describe(report: dict[str, Any]) -> str:
    """Returns one line saying what ``mode="auto"`` chose and why."""
    if "xla" not in report["seconds"]:
        return f"Mode 'auto' kept graph mode: {report['reason']}."
    return (
        f"Mode 'auto' chose {report['mode']}: {report['reason']} (measuring cost "
        f"{report['measuring_cost_seconds']:.1f} s)."
    )
