"""Anomaly detection with a trained autoencoder: per-example scores and a threshold.

An example's score is its reconstruction error under the objective's
reconstruction terms (every term with a target, or reading the model's own
likelihood of the input), weighted as in training; regularizers do not count.
Examples scoring above a threshold picked from training scores are flagged.

>>> scores = anomaly_scores(trainer, x_test)               # doctest: +SKIP
>>> flagged = scores > pick_threshold(anomaly_scores(trainer, x_train), k=3.0)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from aeloops.data.sources import INPUT, as_arrays
from aeloops.models.gaussian import PIXEL_NLL
from aeloops.objectives.objective import LossTerm, Objective

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = ["LIKELIHOOD_OUTPUTS", "anomaly_scores", "pick_threshold", "scoring_terms"]

# Outputs that are a model's own -log p(input) per example: they score an example as a reconstruction does.
LIKELIHOOD_OUTPUTS = (PIXEL_NLL,)


def anomaly_scores(trainer: Trainer, data: np.ndarray | dict[str, np.ndarray], batch_size: int = 256) -> np.ndarray:
    """Returns each example's weighted reconstruction error (or -log likelihood), shape ``(n,)``."""
    arrays = as_arrays(data, "data")
    outputs = trainer.predict(arrays[INPUT], batch_size=batch_size)
    terms = scoring_terms(trainer.objective, int(trainer.step.numpy()))
    scores = np.zeros(len(arrays[INPUT]), np.float64)
    for start in range(0, len(scores), batch_size):
        window = slice(start, start + batch_size)
        batch_outputs = {name: value[window] for name, value in outputs.items()}
        batch = {name: value[window] for name, value in arrays.items()}
        for term, weight in terms:
            scores[window] += weight * term.per_example(batch_outputs, batch).numpy()
    return scores


def scoring_terms(objective: Objective, step: int) -> list[tuple[LossTerm, float]]:
    """Returns the terms that score how well an example is explained, each with its weight at ``step``.

    A term with a target compares an output with the input; a term reading a
    model's own likelihood of its input (a Gaussian decoder's ``"pixel_nll"``)
    scores it too. Regularizers do not.
    """
    terms = [
        (term, float(term.weight_at(step)))
        for term in objective.terms
        if term.target is not None or term.output in LIKELIHOOD_OUTPUTS
    ]
    if not terms:
        raise ValueError(
            "The objective has no term that scores an example (one with a target, or a likelihood of the input)."
        )
    return terms


def pick_threshold(scores: np.ndarray, method: str = "mean_std", k: float = 3.0, quantile: float = 0.99) -> float:
    """Returns a score above which an example counts as anomalous.

    Args:
      scores: scores of (normal) training examples.
      method: ``"mean_std"`` for ``mean + k * std``, ``"quantile"`` for the
        ``quantile`` of the scores.
    """
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 1 or not len(scores) or not np.all(np.isfinite(scores)):
        raise ValueError("scores must be a non-empty 1-D array of finite numbers.")
    if method == "mean_std":
        return float(scores.mean() + k * scores.std())
    if method == "quantile":
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile must lie in [0, 1], got {quantile}.")
        return float(np.quantile(scores, quantile))
    raise ValueError(f"method must be 'mean_std' or 'quantile', got {method!r}.")
