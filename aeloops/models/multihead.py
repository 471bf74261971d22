"""Several branches from one input, each decoded by its own head.

The seed's two-output model: each branch is ``Dense(code_units)`` on the
input, each head a ``Dense`` back to the input's last axis, and every head is
trained against the input with its own loss term.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from aeloops.models.base import CODE, RECONSTRUCTION, Autoencoder, Decoder, Encoder, validate_units

__all__ = ["MultiHeadAutoencoder", "MultiHeadDecoder", "MultiHeadEncoder"]


@keras.saving.register_keras_serializable(package="aeloops")
class MultiHeadEncoder(Encoder):
    """``heads`` parallel linear Dense branches; the code is their concatenation.

    Outputs ``"code_1"``, ``"code_2"``, ... per branch and ``"code"``, all
    branches joined on the last axis.
    """

    def __init__(self, heads: int = 2, code_units: int = 2, **kwargs: Any):
        super().__init__(**kwargs)
        self.heads, self.code_units = validate_units("heads and code_units", [heads, code_units], False)
        self.branches = [keras.layers.Dense(self.code_units, name=f"branch_{i + 1}") for i in range(self.heads)]

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        codes = {f"code_{i + 1}": branch(inputs) for i, branch in enumerate(self.branches)}
        return {**codes, CODE: tf.concat(list(codes.values()), axis=-1)}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "heads": self.heads, "code_units": self.code_units}


@keras.saving.register_keras_serializable(package="aeloops")
class MultiHeadDecoder(Decoder):
    """Splits the code into ``heads`` equal parts and decodes each with a linear Dense.

    Outputs ``"head_1"``, ``"head_2"``, ...; ``"reconstruction"`` is the last head.
    """

    def __init__(self, heads: int = 2, output_units: int = 28, **kwargs: Any):
        super().__init__(**kwargs)
        self.heads, self.output_units = validate_units("heads and output_units", [heads, output_units], False)
        self.head_layers = [
            keras.layers.Dense(self.output_units, dtype="float32", name=f"head_{i + 1}") for i in range(self.heads)
        ]

    def call(self, code: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        parts = tf.split(code, self.heads, axis=-1)
        heads = {f"head_{i + 1}": layer(part) for i, (layer, part) in enumerate(zip(self.head_layers, parts))}
        return {**heads, RECONSTRUCTION: heads[f"head_{self.heads}"]}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "heads": self.heads, "output_units": self.output_units}


@keras.saving.register_keras_serializable(package="aeloops")
class MultiHeadAutoencoder(Autoencoder):
    """One input, ``heads`` branch-and-head pairs, one named output per head.

    >>> model = MultiHeadAutoencoder(input_shape=(28, 28))
    >>> model.count_params()
    284
    """

    def __init__(self, input_shape: Sequence[int] = (28, 28), heads: int = 2, code_units: int = 2, **kwargs: Any):
        input_shape = tuple(input_shape)
        if not input_shape:
            raise ValueError("input_shape must have at least one axis, got ().")
        super().__init__(
            encoder=MultiHeadEncoder(heads, code_units, name="encoder"),
            decoder=MultiHeadDecoder(heads, input_shape[-1], name="decoder"),
            input_shape=input_shape,
            **kwargs,
        )

    def constructor_arguments(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.example_shape),
            "heads": self.encoder.heads,
            "code_units": self.encoder.code_units,
        }
