"""The importance-sampled log-likelihood of a VAE: the IWAE bound with K samples (Burda et al. 2015).

For a model whose encoder gives a Gaussian posterior q(z|x) (outputs
``"mean"`` and ``"log_variance"``) and whose decoder gives Bernoulli logits
(output ``"logits"``), under the N(0, I) prior:

    log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),   z_k ~ q(z|x)

The bound rises toward log p(x) as K grows; with K = 1 it is the ELBO of one
sample. ``negative_log_likelihood`` returns its negation in nats per example
(the "NLL" VAE papers report), and the negative ELBO estimated from the same
K samples. Samples are drawn in chunks (so K = 5,000 fits in memory) with
stateless random numbers keyed by ``seed``, the example's batch and the
chunk: the same call gives the same figures.

>>> result = negative_log_likelihood(model, binary_test_images, samples=5000)  # doctest: +SKIP
>>> result["nll"], result["negative_elbo"]                                              # doctest: +SKIP
(89.9, 94.1)
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from aeloops.models.gaussian import DequantizedGaussian, bits_per_dimension, dequantize
from aeloops.models.importance import posterior_log_weights

__all__ = ["has_gaussian_posterior", "log_weights", "negative_log_likelihood", "tracing_count"]

# Decoded rows per chunk: 20,000 images of 784 pixels are 63 MB of logits.
_CHUNK_ROWS = 20_000
_BOUND_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tracing_count(model: keras.Model) -> int:
    """How often ``model``'s compiled bounds have been traced: repeated calls with new seeds add nothing."""
    return sum(function.experimental_get_tracing_count() for function in _BOUND_FUNCTIONS.get(model, {}).values())


def _checked_latent_dim(model: keras.Model, inputs: tf.Tensor) -> int:
    """Returns the posterior's dimension, refusing a model without a Gaussian encoder or Bernoulli logits."""
    outputs = model.encoder(inputs[:1], training=False)
    missing = [name for name in ("mean", "log_variance") if name not in outputs]
    if missing:
        raise ValueError(
            f"The likelihood needs an encoder of a Gaussian posterior (outputs 'mean' and 'log_variance', as "
            f"aeloops.VariationalEncoder gives); {type(model.encoder).__name__} has no {missing[0]!r}."
        )
    if _pixel_likelihood(model) is not None:  # A Gaussian density of the pixels, not Bernoulli logits.
        return int(outputs["mean"].shape[-1])
    decoded = model.decoder(outputs["mean"], training=False)
    if not isinstance(decoded, dict) or "logits" not in decoded:
        raise ValueError(
            f"The likelihood needs a decoder of Bernoulli logits (output 'logits', as a DenseDecoder with a "
            f"sigmoid output gives); {type(model.decoder).__name__} returns none."
        )
    return int(outputs["mean"].shape[-1])


def has_gaussian_posterior(model: keras.Model) -> bool:
    """Whether ``negative_log_likelihood`` can evaluate ``model``: a Gaussian posterior and a pixel likelihood."""
    example_shape = getattr(model, "example_shape", None)
    if example_shape is None:
        return False
    try:
        _checked_latent_dim(model, tf.zeros((1, *example_shape)))
    except ValueError:
        return False
    return True


def _pixel_likelihood(model: keras.Model) -> DequantizedGaussian | None:
    """Returns the model's Gaussian decoder likelihood, or None for Bernoulli logits."""
    return getattr(model, "pixel_likelihood", None)


def log_weights(
    model: keras.Model, inputs: tf.Tensor, noise: tf.Tensor, targets: tf.Tensor | None = None
) -> tf.Tensor:
    """Returns log p(x|z) + log p(z) - log q(z|x) for each sample: shape ``(samples, batch)``.

    ``noise`` has shape ``(samples, batch, latent_dim)``: standard normal
    draws that the posterior's mean and scale turn into codes. For a model
    with a Gaussian decoder likelihood, ``targets`` are the dequantized
    images whose density p(y|z) is weighed (``inputs`` by default).
    """
    encoded = model.encoder(inputs, training=False)
    return posterior_log_weights(
        encoded["mean"], encoded["log_variance"], noise, model.decoder, inputs if targets is None else targets,
        likelihood=_pixel_likelihood(model), log_prior=getattr(model, "log_prior", None),
    )  # fmt: skip


def negative_log_likelihood(
    model: keras.Model,
    images: Any,
    samples: int = 5000,
    batch_size: int = 50,
    seed: int = 0,
    jit_compile: bool = False,
) -> dict[str, Any]:
    """Returns the IWAE bound's negation (``"nll"``) and the negative ELBO (``"negative_elbo"``), in nats, averaged.

    Also ``"samples"``, ``"examples"``, ``"seed"`` and the standard error of
    the NLL across examples (``"nll_standard_error"``). ``images`` are the
    model's inputs, binary for a Bernoulli likelihood to mean what papers
    mean by it. ``jit_compile=True`` compiles the bound with XLA: 1.42x
    faster for Burda et al.'s IWAE model with K = 5,000 here, but 0.56x
    for the 784-400-40 VAE with K = 200 (``benchmarks/likelihood_speed.py``).
    XLA's random number generator draws other samples from the same seed,
    so its figures are repeatable but differ from graph mode's within their
    Monte Carlo error.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    inputs = np.asarray(images, np.float32)
    if not len(inputs):
        raise ValueError("images is empty; the likelihood needs at least one example.")
    latent_dim = _checked_latent_dim(model, tf.constant(inputs[:1]))
    chunk = max(1, min(samples, _CHUNK_ROWS // batch_size))
    chunks = math.ceil(samples / chunk)
    bounds, elbos = [], []
    # One compiled function per model and setting, kept for the model's life: repeated calls do not retrace.
    functions = _BOUND_FUNCTIONS.setdefault(model, {})
    key = (chunk, chunks, samples, latent_dim, bool(jit_compile))
    if key not in functions:
        functions[key] = _bound_function(model, *key)
    step = functions[key]
    for index, start in enumerate(range(0, len(inputs), batch_size)):
        bound, elbo = step(tf.constant(inputs[start : start + batch_size]), tf.constant([seed, index], tf.int64))
        bounds.append(bound.numpy())
        elbos.append(elbo.numpy())
    nll = -np.concatenate(bounds).astype(np.float64)
    elbo = -np.concatenate(elbos).astype(np.float64)
    extra = {}
    if _pixel_likelihood(model) is not None:
        # A density of dequantized values bounds the probability of their 8-bit bins: add D log 256.
        dimensions, bins = int(np.prod(inputs.shape[1:])), _pixel_likelihood(model).bins
        extra = {"bits_per_dim": bits_per_dimension(float(nll.mean()), dimensions, bins), "dequantized_bins": bins}
        nll, elbo = nll + dimensions * math.log(bins), elbo + dimensions * math.log(bins)
    return {
        "nll": float(nll.mean()),
        "negative_elbo": float(elbo.mean()),
        "nll_standard_error": float(nll.std(ddof=1) / math.sqrt(len(nll))) if len(nll) > 1 else 0.0,
        **extra,
        "samples": samples,
        "examples": len(inputs),
        "seed": seed,
    }


def _bound_function(model: keras.Model, chunk: int, chunks: int, samples: int, latent_dim: int, jit_compile: bool):
    """Returns a compiled function of (a batch, its seed) giving the bound and the ELBO per example."""
    likelihood = _pixel_likelihood(model)

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def bound(inputs: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        batch = tf.shape(inputs)[0]
        # A running log-sum-exp over chunks, and the sum of the log weights for the ELBO.
        running = tf.fill([batch], -np.inf)
        total = tf.zeros([batch])
        targets = None
        if likelihood is not None:  # One dequantization per image, shared by its K samples.
            uniform = tf.random.stateless_uniform(tf.shape(inputs), seed=tf.stack([seed[0] + 7919, seed[1]]))
            targets = dequantize(inputs, uniform, likelihood.bins)
        for index in tf.range(chunks):
            chunk_seed = tf.stack([seed[0], seed[1] * chunks + tf.cast(index, tf.int64)])
            noise = tf.random.stateless_normal([chunk, batch, latent_dim], seed=chunk_seed)
            weights = log_weights(model, inputs, noise, targets)
            # The last chunk may run past K samples: its extra rows count for nothing.
            valid = tf.range(chunk) + index * chunk < samples
            weights = tf.where(valid[:, None], weights, -np.inf)
            running = tf.reduce_logsumexp(tf.stack([running, tf.reduce_logsumexp(weights, axis=0)]), axis=0)
            total += tf.reduce_sum(tf.where(valid[:, None], weights, 0.0), axis=0)
        return running - math.log(samples), total / samples

    return bound
