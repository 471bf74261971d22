"""A convolutional VAE at the scale colour-image papers use: the beta-VAE architecture (Burgess et al. 2018).

Four 4x4 convolutions with stride 2 (32, 32, 64, 64 filters) and a dense
layer of 256 units to a Gaussian code; the decoder mirrors them with
transposed convolutions. Built for any height, width and channels: 64x64
RGB as in the beta-VAE and DCGAN papers, 32x32 for CIFAR-10, 28x28 grey
for MNIST (the decoder's output is cropped where strides overshoot).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from aeloops.models.base import Autoencoder, Decoder, Encoder, crop_to, output_dict, validate_units
from aeloops.models.gaussian import LIKELIHOODS, PIXEL_NLL, DequantizedGaussian
from aeloops.models.generative import PriorSampling
from aeloops.models.variational import checked_bound, elbo_objective, gaussian_code
from aeloops.objectives.objective import Objective

__all__ = ["ConvVariationalAutoencoder", "ConvVariationalDecoder", "ConvVariationalEncoder"]


def _convolutions(filters: Sequence[int], transposed: bool, activation: str | None = "relu") -> list[keras.Layer]:
    layer = keras.layers.Conv2DTranspose if transposed else keras.layers.Conv2D
    kind = "transposed" if transposed else "conv"
    return [
        layer(count, 4, strides=2, padding="same", activation=activation, name=f"{kind}_{index + 1}")
        for index, count in enumerate(filters)
    ]


@keras.saving.register_keras_serializable(package="aeloops")
class ConvVariationalEncoder(Encoder):
    """Strided 4x4 convolutions, a dense layer, and a Gaussian posterior over a flat code.

    >>> encoder = ConvVariationalEncoder(latent_dim=10)
    >>> encoder.encode(tf.zeros([2, 64, 64, 3])).shape
    TensorShape([2, 10])
    """

    def __init__(
        self,
        filters: Sequence[int] = (32, 32, 64, 64),
        dense_units: int = 256,
        latent_dim: int = 10,
        activation: str = "relu",
        seed: int | None = None,
        log_variance_bound: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.log_variance_bound = checked_bound(log_variance_bound)
        self.filters = validate_units("filters", filters, allow_empty=False)
        self.dense_units = validate_units("dense_units", [dense_units], allow_empty=False)[0]
        self.latent_dim = validate_units("latent_dim", [latent_dim], allow_empty=False)[0]
        self.activation = activation
        self.seed = seed
        self.convolutions = _convolutions(self.filters, transposed=False, activation=activation)
        self.flatten = keras.layers.Flatten(name="flatten")
        self.dense = keras.layers.Dense(self.dense_units, activation=activation, name="dense")
        self.mean_layer = keras.layers.Dense(self.latent_dim, dtype="float32", name="mean")
        self.log_variance_layer = keras.layers.Dense(self.latent_dim, dtype="float32", name="log_variance")
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        hidden = inputs
        for convolution in self.convolutions:
            hidden = convolution(hidden)
        hidden = self.dense(self.flatten(hidden))
        mean, log_variance = self.mean_layer(hidden), self.log_variance_layer(hidden)
        code = gaussian_code(mean, log_variance, training, self.seed_generator, self.log_variance_bound)
        return {"hidden_1": hidden, **code}

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": list(self.filters),
            "dense_units": self.dense_units,
            "latent_dim": self.latent_dim,
            "activation": self.activation,
            "seed": self.seed,
            "log_variance_bound": self.log_variance_bound,
        }


@keras.saving.register_keras_serializable(package="aeloops")
class ConvVariationalDecoder(Decoder):
    """A dense layer to a small grid, then 4x4 transposed convolutions with stride 2 up to ``output_shape``.

    >>> ConvVariationalDecoder(output_shape=(64, 64, 3)).decode(tf.zeros([2, 10])).shape
    TensorShape([2, 64, 64, 3])
    """

    def __init__(
        self,
        output_shape: Sequence[int] = (64, 64, 3),
        filters: Sequence[int] = (64, 32, 32),
        dense_units: int = 256,
        activation: str = "relu",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.target_shape = validate_units("output_shape", output_shape, allow_empty=False)
        if len(self.target_shape) != 3:
            raise ValueError(f"output_shape must be (height, width, channels), got {output_shape!r}.")
        self.filters = validate_units("filters", filters, allow_empty=False)
        self.dense_units = validate_units("dense_units", [dense_units], allow_empty=False)[0]
        self.activation = activation
        # The grid the first transposed convolution starts from: the output's size halved once per layer.
        layers = len(self.filters) + 1
        self.grid = tuple(math.ceil(side / 2**layers) for side in self.target_shape[:2])
        self.dense = keras.layers.Dense(self.dense_units, activation=activation, name="dense")
        self.to_grid = keras.layers.Dense(self.grid[0] * self.grid[1] * self.filters[0], activation=activation,
                                          name="to_grid")  # fmt: skip
        self.reshape = keras.layers.Reshape((*self.grid, self.filters[0]), name="reshape")
        self.transposed = _convolutions(self.filters, transposed=True, activation=activation)
        self.output_layer = keras.layers.Conv2DTranspose(
            self.target_shape[-1], 4, strides=2, padding="same", dtype="float32", name="output"
        )

    def call(self, code: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        hidden = self.reshape(self.to_grid(self.dense(code)))
        for layer in self.transposed:
            hidden = layer(hidden)
        return output_dict(crop_to(self.output_layer(hidden), self.target_shape[:2]), "sigmoid")

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "output_shape": list(self.target_shape),
            "filters": list(self.filters),
            "dense_units": self.dense_units,
            "activation": self.activation,
        }


@keras.saving.register_keras_serializable(package="aeloops")
class ConvVariationalAutoencoder(PriorSampling, Autoencoder):
    """The beta-VAE paper's convolutional VAE, trained on the negative ELBO in nats.

    ``beta`` weights the KL term (1: a plain VAE). ``likelihood`` is the
    decoder's: ``"bernoulli"`` for binary pixels, or ``"gaussian"`` for 8-bit
    grey or colour images (``models.gaussian``: one learned scale, dequantized
    pixels), whose likelihood ``evaluate`` reports in bits per dimension as
    colour-image papers do; it adds the output ``"pixel_nll"``.

    >>> model = ConvVariationalAutoencoder((64, 64, 3), latent_dim=10)
    >>> model.count_params()
    766295
    >>> model.sample(2).shape
    (2, 64, 64, 3)
    """

    intermediate_outputs = ("mean", "log_variance")

    def __init__(
        self,
        input_shape: Sequence[int] = (64, 64, 3),
        filters: Sequence[int] = (32, 32, 64, 64),
        dense_units: int = 256,
        latent_dim: int = 10,
        beta: float = 1.0,
        activation: str = "relu",
        seed: int | None = None,
        likelihood: str = "bernoulli",
        log_variance_bound: float | None = None,
        **kwargs: Any,
    ):
        input_shape = tuple(int(dim) for dim in input_shape)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}.")
        self.likelihood = likelihood
        # Created before the layers are built, as the encoder's generator is; None for Bernoulli pixels.
        self.pixel_likelihood = (
            DequantizedGaussian(seed=None if seed is None else seed + 1, name="pixel_likelihood")
            if likelihood == "gaussian" else None
        )  # fmt: skip
        if len(input_shape) != 3:
            raise ValueError(
                f"ConvVariationalAutoencoder needs input_shape (height, width, channels), got {input_shape}."
            )
        self.beta = float(beta)
        super().__init__(
            encoder=ConvVariationalEncoder(
                filters, dense_units, latent_dim, activation, seed, log_variance_bound, name="encoder"
            ),
            decoder=ConvVariationalDecoder(input_shape, tuple(reversed(tuple(filters)))[1:], dense_units, activation,
                                           name="decoder"),  # fmt: skip
            input_shape=input_shape,
            **kwargs,
        )

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        outputs = super().call(inputs, training=training)
        if self.pixel_likelihood is not None:
            outputs[PIXEL_NLL] = self.pixel_likelihood(inputs, outputs["reconstruction"], training=training)
        return outputs

    def default_objective(self) -> Objective:
        """Returns the negative ELBO in nats, the KL weighted by ``beta``."""
        return elbo_objective(self, beta=self.beta)

    def constructor_arguments(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.example_shape),
            "filters": list(self.encoder.filters),
            "dense_units": self.encoder.dense_units,
            "latent_dim": self.encoder.latent_dim,
            "beta": self.beta,
            "activation": self.encoder.activation,
            "seed": self.encoder.seed,
            "likelihood": self.likelihood,
            "log_variance_bound": self.encoder.log_variance_bound,
        }
