"""Convolutional autoencoders: the seed's (and Keras blog's) pooling/up-sampling model."""

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
from aeloops.models.noise import GaussianCorruption

__all__ = ["ConvAutoencoder", "ConvDecoder", "ConvEncoder", "default_paddings"]

_PADDINGS = ("same", "valid")


@keras.saving.register_keras_serializable(package="aeloops")
class ConvEncoder(Encoder):
    """3x3 convolutions, each followed by 2x2 max-pooling ('same' padding).

    >>> ConvEncoder(filters=(16, 8, 8)).encode(tf.zeros([1, 28, 28, 1])).shape
    TensorShape([1, 4, 4, 8])
    """

    def __init__(
        self, filters: Sequence[int] = (16, 8, 8), activation: str = "relu", input_noise: float = 0.0, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.filters = validate_units("filters", filters, allow_empty=False)
        self.activation = activation
        self.input_noise = float(input_noise)
        # A denoising encoder corrupts its input itself, in training only. No
        # layer otherwise: its seed generator would shift weight initialization.
        self.corruption = GaussianCorruption(input_noise, name="corruption") if input_noise else None
        self.convolutions = [
            keras.layers.Conv2D(count, 3, padding="same", activation=activation, name=f"conv_{i + 1}")
            for i, count in enumerate(self.filters)
        ]
        self.poolings = [
            keras.layers.MaxPooling2D(2, padding="same", name=f"pool_{i + 1}") for i in range(len(self.filters))
        ]

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        outputs = {}
        hidden = inputs if self.corruption is None else self.corruption(inputs, training=training)
        for index, (convolution, pooling) in enumerate(zip(self.convolutions, self.poolings)):
            hidden = pooling(convolution(hidden))
            outputs[f"hidden_{index + 1}"] = hidden
        outputs[CODE] = outputs.pop(f"hidden_{len(self.filters)}")
        return outputs

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": list(self.filters),
            "activation": self.activation,
            "input_noise": self.input_noise,
        }


@keras.saving.register_keras_serializable(package="aeloops")
class ConvDecoder(Decoder):
    """3x3 convolutions each followed by 2x2 up-sampling, then a 3x3 output conv.

    ``paddings`` sets each hidden convolution's padding; the seed's decoder
    uses ``"valid"`` on the last one so that 4 -> 8 -> 16 -> 14 -> 28 ends at
    exactly 28x28. ``output_size`` (height, width) crops a larger output about
    its centre, for sides that are not a multiple of 2 ** layers.

    >>> ConvDecoder().decode(tf.zeros([1, 4, 4, 8])).shape
    TensorShape([1, 28, 28, 1])
    """

    def __init__(
        self,
        filters: Sequence[int] = (8, 8, 16),
        paddings: Sequence[str] = ("same", "same", "valid"),
        output_channels: int = 1,
        activation: str = "relu",
        output_activation: str = "sigmoid",
        output_size: Sequence[int] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.filters = validate_units("filters", filters, allow_empty=False)
        self.output_size = None if output_size is None else validate_units("output_size", output_size, False)
        self.paddings = tuple(paddings)
        if len(self.paddings) != len(self.filters) or any(p not in _PADDINGS for p in self.paddings):
            raise ValueError(
                f"paddings must give one of {_PADDINGS} per filter count ({len(self.filters)}), got {paddings!r}."
            )
        self.output_channels = validate_units("output_channels", [output_channels], False)[0]
        self.activation = activation
        self.output_activation = validate_output_activation(output_activation)
        self.convolutions = [
            keras.layers.Conv2D(count, 3, padding=padding, activation=activation, name=f"conv_{i + 1}")
            for i, (count, padding) in enumerate(zip(self.filters, self.paddings))
        ]
        self.upsamplings = [keras.layers.UpSampling2D(2, name=f"upsample_{i + 1}") for i in range(len(self.filters))]
        self.output_layer = keras.layers.Conv2D(self.output_channels, 3, padding="same", dtype="float32", name="output")

    def call(self, code: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        hidden = code
        for convolution, upsampling in zip(self.convolutions, self.upsamplings):
            hidden = upsampling(convolution(hidden))
        return output_dict(self.output_layer(crop_to(hidden, self.output_size)), self.output_activation)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": list(self.filters),
            "paddings": list(self.paddings),
            "output_channels": self.output_channels,
            "activation": self.activation,
            "output_activation": self.output_activation,
            "output_size": None if self.output_size is None else list(self.output_size),
        }


def default_paddings(size: Sequence[int], encoder_layers: int, decoder_layers: int) -> tuple[str, ...]:
    """Returns the seed's paddings (``"valid"`` last) where they end at exactly ``size``, else all ``"same"``.

    >>> default_paddings((28, 28), 3, 3), default_paddings((32, 32), 3, 3)
    (('same', 'same', 'valid'), ('same', 'same', 'same'))
    """
    seed = ("same",) * (decoder_layers - 1) + ("valid",)
    sides = []
    for side in size:
        for _ in range(encoder_layers):  # 'same' max-pooling rounds up.
            side = -(-side // 2)
        for padding in seed:
            side = 2 * (side - (2 if padding == "valid" else 0))
        sides.append(side)
    return seed if tuple(sides) == tuple(size) else ("same",) * decoder_layers


@keras.saving.register_keras_serializable(package="aeloops")
class ConvAutoencoder(Autoencoder):
    """A ``ConvEncoder`` and a ``ConvDecoder``, for images of any height, width and channels.

    By default the decoder's last hidden convolution is ``"valid"`` where
    that ends at exactly the input's size (the seed's 28x28), and every
    convolution is ``"same"`` elsewhere, the output cropped to the input's size.

    ``input_noise`` > 0 makes it a denoising autoencoder: the encoder
    corrupts its input in training and the objective compares with the
    clean ``"input"``.

    >>> model = ConvAutoencoder(input_shape=(28, 28, 1))
    >>> model.count_params()
    4385
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (28, 28, 1),
        encoder_filters: Sequence[int] = (16, 8, 8),
        decoder_filters: Sequence[int] = (8, 8, 16),
        decoder_paddings: Sequence[str] | None = None,
        activation: str = "relu",
        output_activation: str = "sigmoid",
        input_noise: float = 0.0,
        **kwargs: Any,
    ):
        input_shape = tuple(int(dim) for dim in input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"ConvAutoencoder needs input_shape (height, width, channels), got {input_shape}.")
        if decoder_paddings is None:
            encoder_filters, decoder_filters = tuple(encoder_filters), tuple(decoder_filters)
            decoder_paddings = default_paddings(input_shape[:2], len(encoder_filters), len(decoder_filters))
        super().__init__(
            encoder=ConvEncoder(encoder_filters, activation, input_noise, name="encoder"),
            decoder=ConvDecoder(
                decoder_filters,
                decoder_paddings,
                input_shape[-1],
                activation,
                output_activation,
                output_size=input_shape[:2],
                name="decoder",
            ),
            input_shape=input_shape,
            **kwargs,
        )
        self.check_reconstruction_shape("change decoder_filters or decoder_paddings so the shapes match")

    def constructor_arguments(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.example_shape),
            "encoder_filters": list(self.encoder.filters),
            "decoder_filters": list(self.decoder.filters),
            "decoder_paddings": list(self.decoder.paddings),
            "activation": self.encoder.activation,
            "output_activation": self.decoder.output_activation,
            "input_noise": self.encoder.input_noise,
        }
