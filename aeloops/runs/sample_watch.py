"""How good a training run's samples are as it trains: FID and KID every few epochs, for TensorBoard (``--fid-every``).

The measure is ``evaluate --fid --kid``'s, at a smaller scale so that it
costs seconds: ``COUNT`` images drawn from the model's prior (else from a
mixture fitted to the codes of ``COUNT`` training images) against as many
held-out images, on the default extractor (a classifier of the dataset's
labels, trained once and kept in the user's cache). The draws are seeded by
the run's seed and the epoch, so an epoch's figure can be measured again from
its checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from aeloops.evaluation import samplers
from aeloops.evaluation.classifier import classifier_extractor
from aeloops.evaluation.sample_quality import sample_quality
from aeloops.models.quantized import decodes_codebook_entries
from aeloops.runs import datasets as run_data
from aeloops.runs.config import TrainConfig
from aeloops.runs.sampling import run_classifier
from aeloops.training.trainer import Trainer

__all__ = ["COUNT", "sample_scalars"]

# Images drawn, and held-out images they are measured against, at each measurement.
COUNT = 2000


def sample_scalars(
    trainer: Trainer, config: TrainConfig, datasets: run_data.Datasets, log: Callable[[str], None]
) -> Callable[[Trainer, int], dict[str, float]]:
    """Returns ``measure(trainer, epoch)``: the FID and KID of samples drawn at that epoch, with the default extractor.

    Raises:
      ValueError: when the run has no held-out images or its dataset no labels to train the extractor on.
    """
    if datasets.validation is None:
        raise ValueError("--fid-every measures samples against the held-out images, and this run has none; drop "
                         "--no-validation, or give --validation-split or --validation-data.")  # fmt: skip
    advice = "--fid-every needs it: measure after training instead (python -m aeloops.evaluate RUN --fid --extractor F)"
    extractor = classifier_extractor(run_classifier(config, log, advice))
    real = datasets.validation[:COUNT]
    if decodes_codebook_entries(trainer.model):
        raise ValueError(
            "--fid-every draws samples as the model trains, and a VQ-VAE draws only from the prior "
            "trained after it (python -m aeloops.prior); measure then: python -m aeloops.evaluate RUN --fid."
        )
    sampler = samplers.default_sampler(trainer.model)
    fitted = None if sampler == "prior" else _training_images(datasets)

    def measure(trainer: Trainer, epoch: int) -> dict[str, float]:
        with trainer.averaged_weights():
            codes = None if fitted is None else np.asarray(trainer.model.encode(fitted))
            drawn = samplers.sample(trainer.model, len(real), sampler=sampler, codes=codes, seed=config.seed + epoch)
        found = sample_quality(real, drawn.images, extractor, seed=config.seed, metrics=("fid", "kid"))
        return {"fid": found["fid"], "kid": found["kid"]}

    return measure


def _training_images(datasets: run_data.Datasets) -> np.ndarray:
    train = datasets.train
    return train.images(min(len(train), COUNT)) if hasattr(train, "images") else train[:COUNT]
