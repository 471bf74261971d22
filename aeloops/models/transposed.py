"""Convolutional autoencoders with strided convolutions down and transposed convolutions up.

As TensorFlow's autoencoder tutorial builds them: no pooling or up-sampling
layers, the stride does the resizing.
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
    crop_to,
    output_dict,
    validate_output_activation,
    validate_units,
)

__all__ = ["StridedConvEncoder", "TransposedConvAutoencoder", "TransposedConvDecoder"]


@keras.saving.register_keras_serializable(package="aeloops")
class StridedConvEncoder(Encoder):
    """3x3 convolutions with stride 2 ('same' padding), each halving height and width.

    >>> StridedConvEncoder(filters=(16, 8)).encode(tf.zeros([1, 28, 28, 1])).shape
    TensorShape([1, 7, 7, 8])
    """

    def __init__(self, filters: Sequence[int] = (16, 8), activation: str = "relu", **kwargs: Any):
        super().__init__(**kwargs)
        self.filters = validate_units("filters", filters, allow_empty=False)
        self.activation = activation
        self.convolutions = [
            keras.layers.Conv2D(count, 3, strides=2, padding="same", activation=activation, name=f"conv_{i + 1}")
            for i, count in enumerate(self.filters)
        ]

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        hidden = inputs
        for convolution in self.convolutions:
            hidden = convolution(hidden)
        return {CODE: hidden}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": list(self.filters), "activation": self.activation}


@keras.saving.register_keras_serializable(package="aeloops")
class TransposedConvDecoder(Decoder):
    """3x3 transposed convolutions with stride 2, each doubling height and width, then a 3x3 output conv.

    ``output_size`` (height, width) crops a larger output about its centre.

    >>> TransposedConvDecoder(filters=(8, 16)).decode(tf.zeros([1, 7, 7, 8])).shape
    TensorShape([1, 28, 28, 1])
    """

    def __init__(
        self,
        filters: Sequence[int] = (8, 16),
        output_channels: int = 1,
        activation: str = "relu",
        output_activation: str = "sigmoid",
        output_size: Sequence[int] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.filters = validate_units("filters", filters, allow_empty=False)
        self.output_size = None if output_size is None else validate_units("output_size", output_size, False)
        self.output_channels = validate_units("output_channels", [output_channels], False)[0]
        self.activation = activation
        self.output_activation = validate_output_activation(output_activation)
        self.transposed = [
            keras.layers.Conv2DTranspose(
                count, 3, strides=2, padding="same", activation=activation, name=f"transposed_{i + 1}"
            )
            for i, count in enumerate(self.filters)
        ]
        self.output_layer = keras.layers.Conv2D(self.output_channels, 3, padding="same", dtype="float32", name="output")

    def call(self, code: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        hidden = code
        for layer in self.transposed:
            hidden = layer(hidden)
        return output_dict(self.output_layer(crop_to(hidden, self.output_size)), self.output_activation)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": list(self.filters),
            "output_channels": self.output_channels,
            "activation": self.activation,
            "output_activation": self.output_activation,
            "output_size": None if self.output_size is None else list(self.output_size),
        }


@keras.saving.register_keras_serializable(package="aeloops")
class TransposedConvAutoencoder(Autoencoder):
    """TensorFlow's tutorial autoencoder: Conv 16-8 (stride 2) down, transposed Conv 8-16 up.

    >>> TransposedConvAutoencoder(input_shape=(28, 28, 1)).count_params()
    3217
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (28, 28, 1),
        encoder_filters: Sequence[int] = (16, 8),
        decoder_filters: Sequence[int] = (8, 16),
        activation: str = "relu",
        **kwargs: Any,
    ):
        input_shape = tuple(int(dim) for dim in input_shape)
        if len(input_shape) != 3:
            raise ValueError(
                f"TransposedConvAutoencoder needs input_shape (height, width, channels), got {input_shape}."
            )
        super().__init__(
            encoder=StridedConvEncoder(encoder_filters, activation, name="encoder"),
            decoder=TransposedConvDecoder(
                decoder_filters, input_shape[-1], activation, output_size=input_shape[:2], name="decoder"
            ),
            input_shape=input_shape,
            **kwargs,
        )
        self.check_reconstruction_shape("the decoder needs as many layers as the encoder")

    def constructor_arguments(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.example_shape),
            "encoder_filters": list(self.encoder.filters),
            "decoder_filters": list(self.decoder.filters),
            "activation": self.encoder.activation,
        }
