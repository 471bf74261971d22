"""Where a training epoch's batches come from: device-resident arrays or a ``tf.data.Dataset``.

Arrays stay resident: ``ResidentSource`` hands the compiled loop the whole
tensors and, each epoch, a table of batch indices (a permutation seeded by
``(seed, epoch)``, so a resumed run sees the same order). A dataset is
re-iterated each epoch, skipping the steps a resumed run has already done.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["INPUT", "SAMPLE_WEIGHT", "DatasetSource", "ResidentSource", "as_arrays", "as_batch_dict", "to_tensors"]

INPUT = "input"
# The batch entry of per-example weights (0 for the padding of an evaluation batch).
SAMPLE_WEIGHT = "sample_weight"


class ResidentSource:
    """Arrays kept on the device, shuffled by index; the last partial batch is dropped."""

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, seed: int) -> None:
        self.tensors = to_tensors(arrays)
        self.count = len(arrays[INPUT])
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = self.count // batch_size

    def batch_indices(self, epoch: int, shuffle: bool) -> tf.Tensor:
        """Returns the epoch's ``(steps, batch_size)`` table of example indices."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.count) if shuffle else np.arange(self.count)
        used = self.steps_per_epoch * self.batch_size
        return tf.constant(order[:used].reshape(self.steps_per_epoch, self.batch_size).astype(np.int32))


class DatasetSource:
    """A ``tf.data.Dataset``: already batched, or arrays to batch (under a strategy)."""

    def __init__(
        self,
        dataset: tf.data.Dataset,
        steps_per_epoch: int | None,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        self.dataset = dataset.map(as_batch_dict) if batch_size is None else dataset
        self.batch_size = batch_size
        self.seed = seed
        if steps_per_epoch is None:
            cardinality = int(self.dataset.cardinality())
            steps_per_epoch = cardinality // batch_size if batch_size is not None else cardinality
        if steps_per_epoch <= 0:
            raise ValueError(
                "Cannot tell how many steps make an epoch of this dataset "
                f"(cardinality {steps_per_epoch}); pass steps_per_epoch."
            )
        self.steps_per_epoch = steps_per_epoch

    def epoch_dataset(self, epoch: int, shuffle: bool, done: int) -> tf.data.Dataset:
        """Returns the batches of ``epoch`` after the first ``done``."""
        dataset = self.dataset
        if self.batch_size is not None:  # Unbatched arrays under a strategy.
            if shuffle:
                dataset = dataset.shuffle(dataset.cardinality(), seed=self.seed * 100003 + epoch)
            dataset = dataset.batch(self.batch_size, drop_remainder=True)
        else:
            dataset = dataset.repeat()  # The outer loop counts the steps.
        return dataset.skip(done).prefetch(tf.data.AUTOTUNE)


def as_batch_dict(batch: Any) -> dict[str, tf.Tensor]:
    """Returns a batch as a dict, a lone tensor filed under ``"input"``."""
    return dict(batch) if isinstance(batch, Mapping) else {INPUT: batch}


def as_arrays(data: Any, name: str) -> dict[str, np.ndarray]:
    """Returns ``data`` (an array or a dict of arrays) as checked NumPy arrays with an ``"input"``."""
    arrays = dict(data) if isinstance(data, Mapping) else {INPUT: data}
    if INPUT not in arrays:
        raise ValueError(f"{name} is a dict without an {INPUT!r} entry; it has {sorted(arrays)}.")
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    count = len(arrays[INPUT])
    if count == 0:
        raise ValueError(f"{name} is empty.")
    for key, value in arrays.items():
        if len(value) != count:
            raise ValueError(f"{name}[{key!r}] has {len(value)} examples but {name}['input'] has {count}.")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise ValueError(f"{name}[{key!r}] contains NaN or Inf; clean the data before training.")
    return arrays


def to_tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, tf.Tensor]:
    """Returns arrays as tensors, float64 narrowed to float32."""
    return {
        name: tf.constant(value.astype(np.float32) if value.dtype == np.float64 else value)
        for name, value in arrays.items()
    }
