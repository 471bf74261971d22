"""The Wasserstein autoencoder with an MMD penalty (WAE-MMD, Tolstikhin et al. 2018).

A deterministic encoder whose codes, batch by batch, are pulled toward the
N(0, I) prior by the maximum mean discrepancy between the batch's codes and
as many prior draws, with the inverse multiquadratic kernel
k(x, y) = C / (C + |x - y|^2), C = 2 * latent_dim (the paper's choice for
a unit-variance prior), summed over scales 0.1 to 10 times that C as the
authors' code and pythae do: one scale gives codes far from the prior
almost no pull. The encoder returns ``"mmd"``: each example's share
of the batch's unbiased MMD estimate, so the objective's batch mean is the
estimate itself and the penalty is a ``LossTerm`` like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from aeloops.models.base import CODE, Autoencoder
from aeloops.models.dense import LinearCodeEncoder
from aeloops.models.generative import PriorSampling, mirrored_decoder
from aeloops.objectives.objective import LossTerm, Objective

__all__ = ["MMD", "WassersteinAutoencoder", "WassersteinEncoder", "imq_mmd_per_example", "wae_objective"]

MMD = "mmd"
# Multiples of the kernel's base scale C = 2 * latent_dim.
SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def _imq(left: tf.Tensor, right: tf.Tensor, base: tf.Tensor) -> tf.Tensor:
    """The inverse multiquadratic kernel, summed over ``SCALES``, between every row of ``left`` and of ``right``."""
    distances = tf.reduce_sum(tf.square(left[:, None, :] - right[None, :, :]), axis=-1)
    return tf.add_n([scale * base / (scale * base + distances) for scale in SCALES])


def imq_mmd_per_example(codes: tf.Tensor, prior: tf.Tensor) -> tf.Tensor:
    """Returns each example's share of the unbiased MMD^2 between ``codes`` and ``prior`` draws (equal counts).

    Their mean over the batch is the estimate: the within-codes and
    within-prior kernel means (diagonals left out) less twice the cross mean.
    """
    count = tf.cast(tf.shape(codes)[0], codes.dtype)
    scale = 2.0 * tf.cast(tf.shape(codes)[1], codes.dtype)
    off_diagonal = 1.0 - tf.eye(tf.shape(codes)[0], dtype=codes.dtype)
    within_codes = tf.reduce_sum(_imq(codes, codes, scale) * off_diagonal, axis=1) / (count - 1.0)
    within_prior = tf.reduce_sum(_imq(prior, prior, scale) * off_diagonal, axis=1) / (count - 1.0)
    across = tf.reduce_mean(_imq(codes, prior, scale), axis=1)
    return within_codes + within_prior - 2.0 * across


@keras.saving.register_keras_serializable(package="aeloops")
class WassersteinEncoder(LinearCodeEncoder):
    """Dense layers to a linear code; also returns ``"mmd"``, each example's share of the batch's MMD to the prior.

    Prior draws are fresh in training and the same at every evaluation.

    >>> encoder = WassersteinEncoder(hidden_units=(64,), latent_dim=8)
    >>> sorted(encoder(tf.zeros([4, 784]), training=True))
    ['code', 'hidden_1', 'mmd']
    """

    def __init__(
        self,
        hidden_units: Sequence[int] = (400,),
        latent_dim: int = 8,
        activation: str = "relu",
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(hidden_units, latent_dim, activation, **kwargs)
        self.seed = seed
        self.prior_seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        outputs = super().call(inputs, training=training)
        code = outputs[CODE]
        if training:
            prior = keras.random.normal(tf.shape(code), seed=self.prior_seed_generator)
        else:
            prior = tf.random.stateless_normal(tf.shape(code), seed=[0, 0])
        return {**outputs, MMD: imq_mmd_per_example(code, prior)}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="aeloops")
class WassersteinAutoencoder(PriorSampling, Autoencoder):
    """WAE-MMD: Dense 784-400 to an 8-D code (the paper's MNIST code size), 8-400-784 with a sigmoid output.

    >>> model = WassersteinAutoencoder()
    >>> model.count_params()
    635192
    """

    intermediate_outputs = (MMD,)

    def __init__(
        self,
        input_shape: Sequence[int] = (784,),
        hidden_units: Sequence[int] = (400,),
        latent_dim: int = 8,
        activation: str = "relu",
        seed: int | None = None,
        **kwargs: Any,
    ):
        input_shape, decoder = mirrored_decoder("WassersteinAutoencoder", input_shape, hidden_units, activation)
        super().__init__(
            encoder=WassersteinEncoder(hidden_units, latent_dim, activation, seed, name="encoder"),
            decoder=decoder,
            input_shape=input_shape,
            **kwargs,
        )

    def default_objective(self) -> Objective:
        """Returns ``wae_objective(self)``."""
        return wae_objective(self)


def wae_objective(model: Autoencoder, loss: str | None = None, weight: float = 10.0) -> Objective:
    """Returns the squared error summed over the pixels plus ``weight`` x MMD (the paper's lambda = 10)."""
    return Objective(
        [
            LossTerm("squared_error", output="reconstruction", loss=loss or "mse", reduction="sum"),
            LossTerm(MMD, output=MMD, loss="sum", target=None, weight=weight),
        ]
    )
