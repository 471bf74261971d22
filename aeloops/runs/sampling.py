"""Draws from a restored run's model: the training codes a fitted mixture needs, read as the run read its data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from aeloops.data.stream import ImageStream
from aeloops.evaluation import samplers
from aeloops.runs import datasets as run_data
from aeloops.runs.config import TrainConfig
from aeloops.training.trainer import Trainer

__all__ = ["FIT_IMAGES", "draw", "measure_samples", "training_codes"]

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


def draw(
    trainer: Trainer, config: TrainConfig, sampler: str, count: int, *, components: int = 10, seed: int = 0
) -> samplers.Drawn:
    """Returns ``count`` images drawn by ``sampler`` from the run's model (fitting a mixture to its codes for gmm)."""
    codes = training_codes(trainer, config) if sampler == "gmm" else None
    with trainer.averaged_weights():
        return samplers.sample(trainer.model, count, sampler=sampler, codes=codes, components=components, seed=seed)


def measure_samples(
    trainer: Trainer,
    config: TrainConfig,
    images: np.ndarray,
    metrics: Sequence[str],
    *,
    extractor: str | None = None,
    layer: str | None = None,
    sampler: str | None = None,
    count: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Returns ``metrics`` (``sample_quality.METRICS``) of images drawn from the run against ``images``, and how.

    Features come from ``extractor`` (a ``.keras`` file) or, by default, a
    classifier trained on the run's dataset's labels
    (``aeloops.evaluation.classifier``), whose held-out accuracy is reported
    beside the figures. Samples come from ``sampler``: the model's prior
    where it has one, else a mixture fitted to its training codes.
    """
    from aeloops.evaluation.sample_quality import keras_extractor, sample_quality

    found: dict[str, Any] = {}
    if extractor is not None:
        features = keras_extractor(extractor, layer)
    else:
        from aeloops.evaluation.classifier import classifier_extractor, dataset_classifier

        own = run_data.read_images(config, log=lambda line: None)[0]
        if own.train_labels is None:
            raise ValueError(
                f"The default extractor is a classifier trained on the dataset's labels, and {config.dataset} has "
                "none; give --extractor FILE.keras (any Keras model of images)."
            )
        classifier = dataset_classifier(own.train, own.train_labels, own.validation, own.validation_labels, log=log)
        features = classifier_extractor(classifier)
        found["extractor_accuracy"] = classifier.accuracy
    chosen = sampler or ("prior" if hasattr(trainer.model, "sample") else "gmm")
    drawn = draw(trainer, config, chosen, count or len(images), seed=seed)
    measured = sample_quality(images, drawn.images, features, seed=seed, metrics=tuple(metrics))
    return {**measured, "sampler": chosen, **found}
