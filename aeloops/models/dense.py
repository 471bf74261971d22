"""Fully connected autoencoders: the seed's dense, deep, sparse and row-wise models."""

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

__all__ = [
    "GATED",
    "DenseAutoencoder",
    "DenseDecoder",
    "DenseEncoder",
    "GatedDense",
    "LinearCodeEncoder",
    "dense_stack",
    "run_stack",
]

# The activation name that makes dense_stack's layers GatedDense ones (--set model.activation=gated).
GATED = "gated"


@keras.saving.register_keras_serializable(package="aeloops")
class GatedDense(keras.layers.Layer):
    """A linear layer gated by a sigmoid one, ``h(x) * sigmoid(g(x))`` (Dauphin et al. 2017): the VampPrior's layer.

    >>> layer = GatedDense(3)
    >>> layer(tf.zeros([2, 5])).shape, layer.count_params()
    (TensorShape([2, 3]), 36)
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = validate_units("units", [units], allow_empty=False)[0]
        self.linear = keras.layers.Dense(self.units, name="linear")
        self.gate = keras.layers.Dense(self.units, activation="sigmoid", name="gate")

    def build(self, input_shape: Sequence[int | None]) -> None:
        self.linear.build(input_shape)
        self.gate.build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self.linear(inputs) * self.gate(inputs)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], self.units)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


def dense_stack(units: Sequence[int], activation: str) -> list[keras.layers.Layer]:
    """Returns Dense layers of ``units``, named ``dense_1``, ``dense_2``, ...; ``GatedDense`` ones for ``"gated"``."""

    def layer(count: int, name: str) -> keras.layers.Layer:
        if activation == GATED:
            return GatedDense(count, name=name)
        return keras.layers.Dense(count, activation=activation, name=name)

    return [layer(count, f"dense_{index + 1}") for index, count in enumerate(units)]


def run_stack(layers: Sequence[keras.layers.Layer], inputs: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Runs ``layers`` in turn; returns the last output and every output as ``hidden_1``, ``hidden_2``, ..."""
    outputs = {}
    hidden = inputs
    for index, layer in enumerate(layers):
        hidden = layer(hidden)
        outputs[f"hidden_{index + 1}"] = hidden
    return hidden, outputs


@keras.saving.register_keras_serializable(package="aeloops")
class DenseEncoder(Encoder):
    """A stack of Dense layers; the last one's activation is the code.

    Dense layers act on the last axis, so a ``(28, 28)`` input is encoded
    row by row. Outputs ``"hidden_1"``, ... for the layers before the code.

    >>> encoder = DenseEncoder(units=(64, 32, 8))
    >>> encoder(tf.zeros([2, 784]))["code"].shape
    TensorShape([2, 8])
    """

    def __init__(self, units: Sequence[int] = (64, 32, 8), activation: str = "relu", **kwargs: Any):
        super().__init__(**kwargs)
        self.units = validate_units("units", units, allow_empty=False)
        self.activation = activation
        self.hidden_layers = dense_stack(self.units, activation)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        _, outputs = run_stack(self.hidden_layers, inputs)
        outputs[CODE] = outputs.pop(f"hidden_{len(self.hidden_layers)}")
        return outputs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": list(self.units), "activation": self.activation}


@keras.saving.register_keras_serializable(package="aeloops")
class LinearCodeEncoder(Encoder):
    """Dense layers to a linear code, which can take any value a Gaussian prior draws.

    >>> LinearCodeEncoder(hidden_units=(64,), latent_dim=8).encode(tf.zeros([2, 784])).shape
    TensorShape([2, 8])
    """

    def __init__(
        self, hidden_units: Sequence[int] = (400,), latent_dim: int = 8, activation: str = "relu", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.hidden_units = validate_units("hidden_units", hidden_units, allow_empty=True)
        self.latent_dim = validate_units("latent_dim", [latent_dim], allow_empty=False)[0]
        self.activation = activation
        self.hidden_layers = dense_stack(self.hidden_units, activation)
        # Linear, and float32 under mixed precision: codes are compared with Gaussian draws.
        self.code_layer = keras.layers.Dense(self.latent_dim, dtype="float32", name="code")

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        hidden, outputs = run_stack(self.hidden_layers, inputs)
        return {**outputs, CODE: self.code_layer(hidden)}

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "hidden_units": list(self.hidden_units),
            "latent_dim": self.latent_dim,
            "activation": self.activation,
        }


@keras.saving.register_keras_serializable(package="aeloops")
class DenseDecoder(Decoder):
    """Dense hidden layers, then a Dense output layer and its activation.

    The output layer runs in float32 even under mixed precision.

    >>> decoder = DenseDecoder(units=(32, 64), output_units=784)
    >>> decoder.decode(tf.zeros([2, 8])).shape
    TensorShape([2, 784])
    """

    def __init__(
        self,
        units: Sequence[int] = (32, 64),
        output_units: int = 784,
        activation: str = "relu",
        output_activation: str = "sigmoid",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.units = validate_units("units", units, allow_empty=True)
        self.output_units = validate_units("output_units", [output_units], allow_empty=False)[0]
        self.activation = activation
        self.output_activation = validate_output_activation(output_activation)
        self.hidden_layers = dense_stack(self.units, activation)
        self.output_layer = keras.layers.Dense(self.output_units, dtype="float32", name="output")

    def call(self, code: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        hidden, _ = run_stack(self.hidden_layers, code)
        return output_dict(self.output_layer(hidden), self.output_activation)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": list(self.units),
            "output_units": self.output_units,
            "activation": self.activation,
            "output_activation": self.output_activation,
        }


@keras.saving.register_keras_serializable(package="aeloops")
class DenseAutoencoder(Autoencoder):
    """A ``DenseEncoder`` and a mirrored ``DenseDecoder``.

    Args:
      input_shape: one example's shape; Dense layers act on its last axis.
      encoder_units: units of each encoder layer, the last being the code.
      decoder_units: units of the decoder's hidden layers; the output layer
        has ``input_shape[-1]`` units.
      activation: the hidden layers' activation.
      output_activation: ``"sigmoid"`` (outputs ``"logits"`` too) or ``"linear"``.

    >>> model = DenseAutoencoder(input_shape=(784,), encoder_units=(64, 32, 8),
    ...                          decoder_units=(32, 64))
    >>> model.count_params()
    105944
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (784,),
        encoder_units: Sequence[int] = (64, 32, 8),
        decoder_units: Sequence[int] = (32, 64),
        activation: str = "relu",
        output_activation: str = "sigmoid",
        **kwargs: Any,
    ):
        input_shape = tuple(input_shape)
        if not input_shape:
            raise ValueError("input_shape must have at least one axis, got ().")
        super().__init__(
            encoder=DenseEncoder(encoder_units, activation, name="encoder"),
            decoder=DenseDecoder(decoder_units, input_shape[-1], activation, output_activation, name="decoder"),
            input_shape=input_shape,
            **kwargs,
        )

    def constructor_arguments(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.example_shape),
            "encoder_units": list(self.encoder.units),
            "decoder_units": list(self.decoder.units),
            "activation": self.encoder.activation,
            "output_activation": self.decoder.output_activation,
        }
