"""Which Trainer trains which model: families whose step is their own, paired here, above both.

``models/`` knows nothing of training and ``training/`` nothing of the
model families, so the pairing lives with the run that builds both.
"""

from __future__ import annotations

import keras

from aeloops.models.adversarial import AdversarialAutoencoder
from aeloops.models.registry import ModelSpec
from aeloops.training.adversarial import AdversarialTrainer
from aeloops.training.trainer import Trainer

__all__ = ["PAIRS", "trainer_class"]

# Model families whose training needs a step of their own, and the Trainer with that step.
PAIRS: tuple[tuple[type[keras.Model], type[Trainer]], ...] = ((AdversarialAutoencoder, AdversarialTrainer),)


def trainer_class(spec: ModelSpec, model: keras.Model) -> type[Trainer]:
    """Returns the Trainer for ``model``: its spec's (a user's ModelSpec may name one), its family's, or Trainer."""
    if spec.trainer is not None:
        return spec.trainer()
    return next((trainer for family, trainer in PAIRS if isinstance(model, family)), Trainer)
