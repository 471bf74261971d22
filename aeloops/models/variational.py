"""Variational autoencoders: an encoder of a Gaussian posterior, sampled with the reparameterisation trick.

The model returns the posterior's ``"mean"`` and ``"log_variance"``, the
sampled ``"code"`` and ``"kl"``, the KL divergence from the unit Gaussian
prior per latent dimension, so the objective states the KL as a term of its
own: ``LossTerm("kl", output="kl", loss="sum", target=None, weight=beta)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from aeloops.models.base import CODE, Autoencoder, Encoder, reconstruction_term, validate_units
from aeloops.models.dense import dense_stack, run_stack
from aeloops.models.gaussian import PIXEL_NLL
from aeloops.models.generative import PriorSampling, mirrored_decoder
from aeloops.objectives.objective import LossTerm, Objective

__all__ = ["VariationalAutoencoder", "VariationalEncoder", "elbo_objective", "gaussian_code"]


def elbo_objective(model: Autoencoder, loss: str | None = None, beta: float = 1.0) -> Objective:
    """Returns the negative ELBO in nats per image: the reconstruction summed over pixels plus ``beta`` x KL.

    The KL divergence (the encoder's ``"kl"`` output) is summed over the
    latent dimensions; ``beta`` other than 1 makes it a beta-VAE's objective.
    A model with a Gaussian decoder likelihood (output ``"pixel_nll"``) is
    reconstructed by it, as ``"gaussian_nll"``, unless ``loss`` asks otherwise.
    """
    if loss is None and PIXEL_NLL in model.output_names():
        reconstruction = LossTerm("gaussian_nll", output=PIXEL_NLL, loss="sum", target=None)
    else:
        reconstruction = dataclasses.replace(reconstruction_term(model, loss), reduction="sum")
    return Objective(
        [
            reconstruction,
            LossTerm("kl", output="kl", loss="sum", target=None, weight=beta),
        ]
    )


def gaussian_code(
    mean: tf.Tensor,
    log_variance: tf.Tensor,
    training: bool | None,
    seed_generator: keras.random.SeedGenerator,
    log_variance_bound: float | None = None,
) -> dict[str, tf.Tensor]:
    """Returns a Gaussian posterior's outputs: its parameters, the code (a draw in training, else the mean) and KL.

    ``"kl"`` is the KL divergence from N(0, I) per latent dimension. With
    ``log_variance_bound`` b the log-variance is ``b * tanh(v / b)``: within
    (-b, b), smoothly (its gradient never vanishes as a clip's does), and
    within 1e-3 of ``v`` while ``|v| < b / 10``, so ``exp`` of it can no longer
    overflow to Inf and end a run (a VAE's commonest NaN).
    """
    if log_variance_bound is not None:
        log_variance = log_variance_bound * tf.tanh(log_variance / log_variance_bound)
    if training:
        code = mean + tf.exp(0.5 * log_variance) * keras.random.normal(tf.shape(mean), seed=seed_generator)
    else:
        code = mean
    kl = 0.5 * (tf.exp(log_variance) + tf.square(mean) - 1.0 - log_variance)
    return {"mean": mean, "log_variance": log_variance, CODE: code, "kl": kl}


@keras.saving.register_keras_serializable(package="aeloops")
class VariationalEncoder(Encoder):
    """Dense layers to a Gaussian posterior; samples ``"code"`` in training, its mean otherwise.

    >>> encoder = VariationalEncoder(hidden_units=(256,), latent_dim=2)
    >>> sorted(encoder(tf.zeros([3, 784]), training=True))
    ['code', 'hidden_1', 'kl', 'log_variance', 'mean']
    """

    def __init__(
        self,
        hidden_units: Sequence[int] = (256,),
        latent_dim: int = 2,
        activation: str = "relu",
        seed: int | None = None,
        log_variance_bound: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.log_variance_bound = checked_bound(log_variance_bound)
        self.hidden_units = validate_units("hidden_units", hidden_units, allow_empty=True)
        self.latent_dim = validate_units("latent_dim", [latent_dim], allow_empty=False)[0]
        self.activation = activation
        self.seed = seed
        self.hidden_layers = dense_stack(self.hidden_units, activation)
        self.mean_layer = keras.layers.Dense(self.latent_dim, dtype="float32", name="mean")
        self.log_variance_layer = keras.layers.Dense(self.latent_dim, dtype="float32", name="log_variance")
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        hidden, outputs = run_stack(self.hidden_layers, inputs)
        mean, log_variance = self.mean_layer(hidden), self.log_variance_layer(hidden)
        return {**outputs, **gaussian_code(mean, log_variance, training, self.seed_generator, self.log_variance_bound)}

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "hidden_units": list(self.hidden_units),
            "latent_dim": self.latent_dim,
            "activation": self.activation,
            "seed": self.seed,
            "log_variance_bound": self.log_variance_bound,
        }


def checked_bound(bound: float | None) -> float | None:
    """Returns ``log_variance_bound`` as a float (None: unbounded), refusing one that bounds nothing."""
    if bound is None:
        return None
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not 0 < bound < float("inf"):
        raise ValueError(f"log_variance_bound must be a positive number (e.g. 10), got {bound!r}.")
    return float(bound)


@keras.saving.register_keras_serializable(package="aeloops")
class VariationalAutoencoder(PriorSampling, Autoencoder):
    """The Keras blog's VAE: 784-256-(2 + 2) / 2-256-784 with a sigmoid output.

    ``"mean"`` and ``"log_variance"`` are outputs to look at: the ``"kl"``
    output already carries them into the objective.

    >>> model = VariationalAutoencoder()
    >>> model.count_params()
    404244
    >>> model.sample(5).shape   # decoded draws from the prior
    (5, 784)
    """

    # Outputs that are there to be looked at, not to feed a loss term of their own.
    intermediate_outputs = ("mean", "log_variance")

    def __init__(
        self,
        input_shape: Sequence[int] = (784,),
        hidden_units: Sequence[int] = (256,),
        latent_dim: int = 2,
        activation: str = "relu",
        seed: int | None = None,
        log_variance_bound: float | None = None,
        **kwargs: Any,
    ):
        input_shape, decoder = mirrored_decoder("VariationalAutoencoder", input_shape, hidden_units, activation)
        encoder = VariationalEncoder(hidden_units, latent_dim, activation, seed, log_variance_bound, name="encoder")
        super().__init__(
            encoder=encoder,
            decoder=decoder,
            input_shape=input_shape,
            **kwargs,
        )

    def default_objective(self) -> Objective:
        """Returns the negative ELBO in nats (``elbo_objective``), not a reconstruction alone."""
        return elbo_objective(self)

    def latent_map(self, side: int = 15, extent: float = 2.0) -> list[np.ndarray] | None:
        """Returns rows of decodings of a ``side`` x ``side`` grid of codes over [-extent, extent]^2, for a 2-D code.

        The Keras blog's "2-D manifold of digits"; None for other code sizes.
        """
        if self.encoder.latent_dim != 2:
            return None
        axis = np.linspace(-extent, extent, side, dtype=np.float32)
        return [np.asarray(self.decode(np.stack([np.full(side, y), axis], axis=1))) for y in axis[::-1]]
