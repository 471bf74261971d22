"""The VampPrior VAE: its prior, the mixture of its pseudo-inputs' posteriors, in training, sampling and likelihood."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import logsumexp

from aeloops.evaluation import likelihood
from aeloops.evaluation.samplers import sample
from aeloops.models import registry
from aeloops.models.vampprior import VampPriorAutoencoder
from aeloops.training.trainer import Trainer


@pytest.fixture(scope="module")
def small():
    keras.utils.set_random_seed(0)
    return VampPriorAutoencoder(hidden_units=(32,), latent_dim=4, components=6, seed=1)


def mixture_log_density(model, codes):
    """log (1/K) sum_k N(z; m_k, v_k), in float64, the slow way."""
    means, log_variances = (np.asarray(value, np.float64) for value in model.components_posteriors())
    differences = np.asarray(codes, np.float64)[..., None, :] - means
    per_component = -0.5 * np.sum(differences**2 / np.exp(log_variances) + log_variances + np.log(2 * np.pi), axis=-1)
    return logsumexp(per_component, axis=-1) - np.log(len(means))


def test_the_prior_is_the_mixture_of_the_pseudo_inputs_posteriors(small):
    pseudo = small.pseudo_inputs().numpy()
    assert pseudo.shape == (6, 784) and pseudo.min() >= 0 and pseudo.max() <= 1
    encoded = small.encoder(pseudo, training=False)
    means, log_variances = small.components_posteriors()
    np.testing.assert_allclose(means, encoded["mean"], atol=1e-6)
    np.testing.assert_allclose(log_variances, encoded["log_variance"], atol=1e-6)
    codes = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(small.log_prior(tf.constant(codes)), mixture_log_density(small, codes), rtol=1e-5)


def test_the_kl_is_log_posterior_minus_log_prior_at_the_fixed_evaluation_draw(small):
    images = np.random.default_rng(1).random((4, 784), dtype=np.float32)
    outputs = small(images, training=False)
    mean, log_variance = np.asarray(outputs["mean"], np.float64), np.asarray(outputs["log_variance"], np.float64)
    noise = tf.random.stateless_normal(mean.shape, seed=[0, 0]).numpy()
    codes = mean + np.exp(0.5 * log_variance) * noise
    log_posterior = -0.5 * np.sum(noise**2 + log_variance + np.log(2 * np.pi), axis=-1)
    expected = log_posterior - mixture_log_density(small, codes)
    np.testing.assert_allclose(np.asarray(outputs["kl"])[:, 0], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(small(images, training=False)["kl"], outputs["kl"])  # The same draw each time.


def test_the_likelihood_weighs_samples_under_the_vampprior(small):
    images = (np.random.default_rng(2).random((2, 784)) > 0.5).astype(np.float32)
    noise = tf.random.stateless_normal([3, 2, 4], seed=[1, 2])
    weights = likelihood.log_weights(small, tf.constant(images), noise).numpy()
    encoded = small.encoder(images, training=False)
    mean, log_variance = np.asarray(encoded["mean"]), np.asarray(encoded["log_variance"])
    codes = mean + np.exp(0.5 * log_variance) * noise.numpy()
    logits = np.asarray(small.decoder(codes.reshape(6, 4))["logits"]).reshape(3, 2, 784)
    log_likelihood = -np.sum(np.maximum(logits, 0) - logits * images + np.log1p(np.exp(-np.abs(logits))), axis=-1)
    log_posterior = -0.5 * np.sum(noise.numpy() ** 2 + log_variance + np.log(2 * np.pi), axis=-1)
    expected = log_likelihood + mixture_log_density(small, codes) - log_posterior
    np.testing.assert_allclose(weights, expected, rtol=1e-4, atol=1e-3)


def test_prior_draws_come_from_the_components_and_decode(small):
    codes = small.sample_codes(6000, seed=0)
    means, log_variances = (np.asarray(value) for value in small.components_posteriors())
    # A uniform mixture: its mean is the components' mean, its variance theirs plus the spread of their means.
    np.testing.assert_allclose(codes.mean(axis=0), means.mean(axis=0), atol=0.1)
    variance = np.exp(log_variances).mean(axis=0) + means.var(axis=0)
    np.testing.assert_allclose(codes.var(axis=0), variance, rtol=0.1)
    drawn = sample(small, 5, sampler="prior", seed=3)
    np.testing.assert_allclose(drawn.codes, small.sample_codes(5, seed=3))
    np.testing.assert_allclose(drawn.images, np.asarray(small.decode(drawn.codes)), atol=1e-6)


def test_the_registered_vampprior_trains_its_pseudo_inputs_and_saves_them(mnist, tmp_path):
    from aeloops.data import to_model_inputs

    spec = registry.get("vampprior")
    keras.utils.set_random_seed(0)
    model = spec.build(hidden_units=[64], latent_dim=8, components=20)
    images = to_model_inputs(mnist.train_images[:512], (784,))
    before = model.pseudo_values.numpy().copy()
    trainer = Trainer(model, spec.objective(model), mode="graph", steps_per_loop=8)
    history = trainer.fit(images, epochs=3, batch_size=64, verbose=0)
    assert history["loss"][-1] < history["loss"][0] and all(value > 0 for value in history["kl"])
    assert not np.allclose(model.pseudo_values.numpy(), before)  # The prior learns.
    model.save(tmp_path / "vampprior.keras")
    again = keras.saving.load_model(tmp_path / "vampprior.keras")
    np.testing.assert_array_equal(again.pseudo_values.numpy(), model.pseudo_values.numpy())
    np.testing.assert_allclose(again(images[:4])["kl"], model(images[:4])["kl"], atol=1e-5)


def test_gated_layers_gate_a_linear_map_and_build_pythae_s_vampprior(tmp_path):
    from aeloops.models.dense import GatedDense

    layer = GatedDense(3)
    inputs = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    outputs = layer(inputs).numpy()
    (h_kernel, h_bias), (g_kernel, g_bias) = layer.linear.get_weights(), layer.gate.get_weights()
    expected = (inputs @ h_kernel + h_bias) / (1 + np.exp(-(inputs @ g_kernel + g_bias)))
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
    # pythae's vamp.py: GatedDense 784-300-300 to 40 and back, K = 500; 1,509,648 parameters less the 784 of a bias
    # its pseudo-inputs share.
    model = registry.get("vampprior").build(activation="gated")
    assert model.count_params() == 1_509_648 - 784
    assert all(isinstance(layer, GatedDense) for layer in model.encoder.hidden_layers + model.decoder.hidden_layers)
    model.save(tmp_path / "gated.keras")
    loaded = keras.saving.load_model(tmp_path / "gated.keras")
    images = np.random.default_rng(1).random((2, 784)).astype(np.float32)
    np.testing.assert_array_equal(loaded(images)["reconstruction"], model(images)["reconstruction"])
