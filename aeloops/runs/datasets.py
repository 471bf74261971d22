"""The data of one CLI run: its images read (or streamed) in their own shape, then shaped for its model.

``read_images`` reads a named dataset, a folder, TFRecord shards or arrays
into memory; ``scan_source`` says when a folder or shards are instead
decoded from disk each epoch (``--stream``, or a set too large for memory);
``shape_datasets`` and ``stream_datasets`` give the model-shaped training
source and validation arrays, binarized as the run asks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from aeloops import data as data_lib
from aeloops.data import images as images_lib
from aeloops.data.factors import shapes_splits
from aeloops.data.image_files import ImageFiles
from aeloops.data.images import ImageData, color_mode_of
from aeloops.data.locate import NAMED_DATASETS, source_kind
from aeloops.data.stream import ImageStream
from aeloops.models.registry import MNIST_SHAPE
from aeloops.runs.config import TrainConfig

__all__ = [
    "spread_sample",
    "VALIDATION_BINARIZATION_SEED",
    "Datasets",
    "binarize_validation",
    "load_datasets",
    "read_images",
    "shape_datasets",
    "stream_datasets",
    "scan_source",
]

# Decoded training images larger than this share of the machine's memory are streamed from disk.
MEMORY_SHARE = 0.5


class Datasets(NamedTuple):
    """Training and (optional) validation images, float32 in [0, 1], shaped for the model."""

    train: np.ndarray | ImageStream  # Streamed from disk with --stream.
    validation: np.ndarray | None
    # The dataset actually used: "mnist-sample" after a fall-back from "mnist".
    name: str
    # The classes of the validation images (else of the training images), where the dataset has them.
    labels: np.ndarray | None = None
    # The images' own (height, width, channels), whatever shape the model takes them in.
    image_shape: tuple[int, int, int] = MNIST_SHAPE
    # The name of each label (a class folder's name), where the dataset has them.
    class_names: tuple[str, ...] = ()

    def label_names(self, labels: np.ndarray) -> list[str]:
        """The labels as the user knows them: class names where there are any, else the numbers."""
        names = self.class_names
        return [names[label] if 0 <= label < len(names) else str(label) for label in labels.tolist()]


# The seed of the validation images' one binarization: the same for every run, so runs compare.
VALIDATION_BINARIZATION_SEED = 0


def read_images(
    config: TrainConfig, log: Callable[[str], None], files: ImageFiles | None = None
) -> tuple[ImageData, str]:
    """Reads ``config.dataset`` as images in their own shape (resized and converted as asked); returns its name too.

    ``files``, the dataset already scanned by ``scan_source``, is not
    scanned again. The name is the dataset actually used: ``"mnist-sample"``
    after a fall-back from ``"mnist"``. Validation images come from
    ``--validation-data``, else a ``--validation-split`` of the training
    images, else the dataset's test split, unless ``--no-validation``.
    """
    options = {"image_size": config.image_size, "color_mode": config.color_mode,
               "interpolation": config.interpolation, "aspect_ratio": config.aspect_ratio}  # fmt: skip
    kind, used = source_kind(config.dataset), config.dataset
    if kind in NAMED_DATASETS:
        train, test, train_labels, test_labels, used = _named_dataset(config, log)
        train = images_lib.convert(train, name="training images", **options)
        test = images_lib.convert(test, train.shape[1:3], color_mode_of(train), config.interpolation, "test images",
                                  aspect_ratio=config.aspect_ratio)  # fmt: skip
        images = ImageData(train, test, train_labels, test_labels, ())
        if config.validation_split is not None:  # Held out of the training images, as for any other dataset.
            kept, held = images_lib.split_indices(len(train), config.validation_split, config.seed)
            labels = (None, None) if train_labels is None else (train_labels[kept], train_labels[held])
            images = ImageData(train[kept], train[held], labels[0], labels[1], ())
    else:
        images = images_lib.load_images(files or config.dataset, validation_split=config.validation_split,
                                        seed=config.seed, **options)  # fmt: skip
    if config.validation_data is not None:
        validation, _, validation_labels, _, validation_names = images_lib.read_source(
            config.validation_data, images.shape[:2], color_mode_of(images.train), config.interpolation,
            aspect_ratio=config.aspect_ratio,
        )
        images = images._replace(validation=validation, validation_labels=validation_labels)
        if config.validation:  # The labels shown are the validation images': their folder's names.
            images = images._replace(class_names=validation_names)
    if not config.validation:
        images = images._replace(validation=None, validation_labels=None)
    return images, used


def _named_dataset(
    config: TrainConfig, log: Callable[[str], None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, str]:
    """Returns a named dataset's training and test images and labels, and the name of what was used."""
    if config.dataset == "binarized_mnist":
        if config.data_dir is None:
            raise ValueError("--dataset binarized_mnist needs --data-dir, the folder of binarized_mnist_*.amat(.gz).")
        splits = data_lib.load_binarized_mnist(config.data_dir)
        return splits.train_images, splits.test_images, None, None, config.dataset
    if config.dataset == "shapes":
        return (*shapes_splits(), config.dataset)
    used = config.dataset
    if config.dataset == "mnist-sample":
        splits = data_lib.load_sample()
    else:
        try:
            splits = data_lib.load_mnist(config.data_dir, variant=config.dataset)
        except data_lib.DatasetUnavailableError:
            if config.dataset != "mnist" or config.data_dir is not None:
                raise
            log(
                "MNIST is not on this machine and could not be downloaded; training on the bundled "
                "5,000-image sample (pass --data-dir with the full set)."
            )
            splits = data_lib.load_sample()
            used = "mnist-sample"
    return splits.train_images, splits.test_images, splits.train_labels, splits.test_labels, used


def shape_datasets(images: ImageData, name: str, example_shape: tuple[int, ...], config: TrainConfig) -> Datasets:
    """Returns ``images`` shaped as the model takes them and binarized as ``config.binarize`` says.

    ``"threshold"`` and ``"fixed"`` binarize the training images once (the
    latter from ``config.seed``); ``"dynamic"`` leaves them to the trainer,
    which draws anew at every step. Validation images are binarized once,
    by threshold or from ``VALIDATION_BINARIZATION_SEED``.
    """
    train = data_lib.to_model_inputs(images.train, example_shape, name)
    validation = None
    if images.validation is not None:
        validation = data_lib.to_model_inputs(images.validation, example_shape, "validation images")
    labels = images.validation_labels if images.validation is not None else images.train_labels
    if config.binarize not in ("none", "dynamic"):
        train = data_lib.binarize(train, _binarize_method(config), config.seed)
    return Datasets(train, binarize_validation(validation, config), name, labels, images.shape, images.class_names)


def load_datasets(config: TrainConfig, example_shape: tuple[int, ...], log: Callable[[str], None]) -> Datasets:
    """Reads ``config.dataset`` and shapes it for a model: in memory, or streamed when the run streams it."""
    files, streaming = scan_source(config, log)
    if streaming:
        return stream_datasets(files, example_shape, config, log)
    images, name = read_images(config, log, files)
    return shape_datasets(images, name, example_shape, config)


def scan_source(config: TrainConfig, log: Callable[[str], None]) -> tuple[ImageFiles | None, bool]:
    """Scans a folder or shards (None for other data), and says whether the run streams them.

    A run streams with ``--stream``, or when the decoded images would take
    more than ``MEMORY_SHARE`` of the machine's memory.
    """
    if source_kind(config.dataset) not in ("folder", "tfrecord"):
        for flag, given in (("--stream", config.stream), ("--cache", config.cache is not None)):
            if given:
                raise ValueError(
                    f"{flag} reads a folder of images or TFRecord shards from disk; {config.dataset} is neither."
                )
        return None, False
    files = images_lib.scan(
        config.dataset, config.image_size, config.color_mode, config.interpolation, aspect_ratio=config.aspect_ratio
    )
    size = files.count * int(np.prod(files.shape)) * 4
    budget = MEMORY_SHARE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if not config.stream and size <= budget:
        if config.cache is not None:
            raise ValueError(f"--cache keeps a streamed run's decoded images, and {config.dataset} is read into "
                             "memory once anyway; drop --cache, or add --stream to train from disk.")  # fmt: skip
        return files, False
    if not config.stream:
        how = "from the cache" if config.cache else "from disk each epoch; --cache DIR decodes it once instead"
        log(f"{config.dataset} decodes to {size / 2**30:.1f} GiB, more than half this machine's memory: "
            f"streaming it {how} (as --stream does).")  # fmt: skip
    if config.binarize == "fixed":
        raise ValueError("--binarize fixed draws once per image held in memory; a streamed set takes threshold "
                         "or dynamic (a new draw every step).")  # fmt: skip
    return files, True


def stream_datasets(
    files: ImageFiles,
    example_shape: tuple[int, ...],
    config: TrainConfig,
    log: Callable[[str], None] | None = None,
) -> Datasets:
    """Returns a streamed training source and in-memory validation images, shaped for the model.

    With ``config.cache``, the training images are decoded into it when the first epoch starts, told to ``log``.
    """
    indices, validation, labels, names = None, None, None, files.class_names
    if config.validation and config.validation_data is not None:
        validation, _, labels, _, names = images_lib.read_source(
            config.validation_data, files.shape[:2], "grayscale" if files.shape[-1] == 1 else "rgb",
            config.interpolation, aspect_ratio=config.aspect_ratio,
        )  # fmt: skip
    elif config.validation and config.validation_split is not None:
        indices, held = images_lib.split_indices(files.count, config.validation_split, config.seed)
        dataset = images_lib.image_dataset(files, indices=held, labels=True).batch(256)
        batches = list(dataset)
        validation = np.concatenate([batch["input"].numpy() for batch in batches])
        labels = np.concatenate([batch["label"].numpy() for batch in batches])
        labels = labels if files.labels is not None or files.has_labels else None
    elif config.validation_split is not None:
        indices, _ = images_lib.split_indices(files.count, config.validation_split, config.seed)
    transform = _threshold if config.binarize == "threshold" else None
    train = ImageStream(files, config.batch_size, example_shape, seed=config.seed, indices=indices, transform=transform,
                        cache=config.cache, log=log)  # fmt: skip
    if validation is not None:
        validation = binarize_validation(data_lib.to_model_inputs(validation, example_shape, "validation images"),
                                         config)  # fmt: skip
    return Datasets(train, validation, config.dataset, labels, files.shape, tuple(names))


def spread_sample(labels: np.ndarray | None, count: int, size: int, seed: int) -> np.ndarray:
    """Indices of ``size`` of ``count`` examples, drawn by ``seed``: every class in turn where there are labels.

    The pictures and the Projector show these: on class folders listed in
    sorted order, the first examples would all be one class.
    """
    rng = np.random.default_rng([seed, 271828])
    if labels is None:
        return np.sort(rng.permutation(count)[:size]) if size < count else np.arange(count)
    labels = np.asarray(labels)[:count]
    queues = [rng.permutation(np.flatnonzero(labels == label)).tolist() for label in np.unique(labels)]
    order = []
    while len(order) < min(size, count):  # One of each class in turn, classes in their order.
        for queue in queues:
            if queue and len(order) < size:
                order.append(queue.pop(0))
    return np.asarray(order, dtype=np.int64)


def _threshold(image: tf.Tensor) -> tf.Tensor:
    return tf.cast(image > 0.5, image.dtype)


def fingerprint(data: Any) -> dict[str, Any] | None:
    """Returns the record of a run's data that a resume checks: of arrays' bytes, or of a stream's files."""
    from aeloops.data.stream import stream_fingerprint
    from aeloops.runs import record as run_record  # Deferred: run_record reads checkpoints.

    return stream_fingerprint(data) if isinstance(data, ImageStream) else run_record.fingerprint(data)


def binarize_validation(images: np.ndarray | None, config: TrainConfig) -> np.ndarray | None:
    """Returns evaluation images binarized as ``config.binarize`` says: by threshold, or once from seed 0."""
    if images is None or config.binarize == "none":
        return images
    return data_lib.binarize(images, _binarize_method(config), VALIDATION_BINARIZATION_SEED)


def _binarize_method(config: TrainConfig) -> str:
    # "fixed" and "dynamic" runs are evaluated on one fixed draw; "threshold" runs on thresholded images.
    return "threshold" if config.binarize == "threshold" else "fixed"


