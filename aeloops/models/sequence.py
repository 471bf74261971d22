"""Sequence autoencoders: an LSTM encodes a sequence to a code, another LSTM decodes it back.

On MNIST each image is a sequence of 28 rows of 28 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from aeloops.models.base import (
    CODE,
    Autoencoder,
    Decoder,
    Encoder,
    output_dict,
    validate_output_activation,
    validate_units,
)

__all__ = ["SequenceAutoencoder", "SequenceDecoder", "SequenceEncoder"]


@keras.saving.register_keras_serializable(package="aeloops")
class SequenceEncoder(Encoder):
    """An LSTM whose last state is the code.

    >>> SequenceEncoder(units=64).encode(tf.zeros([2, 28, 28])).shape
    TensorShape([2, 64])
    """

    def __init__(self, units: int = 64, **kwargs: Any):
        super().__init__(**kwargs)
        self.units = validate_units("units", [units], allow_empty=False)[0]
        self.lstm = keras.layers.LSTM(self.units, name="lstm")

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        return {CODE: self.lstm(inputs, training=training)}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="aeloops")
class SequenceDecoder(Decoder):
    """Repeats the code ``timesteps`` times, runs an LSTM over it and maps each step to ``features``.

    >>> SequenceDecoder(units=64, timesteps=28, features=28).decode(tf.zeros([2, 64])).shape
    TensorShape([2, 28, 28])
    """

    def __init__(
        self,
        units: int = 64,
        timesteps: int = 28,
        features: int = 28,
        output_activation: str = "sigmoid",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.units, self.timesteps, self.features = validate_units(
            "units, timesteps and features", [units, timesteps, features], allow_empty=False
        )
        self.output_activation = validate_output_activation(output_activation)
        self.repeat = keras.layers.RepeatVector(self.timesteps, name="repeat")
        self.lstm = keras.layers.LSTM(self.units, return_sequences=True, name="lstm")
        self.output_layer = keras.layers.Dense(self.features, dtype="float32", name="output")

    def call(self, code: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        hidden = self.lstm(self.repeat(code), training=training)
        return output_dict(self.output_layer(hidden), self.output_activation)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "timesteps": self.timesteps,
            "features": self.features,
            "output_activation": self.output_activation,
        }


@keras.saving.register_keras_serializable(package="aeloops")
class SequenceAutoencoder(Autoencoder):
    """The Keras blog's LSTM sequence autoencoder, on sequences of shape ``(timesteps, features)``.

    >>> SequenceAutoencoder(input_shape=(28, 28), units=64).count_params()
    58652
    """

    def __init__(self, input_shape: Sequence[int] = (28, 28), units: int = 64, **kwargs: Any):
        input_shape = tuple(input_shape)
        if len(input_shape) != 2:
            raise ValueError(f"SequenceAutoencoder needs input_shape (timesteps, features), got {input_shape}.")
        super().__init__(
            encoder=SequenceEncoder(units, name="encoder"),
            decoder=SequenceDecoder(units, input_shape[0], input_shape[1], name="decoder"),
            input_shape=input_shape,
            **kwargs,
        )

    def constructor_arguments(self) -> dict[str, Any]:
        return {"input_shape": list(self.example_shape), "units": self.encoder.units}
