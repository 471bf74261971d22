"""The norm of each weighted term's gradient, and the cosines between them: which term drives the update.

>>> norms = TermGradientNorms(trainer)    # doctest: +SKIP
>>> norms(images)                         # {"bce": 0.41, "sparsity": 0.02}  # doctest: +SKIP
>>> norms.measure(images, cosines=True)[1]  # {("bce", "sparsity"): -0.12}  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from aeloops.data.sources import as_arrays, to_tensors
from aeloops.objectives.objective import LAYER_LOSSES

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = ["TermGradientNorms"]


class TermGradientNorms:
    """Computes each weighted term's gradient norm (and the cosines between them) on a batch, without training.

    The model runs with ``training=False``: noise layers and a VAE's
    sampling draw no random numbers, so how often the norms are watched
    never changes the run's own random streams. Weights are taken at the
    trainer's current step. Compiled once (not in eager mode).
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self._functions = {}
        for cosines in (False, True):
            measure = functools.partial(self._measure, cosines=cosines)
            self._functions[cosines] = measure if trainer.mode == "eager" else tf.function(measure)

    def __call__(self, batch: np.ndarray | dict[str, np.ndarray]) -> dict[str, float]:
        """Returns ``{term: norm}`` for ``batch`` (arrays, as ``Trainer.evaluate`` takes them)."""
        return self.measure(batch)[0]

    def measure(
        self, batch: np.ndarray | dict[str, np.ndarray], cosines: bool = False
    ) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
        """Returns ``({term: norm}, {(term, other): cosine})`` for ``batch``; the cosines only when asked.

        The cosine of two terms' gradients (over all trainable variables, in
        the objective's order) is negative where they pull the weights in
        conflicting directions; 0 when either gradient is zero.
        """
        tensors = to_tensors(as_arrays(batch, "batch"))
        norms, cosine_values = self._functions[bool(cosines)](tensors)
        return (
            {name: float(value) for name, value in norms.items()},
            {tuple(pair.split("\n")): float(value) for pair, value in cosine_values.items()},
        )

    def _measure(self, batch: dict[str, tf.Tensor], cosines: bool) -> tuple[dict, dict]:
        trainer = self.trainer
        weights = {term.name: term.weight_at(trainer.step) for term in trainer.objective.terms}
        with tf.GradientTape(persistent=True) as tape:
            terms = trainer.compute_terms(batch, training=False)
            weighted = {name: weights[name] * terms[name] for name in weights if name in terms}
            if LAYER_LOSSES in terms:
                weighted[LAYER_LOSSES] = terms[LAYER_LOSSES]
        variables = trainer.model.trainable_variables
        gradients = {name: tape.gradient(value, variables) for name, value in weighted.items()}
        del tape
        # global_norm skips the None gradients of variables a term does not reach.
        norms = {name: tf.linalg.global_norm(values) for name, values in gradients.items()}
        pairs = {}
        if cosines:
            names = list(gradients)
            for first, name in enumerate(names):
                for other in names[first + 1 :]:
                    dot = tf.add_n([tf.constant(0.0)] + [
                        tf.reduce_sum(a * b) for a, b in zip(gradients[name], gradients[other])
                        if a is not None and b is not None
                    ])  # fmt: skip
                    # A pair is keyed by a string (tf.function's outputs need them); "\n" is in no term's name.
                    pairs[f"{name}\n{other}"] = tf.math.divide_no_nan(dot, norms[name] * norms[other])
        return norms, pairs
