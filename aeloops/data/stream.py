"""Training images streamed from disk, epoch by epoch: for a folder or TFRecord shards larger than memory.

``ImageStream`` is a training source ``Trainer.fit`` takes in place of
arrays: each epoch it decodes the images in parallel (``tf.data``), in an
order keyed by ``(seed, epoch)`` alone, so a resumed run sees the batches an
uninterrupted one would, and skips the steps it has already run.

>>> files = scan("photos/", image_size=(64, 64))                       # doctest: +SKIP
>>> stream = ImageStream(files, batch_size=128, example_shape=(64, 64, 3))  # doctest: +SKIP
>>> trainer.fit(stream, epochs=10)                                      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from aeloops.data.decoded import DecodedImages, decoded_images
from aeloops.data.image_files import ImageFiles
from aeloops.data.images import image_dataset
from aeloops.data.npy_rows import RowReader

__all__ = ["ImageStream", "stream_fingerprint"]

# Examples a TFRecord stream shuffles among: records cannot be read in any order, so a buffer mixes them.
SHUFFLE_BUFFER = 10_000


class ImageStream:
    """A folder's images or TFRecord shards, decoded anew each epoch and batched for training.

    A folder is read in a permutation of its files (``indices``, when
    given, keeps those files only: a validation split holds out the rest).
    Shards are read in a permutation of the shards, their records mixed in
    a buffer of ``SHUFFLE_BUFFER``. ``transform`` maps each decoded image
    (float32 in [0, 1]) before it is shaped as the model takes it. With
    ``cache`` (a directory), the files are decoded once into it when the
    first epoch starts (``decoded.decoded_images``, reported to ``log``),
    and every epoch reads its rows from there, in the order and with the
    values decoding would have given.
    """

    def __init__(
        self,
        files: ImageFiles,
        batch_size: int,
        example_shape: Sequence[int],
        *,
        seed: int = 0,
        indices: Sequence[int] | None = None,
        transform: Any = None,
        cache: str | os.PathLike | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if files.kind == "tfrecord" and indices is not None:
            raise ValueError(
                f"Streamed TFRecord shards ({files.source}) cannot hold out a split: records are read in order, "
                "not by number. Give the validation images with --validation-data instead of --validation-split."
            )
        self.files = files
        self.indices = np.arange(files.count) if indices is None else np.sort(np.asarray(indices))
        self.count = len(self.indices)
        if self.count < batch_size:
            raise ValueError(
                f"--batch-size {batch_size} is larger than the {self.count} training images; lower it."
            )
        self.batch_size = batch_size
        self.example_shape = tuple(int(dim) for dim in example_shape)
        self.seed = seed
        self.transform = transform
        self.steps_per_epoch = self.count // batch_size
        self.cache = cache
        self._log = log
        self._decoded: DecodedImages | None = None
        self._reader: RowReader | None = None

    @property
    def decoded(self) -> DecodedImages | None:
        """The files decoded into ``cache`` (written at first use), or None when the stream has no cache."""
        if self.cache is not None and self._decoded is None:
            self._decoded = decoded_images(self.files, self.cache, self._log)
            self._reader = self._decoded.reader()
        return self._decoded

    def __len__(self) -> int:
        return self.count

    def images(self, count: int) -> np.ndarray:
        """Returns the first ``count`` images (in the source's order), shaped as the model takes them."""
        dataset = self._shaped(image_dataset(self.files, indices=self.indices[:count]))
        return np.concatenate([batch.numpy() for batch in dataset.batch(256)])

    def epoch_dataset(self, epoch: int, shuffle: bool, done: int) -> tf.data.Dataset:
        """Returns the batches of ``epoch`` after the first ``done``, as ``{"input": images}``."""
        return self.worker_dataset(epoch, shuffle, done)

    def worker_dataset(
        self, epoch: int, shuffle: bool, done: int, context: tf.distribute.InputContext | None = None
    ) -> tf.data.Dataset:
        """Returns one worker's per-replica batches of ``epoch`` after the first ``done`` global steps.

        Under ``MultiWorkerMirroredStrategy`` each worker (input pipeline)
        reads its own files, as ``tf.distribute`` asks of a dataset function:
        shards are split by file, a folder's images by position in the
        epoch's order, so no worker decodes what another trains on. A worker
        whose files hold fewer images than its share of the epoch starts its
        files again (an epoch is ``steps_per_epoch`` steps on every worker,
        or the all-reduce would wait forever). Without ``context``: the
        whole epoch in global batches.
        """
        rng = np.random.default_rng([self.seed, epoch])
        pipelines, pipeline = (1, 0) if context is None else (context.num_input_pipelines, context.input_pipeline_id)
        if self.files.kind == "folder":
            order = rng.permutation(self.indices) if shuffle else self.indices
            mine = order[pipeline::pipelines]
            dataset = image_dataset(self.files, indices=mine) if self.decoded is None else _positions(mine)
        else:
            shards = rng.permutation(len(self.files.paths)) if shuffle else np.arange(len(self.files.paths))
            if len(shards) < pipelines:
                raise ValueError(
                    f"{len(shards)} TFRecord shards cannot be split by file across {pipelines} workers; write the "
                    f"records into at least {pipelines} shards."
                )
            mine = shards[pipeline::pipelines]
            if self.decoded is None:
                dataset = image_dataset(dataclasses.replace(self.files, paths=tuple(self.files.paths[i] for i in mine)))
            else:  # The cache's rows of those shards' records, one shard after another, as reading them gives.
                counts = np.asarray(self.decoded.shard_counts, np.int64)
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
                dataset = tf.data.Dataset.from_tensor_slices((starts[mine], counts[mine])).flat_map(
                    lambda start, count: tf.data.Dataset.range(start, start + count)
                )
            if shuffle:  # The same seed shuffles records or their row numbers into the same order.
                dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=int(rng.integers(2**31)))
        if context is None:
            batch_size, batches, skipped = self.batch_size, self.steps_per_epoch, done
        else:
            replicas = context.num_replicas_in_sync // pipelines  # This worker's replicas, one batch each a step.
            batch_size = context.get_per_replica_batch_size(self.batch_size)
            batches, skipped = self.steps_per_epoch * replicas, done * replicas
            dataset = dataset.repeat()
            options = tf.data.Options()  # Sharded above: tf.data is not to shard it again.
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
            dataset = dataset.with_options(options)
        if self.decoded is None:
            dataset = self._shaped(dataset).batch(batch_size, drop_remainder=True).take(batches).skip(skipped)
        else:  # Row numbers are batched and skipped before any row is read.
            dataset = dataset.batch(batch_size, drop_remainder=True).take(batches).skip(skipped)
            dataset = dataset.map(self._rows, tf.data.AUTOTUNE)
            if self.transform is not None:
                dataset = dataset.unbatch().map(self.transform, tf.data.AUTOTUNE).batch(batch_size)
            dataset = dataset.map(lambda batch: tf.reshape(batch, [batch_size, *self.example_shape]))
        return dataset.map(lambda batch: {"input": batch}).prefetch(tf.data.AUTOTUNE)

    def _rows(self, positions: tf.Tensor) -> tf.Tensor:
        """Reads the cache's rows at ``positions``: float32 images in [0, 1], as decoding gives them."""
        dtype = tf.as_dtype(self._reader.dtype)
        rows = tf.numpy_function(self._reader, [positions], dtype, stateful=False)
        rows = tf.ensure_shape(rows, [None, *self.files.shape])
        # Divided as decoding divides, so a uint8 row gives the very floats of its decoded image.
        return tf.cast(rows, tf.float32) / 255.0 if dtype == tf.uint8 else rows

    def _shaped(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
        if self.transform is not None:
            dataset = dataset.map(self.transform, tf.data.AUTOTUNE)
        return dataset.map(lambda image: tf.reshape(image, self.example_shape), tf.data.AUTOTUNE)


def _positions(indices: np.ndarray) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64))


def stream_fingerprint(stream: ImageStream) -> dict[str, Any]:
    """Returns a cheap fingerprint of a stream's files: their names, sizes and times, and the first file's bytes.

    Shaped as ``run_record.fingerprint``'s, so a resume compares it the same way.
    """
    digest = hashlib.sha256()
    for path in stream.files.paths:
        status = os.stat(path)
        digest.update(f"{os.path.basename(path)}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    digest.update(stream.indices.tobytes())
    with open(stream.files.paths[0], "rb") as first:
        digest.update(first.read())
    return {"shape": [stream.count, *stream.files.shape], "dtype": "stream", "sha256": digest.hexdigest()}
