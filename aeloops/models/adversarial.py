"""The adversarial autoencoder's model (Makhzani et al. 2015): a dense autoencoder with a linear code.

Its training, a discriminator against the N(0, I) prior, is the trainer's:
``aeloops.training.adversarial.AdversarialTrainer``, which the CLI's ``aae`` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from aeloops.models.base import Autoencoder
from aeloops.models.dense import LinearCodeEncoder
from aeloops.models.generative import PriorSampling, mirrored_decoder

__all__ = ["AdversarialAutoencoder"]


@keras.saving.register_keras_serializable(package="aeloops")
class AdversarialAutoencoder(PriorSampling, Autoencoder):
    """Makhzani et al.'s MNIST autoencoder: Dense 784-1000-1000 to a linear 8-D code, mirrored, sigmoid output.

    >>> AdversarialAutoencoder().count_params()
    3588792
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (784,),
        hidden_units: Sequence[int] = (1000, 1000),
        latent_dim: int = 8,
        activation: str = "relu",
        **kwargs: Any,
    ):
        input_shape, decoder = mirrored_decoder("AdversarialAutoencoder", input_shape, hidden_units, activation)
        super().__init__(
            encoder=LinearCodeEncoder(hidden_units, latent_dim, activation, name="encoder"),
            decoder=decoder,
            input_shape=input_shape,
            **kwargs,
        )
