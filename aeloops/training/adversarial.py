"""The adversarial autoencoder's training step (Makhzani et al. 2015): a discriminator shapes the codes.

Each step makes three updates: the objective (the reconstruction) through
the trainer's optimizer; the discriminator, learning to tell draws of the
N(0, I) prior (real) from the encoder's codes (fake); and the encoder as a
generator, learning to make codes the discriminator calls real. Both
adversaries' losses and gradient norms are logged beside the objective's
terms. Everything the trainer holds (the discriminator, its optimizer, the
generator's optimizer, the prior's random generator) is checkpointed, so a
resumed run continues exactly.

>>> trainer = AdversarialTrainer(AdversarialAutoencoder(), mode="graph")  # doctest: +SKIP
>>> history = trainer.fit(x_train, epochs=10, batch_size=100)           # doctest: +SKIP
>>> sorted(history)[:3]                                                 # doctest: +SKIP
['bce', 'discriminator', 'discriminator_gradient_norm']
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from aeloops.training.trainer import Trainer

__all__ = ["AdversarialTrainer"]


def _cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)[:, 0]


class AdversarialTrainer(Trainer):
    """A ``Trainer`` whose step adds a discriminator on the codes and an encoder update against it.

    Args:
      model: an autoencoder with a flat, linear code (``AdversarialAutoencoder``).
      *args: as ``Trainer``'s.
      discriminator_units: the discriminator's hidden layers.
      adversarial_learning_rate: Adam's rate for the discriminator and the generator.
      prior_seed: seeds the prior's draws.
      **kwargs: as ``Trainer``'s.
    """

    def __init__(
        self,
        model: keras.Model,
        *args: Any,
        discriminator_units: tuple[int, ...] = (256, 256),
        adversarial_learning_rate: float = 1e-4,
        prior_seed: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, *args, **kwargs)
        code_shape = model.encode(tf.zeros((1, *model.example_shape))).shape[1:]
        if len(code_shape) != 1:
            raise ValueError(f"AdversarialTrainer needs a flat code, got one of shape {tuple(code_shape)}.")
        with self.strategy.scope():
            layers = [keras.layers.Dense(units, activation="relu") for units in discriminator_units]
            self.discriminator = keras.Sequential([*layers, keras.layers.Dense(1, dtype="float32")])
            self.discriminator.build((None, code_shape[0]))
            self.discriminator_optimizer = keras.optimizers.Adam(adversarial_learning_rate)
            self.discriminator_optimizer.build(self.discriminator.trainable_variables)
            self.generator_optimizer = keras.optimizers.Adam(adversarial_learning_rate)
            self.generator_optimizer.build(model.encoder.trainable_variables)
            self.prior = tf.random.Generator.from_seed(prior_seed)

    def train_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Reconstruction, then the discriminator, then the encoder against it; returns all three losses."""
        with tf.GradientTape() as tape:
            terms = self.compute_terms(batch, training=True)
        self.optimize(terms["loss"], tape)
        codes = tf.cast(self.model.encode(batch["input"], training=True), tf.float32)
        draws = self.prior.normal(tf.shape(codes))
        with tf.GradientTape() as tape:
            real, fake = self.discriminator(draws), self.discriminator(codes)
            discriminator_loss = tf.nn.compute_average_loss(
                _cross_entropy(tf.ones_like(real), real) + _cross_entropy(tf.zeros_like(fake), fake)
            )
        self.optimize(
            discriminator_loss, tape, self.discriminator.trainable_variables, self.discriminator_optimizer,
            name="discriminator",
        )  # fmt: skip
        with tf.GradientTape() as tape:
            fake = self.discriminator(tf.cast(self.model.encode(batch["input"], training=True), tf.float32))
            generator_loss = tf.nn.compute_average_loss(_cross_entropy(tf.ones_like(fake), fake))
        self.optimize(
            generator_loss, tape, self.model.encoder.trainable_variables, self.generator_optimizer, name="generator"
        )
        return {**terms, "discriminator": discriminator_loss, "generator": generator_loss}
