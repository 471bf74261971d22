"""What a model with a N(0, I) prior over a flat code can show: decoded prior draws and latent traversals.

``PriorSampling`` is mixed into the generative autoencoders (``vae``,
``iwae``, ``betatcvae``, ``wae``, ``aae``); it needs only ``decode`` and
``encoder.latent_dim``. The CLI writes ``samples.png`` and
``latent_traversal.png`` for such models, and TensorBoard gets both every
epoch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PriorSampling", "traversal_rows"]


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
    """Decodes draws from the N(0, I) prior over a flat code, and sweeps of each code dimension."""

    def sample(self, count: int, seed: int | None = None) -> np.ndarray:
        """Returns ``count`` reconstructions decoded from codes drawn from the N(0, I) prior."""
        codes = np.random.default_rng(seed).standard_normal((count, self.encoder.latent_dim)).astype(np.float32)
        return np.asarray(self.decode(codes))

    def latent_traversal(self, dimensions: int = 10, steps: int = 9, extent: float = 3.0) -> list[np.ndarray]:
        """Returns one row of decodings per code dimension swept over [-extent, extent] (``traversal_rows``)."""
        return traversal_rows(self, self.encoder.latent_dim, dimensions, steps, extent)
