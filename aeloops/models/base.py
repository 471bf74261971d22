"""Base classes: ``Encoder``, ``Decoder`` and the ``Autoencoder`` joining them.

An ``Autoencoder`` returns a dict of named tensors, so that loss terms pick
outputs by name: ``"code"`` from the encoder, ``"reconstruction"`` from the
decoder (after its output activation), ``"logits"`` where that activation is
a sigmoid, and any other activation a model exposes (``"hidden_1"``, one
entry per head, ...). The encoder and decoder are models of their own:
``encode`` never runs the decoder and ``decode`` takes any code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from aeloops.objectives.objective import LossTerm, Objective

__all__ = [
    "RECONSTRUCTION_LOSSES",
    "Autoencoder",
    "Decoder",
    "Encoder",
    "as_outputs",
    "crop_to",
    "output_dict",
    "reconstruction_term",
    "validate_output_activation",
    "validate_units",
]

CODE = "code"
RECONSTRUCTION = "reconstruction"
LOGITS = "logits"
OUTPUT_ACTIVATIONS = ("sigmoid", "linear")
# The losses reconstruction_term offers (runs.choices repeats them for the CLI, before TensorFlow loads).
RECONSTRUCTION_LOSSES = ("bce", "mse", "mae")
# The choices for a model's reconstruction term (the CLI's --loss).


def crop_to(images: tf.Tensor, size: Sequence[int] | None) -> tf.Tensor:
    """Returns ``images`` (batch, height, width, channels) cropped about their centre to ``size`` (height, width).

    Strided and pooling decoders double the size at each layer, so for a
    side that is not a multiple of 2 ** layers they overshoot: 30 -> 15 -> 8
    -> 16 -> 32. Cropping back adds no parameter. None, or a size the images
    already have, leaves them as they are; so do smaller images, for the
    model's own shape check to explain.
    """
    if size is None:
        return images
    height, width = int(images.shape[1]), int(images.shape[2])
    if (height, width) == tuple(size) or height < size[0] or width < size[1]:
        return images
    top, left = (height - size[0]) // 2, (width - size[1]) // 2
    return images[:, top : top + size[0], left : left + size[1], :]


def as_outputs(value: tf.Tensor | Mapping[str, tf.Tensor], key: str) -> dict[str, tf.Tensor]:
    """Returns ``value`` as a dict of outputs, a lone tensor filed under ``key``."""
    if isinstance(value, Mapping):
        if key not in value:
            raise ValueError(f"A model returned outputs {sorted(value)} without {key!r}.")
        return dict(value)
    return {key: value}


@keras.saving.register_keras_serializable(package="aeloops")
class Encoder(keras.Model):
    """Maps inputs to a code; ``call`` returns the code or a dict with ``"code"``.

    Subclasses implement ``call(inputs, training=None)``. A dict lets an
    encoder expose hidden activations for regularization.
    """

    def encode(self, inputs: Any, training: bool = False) -> tf.Tensor:
        """Returns the code of ``inputs``."""
        return as_outputs(self(inputs, training=training), CODE)[CODE]


@keras.saving.register_keras_serializable(package="aeloops")
class Decoder(keras.Model):
    """Maps a code to a reconstruction; ``call`` returns it or a dict with it.

    Subclasses implement ``call(code, training=None)``; a decoder with a
    sigmoid output also returns the pre-activation ``"logits"`` so that the
    cross-entropy is computed from logits, fused and stable.
    """

    def decode(self, code: Any, training: bool = False) -> tf.Tensor:
        """Returns the reconstruction decoded from ``code``."""
        return as_outputs(self(code, training=training), RECONSTRUCTION)[RECONSTRUCTION]


@keras.saving.register_keras_serializable(package="aeloops")
class Autoencoder(keras.Model):
    """An encoder and a decoder, called in turn, returning named outputs.

    Args:
      encoder: an ``Encoder``.
      decoder: a ``Decoder`` that accepts the encoder's code.
      input_shape: one example's shape, without the batch axis. When given,
        the model is built at once, so its parameters exist and count.

    >>> model = DenseAutoencoder(input_shape=(784,))   # doctest: +SKIP
    >>> outputs = model(images)                         # doctest: +SKIP
    >>> sorted(outputs)                                 # doctest: +SKIP
    ['code', 'hidden_1', 'hidden_2', 'logits', 'reconstruction']
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        input_shape: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(encoder, Encoder):
            raise TypeError(f"encoder must be an aeloops Encoder, got {type(encoder).__name__}.")
        if not isinstance(decoder, Decoder):
            raise TypeError(f"decoder must be an aeloops Decoder, got {type(decoder).__name__}.")
        self.encoder = encoder
        self.decoder = decoder
        self.example_shape = _validate_shape(input_shape) if input_shape is not None else None
        if self.example_shape is not None:
            self.build_for_shape(self.example_shape)

    def build_for_shape(self, example_shape: Sequence[int]) -> None:
        """Creates every variable by calling the model on one zero example."""
        self(np.zeros((1, *example_shape), np.float32), training=False)

    def check_reconstruction_shape(self, fix: str) -> None:
        """Raises a ValueError, ending with ``fix``, unless reconstructions have the input's shape."""
        output_shape = tuple(self.reconstruct(np.zeros((1, *self.example_shape), np.float32)).shape[1:])
        if output_shape != self.example_shape:
            raise ValueError(f"The decoder produces {output_shape} from inputs of shape {self.example_shape}; {fix}.")

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, tf.Tensor]:
        """Returns the encoder's and the decoder's outputs in one dict."""
        encoded = as_outputs(self.encoder(inputs, training=training), CODE)
        decoded = as_outputs(self.decoder(encoded[CODE], training=training), RECONSTRUCTION)
        clashes = sorted(set(encoded) & set(decoded))
        if clashes:
            raise ValueError(f"Encoder and decoder both return outputs named {clashes}.")
        return {**encoded, **decoded}

    def encode(self, inputs: Any, training: bool = False) -> tf.Tensor:
        """Returns the code of ``inputs`` without running the decoder."""
        return self.encoder.encode(inputs, training=training)

    def decode(self, code: Any, training: bool = False) -> tf.Tensor:
        """Returns the reconstruction of any ``code``, from the encoder or not."""
        return self.decoder.decode(code, training=training)

    def reconstruct(self, inputs: Any, training: bool = False) -> tf.Tensor:
        """Returns ``decode(encode(inputs))``."""
        return self(inputs, training=training)[RECONSTRUCTION]

    def default_objective(self) -> Objective:
        """Returns the plain reconstruction objective for this model.

        Binary cross-entropy from ``"logits"`` where the decoder has a sigmoid
        output, mean squared error on ``"reconstruction"`` otherwise.
        """
        return Objective([reconstruction_term(self)])

    def output_names(self) -> tuple[str, ...]:
        """Returns the names of the outputs that ``call`` produces."""
        if self.example_shape is None:
            raise ValueError("Build the model (pass input_shape) before asking for its outputs.")
        outputs = self(np.zeros((1, *self.example_shape), np.float32), training=False)
        return tuple(sorted(outputs))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.constructor_arguments()}

    # Keras's own training entry points would train without the objective
    # (an aeloops model returns a dict of outputs, not a prediction to
    # compare with a target): refuse them, naming the way that works.
    def compile(self, *args: Any, **kwargs: Any) -> None:
        """Refuses Keras's ``compile``: aeloops models train with ``aeloops.Trainer``."""
        raise TypeError(_USE_TRAINER.format(method="compile"))

    def fit(self, *args: Any, **kwargs: Any) -> None:
        """Refuses Keras's ``fit``: aeloops models train with ``aeloops.Trainer``."""
        raise TypeError(_USE_TRAINER.format(method="fit"))

    def train_step(self, *args: Any, **kwargs: Any) -> None:
        """Refuses Keras's ``train_step``: override ``aeloops.Trainer.train_step`` instead."""
        raise TypeError(_USE_TRAINER.format(method="train_step"))

    def test_step(self, *args: Any, **kwargs: Any) -> None:
        """Refuses Keras's ``test_step``: override ``aeloops.Trainer.test_step`` instead."""
        raise TypeError(_USE_TRAINER.format(method="test_step"))

    def constructor_arguments(self) -> dict[str, Any]:
        """Returns the arguments that rebuild this model; subclasses return their own."""
        return {
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "input_shape": list(self.example_shape) if self.example_shape else None,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Autoencoder:
        config = dict(config)
        for part in ("encoder", "decoder"):
            if isinstance(config.get(part), dict):
                config[part] = keras.saving.deserialize_keras_object(config[part])
        return cls(**config)


_USE_TRAINER = (
    "aeloops models are trained by aeloops.Trainer, not Keras's {method}: "
    "trainer = aeloops.Trainer(model, objective); trainer.fit(x, epochs=..., batch_size=...). "
    "To change the training step, subclass aeloops.Trainer and override train_step "
    "(docs/train-step.md)."
)


def _validate_shape(shape: Sequence[int]) -> tuple[int, ...]:
    try:
        dims = tuple(int(dim) for dim in shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be a sequence of positive ints, got {shape!r}.") from None
    if not dims or any(dim <= 0 for dim in dims):
        raise ValueError(f"input_shape must be a sequence of positive ints, got {shape!r}.")
    return dims


def reconstruction_term(model: Autoencoder, loss: str | None = None) -> LossTerm:
    """Returns the term comparing the model's reconstruction with its input.

    ``"bce"`` (the default for a sigmoid output) reads ``"logits"``; ``"mse"``
    (the default for a linear output) and ``"mae"`` read ``"reconstruction"``.
    """
    has_logits = LOGITS in model.output_names()
    if loss is None:
        loss = "bce" if has_logits else "mse"
    if loss not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"Unknown loss {loss!r}; choose one of {', '.join(RECONSTRUCTION_LOSSES)}.")
    if loss == "bce":
        if not has_logits:
            raise ValueError(
                "Binary cross-entropy needs a sigmoid output, and this model's output is linear; "
                "choose --loss mse or mae."
            )
        return LossTerm("bce", output=LOGITS, loss="bce_logits")
    return LossTerm(loss, output=RECONSTRUCTION, loss=loss)


def validate_units(name: str, units: Sequence[int], allow_empty: bool) -> tuple[int, ...]:
    """Returns ``units`` as a tuple of positive ints, or raises a ValueError naming ``name``."""
    try:
        units = tuple(int(unit) for unit in units)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of positive ints, got {units!r}.") from None
    if (not units and not allow_empty) or any(unit <= 0 for unit in units):
        raise ValueError(f"{name} must be a sequence of positive ints, got {units!r}.")
    return units


def validate_output_activation(activation: str) -> str:
    """Returns ``activation`` if a decoder may end with it (``"sigmoid"`` or ``"linear"``)."""
    if activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {activation!r}.")
    return activation


def output_dict(pre_activation: tf.Tensor, output_activation: str) -> dict[str, tf.Tensor]:
    """Returns the decoder outputs for a pre-activation and its activation."""
    if output_activation == "sigmoid":
        return {LOGITS: pre_activation, RECONSTRUCTION: tf.sigmoid(pre_activation)}
    return {RECONSTRUCTION: pre_activation}
