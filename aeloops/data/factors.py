"""Images with known generating factors, for disentanglement metrics: procedural shapes, or dSprites itself.

Both speak one interface, as disentanglement_lib's ground-truth data does:
``factor_names`` and ``factor_sizes`` (each factor takes the values
``0 .. size - 1``), ``sample_factors(count, rng)`` and ``images(factors)``,
float32 ``(n, 64, 64, 1)`` in [0, 1].

``Shapes`` draws dSprites' factors (Matthey et al. 2017: shape, scale,
orientation, x and y position, on 64x64 pixels) procedurally, so nothing is
downloaded: every image is a pure function of its factors, the same on every
machine. ``DSprites`` reads the real ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``
when the user has it.

>>> shapes = Shapes()
>>> factors = shapes.sample_factors(4, np.random.default_rng(0))
>>> shapes.images(factors).shape
(4, 64, 64, 1)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

__all__ = ["DSprites", "FactorData", "Shapes", "sample", "shapes_splits"]

SIZE = 64


class FactorData:
    """Images that are a function of discrete factors; subclasses say which and draw them."""

    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()

    def images(self, factors: np.ndarray) -> np.ndarray:
        """Returns the images of ``factors`` (``(n, len(factor_sizes))`` ints), float32 ``(n, 64, 64, 1)`` in [0, 1]."""
        raise NotImplementedError

    def sample_factors(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Returns ``count`` factor vectors drawn uniformly and independently, ``(count, factors)`` int64."""
        return np.stack([rng.integers(0, size, count) for size in self.factor_sizes], axis=1).astype(np.int64)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """One image's (height, width, channels)."""
        return (SIZE, SIZE, 1)


class Shapes(FactorData):
    """dSprites' factors drawn procedurally: a square, an ellipse or a heart, scaled, turned and moved.

    The factors and their sizes are dSprites': shape (3), scale (6 values
    from 0.5 to 1), orientation (40 values over a full turn), x and y
    position (32 values each, over the middle 5/8 of the picture's width
    around its centre).
    """

    factor_names = ("shape", "scale", "orientation", "position_x", "position_y")
    factor_sizes = (3, 6, 40, 32, 32)

    def images(self, factors: np.ndarray) -> np.ndarray:
        factors = _checked(factors, self.factor_sizes)
        images = np.empty((len(factors), SIZE, SIZE, 1), np.float32)
        for start in range(0, len(factors), _CHUNK):  # Bounded temporaries, whatever the count.
            images[start : start + _CHUNK, ..., 0] = _draw(factors[start : start + _CHUNK])
        return images


# Images drawn at once: each temporary is then about 16 MB.
_CHUNK = 1024


def _draw(factors: np.ndarray) -> np.ndarray:
    """Returns the (n, 64, 64) pictures of ``factors``: 1 inside the shape, 0 outside."""
    shape, scale, orientation, x, y = (factors[:, index, None, None].astype(np.float32) for index in range(5))
    radius = 10.0 * (0.5 + scale / 10.0)  # Scale runs 0.5 .. 1.0, as dSprites's.
    angle = orientation * np.float32(2 * np.pi / 40)
    # Centres over [16/64, 48/64] of the picture, in pixels.
    centre_x, centre_y = SIZE * (0.25 + 0.5 * x / 31), SIZE * (0.25 + 0.5 * y / 31)
    grid = np.arange(SIZE, dtype=np.float32) + 0.5
    # Each pixel taken back into the shape's own frame: moved, turned back, scaled to a unit shape.
    dx, dy = (grid[None, None, :] - centre_x) / radius, (grid[None, :, None] - centre_y) / radius
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, cos * dy - sin * dx
    kind = factors[:, 0]
    inside = np.zeros(u.shape, bool)
    square, ellipse, heart = (kind == 0), (kind == 1), (kind == 2)
    inside[square] = np.maximum(np.abs(u[square]), np.abs(v[square])) <= 0.8
    inside[ellipse] = u[ellipse] ** 2 + (v[ellipse] / 0.55) ** 2 <= 1.0
    # The classic heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3, its point downwards (rows grow down).
    hx, hy = 1.15 * u[heart], 0.12 - 1.15 * v[heart]
    inside[heart] = (hx**2 + hy**2 - 1.0) ** 3 - hx**2 * hy**3 <= 0.0
    return inside


class DSprites(FactorData):
    """The real dSprites, from ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (its factors without colour)."""

    factor_names = Shapes.factor_names
    factor_sizes = Shapes.factor_sizes

    def __init__(self, path: str | os.PathLike) -> None:
        try:
            with np.load(path, allow_pickle=False) as archive:
                if "imgs" not in archive.files:
                    raise ValueError(f"{path} holds no 'imgs' array; give dSprites' dsprites_ndarray_*.npz.")
                images = archive["imgs"]
        except (OSError, ValueError) as error:
            if isinstance(error, ValueError) and "imgs" in str(error):
                raise
            raise ValueError(f"Cannot read dSprites from {path}: {error}") from None
        expected = int(np.prod(self.factor_sizes))
        if images.shape != (expected, SIZE, SIZE):
            raise ValueError(f"{path}: 'imgs' is {images.shape}, not dSprites' ({expected}, {SIZE}, {SIZE}).")
        self._images = images
        # The index of factor vector f in dSprites' order (colour, of size 1, leads): a dot product.
        self._strides = np.cumprod((*self.factor_sizes[1:], 1)[::-1])[::-1].astype(np.int64)

    def images(self, factors: np.ndarray) -> np.ndarray:
        factors = _checked(factors, self.factor_sizes)
        return self._images[factors @ self._strides].astype(np.float32)[..., None]


def sample(data: FactorData, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``count`` images of ``data`` with factors drawn uniformly by ``seed``, and those factors."""
    factors = data.sample_factors(count, np.random.default_rng(seed))
    return data.images(factors), factors


# The named dataset "shapes": the same images in every run, so runs compare.
SHAPES_TRAIN, SHAPES_TEST = 20_000, 2_000


def shapes_splits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Returns ``--dataset shapes``: training and test images (uint8 0 or 255, 64x64x1) and their shapes (labels)."""
    shapes = Shapes()
    train, train_factors = sample(shapes, SHAPES_TRAIN, seed=0)
    test, test_factors = sample(shapes, SHAPES_TEST, seed=1)
    as_bytes = lambda images: (images * 255).astype(np.uint8)  # noqa: E731
    return as_bytes(train), as_bytes(test), train_factors[:, 0], test_factors[:, 0]


def _checked(factors: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(sizes):
        raise ValueError(f"factors must be (n, {len(sizes)}), got {factors.shape}.")
    if np.any(factors < 0) or np.any(factors >= np.asarray(sizes)):
        raise ValueError(f"factors must lie in [0, size) for sizes {tuple(sizes)}.")
    return factors.astype(np.int64)
