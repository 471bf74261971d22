"""What aeloops is timed against: Keras ``Model.fit`` and a plain hand-written loop.

Both train a plain Keras model with exactly the seed model's architecture
(same layers, same parameter count) on the same images and batch size.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

__all__ = ["HandWrittenLoop", "KerasFit", "image_shape_of", "keras_reference"]


def image_shape_of(images: np.ndarray) -> tuple[int, ...]:
    """Returns the (height, width, channels) of a batch of images; MNIST's for flat vectors."""
    return tuple(images.shape[1:]) if images.ndim == 4 else (28, 28, 1)


def keras_reference(name: str, image_shape: tuple[int, int, int] = (28, 28, 1)) -> keras.Model:
    """Returns a plain Keras model with the architecture of seed model ``name`` (conv: for ``image_shape``)."""
    dense = keras.layers.Dense
    if name == "dense":
        layers = [dense(64, "relu"), dense(32, "relu"), dense(8, "relu"), dense(32, "relu"), dense(64, "relu")]
        return keras.Sequential([keras.Input((784,)), *layers, dense(784, "sigmoid")])
    if name == "deep":
        layers = [dense(128, "relu"), dense(64, "relu"), dense(32, "relu"), dense(64, "relu"), dense(128, "relu")]
        return keras.Sequential([keras.Input((784,)), *layers, dense(784, "sigmoid")])
    if name == "sparse":
        return keras.Sequential([keras.Input((784,)), dense(32, "relu"), dense(784, "sigmoid")])
    if name == "conv":
        from aeloops.models.conv import default_paddings

        conv = keras.layers.Conv2D
        # The seed's 'valid' last hidden convolution ends 28x28 exactly; other sizes use 'same' (as aeloops does).
        paddings = default_paddings(image_shape[:2], 3, 3)
        return keras.Sequential(
            [
                keras.Input(image_shape),
                conv(16, 3, activation="relu", padding="same"),
                keras.layers.MaxPooling2D(2, padding="same"),
                conv(8, 3, activation="relu", padding="same"),
                keras.layers.MaxPooling2D(2, padding="same"),
                conv(8, 3, activation="relu", padding="same"),
                keras.layers.MaxPooling2D(2, padding="same"),
                conv(8, 3, activation="relu", padding=paddings[0]),
                keras.layers.UpSampling2D(2),
                conv(8, 3, activation="relu", padding=paddings[1]),
                keras.layers.UpSampling2D(2),
                conv(16, 3, activation="relu", padding=paddings[2]),
                keras.layers.UpSampling2D(2),
                conv(image_shape[-1], 3, activation="sigmoid", padding="same"),
            ]
        )
    raise ValueError(f"No Keras reference for model {name!r}; choose dense, deep, sparse or conv.")


class _EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds = time.perf_counter() - self.started


class KerasFit:
    """Keras ``compile`` + ``fit`` (Adam, binary cross-entropy), at its defaults or tuned for speed.

    A user who cares about speed sets ``jit_compile`` and
    ``steps_per_execution``; those are the peers aeloops' modes should beat.
    """

    def __init__(
        self,
        model_name: str,
        images: np.ndarray,
        batch_size: int,
        jit_compile: bool | str = "auto",
        steps_per_execution: int = 1,
    ) -> None:
        keras.utils.set_random_seed(0)
        self.model = keras_reference(model_name, image_shape_of(images))
        self.model.compile(
            optimizer="adam",
            loss="binary_crossentropy",
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
        )
        if jit_compile == "auto" and steps_per_execution == 1:
            self.name = "keras fit (defaults)"
        else:
            self.name = f"keras fit (jit_compile={jit_compile}, steps_per_execution={steps_per_execution})"
        self.images = images
        self.batch_size = batch_size
        self.traces = None  # Keras's own functions; not counted here.

    def run_epoch(self) -> tuple[float, float]:
        """Trains one epoch; returns its mean loss and its seconds from epoch begin to end."""
        timer = _EpochTimer()
        history = self.model.fit(
            self.images, self.images, batch_size=self.batch_size, epochs=1, verbose=0, callbacks=[timer]
        )
        return float(history.history["loss"][-1]), timer.seconds


class HandWrittenLoop:
    """The loop a user writes first: ``tf.data`` batches into a ``tf.function`` step."""

    name = "hand-written tf.function loop"

    def __init__(self, model_name: str, images: np.ndarray, batch_size: int) -> None:
        keras.utils.set_random_seed(0)
        self.model = keras_reference(model_name, image_shape_of(images))
        self.optimizer = keras.optimizers.Adam()
        self.loss = keras.losses.BinaryCrossentropy()
        self.dataset = (
            tf.data.Dataset.from_tensor_slices(images)
            .shuffle(len(images), seed=0)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE)
        )
        self.traces = 0
        self.step = tf.function(self._step)

    def _step(self, batch: tf.Tensor) -> tf.Tensor:
        self.traces += 1
        with tf.GradientTape() as tape:
            loss = self.loss(batch, self.model(batch, training=True))
        gradients = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        return loss

    def run_epoch(self) -> tuple[float, float]:
        """Trains one epoch; returns its mean loss and its seconds."""
        started = time.perf_counter()
        total, steps = 0.0, 0
        for batch in self.dataset:
            total += float(self.step(batch))
            steps += 1
        return total / steps, time.perf_counter() - started
