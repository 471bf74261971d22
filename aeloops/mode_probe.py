"""The XLA recompile probe: ``mode="auto"`` falls back to graph mode when XLA compiles on every call.

>>> probe = ModeProbe(trainer)              # doctest: +SKIP
>>> probe.record(steps, seconds)            # after each compiled call; True if the mode changed  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aeloops.loop import Trainer

__all__ = ["ModeProbe", "XlaRecompileWarning"]


class XlaRecompileWarning(RuntimeWarning):
    """XLA compiled the training loop again on every call (see ``ModeProbe``)."""


class ModeProbe:
    """Watches the first compiled training calls for an XLA loop that recompiles on every call.

    XLA can fold variables into the program as constants (a model that
    computes a nested ``GradientTape.batch_jacobian`` does), and then
    compiles again on every call without retracing, each call costing a
    full compilation. The probe compares the first two calls of equal
    length: when the second takes more than half as long as the first
    (which includes the compilation), XLA is recompiling. Two calls are the
    fewest that show it; each costs a compilation, so it looks no further. A
    trainer in ``"auto"`` mode then falls back to graph mode, and says so;
    an explicit ``"xla"`` trainer only warns.
    """

    # Calls shorter than this are not worth a switch, and too noisy to judge.
    MIN_FIRST_CALL_SECONDS = 0.2

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.times: list[float] = []
        self.count: int | None = None
        self.active = trainer.mode == "xla"
        if trainer.mode == "xla" and int(trainer.xla_fallback.numpy()):
            trainer.use_mode("graph")  # This run already fell back before it was resumed.
            self.active = False

    def record(self, count: int, seconds: float) -> bool:
        """Records one call's length; returns True when the trainer's mode was changed."""
        if not self.active:
            return False
        if self.count is None:
            self.count = count
        if count != self.count:
            return False
        self.times.append(seconds)
        if len(self.times) < 2:
            return False
        self.active = False
        first, second = self.times
        if first < self.MIN_FIRST_CALL_SECONDS or second < 0.5 * first:
            return False
        if self.trainer.requested_mode == "auto":
            self.trainer.use_mode("graph")
            self.trainer.xla_fallback.assign(1)  # Checkpointed: a resumed run compiles as this one does.
            action = "mode 'auto' switched to graph mode"
        else:
            action = "consider mode='graph' (--mode graph)"
        warnings.warn(
            f"XLA compiled the training loop again on its second call ({first:.2f} s, then {second:.2f} s "
            f"for {count} steps each), as it does when a model folds its weights into the program (for example "
            f"a nested GradientTape.batch_jacobian); {action}.",
            XlaRecompileWarning,
            stacklevel=4,
        )
        return self.trainer.mode == "graph"
