"""The SavedModel behind ``aeloops.export``: what TensorFlow alone can load, with named signatures.

Signatures, every batch dimension dynamic and every tensor float32; images
(inputs and reconstructions) in the data's shape, ``(batch, *image_shape)``:

- ``encode(inputs) -> {"code"}``; for a variational model, the mean;
- ``decode(code) -> {"reconstruction"}``, for any code;
- ``reconstruct(inputs) -> {"reconstruction"}``;
- ``anomaly_score(inputs) -> {"score"}``: each example's reconstruction
  error under the objective's reconstruction terms, weighted as in
  training (as ``aeloops.evaluation.anomaly.anomaly_scores``);
- for a variational model, ``sample(count, seed) -> {"reconstruction"}``:
  decodings of ``count`` codes drawn from the N(0, I) prior.

>>> write_saved_model(model, "exported/dense")                    # doctest: +SKIP
>>> served = tf.saved_model.load("exported/dense")                # doctest: +SKIP
>>> served.signatures["encode"](inputs=images)["code"]            # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from aeloops.evaluation.anomaly import scoring_terms
from aeloops.files import replacing_directory
from aeloops.models.base import CODE, RECONSTRUCTION, Autoencoder
from aeloops.models.variational import VariationalAutoencoder
from aeloops.objectives.objective import Objective

__all__ = ["FLOAT32_TOLERANCE", "SIGNATURES", "probe_inputs", "serving_functions", "signature_names",
           "write_saved_model"]

SIGNATURES = ("encode", "decode", "reconstruct", "anomaly_score")
# How far another runtime's float32 outputs may lie from TensorFlow's (numpy.allclose's rtol and atol):
# LiteRT and ONNX Runtime exports are checked against it before they are written.
FLOAT32_TOLERANCE = 1e-5


def signature_names(model: Autoencoder) -> tuple[str, ...]:
    """Returns the signatures an export of ``model`` has."""
    return (*SIGNATURES, "sample") if isinstance(model, VariationalAutoencoder) else SIGNATURES


class _Serving(tf.Module):
    """The model and its objective's reconstruction terms, as the functions a server calls.

    Inputs come, and reconstructions go, in ``image_shape``; the model reads them in its own ``example_shape``.
    """

    def __init__(self, model: Autoencoder, objective: Objective, step: int, image_shape: tuple[int, ...]) -> None:
        super().__init__(name="aeloops_serving")
        self.model = model
        # Regularizers do not score an example; weights are frozen at the step exported.
        self.terms = scoring_terms(objective, step)
        self.image_shape = image_shape

    def _model_inputs(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.reshape(inputs, [-1, *self.model.example_shape])

    def _images(self, reconstruction: tf.Tensor) -> tf.Tensor:
        return tf.reshape(tf.cast(reconstruction, tf.float32), [-1, *self.image_shape])

    def encode(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {CODE: tf.cast(self.model.encode(self._model_inputs(inputs), training=False), tf.float32)}

    def decode(self, code: tf.Tensor) -> dict[str, tf.Tensor]:
        return {RECONSTRUCTION: self._images(self.model.decode(code, training=False))}

    def reconstruct(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {RECONSTRUCTION: self._images(self.model.reconstruct(self._model_inputs(inputs), training=False))}

    def anomaly_score(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        inputs = self._model_inputs(inputs)
        outputs = self.model(inputs, training=False)
        # At serving time the input is every term's target (a denoising model's "clean" included).
        batch = {term.target: inputs for term, _ in self.terms if term.target is not None}
        score = tf.zeros(tf.shape(inputs)[:1], tf.float32)
        for term, weight in self.terms:
            score += weight * term.per_example(outputs, batch)
        return {"score": score}

    def sample(self, count: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        latent_dim = self.model.encoder.latent_dim
        codes = tf.random.stateless_normal(tf.stack([count, latent_dim]), seed=tf.stack([seed, tf.zeros_like(seed)]))
        return self.decode(codes)


def serving_functions(
    model: Autoencoder,
    objective: Objective | None = None,
    *,
    step: int = 0,
    image_shape: Sequence[int] | None = None,
) -> tuple[tf.Module, dict[str, tf.types.experimental.PolymorphicFunction]]:
    """Returns the module that holds the model and its signatures by name, as ``write_saved_model`` exports them.

    Raises:
      ValueError: for an unbuilt model, an objective without a
        reconstruction term, or images that do not reshape to the model's input.
    """
    if not isinstance(model, Autoencoder) or model.example_shape is None:
        raise ValueError("export needs a built aeloops Autoencoder (give the model an input_shape).")
    objective = objective if objective is not None else model.default_objective()
    example_shape = tuple(model.example_shape)
    image_shape = example_shape if image_shape is None else tuple(int(dim) for dim in image_shape)
    if math.prod(image_shape) != math.prod(example_shape):
        raise ValueError(f"Images of shape {image_shape} do not reshape to the model's input shape {example_shape}.")
    serving = _Serving(model, objective, step, image_shape)
    code_shape = tuple(model.encode(tf.zeros((1, *example_shape)), training=False).shape[1:])
    inputs = tf.TensorSpec((None, *image_shape), tf.float32, name="inputs")
    signatures = {
        "encode": tf.function(serving.encode, input_signature=[inputs]),
        "decode": tf.function(serving.decode, input_signature=[tf.TensorSpec((None, *code_shape), tf.float32, "code")]),
        "reconstruct": tf.function(serving.reconstruct, input_signature=[inputs]),
        "anomaly_score": tf.function(serving.anomaly_score, input_signature=[inputs]),
    }
    if isinstance(model, VariationalAutoencoder):
        count, seed = tf.TensorSpec((), tf.int32, "count"), tf.TensorSpec((), tf.int32, "seed")
        signatures["sample"] = tf.function(serving.sample, input_signature=[count, seed])
    return serving, signatures


def probe_inputs(
    function: tf.types.experimental.PolymorphicFunction, signature: str, count: int, seed: int
) -> np.ndarray:
    """Seeded inputs for one signature: codes of an encoder's scale for ``decode``, images in [0, 1] for the rest."""
    rng = np.random.default_rng([seed, SIGNATURES.index(signature)])
    shape = (count, *function.input_signature[0].shape[1:])
    values = rng.standard_normal(shape) if signature == "decode" else rng.random(shape)
    return values.astype(np.float32)


def write_saved_model(
    model: Autoencoder,
    path: str | os.PathLike,
    objective: Objective | None = None,
    *,
    step: int = 0,
    image_shape: Sequence[int] | None = None,
) -> pathlib.Path:
    """Writes ``model`` as a SavedModel at ``path`` with the signatures above; returns the path.

    Args:
      model: a built aeloops ``Autoencoder`` (its ``example_shape`` known).
      path: a directory that does not exist yet; nothing is overwritten.
      objective: whose reconstruction terms ``anomaly_score`` sums
        (default: the model's own ``default_objective()``).
      step: the training step at which scheduled term weights are read.
      image_shape: the shape of one image as served, in and out, when it
        is not the model's own (a dense model of 32x32x3 images takes
        3,072 values; served, it takes and returns (32, 32, 3) images).

    The export holds the model's weights as they are: export inside
    ``trainer.averaged_weights()`` to serve an optimizer's moving average.

    Raises:
      ValueError: for an unbuilt model, an objective without a
        reconstruction term, or an existing ``path``.
    """
    path = pathlib.Path(path)
    if path.exists():
        raise ValueError(f"{path} already exists; export to a new directory.")
    serving, signatures = serving_functions(model, objective, step=step, image_shape=image_shape)
    # Written beside the target and renamed, so a failed export leaves nothing behind.
    try:
        with replacing_directory(path) as partial:
            tf.saved_model.save(serving, os.fspath(partial), signatures=signatures)
    except tf.errors.OpError as error:  # A full or read-only disk, seen by TensorFlow's file system.
        raise OSError(" ".join(error.message.split())) from None
    return path
