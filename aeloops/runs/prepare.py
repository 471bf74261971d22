"""A run's first phase: its data, its model and its final config, before anything is written.

What ``prepare`` returns is what the run trains as it stands: the config
written to config.json (the data's shape, the dataset after any fall-back,
schedules resolved) and nothing of it changes after.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import tensorflow as tf

from aeloops.memory import fits
from aeloops.models import registry
from aeloops.runs import watching
from aeloops.runs.config import TrainConfig
from aeloops.runs.datasets import Datasets, read_images, scan_source, shape_datasets, stream_datasets
from aeloops.runs.directory import is_chief_task
from aeloops.runs.trainers import make_strategy

__all__ = ["Prepared", "prepare"]


@dataclasses.dataclass(frozen=True)
class Prepared:
    """The run's data, model and final config, and where it runs."""

    config: TrainConfig
    strategy: tf.distribute.Strategy
    model: keras.Model
    datasets: Datasets
    steps_per_epoch: int
    # Under MultiWorkerMirroredStrategy only the chief writes the run directory.
    chief: bool


def prepare(config: TrainConfig, log: Callable[[str], None]) -> Prepared:
    """Reads the data, builds the model for it, and settles the config; refuses in one line what cannot run."""
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(config.strategy)
    files, streaming = scan_source(config, log)
    if not streaming:
        images, dataset_name = read_images(config, log, files)
        image_shape = images.shape
    else:
        image_shape = files.shape
    # config.json records the shape the model is built for, so evaluate and export rebuild it without the data.
    config = dataclasses.replace(config, image_shape=list(image_shape))
    with strategy.scope():  # Models and optimizers belong to the strategy they are created under.
        model = registry.get(config.model).build(image_shape, **config.model_options)
    # The weights are there; training adds their gradients and (Adam's) two moving averages, in float32.
    fits(
        3 * 4 * model.count_params(),
        f"Training model {config.model} ({model.count_params():,} parameters): its gradients and optimizer state",
        "lower its sizes (--list-models names its options; --set model.<option>=...) or the images' (--image-size)",
    )
    if not streaming:
        datasets = shape_datasets(images, dataset_name, model.example_shape, config)
        del images  # The model-shaped copies are what training reads.
    else:
        datasets = stream_datasets(files, model.example_shape, config, log)
    if len(datasets.train) < config.batch_size:
        raise ValueError(
            f"--batch-size {config.batch_size} is larger than the {len(datasets.train)} training examples; lower it."
        )
    config = _fill_dataset_size(config, model, len(datasets.train))
    steps_per_epoch = len(datasets.train) // config.batch_size
    left_out = len(datasets.train) - steps_per_epoch * config.batch_size
    if left_out and not config.resume:  # Said once, when the run begins: every step has one shape.
        log(f"Each epoch trains {steps_per_epoch} batches of {config.batch_size}: {left_out} of the "
            f"{len(datasets.train):,} training images sit each epoch out (others each epoch, as it shuffles).")
    config = watching.resolve(config, steps_per_epoch, has_validation=datasets.validation is not None)
    # config.json records what the run uses, not what was asked: the dataset after any fall-back (and,
    # once it has chosen, the mode "auto" chose: aeloops.runs.outputs).
    config = dataclasses.replace(config, dataset=datasets.name)
    chief = config.strategy != "multiworker" or is_chief_task()
    return Prepared(config, strategy, model, datasets, steps_per_epoch, chief)


def _fill_dataset_size(config: TrainConfig, model: keras.Model, count: int) -> TrainConfig:
    """Gives a model with a ``dataset_size`` option (beta-TC-VAE's estimator) the run's training count.

    Only when the run did not set it; set before the step is traced, and
    recorded in the config, so evaluate, export and a resume rebuild it so.
    """
    if not hasattr(model, "dataset_size") or "dataset_size" in config.model_options:
        return config
    model.dataset_size = count
    return dataclasses.replace(config, model_options={**config.model_options, "dataset_size": count})
