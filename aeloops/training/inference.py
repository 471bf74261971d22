"""A trainer's evaluation and predictions: every example counted once, in static shapes, with averaged weights.

>>> evaluate(trainer, x_test, batch_size=256)["loss"]     # doctest: +SKIP
>>> predict(trainer, x_test)["reconstruction"].shape      # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from aeloops.data.sources import INPUT, SAMPLE_WEIGHT, as_arrays, as_batch_dict, check_dataset, to_tensors
from aeloops.training.compiled import is_distributed

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = ["check_positive_int", "check_targets", "evaluate", "predict"]

Data = Any  # np.ndarray, a dict of np.ndarray, or a tf.data.Dataset.


def evaluate(trainer: Trainer, data: Data, batch_size: int = 256) -> dict[str, float]:
    """Returns the mean over ``data`` of everything ``trainer.test_step`` returns.

    Uses the optimizers' moving averages of the weights where they keep
    them (``use_ema``). Arrays are evaluated exactly, every example counted
    once: the last batch is padded to full size and the padding has
    ``"sample_weight"`` 0, so every batch has one static shape. A
    ``Dataset``'s batches are averaged alike, a short last batch weighing as
    much as a full one.
    """
    check_positive_int("batch_size", batch_size)
    with trainer.averaged_weights():
        if isinstance(data, tf.data.Dataset):
            check_dataset(data, getattr(trainer.model, "example_shape", None), "validation_data")
            sums, batches = _evaluate_dataset(trainer, data.map(as_batch_dict))
            return {name: value / batches for name, value in sums.items()}
        arrays = as_arrays(data, "validation_data")
        check_targets(trainer, arrays, "validation_data")
        count = len(arrays[INPUT])
        batches = math.ceil(count / batch_size)
        padded = np.arange(batches * batch_size)
        rows = np.where(padded < count, padded, 0)
        table = {name: value[rows] for name, value in arrays.items()}
        table[SAMPLE_WEIGHT] = (padded < count).astype(np.float32)
        if is_distributed(trainer.strategy):
            sums, _ = _evaluate_dataset(trainer, tf.data.Dataset.from_tensor_slices(table).batch(batch_size))
        else:
            loop = trainer.loop_function("test", "resident")
            batch_indices = tf.constant(np.arange(batches * batch_size, dtype=np.int32).reshape(batches, batch_size))
            sums = loop(to_tensors(table), batch_indices, tf.constant(0), tf.constant(batches))
        return {name: float(value) * batch_size / count for name, value in sums.items()}


def _evaluate_dataset(trainer: Trainer, dataset: tf.data.Dataset) -> tuple[dict[str, float], int]:
    """Returns the sums of each value's per-batch means over ``dataset``, and the batch count."""
    step = trainer.loop_function("test", "batch")
    sums: dict[str, float] = {}
    batches = 0
    for batch in trainer.strategy.experimental_distribute_dataset(dataset):
        results = step(batch)
        sums = {name: sums.get(name, 0.0) + float(value) for name, value in results.items()}
        batches += 1
    if not batches:
        raise ValueError("The evaluation data is empty.")
    return sums, batches


def predict(trainer: Trainer, data: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Returns the model's outputs for ``data``, with averaged weights if kept.

    Runs up to ``trainer.steps_per_loop`` batches per compiled call; the
    last batches are padded (and trimmed) so every call has one shape.
    """
    check_positive_int("batch_size", batch_size)
    inputs = as_arrays(data, "data")[INPUT]
    count = len(inputs)
    batches_per_call = min(trainer.steps_per_loop, math.ceil(count / batch_size))
    rows_per_call = batches_per_call * batch_size
    forward = trainer.predict_function()
    if hasattr(forward, "get_concrete_function"):
        # Traced once for calls of any length and batch size (the pictures' ten examples, the codes' thousand,
        # a user's), not once per shape: a lookup after the first.
        forward.get_concrete_function(tf.TensorSpec((None, None, *inputs.shape[1:]), tf.as_dtype(inputs.dtype)))
    pieces: dict[str, list[np.ndarray]] = {}
    with trainer.averaged_weights():
        for start in range(0, count, rows_per_call):
            rows = np.arange(start, start + rows_per_call)
            block = inputs[np.where(rows < count, rows, 0)]  # Padding repeats the first example.
            block = block.reshape(batches_per_call, batch_size, *inputs.shape[1:])
            for name, value in forward(tf.constant(block)).items():
                pieces.setdefault(name, []).append(value.numpy())
    return {name: np.concatenate(parts)[:count] for name, parts in pieces.items()}


# Losses that read their target as probabilities in [0, 1].
_CROSS_ENTROPIES = ("bce", "bce_logits", "binary_crossentropy", "binary_crossentropy_from_logits")


def check_targets(trainer: Trainer, arrays: Mapping[str, np.ndarray], name: str) -> None:
    """Refuses cross-entropy targets outside [0, 1] (raw 0-255 pixels, say), which train to a negative loss."""
    for term in trainer.objective.terms:
        if term.loss in _CROSS_ENTROPIES and term.target in arrays:
            values = arrays[term.target]
            low, high = float(values.min()), float(values.max())
            if low < 0 or high > 1:
                raise ValueError(
                    f"{name}[{term.target!r}] ranges over [{low:g}, {high:g}], but loss term {term.name!r} is a "
                    "cross-entropy, which needs targets in [0, 1]; scale the data first "
                    "(aeloops.to_model_inputs divides uint8 pixels by 255)."
                )


def check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
