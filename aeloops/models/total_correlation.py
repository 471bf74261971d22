"""The beta-TC-VAE (Chen et al. 2018): the KL split into mutual information, total correlation and per-dimension KL.

The encoder estimates, per example and batch by batch, with minibatch-weighted
sampling (the paper's estimator of the aggregate posterior q(z) from a batch
of B codes out of a dataset of N examples):

- ``"mutual_information"``: log q(z|x) - log q(z), the index-code mutual information;
- ``"total_correlation"``: log q(z) - sum_d log q(z_d), the dependence between code dimensions;
- ``"dimension_kl"``: sum_d log q(z_d) - log p(z), each dimension's KL to the prior.

Their sum is the one-sample estimate of KL(q(z|x) || p(z)), so the objective
``reconstruction + MI + beta * TC + dimension KL`` is a VAE's with only the
total correlation weighted, each term logged on its own. ``dataset_size``
enters the estimates only as the constant log(N * B); a wrong N shifts the
logged MI and TC, not the gradients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from aeloops.models.base import CODE, Autoencoder
from aeloops.models.generative import mirrored_decoder
from aeloops.models.variational import VariationalAutoencoder, VariationalEncoder, elbo_objective
from aeloops.objectives.objective import LossTerm, Objective

__all__ = ["TotalCorrelationEncoder", "TotalCorrelationVAE", "minibatch_weighted_terms", "tc_objective"]

_LOG_2PI = math.log(2.0 * math.pi)
TERMS = ("mutual_information", "total_correlation", "dimension_kl")


def minibatch_weighted_terms(
    code: tf.Tensor, mean: tf.Tensor, log_variance: tf.Tensor, dataset_size: int
) -> dict[str, tf.Tensor]:
    """Returns the per-example MI, TC and dimension-wise KL estimates (minibatch-weighted sampling)."""
    # log q(z_i,d | x_j) for every pair of examples (i, j) and dimension d: (batch, batch, latent).
    difference = code[:, None, :] - mean[None, :, :]
    log_density = -0.5 * (_LOG_2PI + log_variance[None, :, :] + tf.square(difference) * tf.exp(-log_variance[None]))
    batch = tf.cast(tf.shape(code)[0], code.dtype)
    log_nm = tf.math.log(float(dataset_size) * batch)
    log_q_z = tf.reduce_logsumexp(tf.reduce_sum(log_density, axis=2), axis=1) - log_nm
    log_product = tf.reduce_sum(tf.reduce_logsumexp(log_density, axis=1) - log_nm, axis=1)
    log_q_z_given_x = tf.reduce_sum(tf.linalg.diag_part(tf.transpose(log_density, [2, 0, 1])), axis=0)
    log_prior = -0.5 * tf.reduce_sum(tf.square(code) + _LOG_2PI, axis=1)
    return {
        "mutual_information": log_q_z_given_x - log_q_z,
        "total_correlation": log_q_z - log_product,
        "dimension_kl": log_product - log_prior,
    }


@keras.saving.register_keras_serializable(package="aeloops")
class TotalCorrelationEncoder(VariationalEncoder):
    """A ``VariationalEncoder`` that also returns the three parts of its KL (see the module docstring).

    >>> encoder = TotalCorrelationEncoder(hidden_units=(64,), latent_dim=4)
    >>> sorted(encoder(tf.zeros([8, 784]), training=True))[:3]
    ['code', 'dimension_kl', 'hidden_1']
    """

    def __init__(self, *args: Any, dataset_size: int = 60000, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.dataset_size = dataset_size

    @property
    def dataset_size(self) -> int:
        """The training examples the estimator's minibatch weights assume."""
        return self._dataset_size

    @dataset_size.setter
    def dataset_size(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"dataset_size must be a positive integer, got {value!r}.")
        self._dataset_size = value

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        outputs = super().call(inputs, training=training)
        terms = minibatch_weighted_terms(outputs[CODE], outputs["mean"], outputs["log_variance"], self.dataset_size)
        return {**outputs, **terms}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dataset_size": self.dataset_size}


@keras.saving.register_keras_serializable(package="aeloops")
class TotalCorrelationVAE(VariationalAutoencoder):
    """beta-TC-VAE: Dense 784-400 to a 10-D Gaussian, 10-400-784 (sigmoid); beta = 6 on the total correlation.

    >>> model = TotalCorrelationVAE()
    >>> model.count_params()
    640804
    """

    intermediate_outputs = (*VariationalAutoencoder.intermediate_outputs, "kl")

    def __init__(
        self,
        input_shape: Sequence[int] = (784,),
        hidden_units: Sequence[int] = (400,),
        latent_dim: int = 10,
        activation: str = "relu",
        seed: int | None = None,
        dataset_size: int = 60000,
        beta: float = 6.0,
        log_variance_bound: float | None = None,
        **kwargs: Any,
    ):
        input_shape, decoder = mirrored_decoder("TotalCorrelationVAE", input_shape, hidden_units, activation)
        self.beta = float(beta)
        encoder = TotalCorrelationEncoder(
            hidden_units, latent_dim, activation, seed, log_variance_bound, dataset_size=dataset_size, name="encoder"
        )
        # The VAE's layout with this encoder: Autoencoder's constructor, not VariationalAutoencoder's.
        Autoencoder.__init__(self, encoder=encoder, decoder=decoder, input_shape=input_shape, **kwargs)

    @property
    def dataset_size(self) -> int:
        """The training examples the estimator's minibatch weights assume (the CLI sets the run's count)."""
        return self.encoder.dataset_size

    @dataset_size.setter
    def dataset_size(self, value: int) -> None:
        self.encoder.dataset_size = value  # Checked there.

    def default_objective(self) -> Objective:
        """Returns ``tc_objective(self)``."""
        return tc_objective(self, beta=self.beta)

    def constructor_arguments(self) -> dict[str, Any]:
        return {
            **super().constructor_arguments(),
            "dataset_size": self.encoder.dataset_size,
            "beta": self.beta,
        }


def tc_objective(model: Autoencoder, loss: str | None = None, beta: float = 6.0) -> Objective:
    """Returns summed reconstruction + MI + ``beta`` x TC + dimension-wise KL; the analytic KL logged at weight 0."""
    reconstruction, kl = elbo_objective(model, loss).terms
    weights = {"mutual_information": 1.0, "total_correlation": beta, "dimension_kl": 1.0}
    return Objective(
        [
            reconstruction,
            *(LossTerm(name, output=name, loss="sum", target=None, weight=weights[name]) for name in TERMS),
            LossTerm(kl.name, kl.output, kl.loss, kl.target, 0.0),
        ]
    )
