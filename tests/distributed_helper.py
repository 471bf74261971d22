"""Trains the same models on one device and under MirroredStrategy over two logical CPUs.

Run as ``python -m tests.distributed_helper OUTPUT.json``: logical devices must
be configured before TensorFlow initializes, so this runs in a fresh process.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from aeloops.data import load_sample, to_model_inputs  # noqa: E402
from aeloops.models import registry  # noqa: E402
from aeloops.training.callbacks import TIMINGS, Callback  # noqa: E402
from aeloops.training.recovery import Recovery  # noqa: E402
from aeloops.training.trainer import Trainer  # noqa: E402


class CodeEnergyTrainer(Trainer):
    """An overridden step with a value of its own, updating by gradient values transformed elementwise.

    A signed square root of each gradient element: were the values each
    replica's own gradient rather than the global batch's, the replicas'
    updates would sum to something else than one device's.
    """

    def train_step(self, batch):
        with tf.GradientTape() as tape:
            terms = self.compute_terms(batch, training=True)
        gradients = self.gradients(terms["loss"], tape)
        self.apply_gradients([tf.sign(g) * tf.sqrt(tf.abs(g)) for g in gradients], loss=terms["loss"])
        energy = tf.reduce_sum(tf.square(self.model.encode(batch["input"], training=True)), axis=1)
        return {**terms, "code_energy": tf.nn.compute_average_loss(energy)}


class BlowUp(Callback):
    """Sets a part's learning rate out of all reason after the call that reaches ``step``, once."""

    def __init__(self, step: int, part: str, rate: float) -> None:
        self.step, self.part, self.rate, self.done = step, part, rate, False

    def on_loop_end(self, trainer: Trainer, logs: dict) -> None:
        if not self.done and int(trainer.step.numpy()) >= self.step:
            trainer.optimizers[self.part].learning_rate.assign(self.rate)
            self.done = True


def train(name: str, mode: str, strategy: tf.distribute.Strategy | None, images: np.ndarray) -> dict:
    keras.utils.set_random_seed(0)
    override = name == "override"
    spec = registry.get("dense" if override else name)
    trainer_class, optimizer = Trainer, "adam"
    with (strategy or tf.distribute.get_strategy()).scope():
        model = spec.build()
        if name == "sparse":  # Besides its L1 term on the code, a Keras activity regularizer: a layer_losses term.
            model.encoder.hidden_layers[0].activity_regularizer = keras.regularizers.l1(1e-3)
        if override:  # Per-part optimizers whose clipping is active at this scale; validation uses an EMA.
            trainer_class = CodeEnergyTrainer
            optimizer = {
                "encoder": keras.optimizers.Adam(2e-3, global_clipnorm=0.05, use_ema=True, ema_momentum=0.9),
                "decoder": keras.optimizers.Adam(5e-4, global_clipnorm=0.05),
            }
    # The overridden step also recovers by rolling back: a rate blown up at step 12 spikes the loss, and the
    # rollback must put back every replica's state, both parts' optimizers included, as on one device.
    recovery = dict(on_nonfinite="rollback", recovery=Recovery(learning_rate_factor=1e-6, spike_factor=3.0,
                                                                 spike_window=3)) if override else {}  # fmt: skip
    trainer = trainer_class(
        model, spec.objective(model), optimizer, mode=mode, steps_per_loop=4, strategy=strategy, **recovery
    )
    inputs = to_model_inputs(images, model.example_shape)
    # Keras callbacks as they are: a rate halved for epoch 2 (each part's, for several optimizers), and the calls.
    events = []
    callbacks = [
        keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate / 2 if epoch == 1 else rate),
        keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: events.append(["epoch_begin", epoch]),
            on_train_batch_end=lambda batch, logs: events.append(["batch_end", batch, sorted(logs)]),
            on_epoch_end=lambda epoch, logs: events.append(["epoch_end", epoch, sorted(logs)]),
        ),
    ]
    if override:
        callbacks.append(BlowUp(12, "encoder", 1e3))
    history = trainer.fit(
        inputs, epochs=2, batch_size=64, validation_data=inputs[:200], callbacks=callbacks, verbose=0
    )
    return {
        "events": events,
        "history": {key: value for key, value in history.items() if key not in TIMINGS},
        "weights": [variable.numpy().tolist() for variable in model.weights],
        "replicas": trainer.strategy.num_replicas_in_sync,
        "step": int(trainer.step.numpy()),
    }


def main(output: str) -> None:
    images = load_sample().train_images[:1024]
    results = {}
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for name, mode in (("sparse", "auto"), ("conv", "graph"), ("override", "graph")):
        results[f"{name}-{mode}"] = {
            "single": train(name, mode, None, images),
            "mirrored": train(name, mode, mirrored, images),
        }
    try:
        keras.utils.set_random_seed(0)
        with mirrored.scope():
            model = registry.get("dense").build()
        Trainer(model, mode="xla", strategy=mirrored)
        results["xla_error"] = None
    except ValueError as error:
        results["xla_error"] = str(error)
    results["auto_mode"] = Trainer(model, mode="auto", strategy=mirrored).mode
    with open(output, "w") as stream:
        json.dump(results, stream)


if __name__ == "__main__":
    main(sys.argv[1])
