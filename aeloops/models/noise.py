"""Input corruption for denoising autoencoders, inside the model so it is seeded and checkpointed."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

__all__ = ["GaussianCorruption"]


@keras.saving.register_keras_serializable(package="aeloops")
class GaussianCorruption(keras.layers.Layer):
    """Adds ``stddev`` x N(0, 1) noise and clips to [0, 1], in training only.

    The Keras blog's denoising recipe (noise factor 0.5). Its
    ``SeedGenerator`` state is a model variable, which aeloops checkpoints,
    so a resumed run draws the same noise as an uninterrupted one.

    >>> float(GaussianCorruption(0.5)(tf.zeros([2, 4]), training=False).numpy().max())
    0.0
    """

    def __init__(self, stddev: float = 0.5, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(stddev, bool) or not isinstance(stddev, (int, float)) or stddev < 0:
            raise ValueError(f"stddev must be a number >= 0, got {stddev!r}.")
        self.stddev = float(stddev)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not training or self.stddev == 0.0:
            return inputs
        noise = keras.random.normal(tf.shape(inputs), stddev=self.stddev, seed=self.seed_generator)
        return tf.clip_by_value(inputs + tf.cast(noise, inputs.dtype), 0.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}
