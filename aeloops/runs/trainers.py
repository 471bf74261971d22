"""What trains a run: its strategy, precision and optimizers, and the Trainer for its model.

Families whose step is their own are paired with their Trainer here, above
both: ``models/`` knows nothing of training and ``training/`` nothing of the
model families.

>>> trainer = build_trainer(TrainConfig(model="dense"))   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import keras
import tensorflow as tf

from aeloops.models import registry
from aeloops.models.adversarial import AdversarialAutoencoder
from aeloops.models.registry import MNIST_SHAPE, ModelSpec
from aeloops.runs import watching
from aeloops.runs.config import OPTIMIZER_OPTIONS, TrainConfig
from aeloops.runs.directory import task_address
from aeloops.runs.objective import build_objective
from aeloops.training.adversarial import AdversarialTrainer
from aeloops.training.optimizers import make_optimizer
from aeloops.training.recovery import Recovery
from aeloops.training.trainer import Trainer

__all__ = [
    "PAIRS",
    "build_trainer",
    "make_optimizers",
    "make_strategy",
    "precision",
    "recovery",
    "trainer_class",
]

# Model families whose training needs a step of their own, and the Trainer with that step.
PAIRS: tuple[tuple[type[keras.Model], type[Trainer]], ...] = ((AdversarialAutoencoder, AdversarialTrainer),)


def trainer_class(spec: ModelSpec, model: keras.Model) -> type[Trainer]:
    """Returns the Trainer for ``model``: its spec's (a user's ModelSpec may name one), its family's, or Trainer."""
    if spec.trainer is not None:
        return spec.trainer()
    return next((trainer for family, trainer in PAIRS if isinstance(model, family)), Trainer)


def build_trainer(
    config: TrainConfig, model: keras.Model | None = None, strategy: tf.distribute.Strategy | None = None
) -> Trainer:
    """Returns the trainer ``config`` describes (model, objective, optimizers, strategy), without data.

    Builds the model and the strategy unless given. Call it under
    ``precision(config)``; ``run`` does.
    """
    strategy = strategy or make_strategy(config.strategy)
    spec = registry.get(config.model)
    with strategy.scope():  # Models and optimizers belong to the strategy they are created under.
        # A run records its images' shape; one that predates the record trained on MNIST's.
        model = model or spec.build(config.image_shape or MNIST_SHAPE, **config.model_options)
        optimizers = make_optimizers(config)
    return trainer_class(spec, model)(
        model,
        build_objective(config, model),
        optimizers,
        mode=config.mode,
        steps_per_loop=config.steps_per_loop,
        strategy=strategy,
        seed=config.seed,
        on_nonfinite=config.on_nonfinite,
        recovery=recovery(config),
        dynamic_binarization=config.binarize == "dynamic",
    )


def recovery(config: TrainConfig) -> Recovery | None:
    """Returns how the run recovers from divergence: its ``Recovery`` under ``on_nonfinite = "rollback"``."""
    if config.on_nonfinite != "rollback":
        return None
    return Recovery(
        max_recoveries=config.max_recoveries,
        learning_rate_factor=float(config.rollback_lr_factor),
        spike_factor=None if config.spike_factor is None else float(config.spike_factor),
        spike_window=config.spike_window,
    )


@contextlib.contextmanager
def precision(config: TrainConfig) -> Iterator[None]:
    """Sets Keras's global dtype policy to ``config.precision`` for the block, then puts the old one back."""
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.precision)
    try:
        yield
    finally:  # The policy is process-wide; leave it as it was found.
        keras.mixed_precision.set_global_policy(previous_policy)


def make_optimizers(config: TrainConfig) -> keras.optimizers.Optimizer | dict[str, keras.optimizers.Optimizer]:
    """Returns the run's optimizer, or one per part of the model (``config.optimizers``)."""
    parts = {}
    for part, settings in config.optimizer_settings().items():
        options = {name: settings[name] for name in OPTIMIZER_OPTIONS}
        try:
            parts[part] = make_optimizer(
                settings["optimizer"], settings["learning_rate"], watching.learning_rate_schedule(config), **options
            )
        except ValueError as error:
            where = "" if part == "model" else f"optimizers.{part}: "
            raise ValueError(f"{where}{error}") from None
    return parts["model"] if list(parts) == ["model"] else parts


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Returns the ``tf.distribute`` strategy called ``name``."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multiworker needs TF_CONFIG describing the cluster and this task.")
        _check_port_free(task_address())
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}; choose default, mirrored or multiworker.")


def _check_port_free(address: str | None) -> None:
    """Refuses a task address whose port another process holds: TensorFlow's gRPC server would fail in a traceback."""
    if address is None:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"TF_CONFIG gives this task the address {address!r}, which has no port; write host:port.")
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as probe:
        # As gRPC binds: a port left in TIME_WAIT by a worker that exited is free, a listening one is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", int(port)))
        except OSError as error:
            raise ValueError(
                f"TF_CONFIG gives this task {address}, but port {port} cannot be taken here ({error.strerror}): "
                "another process holds it (an earlier worker still running?); stop it or choose a free port."
            ) from None
