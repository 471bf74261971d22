"""Draws from a restored run's model: the training codes a fitted mixture needs, read as the run read its data."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from aeloops.data.stream import ImageStream
from aeloops.evaluation import samplers
from aeloops.evaluation.classifier import Classifier, classifier_extractor, dataset_classifier
from aeloops.models import pixelcnn  # noqa: F401  (its classes registered, for loading a run's prior)
from aeloops.models.quantized import decodes_codebook_entries
from aeloops.runs import datasets as run_data
from aeloops.runs.config import TrainConfig
from aeloops.runs.directory import RunDirectory
from aeloops.training.trainer import Trainer

__all__ = ["FIT_IMAGES", "code_indices", "draw", "measure_samples", "run_classifier", "training_codes"]

# Training images whose codes the mixture is fitted to, at most.
FIT_IMAGES = 10000


def training_codes(trainer: Trainer, config: TrainConfig, limit: int = FIT_IMAGES) -> np.ndarray:
    """Returns the codes of the run's first ``limit`` training images (the weights' moving average, if kept)."""
    model = trainer.model
    train = run_data.load_datasets(config, model.example_shape, log=lambda line: None).train
    images = train.images(min(len(train), limit)) if isinstance(train, ImageStream) else train[:limit]
    with trainer.averaged_weights():
        return np.concatenate([np.asarray(model.encode(images[start : start + 500]))
                               for start in range(0, len(images), 500)])  # fmt: skip


def run_classifier(config: TrainConfig, log: Callable[[str], None], advice: str) -> Classifier:
    """Returns the default extractor's classifier of the run's dataset, trained once and kept in the user's cache.

    Raises:
      ValueError: ending with ``advice``, when the dataset has no labels to train it on.
    """
    own = run_data.read_images(config, log=lambda line: None)[0]
    if own.train_labels is None:
        raise ValueError(
            f"The default extractor is a classifier trained on the dataset's labels, and {config.dataset} has none; "
            f"{advice}."
        )
    return dataset_classifier(own.train, own.train_labels, own.validation, own.validation_labels, log=log)


def code_indices(model: keras.Model, images: np.ndarray | ImageStream) -> np.ndarray:
    """Returns the codebook index a VQ-VAE's encoder chooses at each position of each image's code grid."""
    images = images.images(len(images)) if isinstance(images, ImageStream) else images
    return np.concatenate([np.asarray(model.encoder(images[start : start + 500], training=False)["indices"])
                           for start in range(0, len(images), 500)])  # fmt: skip


def draw(
    trainer: Trainer,
    config: TrainConfig,
    sampler: str,
    count: int,
    *,
    components: int = 10,
    seed: int = 0,
    run_dir: RunDirectory | None = None,
) -> samplers.Drawn:
    """Returns ``count`` images drawn by ``sampler`` from the run's model.

    For gmm, a mixture is fitted to its training codes; a VQ-VAE's prior is
    the PixelCNN ``python -m aeloops.prior`` kept in ``run_dir``.
    """
    codes = training_codes(trainer, config) if sampler == "gmm" else None
    prior = _learned_prior(trainer.model, run_dir) if sampler == "prior" else None
    with trainer.averaged_weights():
        return samplers.sample(
            trainer.model, count, sampler=sampler, codes=codes, components=components, seed=seed, prior=prior
        )


def _learned_prior(model: keras.Model, run_dir: RunDirectory | None) -> keras.Model | None:
    """Returns a VQ-VAE run's PixelCNN prior, refusing in one line when it has not been trained."""
    if not decodes_codebook_entries(model) or run_dir is None:
        return None
    path = run_dir.path / "prior" / "prior.keras"
    if not path.is_file():
        raise ValueError(
            f"{run_dir.path} has no learned prior to draw a VQ-VAE's codes from; train it first: "
            f"python -m aeloops.prior {shlex.quote(str(run_dir.path))}"
        )
    return keras.saving.load_model(path, compile=False, safe_mode=True)


def measure_samples(
    trainer: Trainer,
    config: TrainConfig,
    images: np.ndarray,
    metrics: Sequence[str],
    *,
    extractor: str | None = None,
    layer: str | None = None,
    inception: str | None = None,
    sampler: str | None = None,
    count: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
    run_dir: RunDirectory | None = None,
) -> dict[str, Any]:
    """Returns ``metrics`` (``sample_quality.METRICS``) of images drawn from the run against ``images``, and how.

    Features come from ``extractor`` (a ``.keras`` file), from InceptionV3
    with the weights in ``inception``, or, by default, a
    classifier trained on the run's dataset's labels
    (``aeloops.evaluation.classifier``), whose held-out accuracy is reported
    beside the figures. Samples come from ``sampler``: the model's prior
    where it has one, else a mixture fitted to its training codes.
    """
    from aeloops.evaluation.sample_quality import inception_extractor, keras_extractor, sample_quality

    found: dict[str, Any] = {}
    if extractor is not None:
        features = keras_extractor(extractor, layer)
    elif inception is not None:
        features = inception_extractor(inception, tuple(config.image_shape))
    else:
        classifier = run_classifier(config, log, "give --extractor FILE.keras (any Keras model of images)")
        features = classifier_extractor(classifier)
        found["extractor_accuracy"] = classifier.accuracy
    chosen = sampler or samplers.default_sampler(trainer.model)
    drawn = draw(trainer, config, chosen, count or len(images), seed=seed, run_dir=run_dir)
    measured = sample_quality(images, drawn.images, features, seed=seed, metrics=tuple(metrics))
    return {**measured, "sampler": chosen, **found}
