"""The norm of each weighted term's gradient: which term drives the update, as TensorBoard plots it.

>>> norms = TermGradientNorms(trainer)    # doctest: +SKIP
>>> norms(images)                         # {"bce": 0.41, "sparsity": 0.02}  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from aeloops.data.sources import as_arrays, to_tensors
from aeloops.objectives.objective import LAYER_LOSSES

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = ["TermGradientNorms"]


class TermGradientNorms:
    """Computes each weighted term's gradient norm on a batch, without training.

    The model runs with ``training=False``: noise layers and a VAE's
    sampling draw no random numbers, so how often the norms are watched
    never changes the run's own random streams. Weights are taken at the
    trainer's current step. Compiled once (not in eager mode).
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self._function = self._norms if trainer.mode == "eager" else tf.function(self._norms)

    def __call__(self, batch: np.ndarray | dict[str, np.ndarray]) -> dict[str, float]:
        """Returns ``{term: norm}`` for ``batch`` (arrays, as ``Trainer.evaluate`` takes them)."""
        tensors = to_tensors(as_arrays(batch, "batch"))
        return {name: float(value) for name, value in self._function(tensors).items()}

    def _norms(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        trainer = self.trainer
        weights = {term.name: term.weight_at(trainer.step) for term in trainer.objective.terms}
        with tf.GradientTape(persistent=True) as tape:
            terms = trainer.compute_terms(batch, training=False)
            weighted = {name: weights[name] * terms[name] for name in weights if name in terms}
            if LAYER_LOSSES in terms:
                weighted[LAYER_LOSSES] = terms[LAYER_LOSSES]
        variables = trainer.model.trainable_variables
        # global_norm skips the None gradients of variables a term does not reach.
        norms = {name: tf.linalg.global_norm(tape.gradient(value, variables)) for name, value in weighted.items()}
        del tape
        return norms
