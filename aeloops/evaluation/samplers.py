"""Samplers after training: new images from a model's own prior, or from a density fitted to its codes.

- ``"prior"``: codes drawn from the model's prior, N(0, I) for the VAE family,
  the WAE and the AAE (whatever trained its codes toward it).
- ``"gmm"``: a Gaussian mixture fitted to the training images' codes, for
  any autoencoder with a continuous code, the seed's deterministic ones
  included: ex-post density estimation (Ghosh et al. 2020, "From Variational
  to Deterministic Autoencoders"), ten full-covariance components by default
  as there. scikit-learn fits it (``pip install 'aeloops[generative]'``).

Either way the codes are decoded by the model's own decoder.

>>> codes = model.encode(training_images)                                      # doctest: +SKIP
>>> drawn = sample(model, 64, sampler="gmm", codes=codes, seed=0)             # doctest: +SKIP
>>> drawn.images.shape, drawn.codes.shape                                      # doctest: +SKIP
((64, 784), (64, 8))
"""

from __future__ import annotations

import importlib.util
from typing import NamedTuple

import keras
import numpy as np

from aeloops.models.quantized import decodes_codebook_entries

__all__ = ["SAMPLERS", "Drawn", "fit_code_mixture", "sample"]

SAMPLERS = ("prior", "gmm")


class Drawn(NamedTuple):
    """What a sampler drew: the codes and the images the decoder made of them."""

    codes: np.ndarray
    images: np.ndarray


def sample(
    model: keras.Model,
    count: int,
    *,
    sampler: str = "prior",
    codes: np.ndarray | None = None,
    components: int = 10,
    seed: int = 0,
    prior: keras.Model | None = None,
) -> Drawn:
    """Returns ``count`` codes drawn by ``sampler`` and the images ``model`` decodes from them.

    ``"gmm"`` needs the training images' ``codes`` (``model.encode(images)``)
    to fit its mixture of ``components`` Gaussians. The draws depend on
    ``seed`` alone: the same call gives the same images.

    Raises:
      ValueError: for a sampler the model cannot use, saying which it can.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}.")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}.")
    if decodes_codebook_entries(model):
        if sampler != "prior" or prior is None:
            raise ValueError(
                f"{type(model).__name__} decodes codebook entries, drawn from its learned prior over code indices: "
                "train it (python -m aeloops.prior RUN_DIR), then draw with sampler='prior' (--sampler prior)."
            )
        indices = prior.sample(count, seed=seed)
        entries = np.asarray(model.encoder.quantizer.codebook)[indices]
        return Drawn(indices, np.asarray(model.decode(entries)))
    if sampler == "prior":
        latent_dim = getattr(model.encoder, "latent_dim", None)
        if not hasattr(model, "sample") or latent_dim is None:
            raise ValueError(
                f"{type(model).__name__} has no prior to draw from (it was not trained toward one); draw from a "
                "mixture fitted to its training codes instead: sampler='gmm' (--sampler gmm)."
            )
        drawn = model.sample_codes(count, seed)  # N(0, I), or the model's own prior (the VampPrior's mixture).
    else:
        if codes is None:
            raise ValueError("sampler='gmm' fits its mixture to the training images' codes: pass codes=.")
        codes = np.asarray(codes, np.float32)
        mixture = fit_code_mixture(codes.reshape(len(codes), -1).astype(np.float64), components, seed)
        flat, _ = mixture.sample(count)
        # scikit-learn draws each component's share in turn: shuffled (seeded), so any prefix is a fair sample.
        flat = flat[np.random.default_rng(seed).permutation(count)]
        drawn = flat.reshape(count, *codes.shape[1:]).astype(np.float32)
    return Drawn(drawn, np.asarray(model.decode(drawn)))


def default_sampler(model: keras.Model) -> str:
    """Returns the sampler a model draws from unless told: its prior (the VAE family's, a VQ-VAE's learned one)."""
    return "prior" if hasattr(model, "sample") or decodes_codebook_entries(model) else "gmm"


def fit_code_mixture(codes: np.ndarray, components: int = 10, seed: int = 0):  # -> sklearn.mixture.GaussianMixture
    """Returns a Gaussian mixture of ``components`` full-covariance components fitted to ``codes`` (n, d)."""
    if importlib.util.find_spec("sklearn") is None:
        raise ValueError(
            "sampler 'gmm' fits its mixture with scikit-learn, which is not installed: "
            "pip install 'aeloops[generative]'."
        )
    from sklearn.mixture import GaussianMixture  # Deferred: an optional dependency.

    if isinstance(components, bool) or not isinstance(components, int) or components < 1:
        raise ValueError(f"components must be a positive integer, got {components!r}.")
    if len(codes) < components:
        raise ValueError(f"A mixture of {components} components needs at least as many codes; got {len(codes)}.")
    # A small ridge on the covariances: codes that fill a flat subspace (a ReLU code's dead units) still fit.
    return GaussianMixture(components, covariance_type="full", reg_covar=1e-4, random_state=seed).fit(codes)
