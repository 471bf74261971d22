"""Disentanglement scores of a code against known factors: MIG, DCI, SAP and the FactorVAE score.

Each follows disentanglement_lib (Locatello et al. 2019), the reference the
papers after it report against, with its defaults:

- ``mig`` (Chen et al. 2018): per factor, the gap between the two code
  dimensions sharing most information with it, over the factor's entropy;
  codes discretized into 20 equal-width bins.
- ``dci`` (Eastwood and Williams 2018): gradient-boosted trees predict each
  factor from the code; their feature importances give disentanglement
  (each dimension explains one factor), completeness (each factor is
  explained by one dimension) and informativeness (their test accuracy).
- ``sap`` (Kumar et al. 2018): per factor, the gap between the two
  dimensions that alone predict it best (a linear SVM's test accuracy, or
  with ``continuous`` the squared correlation).
- ``factor_vae_score`` (Kim and Mnih 2018): fix one factor, encode a batch,
  and see whether the dimension of least (normalized) variance names it; the
  accuracy of a majority-vote classifier of those votes.

The first three read codes and factors only, so they score any code; the
FactorVAE score draws its own batches from a ``aeloops.data.factors`` source
and an ``encode`` function.

>>> scores = dci(codes[:8000], factors[:8000], codes[8000:], factors[8000:])  # doctest: +SKIP
>>> scores["disentanglement"], scores["completeness"], scores["informativeness"]   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from aeloops.data.factors import FactorData

__all__ = ["dci", "discretize", "factor_vae_score", "mig", "mutual_information", "sap", "scores"]

BINS = 20
# FactorVAE votes whose batches are encoded in one call: 8 x 64 = 512 images, the fastest size measured for
# betatcvae and convvae (a model whose forward pass grows with the batch squared slows beyond it).
_VOTES_A_CALL = 8


def discretize(codes: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Returns each code dimension binned into ``bins`` equal-width bins over its own range, as ints."""
    codes = _two_dimensional(codes, "codes")
    binned = np.empty(codes.shape, np.int64)
    for dimension in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, dimension], bins)
        binned[:, dimension] = np.digitize(codes[:, dimension], edges[:-1])
    return binned


def mutual_information(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Returns the mutual information (nats) of each discrete code dimension with each factor, ``(codes, factors)``."""
    from sklearn.metrics import mutual_info_score

    return np.array([[mutual_info_score(factor, code) for factor in factors.T] for code in codes.T], dtype=np.float64)


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = BINS) -> float:
    """Returns the mutual information gap: 1 when each factor lives in one dimension alone, 0 when shared or absent."""
    codes, factors = _paired(codes, factors)
    information = mutual_information(discretize(codes, bins), factors)
    entropies = np.array([_entropy(factor) for factor in factors.T])
    kept = entropies > 0  # A constant factor carries no information to find.
    return float(np.mean(_top_two_gap(information)[kept] / entropies[kept]))


def dci(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    *,
    seed: int = 0,
) -> dict[str, float]:
    """Returns DCI's disentanglement, completeness and informativeness (test accuracy), each in [0, 1]."""
    from sklearn.ensemble import GradientBoostingClassifier

    train_codes, train_factors = _paired(train_codes, train_factors)
    test_codes, test_factors = _paired(test_codes, test_factors)
    importance = np.zeros((train_codes.shape[1], train_factors.shape[1]))
    accuracies = []
    for index in range(train_factors.shape[1]):
        model = GradientBoostingClassifier(random_state=seed).fit(train_codes, train_factors[:, index])
        importance[:, index] = np.abs(model.feature_importances_)
        accuracies.append(float(np.mean(model.predict(test_codes) == test_factors[:, index])))
    return {
        "disentanglement": _disentanglement(importance),
        "completeness": _completeness(importance),
        "informativeness": float(np.mean(accuracies)),
    }


def sap(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    *,
    continuous: bool = False,
) -> float:
    """Returns the separated attribute predictability: the mean gap between the two best single-dimension predictors.

    As disentanglement_lib scores it: by default each dimension alone
    predicts each factor as a class (a linear SVM's test accuracy), which
    cannot exceed what one threshold on one axis separates, so even a
    perfect code scores well below 1 on factors of many values; with
    ``continuous`` the factors are ordinal and the score is the squared
    correlation of dimension and factor (Kumar et al.'s continuous case),
    1 for a perfect code.
    """
    train_codes, train_factors = _paired(train_codes, train_factors)
    test_codes, test_factors = _paired(test_codes, test_factors)
    scores = np.zeros((train_codes.shape[1], train_factors.shape[1]))
    for code in range(train_codes.shape[1]):
        for factor in range(train_factors.shape[1]):
            if continuous:
                covariance = np.cov(train_codes[:, code], train_factors[:, factor], ddof=1)
                if covariance[0, 0] > 1e-12 and covariance[1, 1] > 0:
                    scores[code, factor] = covariance[0, 1] ** 2 / (covariance[0, 0] * covariance[1, 1])
            elif len(np.unique(train_factors[:, factor])) > 1:
                scores[code, factor] = _single_dimension_accuracy(
                    train_codes[:, code], train_factors[:, factor], test_codes[:, code], test_factors[:, factor]
                )
    return float(np.mean(_top_two_gap(scores)))


def _single_dimension_accuracy(train: np.ndarray, labels: np.ndarray, test: np.ndarray, truth: np.ndarray) -> float:
    from sklearn.svm import LinearSVC

    classifier = LinearSVC(C=0.01, class_weight="balanced").fit(train[:, None], labels)
    return float(np.mean(classifier.predict(test[:, None]) == truth))


def factor_vae_score(
    encode: Callable[[np.ndarray], np.ndarray],
    data: FactorData,
    *,
    seed: int = 0,
    batch_size: int = 64,
    train_votes: int = 10_000,
    test_votes: int = 5_000,
    variance_samples: int = 10_000,
    prune_below: float = 0.05,
    codes: np.ndarray | None = None,
) -> float:
    """Returns the FactorVAE score of ``encode`` (images to codes) on ``data``: a majority-vote classifier's accuracy.

    Dimensions whose variance is below ``prune_below`` of the largest are
    left out (collapsed to the prior). A code that ignores every factor
    scores about one over the number of factors. ``codes`` of images drawn
    uniformly give the global scale; without them ``variance_samples`` are
    drawn and encoded here.
    """
    rng = np.random.default_rng(seed)
    if codes is None:
        codes = encode(data.images(data.sample_factors(variance_samples, rng)))
    codes = _two_dimensional(codes, "codes")
    scale = np.std(codes, axis=0, ddof=1)
    active = scale**2 > prune_below * np.max(scale**2)
    if not active.any():
        raise ValueError("Every code dimension is constant on the data; the FactorVAE score is undefined.")

    def votes(count: int) -> np.ndarray:
        counts = np.zeros((codes.shape[1], len(data.factor_sizes)), np.int64)
        # Several votes' batches go through the encoder in one call, rather than one small call a vote.
        for start in range(0, count, _VOTES_A_CALL):
            chunk = min(_VOTES_A_CALL, count - start)
            fixed = rng.integers(len(data.factor_sizes), size=chunk)
            factors = data.sample_factors(chunk * batch_size, rng).reshape(chunk, batch_size, -1)
            rows = np.arange(chunk)
            factors[rows, :, fixed] = factors[rows, :1, fixed]  # In each vote one factor fixed, the others free.
            encoded = _two_dimensional(encode(data.images(factors.reshape(chunk * batch_size, -1))), "codes")
            variances = np.var(encoded.reshape(chunk, batch_size, -1) / scale, axis=1, ddof=1)
            dimensions = np.argmin(np.where(active, variances, np.inf), axis=1)
            np.add.at(counts, (dimensions, fixed), 1)
        return counts

    train, test = votes(train_votes), votes(test_votes)
    guess = np.argmax(train, axis=1)  # Each dimension votes for the factor it was most often the least variable for.
    return float(np.sum(test[np.arange(len(guess)), guess]) / np.sum(test))


def scores(
    encode: Callable[[np.ndarray], np.ndarray],
    data: FactorData,
    *,
    examples: int = 10_000,
    votes: int = 10_000,
    seed: int = 0,
) -> dict[str, float | int | dict[str, float]]:
    """Returns every score of ``encode`` on ``data``, as disentanglement_lib's defaults run them.

    MIG on ``examples`` drawn images; DCI and SAP trained on ``examples``
    and tested on half as many more; the FactorVAE score on ``votes``
    training votes and half as many test votes, of 64 images each.
    """
    rng = np.random.default_rng(seed)
    train_factors = data.sample_factors(examples, rng)
    test_factors = data.sample_factors(max(examples // 2, 1), rng)
    train_codes = _two_dimensional(encode(data.images(train_factors)), "codes")
    test_codes = _two_dimensional(encode(data.images(test_factors)), "codes")
    return {
        "examples": examples,
        "mig": mig(train_codes, train_factors),
        "dci": dci(train_codes, train_factors, test_codes, test_factors, seed=seed),
        "sap": sap(train_codes, train_factors, test_codes, test_factors),
        "sap_continuous": sap(train_codes, train_factors, test_codes, test_factors, continuous=True),
        "factor_vae_score": factor_vae_score(
            encode, data, seed=seed, train_votes=votes, test_votes=max(votes // 2, 1), codes=train_codes
        ),
        "factor_vae_votes": votes,
    }


def _top_two_gap(scores: np.ndarray) -> np.ndarray:
    """Each column's (factor's) best score over the dimensions minus its second best (0 for one dimension)."""
    ranked = np.sort(scores, axis=0)[::-1]
    return ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0)


def _disentanglement(importance: np.ndarray) -> float:
    """How much each dimension explains one factor only, weighted by how much it explains at all."""
    total = importance.sum()
    if total == 0:
        return 0.0
    per_code = 1.0 - _entropies(importance, base=importance.shape[1])
    return float(np.sum(per_code * importance.sum(axis=1) / total))


def _completeness(importance: np.ndarray) -> float:
    """How much each factor is explained by one dimension only, averaged over factors."""
    return float(np.mean(1.0 - _entropies(importance.T, base=importance.shape[0])))


def _entropies(rows: np.ndarray, base: int) -> np.ndarray:
    """Each row's entropy in ``base`` as a distribution (its sum normalized; a zero row counts as uniform)."""
    if base < 2:
        return np.zeros(len(rows))
    sums = rows.sum(axis=1, keepdims=True)
    probabilities = np.where(sums > 0, rows / np.where(sums > 0, sums, 1.0), 1.0 / rows.shape[1])
    logs = np.log(np.where(probabilities > 0, probabilities, 1.0))
    return -np.sum(probabilities * logs, axis=1) / np.log(base)


def _entropy(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    probabilities = counts / counts.sum()
    return float(-np.sum(probabilities * np.log(probabilities)))


def _two_dimensional(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        values = values.reshape(len(values), -1)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"The {name} hold NaN or Inf.")
    return values


def _paired(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = _two_dimensional(codes, "codes")
    factors = np.asarray(factors)
    if factors.ndim != 2 or len(factors) != len(codes):
        raise ValueError(f"factors must be (n, factors) with the codes' n = {len(codes)}, got {factors.shape}.")
    return codes, factors.astype(np.int64)
