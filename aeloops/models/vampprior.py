"""The VampPrior VAE (Tomczak and Welling 2018): a prior that is the mixture of the posteriors of learned pseudo-inputs.

The N(0, I) prior of a VAE pulls every posterior toward one Gaussian; the
VampPrior is instead p(z) = (1/K) sum_k q(z | u_k), the encoder's own
posteriors at K learned pseudo-inputs u_k (images in [0, 1]). The KL term has
no closed form then, so the model reports its one-sample estimate,
log q(z|x) - log p(z) at the code it draws (at evaluation, at a fixed draw, as
the IWAE's bound does), and ``log_prior`` lets ``evaluation.likelihood``
weigh importance samples under it.

>>> model = VampPriorAutoencoder(components=20)
>>> model(tf.zeros([2, 784]))["kl"].shape
TensorShape([2, 1])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from aeloops.models.base import validate_units
from aeloops.models.variational import VariationalAutoencoder

__all__ = ["VampPriorAutoencoder"]

_LOG_2PI = math.log(2.0 * math.pi)


@keras.saving.register_keras_serializable(package="aeloops")
class VampPriorAutoencoder(VariationalAutoencoder):
    """A VAE with the VampPrior: Tomczak and Welling's MNIST model by default, 784-300-300 to 40-D, K = 500.

    >>> VampPriorAutoencoder().count_params()
    1080464
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (784,),
        hidden_units: Sequence[int] = (300, 300),
        latent_dim: int = 40,
        activation: str = "relu",
        components: int = 500,
        seed: int | None = None,
        log_variance_bound: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.components = validate_units("components", [components], allow_empty=False)[0]
        self.pseudo_seed = None if seed is None else seed + 3
        super().__init__(input_shape, hidden_units, latent_dim, activation, seed, log_variance_bound, **kwargs)

    def build_for_shape(self, example_shape: Sequence[int]) -> None:
        """Creates the K pseudo-inputs (before the first call, which reads them), then every other variable."""
        # The paper's start: near 0.05 (mostly dark pixels), with a little noise to tell them apart.
        initializer = keras.initializers.RandomNormal(0.05, 0.01, seed=self.pseudo_seed)
        self.pseudo_values = self.add_weight(
            shape=(self.components, *example_shape), initializer=initializer, name="pseudo_inputs"
        )
        super().build_for_shape(example_shape)

    def pseudo_inputs(self) -> tf.Tensor:
        """Returns the K learned pseudo-inputs, kept in [0, 1] (a hard tanh, as the paper's)."""
        return tf.clip_by_value(self.pseudo_values, 0.0, 1.0)

    def components_posteriors(self) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns the means and log-variances of the pseudo-inputs' posteriors: the prior's K components."""
        encoded = self.encoder(self.pseudo_inputs(), training=False)
        return encoded["mean"], encoded["log_variance"]

    def log_prior(self, codes: tf.Tensor) -> tf.Tensor:
        """Returns log p(z) under the VampPrior for codes of shape ``(..., latent_dim)``: shape ``(...)``."""
        means, log_variances = self.components_posteriors()
        precisions = tf.exp(-log_variances)  # (K, latent)
        flat = tf.reshape(codes, [-1, tf.shape(means)[-1]])
        # sum_d (z_d - m_kd)^2 / v_kd for every code and component as matrix products: no (codes, K, latent) tensor,
        # which for the likelihood's 20,000 importance samples at a time would be gigabytes.
        squared = (
            tf.matmul(tf.square(flat), precisions, transpose_b=True)
            - 2.0 * tf.matmul(flat, means * precisions, transpose_b=True)
            + tf.reduce_sum(tf.square(means) * precisions, axis=-1)
        )
        dimensions = tf.cast(tf.shape(means)[-1], squared.dtype)
        per_component = -0.5 * (squared + tf.reduce_sum(log_variances, axis=-1) + dimensions * _LOG_2PI)
        log_density = tf.reduce_logsumexp(per_component, axis=-1) - math.log(self.components)
        return tf.reshape(log_density, tf.shape(codes)[:-1])

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        outputs = super().call(inputs, training=training)
        mean, log_variance = outputs["mean"], outputs["log_variance"]
        if training:
            codes = outputs["code"]  # The draw the reconstruction was decoded from.
        else:  # A fixed draw, so validation curves move only with the weights (as the IWAE's bound).
            codes = mean + tf.exp(0.5 * log_variance) * tf.random.stateless_normal(tf.shape(mean), seed=[0, 0])
        noise = (codes - mean) * tf.exp(-0.5 * log_variance)
        log_posterior = -0.5 * tf.reduce_sum(tf.square(noise) + log_variance + _LOG_2PI, axis=-1)
        # One value an example (summed by the objective's "sum"), in place of the N(0, I) prior's per dimension.
        return {**outputs, "kl": (log_posterior - self.log_prior(codes))[:, None]}

    def sample_codes(self, count: int, seed: int | None = None) -> np.ndarray:
        """Returns ``count`` codes drawn from the VampPrior: a component at random, then its Gaussian."""
        rng = np.random.default_rng(seed)
        means, log_variances = (np.asarray(value) for value in self.components_posteriors())
        chosen = rng.integers(0, self.components, count)
        noise = rng.standard_normal((count, means.shape[-1]))
        return (means[chosen] + np.exp(0.5 * log_variances[chosen]) * noise).astype(np.float32)

    def constructor_arguments(self) -> dict[str, Any]:
        return {**super().constructor_arguments(), "components": self.components}
