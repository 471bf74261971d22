"""How ``mode="auto"`` chooses between graph and XLA: by timing both on the run's first real steps.

>>> probe = ModeProbe(trainer, remaining_steps=9370)  # doctest: +SKIP
>>> probe.record(steps, seconds)     # after each compiled call; True when the trainer's mode changed  # doctest: +SKIP
>>> trainer.mode_report              # what was measured and chosen, and what measuring cost  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aeloops.loop import Trainer

__all__ = ["CHOICES", "ModeProbe", "XlaRecompileWarning", "describe"]

# The values of Trainer.mode_choice, a checkpointed counter: 0 while undecided.
CHOICES = {1: "xla", 2: "graph"}
# XLA is tried only when the rest of the run in graph mode would take this many
# times graph mode's tracing and compilation (its first call less a steady
# one). XLA's first call (tracing and compiling, once whatever the step count)
# cost 1.2 to 1.9 times that on the seven models measured, and its slow steps
# while timed (convolutions on a CPU) about 0.4 times more, so trying XLA and
# losing costs at most about 15% of the rest of a run at this threshold, less
# as runs grow; a short run stays in graph mode.
TRY_XLA_AFTER = 15.0
# XLA must be this much faster per step to be chosen: timings are noisy.
MARGIN = 0.95
# XLA is timed on short calls, so a model it runs slowly (convolutions on a
# CPU, 2x to 16x slower) costs little to find out: a first call of this many
# steps (mostly compilation), then one of a fifth of a call's steps for the
# rate. The loops take their step count as a tensor: neither call recompiles.
XLA_FIRST_CALL_STEPS = 1
XLA_RATE_FRACTION = 5


class XlaRecompileWarning(RuntimeWarning):
    """XLA's second call took as long as its first: it recompiles, or is slow here (explicit ``mode="xla"``)."""


class ModeProbe:
    """Times the first compiled training calls and settles a trainer's mode.

    With ``mode="auto"`` the trainer starts in graph mode, which compiles
    fast and is never far from the best. The probe times two calls of equal
    length (the first includes tracing and compilation, the second is the
    steady rate); if the rest of the run is long enough (see
    ``TRY_XLA_AFTER``) it then runs two short XLA calls (see
    ``XLA_FIRST_CALL_STEPS``), and keeps the faster mode per step, switching
    back without compiling again. The outer loop asks ``steps_for_call`` how
    many steps each call runs. Every timed step is a real training step, so
    what measuring costs is only the slower mode's calls beyond what the
    faster would have taken; ``mode_report`` says it. The choice is
    checkpointed (``Trainer.mode_choice``): a resumed run takes it up without
    measuring again.

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
        self.steps_seen = 0
        self.times: dict[str, list[float]] = {"graph": [], "xla": []}
        self.steps: dict[str, list[int]] = {"graph": [], "xla": []}
        choice = int(trainer.mode_choice.numpy())
        self.active = trainer.requested_mode == "auto" and trainer.auto_candidates == ("graph", "xla")
        if trainer.requested_mode == "auto" and choice:
            trainer.use_mode(CHOICES[choice])  # Chosen before this run was resumed.
            self.active = False
        self.watch_recompiles = trainer.requested_mode == "xla"

    def steps_for_call(self, steps_per_loop: int) -> int:
        """Returns how many steps the next compiled call should run: fewer while XLA is being timed."""
        if not (self.active and self.trainer.mode == "xla"):
            return steps_per_loop
        if not self.times["xla"]:
            return min(XLA_FIRST_CALL_STEPS, steps_per_loop)
        return max(steps_per_loop // XLA_RATE_FRACTION, 1)

    def record(self, count: int, seconds: float) -> bool:
        """Records one call's length and steps; returns True when the trainer's mode was changed."""
        self.steps_seen += count
        if not (self.active or self.watch_recompiles):
            return False
        mode = self.trainer.mode
        if self.count is None:
            self.count = count
        # Graph mode's two calls compare only at one length (an epoch's last call may be shorter);
        # XLA's are timed per step.
        if count != self.count and not (self.active and mode == "xla"):
            return False
        self.times[mode].append(seconds)
        self.steps[mode].append(count)
        if len(self.times[mode]) < 2:
            return False
        if self.watch_recompiles:
            self.watch_recompiles = False
            self._warn_if_recompiling(*self.times[mode])
            return False
        if mode == "graph" and not self.times["xla"]:
            return self._after_graph()
        return self._after_xla()

    def _rate(self, mode: str) -> float:
        """Seconds per step of ``mode``'s second (steady) call."""
        return self.times[mode][1] / self.steps[mode][1]

    def _after_graph(self) -> bool:
        first, steady = self.times["graph"]
        remaining = None if self.remaining_steps is None else self.remaining_steps - self.steps_seen
        rest = None if remaining is None else remaining * self._rate("graph")
        if rest is not None and rest < TRY_XLA_AFTER * (first - steady):
            return self._choose("graph", f"the rest of the run ({rest:.1f} s) was too short to repay compiling XLA")
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
        self.trainer.settle_mode(mode, _report(mode, reason, self.times, self.steps))
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


def _report(mode: str, reason: str, times: dict[str, list[float]], steps: dict[str, list[int]]) -> dict[str, Any]:
    """What ``mode_report`` holds: the choice, why, the calls timed, and the seconds measuring cost."""
    rate = times[mode][1] / steps[mode][1]
    other = "xla" if mode == "graph" else "graph"
    # The losing mode's calls, beyond what the chosen mode would have taken for their steps.
    cost = max(sum(times[other]) - sum(steps[other]) * rate, 0.0)
    return {
        "mode": mode,
        "reason": reason,
        "steps_per_call": steps["graph"][0],
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
