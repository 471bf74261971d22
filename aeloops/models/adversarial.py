"""The adversarial autoencoder's model (Makhzani et al. 2015): a dense autoencoder with a linear code.

Its training, a discriminator against the N(0, I) prior, is the trainer's:
``aeloops.adversarial.AdversarialTrainer``, which the CLI's ``aae`` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from aeloops.models.base import CODE, Autoencoder, Encoder, validate_units
from aeloops.models.dense import DenseDecoder
from aeloops.models.variational import traversal_rows

__all__ = ["AdversarialAutoencoder", "LinearCodeEncoder"]


@keras.saving.register_keras_serializable(package="aeloops")
class LinearCodeEncoder(Encoder):
    """Dense layers to a linear code, which can take any value a Gaussian prior draws.

    >>> LinearCodeEncoder(hidden_units=(64,), latent_dim=8).encode(tf.zeros([2, 784])).shape
    TensorShape([2, 8])
    """

    def __init__(self, hidden_units: Sequence[int] = (1000, 1000), latent_dim: int = 8, activation: str = "relu",
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.hidden_units = validate_units("hidden_units", hidden_units, allow_empty=True)
        self.latent_dim = validate_units("latent_dim", [latent_dim], allow_empty=False)[0]
        self.activation = activation
        self.hidden_layers = [
            keras.layers.Dense(units, activation=activation, name=f"dense_{index + 1}")
            for index, units in enumerate(self.hidden_units)
        ]
        self.code_layer = keras.layers.Dense(self.latent_dim, dtype="float32", name="code")

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        outputs = {}
        hidden = inputs
        for index, layer in enumerate(self.hidden_layers):
            hidden = layer(hidden)
            outputs[f"hidden_{index + 1}"] = hidden
        return {**outputs, CODE: self.code_layer(hidden)}

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "hidden_units": list(self.hidden_units),
            "latent_dim": self.latent_dim,
            "activation": self.activation,
        }


@keras.saving.register_keras_serializable(package="aeloops")
class AdversarialAutoencoder(Autoencoder):
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
        input_shape = tuple(input_shape)
        if len(input_shape) != 1:
            raise ValueError(f"AdversarialAutoencoder takes flat inputs, input_shape (features,); got {input_shape}.")
        super().__init__(
            encoder=LinearCodeEncoder(hidden_units, latent_dim, activation, name="encoder"),
            decoder=DenseDecoder(tuple(reversed(tuple(hidden_units))), input_shape[-1], activation, name="decoder"),
            input_shape=input_shape,
            **kwargs,
        )

    def sample(self, count: int, seed: int | None = None) -> np.ndarray:
        """Returns ``count`` reconstructions decoded from codes drawn from the N(0, I) prior."""
        codes = np.random.default_rng(seed).standard_normal((count, self.encoder.latent_dim)).astype(np.float32)
        return np.asarray(self.decode(codes))

    def latent_traversal(self, dimensions: int = 10, steps: int = 9, extent: float = 3.0) -> list[np.ndarray]:
        """Returns one row of decodings per code dimension swept over [-extent, extent] (``traversal_rows``)."""
        return traversal_rows(self, self.encoder.latent_dim, dimensions, steps, extent)

    def constructor_arguments(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.example_shape),
            "hidden_units": list(self.encoder.hidden_units),
            "latent_dim": self.encoder.latent_dim,
            "activation": self.encoder.activation,
        }
