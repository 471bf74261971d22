"""What a model with a N(0, I) prior over a flat code can show: decoded prior draws and latent traversals.

``PriorSampling`` is mixed into the generative autoencoders (``vae``,
``iwae``, ``betatcvae``, ``wae``, ``aae``); it needs only ``decode`` and
``encoder.latent_dim``. The CLI writes ``samples.png`` and
``latent_traversal.png`` for such models, and TensorBoard gets both every
epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aeloops.models.dense import DenseDecoder

__all__ = ["PriorSampling", "mirrored_decoder", "traversal_rows"]


def mirrored_decoder(
    owner: str, input_shape: Sequence[int], hidden_units: Sequence[int], activation: str
) -> tuple[tuple[int, ...], DenseDecoder]:
    """Returns the checked flat ``input_shape`` and a dense decoder mirroring ``hidden_units`` back to it."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 1:
        raise ValueError(f"{owner} takes flat inputs, input_shape (features,); got {input_shape}.")
    decoder = DenseDecoder(tuple(reversed(tuple(hidden_units))), input_shape[-1], activation, name="decoder")
    return input_shape, decoder


def traversal_rows(model, latent_dim: int, dimensions: int = 10, steps: int = 9, extent: float = 3.0) -> list:
    """Returns one row per code dimension (the first ``dimensions``): decodings as it sweeps [-extent, extent].

    Every other dimension is held at 0, the prior's mean: what each
    dimension alone does to a digit.
    """
    values = np.linspace(-extent, extent, steps, dtype=np.float32)
    rows = []
    for dimension in range(min(dimensions, latent_dim)):
        codes = np.zeros((steps, latent_dim), np.float32)
        codes[:, dimension] = values
        rows.append(np.asarray(model.decode(codes)))
    return rows


class PriorSampling:
    """Decodes draws from the N(0, I) prior over a flat code, and sweeps of each code dimension.

    Also rebuilds a model whose encoder keeps ``hidden_units``,
    ``latent_dim``, ``activation`` (and ``seed``) and whose decoder mirrors it.
    """

    def constructor_arguments(self) -> dict[str, Any]:
        """Returns the arguments that rebuild this model, read from its encoder."""
        arguments = {
            "input_shape": list(self.example_shape),
            "hidden_units": list(self.encoder.hidden_units),
            "latent_dim": self.encoder.latent_dim,
            "activation": self.encoder.activation,
        }
        if hasattr(self.encoder, "seed"):
            arguments["seed"] = self.encoder.seed
        if getattr(self.encoder, "log_variance_bound", None) is not None:  # Only when set: older files match.
            arguments["log_variance_bound"] = self.encoder.log_variance_bound
        return arguments

    def sample_codes(self, count: int, seed: int | None = None) -> np.ndarray:
        """Returns ``count`` codes drawn from the model's prior: N(0, I) here; a model with another overrides it."""
        return np.random.default_rng(seed).standard_normal((count, self.encoder.latent_dim)).astype(np.float32)

    def sample(self, count: int, seed: int | None = None) -> np.ndarray:
        """Returns ``count`` reconstructions decoded from codes drawn from the prior (``sample_codes``)."""
        return np.asarray(self.decode(self.sample_codes(count, seed)))

    def latent_traversal(self, dimensions: int = 10, steps: int = 9, extent: float = 3.0) -> list[np.ndarray]:
        """Returns one row of decodings per code dimension swept over [-extent, extent] (``traversal_rows``)."""
        return traversal_rows(self, self.encoder.latent_dim, dimensions, steps, extent)
