"""The importance-weighted autoencoder (Burda et al. 2015): a VAE trained on the K-sample bound.

The model adds one output to a VAE's, ``"negative_bound"``: per example,
-log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x) over K draws from the posterior,
in nats (fresh draws in training, the same ones at every evaluation). Its
objective trains on that alone and logs the one-sample pieces (the summed
BCE and the KL) at weight 0, to be looked at. With K = 1 the
bound is the VAE's ELBO of one sample; it tightens as K grows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

from aeloops.models.gaussian import DequantizedGaussian
from aeloops.models.variational import VariationalAutoencoder, elbo_objective
from aeloops.objectives.objective import LossTerm, Objective

__all__ = ["ImportanceWeightedAutoencoder", "iwae_objective", "posterior_log_weights"]

NEGATIVE_BOUND = "negative_bound"
_LOG_2PI = math.log(2.0 * math.pi)


def posterior_log_weights(
    mean: tf.Tensor, log_variance: tf.Tensor, noise: tf.Tensor, decoder: keras.Model, inputs: tf.Tensor,
    training: bool = False, likelihood: DequantizedGaussian | None = None,
    log_prior: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> tf.Tensor:  # fmt: skip
    """Returns log p(x|z) + log p(z) - log q(z|x) for each draw ``mean + scale * noise``: ``(samples, batch)``.

    The weights of the IWAE bound, which trains on them here and measures the
    likelihood with them in ``evaluation.likelihood``: of Bernoulli logits, or
    with ``likelihood`` of a Gaussian density of ``inputs`` (dequantized).
    ``log_prior`` gives log p(z) for codes ``(..., latent)`` (the model's own
    prior, a VampPrior's say); by default N(0, I)'s.
    """
    codes = mean + tf.exp(0.5 * log_variance) * noise
    samples, batch = tf.shape(noise)[0], tf.shape(noise)[1]
    decoded = decoder(tf.reshape(codes, [samples * batch, -1]), training=training)
    flat_inputs = tf.reshape(tf.cast(inputs, tf.float32), [1, batch, -1])
    if likelihood is not None:  # A Gaussian density of the (dequantized) inputs, as models.gaussian defines it.
        means = tf.reshape(tf.cast(decoded["reconstruction"], tf.float32), [samples * batch, -1])
        targets = tf.reshape(tf.broadcast_to(flat_inputs, [samples, batch, tf.shape(means)[-1]]), tf.shape(means))
        log_likelihood = -tf.reshape(likelihood.negative_log_density(targets, means), [samples, batch])
    else:
        logits = tf.reshape(tf.cast(decoded["logits"], tf.float32), [samples, batch, -1])
        targets = tf.broadcast_to(flat_inputs, tf.shape(logits))
        log_likelihood = -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits), axis=-1)
    prior = -0.5 * tf.reduce_sum(tf.square(codes) + _LOG_2PI, axis=-1) if log_prior is None else log_prior(codes)
    log_posterior = -0.5 * tf.reduce_sum(tf.square(noise) + log_variance + _LOG_2PI, axis=-1)
    return log_likelihood + prior - log_posterior


@keras.saving.register_keras_serializable(package="aeloops")
class ImportanceWeightedAutoencoder(VariationalAutoencoder):
    """IWAE: Burda et al.'s one-stochastic-layer MNIST model by default, 784-200-200 (tanh) to 50, K = 50.

    >>> model = ImportanceWeightedAutoencoder(samples=5)
    >>> model.count_params()
    425284
    >>> model(tf.zeros([2, 784]), training=True)["negative_bound"].shape
    TensorShape([2])
    """

    intermediate_outputs = (*VariationalAutoencoder.intermediate_outputs, NEGATIVE_BOUND)

    def __init__(
        self,
        input_shape: Sequence[int] = (784,),
        hidden_units: Sequence[int] = (200, 200),
        latent_dim: int = 50,
        activation: str = "tanh",
        samples: int = 50,
        seed: int | None = None,
        log_variance_bound: float | None = None,
        **kwargs: Any,
    ):
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}.")
        self.samples = samples
        # Created before the layers are built: the draws of every call come from it.
        self.bound_seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 1)
        super().__init__(input_shape, hidden_units, latent_dim, activation, seed, log_variance_bound, **kwargs)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        outputs = super().call(inputs, training=training)
        mean, log_variance = outputs["mean"], outputs["log_variance"]
        shape = tf.concat([[self.samples], tf.shape(mean)], axis=0)
        if training:
            noise = keras.random.normal(shape, seed=self.bound_seed_generator, dtype=mean.dtype)
        else:
            # The same draws at every evaluation: validation curves and anomaly scores then move
            # only with the weights, and a served model scores as the live one does.
            noise = tf.random.stateless_normal(shape, seed=[0, 0], dtype=mean.dtype)
        weights = posterior_log_weights(mean, log_variance, noise, self.decoder, inputs, training=training)
        bound = tf.reduce_logsumexp(weights, axis=0) - tf.math.log(tf.cast(self.samples, weights.dtype))
        return {**outputs, NEGATIVE_BOUND: -bound}

    def default_objective(self) -> Objective:
        """Returns ``iwae_objective(self)``."""
        return iwae_objective(self)

    def constructor_arguments(self) -> dict[str, Any]:
        return {**super().constructor_arguments(), "samples": self.samples}


def iwae_objective(model: ImportanceWeightedAutoencoder, loss: str | None = None) -> Objective:
    """Returns the negative K-sample bound as the loss, with the one-sample BCE and KL logged at weight 0."""
    pieces = [term for term in elbo_objective(model, loss).terms]
    return Objective(
        [
            LossTerm("iwae", output=NEGATIVE_BOUND, loss="sum", target=None),
            *(LossTerm(term.name, term.output, term.loss, term.target, 0.0, term.reduction) for term in pieces),
        ]
    )
