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

__all__ = [
    "INPUT",
    "SAMPLE_WEIGHT",
    "DatasetSource",
    "ResidentSource",
    "StrategyArraySource",
    "as_arrays",
    "as_batch_dict",
    "bernoulli_draw",
    "check_dataset",
    "epoch_batches",
    "reshuffles_each_iteration",
    "to_tensors",
]

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
        return tf.constant(epoch_batches(self.count, self.batch_size, self.seed, epoch, shuffle))


def epoch_batches(count: int, batch_size: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The ``(steps, batch_size)`` example indices of an epoch of arrays, shuffled by ``(seed, epoch)``.

    One order for one device and for a strategy: both sources of arrays read it.
    """
    order = np.random.default_rng([seed, epoch]).permutation(count) if shuffle else np.arange(count)
    steps = count // batch_size
    return order[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)


class StrategyArraySource:
    """Arrays fed to a ``tf.distribute`` strategy as a dataset of global batches, in one device's order.

    Each global batch holds the examples ``ResidentSource`` gives one device
    at that step (the strategy splits it among the replicas), so a strategy
    takes the same steps as one device, shuffled or not.
    """

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, seed: int) -> None:
        self.tensors = to_tensors(arrays)
        self.count = len(arrays[INPUT])
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = self.count // batch_size

    def epoch_dataset(self, epoch: int, shuffle: bool, done: int) -> tf.data.Dataset:
        """Returns the global batches of ``epoch`` after the first ``done``."""
        rows = epoch_batches(self.count, self.batch_size, self.seed, epoch, shuffle)[done:]
        tensors = self.tensors
        batches = tf.data.Dataset.from_tensor_slices(rows)
        gathered = batches.map(lambda indices: {name: tf.gather(value, indices) for name, value in tensors.items()})
        return gathered.prefetch(tf.data.AUTOTUNE)


class DatasetSource:
    """A user's ``tf.data.Dataset`` of batches, read as it is."""

    def __init__(self, dataset: tf.data.Dataset, steps_per_epoch: int | None) -> None:
        self.dataset = dataset.map(as_batch_dict)
        if steps_per_epoch is None:
            steps_per_epoch = int(self.dataset.cardinality())
        if steps_per_epoch <= 0:
            raise ValueError(
                "Cannot tell how many steps make an epoch of this dataset "
                f"(cardinality {steps_per_epoch}); pass steps_per_epoch."
            )
        self.steps_per_epoch = steps_per_epoch

    def epoch_dataset(self, epoch: int, shuffle: bool, done: int) -> tf.data.Dataset:
        """Returns the batches of ``epoch`` after the first ``done``."""
        # The outer loop counts the steps; the dataset's own order is the user's (see docs/library.md).
        return self.dataset.repeat().skip(done).prefetch(tf.data.AUTOTUNE)


def reshuffles_each_iteration(dataset: tf.data.Dataset) -> bool:
    """Whether ``dataset`` draws a new order on each pass (``shuffle(reshuffle_each_iteration=True)``, the default).

    Such an order comes from a seed no checkpoint holds, so a resumed run
    sees another. Read from the pipeline's graph; one that cannot be read
    counts as not reshuffling (no false alarm).
    """
    try:
        graph = tf.compat.v1.GraphDef()
        # _variant_tensor: the handle every tf.data.Dataset has; tf.data offers no public way to its graph.
        graph.ParseFromString(tf.raw_ops.DatasetToGraphV2(input_dataset=dataset._variant_tensor).numpy())
    except (AttributeError, tf.errors.OpError, ValueError):
        return False
    nodes = [*graph.node, *(node for function in graph.library.function for node in function.node_def)]
    return any(node.op.startswith("ShuffleDataset") and node.attr["reshuffle_each_iteration"].b for node in nodes)


def as_batch_dict(batch: Any) -> dict[str, tf.Tensor]:
    """Returns a batch as a dict, a lone tensor filed under ``"input"``."""
    return dict(batch) if isinstance(batch, Mapping) else {INPUT: batch}


_DICT_FORM = "pass one array of inputs, or a dict such as {'input': noisy, 'clean': images}"


def as_arrays(data: Any, name: str) -> dict[str, np.ndarray]:
    """Returns ``data`` (an array or a dict of arrays) as checked NumPy arrays with an ``"input"``.

    A Keras-style pair ``(x, x)``, an autoencoder's input and its own
    target, is read as ``x``; any other pair or list of arrays is refused
    rather than stacked into one array.
    """
    if isinstance(data, (tuple, list)) and data and all(hasattr(item, "shape") for item in data):
        if len(data) == 2 and (data[1] is data[0] or _same_array(data[0], data[1])):
            data = data[0]
        else:
            raise ValueError(
                f"{name} is a {type(data).__name__} of {len(data)} arrays, which aeloops does not stack or "
                f"pair up; {_DICT_FORM}."
            )
    if not isinstance(data, Mapping) and not hasattr(data, "__array__") and not isinstance(data, (list, tuple)):
        raise TypeError(
            f"{name} must be a NumPy array, a dict of arrays with an {INPUT!r} entry, or a batched "
            f"tf.data.Dataset; got {type(data).__name__}."
        )
    arrays = dict(data) if isinstance(data, Mapping) else {INPUT: data}
    if INPUT not in arrays:
        raise ValueError(f"{name} is a dict without an {INPUT!r} entry; it has {sorted(arrays)}.")
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    for key, value in arrays.items():
        if value.ndim == 0 or value.dtype.kind not in "biuf":
            raise TypeError(
                f"{name}[{key!r}] must be a numeric array of examples; got {value.dtype} of shape {value.shape}."
            )
    count = len(arrays[INPUT])
    if count == 0:
        raise ValueError(f"{name} is empty.")
    for key, value in arrays.items():
        if len(value) != count:
            raise ValueError(f"{name}[{key!r}] has {len(value)} examples but {name}['input'] has {count}.")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise ValueError(f"{name}[{key!r}] contains NaN or Inf; clean the data before training.")
    return arrays


def _same_array(left: Any, right: Any) -> bool:
    left, right = np.asarray(left), np.asarray(right)
    return left.shape == right.shape and np.array_equal(left, right)


def check_dataset(dataset: tf.data.Dataset, example_shape: tuple[int, ...] | None, name: str) -> None:
    """Refuses a dataset of ``(x, y)`` tuples or of single examples, with the fix for each."""
    spec = dataset.element_spec
    if isinstance(spec, tuple):
        raise ValueError(
            f"{name} yields {len(spec)}-tuples; aeloops reads a tensor of inputs or a dict of named tensors: "
            "dataset.map(lambda x, y: {'input': x}) (or {'input': x, 'clean': y} for a denoising term)."
        )
    inputs = spec[INPUT] if isinstance(spec, Mapping) else spec
    if example_shape is not None and inputs.shape.rank == len(example_shape):
        raise ValueError(
            f"{name} yields single examples of shape {tuple(inputs.shape)}; batch it first: "
            "dataset.batch(64, drop_remainder=True)."
        )


@tf.autograph.experimental.do_not_convert
def bernoulli_draw(inputs: tf.Tensor, seed: int, step: tf.Tensor) -> tf.Tensor:
    """Returns a Bernoulli draw of ``inputs``' pixels (in [0, 1]), keyed by ``seed``, ``step`` and the replica.

    Dynamic binarization (``Trainer(dynamic_binarization=True)``): stateless,
    so a resumed run draws what the uninterrupted one did.
    """
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    key = tf.stack([tf.cast(seed, tf.int64), step * 1024 + tf.cast(replica, tf.int64)])
    draws = tf.random.stateless_uniform(tf.shape(inputs), seed=key, dtype=inputs.dtype)
    return tf.cast(draws < inputs, inputs.dtype)


def to_tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, tf.Tensor]:
    """Returns arrays as tensors, float64 narrowed to float32."""
    return {
        name: tf.constant(value.astype(np.float32) if value.dtype == np.float64 else value)
        for name, value in arrays.items()
    }
