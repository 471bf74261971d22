"""The values the Trainer's options take: its execution modes and its non-finite policies.

Plain constants, importing nothing, so that a run's config offers and checks
them before TensorFlow loads.
"""

from __future__ import annotations

__all__ = ["MODES", "NONFINITE_POLICIES"]

# "auto" times graph against XLA on the run's first steps (training.mode_probe).
MODES = ("auto", "xla", "graph", "eager")
# What a step with a non-finite loss or gradient does: end the run, or leave the weights as they were.
NONFINITE_POLICIES = ("stop", "skip")
