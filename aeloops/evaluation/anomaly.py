"""Anomaly detection with a trained autoencoder: per-example scores and a threshold.

An example's score is its reconstruction error under the objective's
reconstruction terms (every term with a target), weighted as in training;
regularizers do not count. Examples scoring above a threshold picked from
training scores are flagged.

>>> scores = anomaly_scores(trainer, x_test)               # doctest: +SKIP
>>> flagged = scores > pick_threshold(anomaly_scores(trainer, x_train), k=3.0)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from aeloops.data.sources import INPUT, as_arrays

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = ["anomaly_scores", "pick_threshold"]


def anomaly_scores(trainer: Trainer, data: np.ndarray | dict[str, np.ndarray], batch_size: int = 256) -> np.ndarray:
    """Returns each example's weighted reconstruction error, shape ``(n,)``."""
    arrays = as_arrays(data, "data")
    outputs = trainer.predict(arrays[INPUT], batch_size=batch_size)
    terms = [term for term in trainer.objective.terms if term.target is not None]
    if not terms:
        raise ValueError("The objective has no reconstruction term (a term with a target) to score with.")
    step = int(trainer.step.numpy())
    scores = np.zeros(len(arrays[INPUT]), np.float64)
    for start in range(0, len(scores), batch_size):
        window = slice(start, start + batch_size)
        batch_outputs = {name: value[window] for name, value in outputs.items()}
        batch = {name: value[window] for name, value in arrays.items()}
        for term in terms:
            weight = float(term.weight_at(step))
            scores[window] += weight * term.per_example(batch_outputs, batch).numpy()
    return scores


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
