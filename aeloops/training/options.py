"""The values the Trainer's options take (execution modes, non-finite policies), and its graph scope.

Plain constants, importing nothing, so that a run's config offers and checks
them before TensorFlow loads.
"""

from __future__ import annotations

__all__ = ["LIBRARY_SCOPE", "MODES", "NONFINITE_POLICIES", "OPTIMIZER_OPTIONS"]

# "auto" times graph against XLA on the run's first steps (training.mode_probe).
MODES = ("auto", "xla", "graph", "eager")
# What a step with a non-finite loss or gradient does: end the run, leave the weights as they were, or
# put back the state before its compiled call and go on (aeloops.training.recovery).
NONFINITE_POLICIES = ("stop", "skip", "rollback")
# Keras optimizer options accepted with an optimizer's name (aeloops.training.optimizers); a run can set
# them for all optimizers or per part.
OPTIMIZER_OPTIONS = (
    "clipnorm", "global_clipnorm", "clipvalue", "use_ema", "ema_momentum", "gradient_accumulation_steps",
)  # fmt: skip
# The graph scope of what the library adds to a step (counting, checks, gradient norms), so a traced
# step reads inputs -> model -> objective -> gradients -> optimizer, with one library box beside them.
# The trailing "/" makes tf.name_scope re-enter it rather than open "aeloops_1".
LIBRARY_SCOPE = "aeloops/"
