"""How good generated images are, as papers measure it, from features of real and generated images.

Each measure compares two sets of feature vectors (n, d), taken by one
extractor from held-out real images and from generated ones; figures from
different extractors are not comparable, so whoever reports one names the
extractor beside it.

- ``frechet_distance`` (FID, Heusel et al. 2017): the Fréchet distance between
  Gaussians fitted to the two sets.
- ``kernel_distance`` (KID, Bińkowski et al. 2018): the unbiased squared MMD
  with the cubic polynomial kernel ``(x . y / d + 1) ** 3``, averaged over
  random subsets (unbiased, so it can be slightly negative for equal sets).
- ``precision_recall`` (Kynkäänniemi et al. 2019): the share of generated
  features inside the real set's k-nearest-neighbour balls (precision), and
  of real ones inside the generated set's (recall).

>>> import numpy as np
>>> real = np.random.default_rng(0).normal(size=(500, 4))
>>> round(frechet_distance(real, real), 6)
0.0
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import NamedTuple

import keras
import numpy as np

__all__ = [
    "METRICS",
    "Extractor",
    "frechet_distance",
    "gaussian_frechet_distance",
    "kernel_distance",
    "inception_extractor",
    "keras_extractor",
    "precision_recall",
    "sample_quality",
]


def frechet_distance(real: np.ndarray, generated: np.ndarray) -> float:
    """Returns the FID of two feature sets: the Fréchet distance of Gaussians with their means and covariances."""
    real, generated = _features(real, "real"), _features(generated, "generated")
    return gaussian_frechet_distance(
        real.mean(axis=0), np.cov(real, rowvar=False), generated.mean(axis=0), np.cov(generated, rowvar=False)
    )


def gaussian_frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Returns ``|mean_a - mean_b|^2 + tr(cov_a + cov_b - 2 (cov_a cov_b)^(1/2))``."""
    from scipy import linalg  # Deferred: scipy comes with the [generative] extra.

    with warnings.catch_warnings():  # A singular product (dead features, say) is handled below, not warned of.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root, _ = linalg.sqrtm(np.atleast_2d(cov_a) @ np.atleast_2d(cov_b), disp=False)
    if not np.all(np.isfinite(root)):
        # A singular product (fewer samples than dimensions): offset both, as the reference implementation does.
        offset = np.eye(len(np.atleast_2d(cov_a))) * 1e-6
        root, _ = linalg.sqrtm((cov_a + offset) @ (cov_b + offset), disp=False)
    root = root.real  # Rounding leaves a tiny imaginary part.
    difference = np.asarray(mean_a) - np.asarray(mean_b)
    return float(difference @ difference + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root))


def kernel_distance(
    real: np.ndarray, generated: np.ndarray, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Returns the KID of two feature sets: the mean and standard deviation of the unbiased MMD² over subsets.

    Each of ``subsets`` draws ``subset_size`` features (fewer if a set has
    fewer) from each set without replacement, seeded by ``seed``.
    """
    real, generated = _features(real, "real"), _features(generated, "generated")
    size = min(subset_size, len(real), len(generated))
    if size < 2:
        raise ValueError(f"KID needs at least 2 features in each set; got {len(real)} and {len(generated)}.")
    rng = np.random.default_rng(seed)
    estimates = [
        _unbiased_mmd2(
            real[rng.choice(len(real), size, replace=False)], generated[rng.choice(len(generated), size, replace=False)]
        )  # fmt: skip
        for _ in range(subsets)
    ]
    return float(np.mean(estimates)), float(np.std(estimates))


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased squared MMD of two equal-sized sets with the cubic polynomial kernel."""
    dimension, count = x.shape[1], len(x)
    k_xx = (x @ x.T / dimension + 1.0) ** 3
    k_yy = (y @ y.T / dimension + 1.0) ** 3
    k_xy = (x @ y.T / dimension + 1.0) ** 3
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (count * (count - 1))
    return float(within - 2.0 * k_xy.mean())


def precision_recall(real: np.ndarray, generated: np.ndarray, *, k: int = 3) -> tuple[float, float]:
    """Returns (precision, recall) of generated features against real ones, with k-nearest-neighbour balls."""
    real, generated = _features(real, "real"), _features(generated, "generated")
    if min(len(real), len(generated)) <= k:
        raise ValueError(f"precision and recall with k={k} need more than {k} features in each set.")
    precision = _inside_share(generated, real, k)
    recall = _inside_share(real, generated, k)
    return precision, recall


def _inside_share(points: np.ndarray, support: np.ndarray, k: int) -> float:
    """The share of ``points`` within some ball of ``support``: around each support point, to its k-th neighbour."""
    support_distances = _distances(support, support)
    # Column 0 of each sorted row is the point itself (distance 0): the k-th neighbour is column k.
    radii = np.sort(support_distances, axis=1)[:, k]
    inside = _distances(points, support) <= radii[None, :]
    return float(np.mean(inside.any(axis=1)))


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between every row of ``a`` and every row of ``b``."""
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def _features(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or len(values) < 2:
        raise ValueError(f"{name} features must be (n, d) with n >= 2; got shape {values.shape}.")
    return values


class Extractor(NamedTuple):
    """What features are taken by: a function of images (n, ...) to features (n, d), and its name for reports."""

    name: str
    features: Callable[[np.ndarray], np.ndarray]


def keras_extractor(
    model: keras.Model | str | os.PathLike, layer: str | None = None, batch_size: int = 256
) -> Extractor:
    """Returns an extractor reading ``layer`` of a Keras model (by default its last layer's input).

    ``model`` may be a ``.keras`` file, loaded in Keras's safe mode: an
    InceptionV3 saved with its weights, a classifier of the user's own.
    Its name is the file's, or the model's.
    """
    name = os.fspath(model) if isinstance(model, (str, os.PathLike)) else model.name
    if isinstance(model, (str, os.PathLike)):
        model = keras.saving.load_model(model, safe_mode=True)
    if not getattr(model, "inputs", None) or len(model.inputs) != 1:
        raise ValueError(f"{name} must be a functional or Sequential Keras model of one input (images).")
    inputs = model.inputs[0]
    output = model.get_layer(layer).output if layer is not None else model.layers[-1].input
    reader = keras.Model(inputs, output)
    shape = tuple(inputs.shape[1:])

    def features(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if None not in shape and images[0].size == np.prod(shape) and images.shape[1:] != shape:
            images = images.reshape(len(images), *shape)  # The same pixels as the extractor lays them out.
        parts = [np.asarray(reader(images[start : start + batch_size], training=False))
                 for start in range(0, len(images), batch_size)]  # fmt: skip
        flat = np.concatenate(parts)
        return flat.reshape(len(flat), -1)

    return Extractor(f"{name}:{layer or 'penultimate'}", features)


# The side InceptionV3 reads, as FID's reference implementation resizes to.
INCEPTION_SIZE = 299


def inception_extractor(
    weights: str | os.PathLike, image_shape: tuple[int, int, int], batch_size: int = 64
) -> Extractor:
    """Returns InceptionV3's 2,048 pooled features, with ``weights`` from a file (nothing is downloaded).

    ``weights`` is Keras's ImageNet file without the classifier
    (``inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5``), or any
    weights of that network. Images in [0, 1] of ``image_shape`` (any
    layout of those pixels) are resized to 299x299 (bilinear), grey ones
    repeated to three channels, and scaled to [-1, 1] as the network was
    trained. FID's reference implementation uses another set of Inception
    weights, so figures are close to papers' but not the same.
    """
    import tensorflow as tf

    network = keras.applications.InceptionV3(
        include_top=False, weights=os.fspath(weights), pooling="avg", input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3)
    )

    def features(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32).reshape(len(images), *image_shape)
        parts = []
        for start in range(0, len(images), batch_size):
            batch = tf.image.resize(images[start : start + batch_size], (INCEPTION_SIZE, INCEPTION_SIZE))
            batch = tf.image.grayscale_to_rgb(batch) if image_shape[-1] == 1 else batch
            parts.append(np.asarray(network(batch * 2.0 - 1.0, training=False)))
        return np.concatenate(parts)

    return Extractor(f"inception_v3:{os.path.basename(os.fspath(weights))}:pool", features)


# The measures sample_quality can take: FID, KID, and precision and recall (Kynkäänniemi et al.'s PRD).
METRICS = ("fid", "kid", "prd")


def sample_quality(
    real: np.ndarray, generated: np.ndarray, extractor: Extractor, *, seed: int = 0, metrics: tuple = METRICS
) -> dict:
    """Returns FID, KID (mean and std), precision and recall of ``generated`` against ``real`` images.

    Only those of ``metrics`` are computed. The extractor's name is part of
    the result: figures from different extractors are not comparable.
    """
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"metrics must be of {METRICS}, got {sorted(unknown)}.")
    real_features, generated_features = extractor.features(real), extractor.features(generated)
    found: dict = {}
    if "fid" in metrics:
        found["fid"] = frechet_distance(real_features, generated_features)
    if "kid" in metrics:
        found["kid"], found["kid_std"] = kernel_distance(real_features, generated_features, seed=seed)
    if "prd" in metrics:
        found["precision"], found["recall"] = precision_recall(real_features, generated_features)
    return {**found, "extractor": extractor.name, "real": len(real), "generated": len(generated)}
