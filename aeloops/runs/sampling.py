"""Draws from a restored run's model: the training codes a fitted mixture needs, read as the run read its data."""

from __future__ import annotations

import numpy as np

from aeloops.data.stream import ImageStream
from aeloops.evaluation import samplers
from aeloops.runs import datasets as run_data
from aeloops.runs.config import TrainConfig
from aeloops.training.trainer import Trainer

__all__ = ["FIT_IMAGES", "draw", "training_codes"]

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
