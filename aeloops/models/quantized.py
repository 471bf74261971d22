"""The vector-quantised VAE (VQ-VAE, van den Oord et al. 2017): codes snapped to a learned codebook.

The encoder maps an image to a grid of vectors; each is replaced by its
nearest codebook entry, and gradients pass the snapping straight through
(the decoder's gradient is copied onto the encoder's output). Two terms
train what the reconstruction's gradient cannot reach, each an encoder
output summed over the grid per example:

- ``"codebook"``: |sg(z) - e|^2, moving the chosen entries toward the codes;
- ``"commitment"``: |z - sg(e)|^2, keeping the codes near their entries
  (weighted 0.25, the paper's beta).

``"perplexity"`` (exp of the entropy of the batch's codebook usage: how many
entries are in use, at most the codebook's size) is logged at weight 0, and
TensorBoard shows each epoch how many entries the held-out examples use
(``codebook_usage``). An entry no code chooses gets no gradient and stays
unused for good (codebook collapse); with ``reseed_after=N`` an entry unused
for N training steps is moved onto one of the batch's encoder vectors, drawn
by the layer's own seeded generator (checkpointed, so a resume draws alike).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from aeloops.models.base import CODE, Autoencoder, Encoder, validate_units
from aeloops.models.transposed import StridedConvEncoder, TransposedConvDecoder
from aeloops.objectives.objective import LossTerm, Objective

__all__ = [
    "QuantizingEncoder",
    "VectorQuantizedAutoencoder",
    "VectorQuantizer",
    "decodes_codebook_entries",
    "vq_objective",
]


@keras.saving.register_keras_serializable(package="aeloops")
class VectorQuantizer(keras.layers.Layer):
    """Snaps each vector of its input's last axis to the nearest of ``entries`` learned vectors.

    Returns the snapped vectors with straight-through gradients, the chosen
    entries' indices, the per-example codebook and commitment sums, and the
    batch's codebook perplexity (the same for every example).

    >>> quantizer = VectorQuantizer(entries=8, seed=0)
    >>> sorted(quantizer(tf.zeros([2, 3, 3, 4])))
    ['codebook', 'commitment', 'indices', 'perplexity', 'quantized']
    """

    def __init__(self, entries: int = 64, seed: int | None = None, reseed_after: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.entries = validate_units("entries", [entries], allow_empty=False)[0]
        self.seed = seed
        if reseed_after is not None:
            reseed_after = validate_units("reseed_after", [reseed_after], allow_empty=False)[0]
        self.reseed_after = reseed_after
        # Only a re-seeding quantizer has this state, so other models' checkpoints are as they were.
        self.seed_generator = (
            keras.random.SeedGenerator(None if seed is None else seed + 2) if reseed_after is not None else None
        )

    def build(self, input_shape: Sequence[int | None]) -> None:
        initializer = keras.initializers.RandomUniform(-1.0 / self.entries, 1.0 / self.entries, seed=self.seed)
        self.codebook = self.add_weight(
            shape=(self.entries, int(input_shape[-1])), initializer=initializer, name="codebook", dtype="float32"
        )
        if self.reseed_after is not None:
            self.steps_unused = self.add_weight(
                shape=(self.entries,), initializer="zeros", name="steps_unused", dtype="int32", trainable=False
            )

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        vectors = tf.cast(inputs, tf.float32)
        flat = tf.reshape(vectors, [-1, tf.shape(vectors)[-1]])
        distances = (
            tf.reduce_sum(tf.square(flat), axis=1, keepdims=True)
            - 2.0 * tf.matmul(flat, self.codebook, transpose_b=True)
            + tf.reduce_sum(tf.square(self.codebook), axis=1)[None, :]
        )
        indices = tf.argmin(distances, axis=1)
        chosen = tf.reshape(tf.gather(self.codebook, indices), tf.shape(vectors))
        examples = tf.shape(vectors)[0]
        codebook = tf.reduce_sum(tf.reshape(tf.square(tf.stop_gradient(vectors) - chosen), [examples, -1]), axis=1)
        commitment = tf.reduce_sum(tf.reshape(tf.square(vectors - tf.stop_gradient(chosen)), [examples, -1]), axis=1)
        usage = tf.reduce_mean(tf.one_hot(indices, self.entries), axis=0)
        perplexity = tf.exp(-tf.reduce_sum(usage * tf.math.log(usage + 1e-10)))
        if training and self.reseed_after is not None:
            self._reseed(flat, usage > 0)
        return {
            # Straight through: the forward pass sees the entries, the backward pass the encoder's vectors.
            "quantized": vectors + tf.stop_gradient(chosen - vectors),
            "indices": tf.reshape(indices, tf.shape(vectors)[:-1]),
            "codebook": codebook,
            "commitment": commitment,
            "perplexity": tf.fill([examples], perplexity),
        }

    def _reseed(self, vectors: tf.Tensor, used: tf.Tensor) -> None:
        """Moves each entry unused for ``reseed_after`` steps onto a randomly drawn one of ``vectors``.

        After this step's distances: the step trains on the entries it chose,
        and the next steps find the moved ones.
        """
        replicas = tf.distribute.get_replica_context()
        if replicas is not None and replicas.num_replicas_in_sync > 1:
            raise ValueError(
                "reseed_after re-seeds the codebook from one replica's batch; train this VQ-VAE on one device, "
                "or without reseed_after."
            )
        steps = tf.where(used, 0, self.steps_unused + 1)
        stale = steps >= self.reseed_after
        drawn = keras.random.randint([self.entries], 0, tf.shape(vectors)[0], seed=self.seed_generator)
        fresh = tf.gather(tf.stop_gradient(vectors), drawn)
        self.codebook.assign(tf.where(stale[:, None], fresh, self.codebook))
        self.steps_unused.assign(tf.where(stale, 0, steps))

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "entries": self.entries, "seed": self.seed}
        return config if self.reseed_after is None else {**config, "reseed_after": self.reseed_after}


@keras.saving.register_keras_serializable(package="aeloops")
class QuantizingEncoder(Encoder):
    """Strided convolutions to a grid of ``embedding_dim``-vectors, each snapped to a ``VectorQuantizer`` entry.

    >>> QuantizingEncoder(filters=(16,), embedding_dim=4).encode(tf.zeros([1, 28, 28, 1])).shape
    TensorShape([1, 14, 14, 4])
    """

    def __init__(
        self,
        filters: Sequence[int] = (32, 32),
        embedding_dim: int = 16,
        entries: int = 64,
        activation: str = "relu",
        seed: int | None = None,
        reseed_after: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.filters = validate_units("filters", filters, allow_empty=False)
        self.embedding_dim = validate_units("embedding_dim", [embedding_dim], allow_empty=False)[0]
        self.activation, self.seed = activation, seed
        self.convolutions = StridedConvEncoder(self.filters, activation, name="convolutions")
        # Linear: the vectors the codebook's entries stand for.
        self.projection = keras.layers.Conv2D(self.embedding_dim, 1, dtype="float32", name="projection")
        self.quantizer = VectorQuantizer(entries, seed, reseed_after, name="quantizer")

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        vectors = self.projection(self.convolutions(inputs, training=training)[CODE])
        quantized = self.quantizer(vectors, training=training)
        return {
            "encoded": vectors,
            CODE: quantized["quantized"],
            **{name: quantized[name] for name in ("indices", "codebook", "commitment", "perplexity")},
        }

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": list(self.filters),
            "embedding_dim": self.embedding_dim,
            "entries": self.quantizer.entries,
            "activation": self.activation,
            "seed": self.seed,
            **({} if self.quantizer.reseed_after is None else {"reseed_after": self.quantizer.reseed_after}),
        }


@keras.saving.register_keras_serializable(package="aeloops")
class VectorQuantizedAutoencoder(Autoencoder):
    """VQ-VAE for MNIST: Conv 32-32 (stride 2) to a 7x7 grid of 16-D vectors, 64 codebook entries; mirrored up.

    >>> VectorQuantizedAutoencoder().count_params()
    25297
    """

    intermediate_outputs = ("encoded", "indices", "codebook", "commitment", "perplexity")

    def __init__(
        self,
        input_shape: Sequence[int] = (28, 28, 1),
        filters: Sequence[int] = (32, 32),
        embedding_dim: int = 16,
        entries: int = 64,
        activation: str = "relu",
        seed: int | None = None,
        reseed_after: int | None = None,
        **kwargs: Any,
    ):
        input_shape = tuple(int(dim) for dim in input_shape)
        if len(input_shape) != 3:
            raise ValueError(
                f"VectorQuantizedAutoencoder needs input_shape (height, width, channels), got {input_shape}."
            )
        super().__init__(
            encoder=QuantizingEncoder(filters, embedding_dim, entries, activation, seed, reseed_after, name="encoder"),
            decoder=TransposedConvDecoder(
                tuple(reversed(tuple(filters))),
                input_shape[-1],
                activation,
                output_size=input_shape[:2],
                name="decoder",
            ),
            input_shape=input_shape,
            **kwargs,
        )
        self.check_reconstruction_shape("the decoder needs as many layers as the encoder")

    def default_objective(self) -> Objective:
        """Returns ``vq_objective(self)``."""
        return vq_objective(self)

    def constructor_arguments(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.example_shape),
            "filters": list(self.encoder.filters),
            "embedding_dim": self.encoder.embedding_dim,
            "entries": self.encoder.quantizer.entries,
            "activation": self.encoder.activation,
            "seed": self.encoder.seed,
            **(
                {}
                if self.encoder.quantizer.reseed_after is None
                else {"reseed_after": self.encoder.quantizer.reseed_after}
            ),
        }

    def codebook_usage(self, images: tf.Tensor | np.ndarray) -> np.ndarray:
        """Returns how many of ``images``' codes chose each codebook entry (``entries`` counts)."""
        indices = self.encoder(images, training=False)["indices"]
        return np.bincount(np.asarray(indices).ravel(), minlength=self.encoder.quantizer.entries)


def decodes_codebook_entries(model: keras.Model) -> bool:
    """Whether ``model`` codes images as codebook indices (a VQ-VAE): it draws only from a learned prior over them."""
    return "indices" in getattr(model, "intermediate_outputs", ())


def vq_objective(model: Autoencoder, loss: str | None = None, commitment: float = 0.25) -> Objective:
    """Returns the summed BCE + codebook + ``commitment`` x commitment terms, with the perplexity logged at weight 0."""
    return Objective(
        [
            LossTerm("bce", output="logits", loss=loss or "bce_logits", reduction="sum"),
            LossTerm("codebook", output="codebook", loss="sum", target=None),
            LossTerm("commitment", output="commitment", loss="sum", target=None, weight=commitment),
            LossTerm("perplexity", output="perplexity", loss="sum", target=None, weight=0.0),
        ]
    )
