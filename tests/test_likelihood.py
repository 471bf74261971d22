"""The importance-sampled NLL: the formula, the bound's behaviour in K, chunking, and refusals."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from aeloops.data import to_model_inputs
from aeloops.evaluation import likelihood
from aeloops.models import ConvVariationalAutoencoder, DenseAutoencoder, VariationalAutoencoder
from aeloops.models.gaussian import DequantizedGaussian, bits_per_dimension, dequantize


@pytest.fixture(scope="module")
def binary_images(small_test_images):
    return (to_model_inputs(small_test_images[:60], (784,)) > 0.5).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return VariationalAutoencoder((784,), (32,), latent_dim=4)


def test_log_weights_follow_the_formula(model, binary_images):
    images = binary_images[:3]
    noise = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    weights = likelihood.log_weights(model, tf.constant(images), tf.constant(noise)).numpy()
    encoded = model.encoder(images, training=False)
    mean, log_variance = encoded["mean"].numpy().astype(np.float64), encoded["log_variance"].numpy()
    codes = mean + np.exp(0.5 * log_variance) * noise
    logits = model.decoder(codes.reshape(15, 4).astype(np.float32))["logits"].numpy().reshape(5, 3, 784)
    log_likelihood = np.sum(images * -np.logaddexp(0, -logits) + (1 - images) * -np.logaddexp(0, logits), axis=-1)
    log_prior = np.sum(-0.5 * codes**2 - 0.5 * math.log(2 * math.pi), axis=-1)
    log_posterior = np.sum(-0.5 * noise**2 - 0.5 * log_variance - 0.5 * math.log(2 * math.pi), axis=-1)
    np.testing.assert_allclose(weights, log_likelihood + log_prior - log_posterior, rtol=1e-4)


def test_one_sample_gives_the_negative_elbo_and_more_samples_lower_the_bound(model, binary_images):
    one = likelihood.negative_log_likelihood(model, binary_images, samples=1)
    assert one["nll"] == pytest.approx(one["negative_elbo"], rel=1e-6)
    results = [likelihood.negative_log_likelihood(model, binary_images, samples=k) for k in (1, 10, 100, 1000)]
    nlls = [result["nll"] for result in results]
    assert nlls == sorted(nlls, reverse=True) and nlls[0] - nlls[-1] > 0.5  # Measured: 0.88 nats, untrained.
    # The ELBO estimated from more samples stays put; the bound falls below it.
    elbos = [result["negative_elbo"] for result in results]
    assert max(elbos) - min(elbos) < 0.05 * elbos[0] and all(nll <= elbo for nll, elbo in zip(nlls, elbos))
    assert results[-1]["samples"] == 1000 and results[-1]["examples"] == 60 and results[-1]["seed"] == 0


def test_seeded_repeatable_and_batched_alike(model, binary_images):
    first = likelihood.negative_log_likelihood(model, binary_images, samples=20, seed=3)
    traced = likelihood.tracing_count(model)
    assert likelihood.negative_log_likelihood(model, binary_images, samples=20, seed=3) == first
    assert likelihood.negative_log_likelihood(model, binary_images, samples=20, seed=4)["nll"] != first["nll"]
    # Another seed is a tensor argument: the compiled function is reused, not traced again.
    assert likelihood.tracing_count(model) == traced


@pytest.mark.parametrize("jit_compile", [False, True])
def test_chunks_that_overrun_k_count_only_k_samples(model, binary_images, monkeypatch, jit_compile):
    # Chunks of 3 samples for a batch of 2, K = 7: the third chunk's last two samples must not count.
    monkeypatch.setattr(likelihood, "_CHUNK_ROWS", 6)
    images = binary_images[:2]
    result = likelihood.negative_log_likelihood(model, images, samples=7, batch_size=2, seed=5, jit_compile=jit_compile)
    # The same draws as the bound's: XLA's generator gives other numbers than graph mode's for a seed.
    draw = tf.function(lambda seed: tf.random.stateless_normal([3, 2, 4], seed=seed), jit_compile=jit_compile)
    noise = tf.concat([draw(tf.constant([5, chunk], tf.int64)) for chunk in range(3)], axis=0)[:7]
    weights = likelihood.log_weights(model, tf.constant(images), noise).numpy().astype(np.float64)
    bound = np.log(np.mean(np.exp(weights - weights.max(axis=0)), axis=0)) + weights.max(axis=0)
    assert result["nll"] == pytest.approx(-bound.mean(), rel=1e-5)
    assert result["negative_elbo"] == pytest.approx(-weights.mean(), rel=1e-5)


def test_models_without_a_gaussian_encoder_or_bernoulli_logits_are_refused(binary_images):
    with pytest.raises(ValueError, match="Gaussian posterior .* has no 'mean'"):
        likelihood.negative_log_likelihood(DenseAutoencoder((784,), (8,), ()), binary_images)
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        likelihood.negative_log_likelihood(VariationalAutoencoder(), binary_images, samples=0)


@pytest.fixture(scope="module")
def colour_model():
    keras.utils.set_random_seed(0)
    return ConvVariationalAutoencoder((16, 16, 3), filters=(4, 8), dense_units=8, latent_dim=3, likelihood="gaussian")


def test_dequantized_values_fall_in_their_own_8_bit_bin():
    values = np.arange(256)
    noise = np.random.default_rng(0).uniform(size=256)
    dequantized = dequantize(tf.constant(values / 255.0), tf.constant(noise)).numpy()
    np.testing.assert_array_equal(np.floor(dequantized * 256), values)
    np.testing.assert_allclose(dequantized, (values + noise) / 256, atol=1e-6)


def test_the_gaussian_density_is_the_formula_and_its_best_scale_is_the_error():
    layer = DequantizedGaussian()
    targets = np.random.default_rng(1).uniform(size=(2, 12)).astype(np.float32)
    means = np.clip(targets + np.random.default_rng(2).normal(0, 0.05, size=(2, 12)), 0, 1).astype(np.float32)
    scale = math.exp(float(layer.log_scale))
    expected = np.sum(0.5 * ((targets - means) / scale) ** 2 + math.log(scale) + 0.5 * math.log(2 * math.pi), axis=1)
    np.testing.assert_allclose(layer.negative_log_density(targets, means).numpy(), expected, rtol=1e-5)
    # Over the whole batch, -log p is lowest where sigma is the root-mean-square error, as for any Gaussian.
    best = math.sqrt(np.mean((targets - means) ** 2))
    totals = []
    for sigma in (best / 1.2, best, best * 1.2):
        layer.log_scale_change.assign((math.log(sigma) - math.log(layer.initial_scale)) / 10.0)
        totals.append(float(tf.reduce_sum(layer.negative_log_density(targets, means))))
    assert totals[1] < min(totals[0], totals[2]), totals


def test_gaussian_log_weights_follow_the_formula_on_dequantized_colour_images(colour_model):
    images = np.random.default_rng(3).integers(0, 256, size=(2, 16, 16, 3)).astype(np.float32) / 255
    targets = dequantize(tf.constant(images), tf.fill(images.shape, 0.25)).numpy()
    noise = np.random.default_rng(4).standard_normal((4, 2, 3)).astype(np.float32)
    weights = likelihood.log_weights(colour_model, tf.constant(images), tf.constant(noise), tf.constant(targets))
    encoded = colour_model.encoder(images, training=False)
    mean, log_variance = encoded["mean"].numpy().astype(np.float64), encoded["log_variance"].numpy()
    codes = mean + np.exp(0.5 * log_variance) * noise
    means = colour_model.decoder(codes.reshape(8, 3).astype(np.float32))["reconstruction"].numpy().reshape(4, 2, -1)
    scale = math.exp(float(colour_model.pixel_likelihood.log_scale))
    log_likelihood = np.sum(
        -0.5 * ((targets.reshape(1, 2, -1) - means) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi),
        axis=-1,
    )
    log_prior = np.sum(-0.5 * codes**2 - 0.5 * math.log(2 * math.pi), axis=-1)
    log_posterior = np.sum(-0.5 * noise**2 - 0.5 * log_variance - 0.5 * math.log(2 * math.pi), axis=-1)
    np.testing.assert_allclose(weights.numpy(), log_likelihood + log_prior - log_posterior, rtol=1e-4)


def test_a_gaussian_model_s_likelihood_is_in_8_bit_nats_and_bits_per_dimension(colour_model):
    images = np.random.default_rng(5).integers(0, 256, size=(6, 16, 16, 3)).astype(np.float32) / 255
    result = likelihood.negative_log_likelihood(colour_model, images, samples=3, batch_size=4)
    dimensions = 16 * 16 * 3
    assert result["dequantized_bins"] == 256
    assert result["bits_per_dim"] == pytest.approx(result["nll"] / (dimensions * math.log(2)))
    # The discrete likelihood's bound: never better than certainty, and the bound at least as tight as the ELBO.
    assert result["nll"] > 0 and result["nll"] <= result["negative_elbo"] + 1e-6
    assert bits_per_dimension(result["nll"] - dimensions * math.log(256), dimensions) == pytest.approx(
        result["bits_per_dim"]
    )
    # The ELBO agrees with the model's own objective at its posterior mean, once the bins' D log 256 is added.
    outputs = colour_model(images, training=False)
    own = np.mean(outputs["pixel_nll"].numpy() + np.sum(outputs["kl"].numpy(), axis=-1)) + dimensions * math.log(256)
    assert result["negative_elbo"] == pytest.approx(own, rel=0.02)
