"""Training data streamed from a ``.npy`` file on disk, for data that does not fit in memory.

Each batch is read with ``os.pread`` (rows sorted so reads move forward
through the file), so host memory stays flat however large the file is: no
copy of the data set and no memory map whose touched pages count against the
process.

>>> dataset = npy_dataset("images.npy", batch_size=256, example_shape=(784,))  # doctest: +SKIP
>>> trainer.fit(dataset, epochs=10)                                            # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from aeloops.data.arrays import npy_header

__all__ = ["RowReader", "npy_dataset", "npy_header"]


class _Reads:
    """The row reads in flight in tf.data's threads, drained before the interpreter shuts down.

    A tf.data iterator still alive at exit is destroyed while Python
    finalizes, and its destructor waits for its parallel reads, which wait
    for Python: the process would hang. At exit, reads are refused from then
    on (they give zeros nobody reads, not an error TensorFlow would print)
    and those in flight are let finish, so none is left to wait for.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.closing = False

    def start(self) -> bool:
        """Counts a call in (``end`` counts it out); False when the process is exiting and no row is to be read."""
        with self.lock:
            self.in_flight += 1
            return not self.closing

    def end(self) -> None:
        """Counts a call out."""
        with self.lock:
            self.in_flight -= 1

    def drain(self, quiet: float = 0.05, limit: float = 5.0) -> None:
        """Refuses new reads and waits until no call has been in flight for ``quiet`` seconds (at most ``limit``)."""
        self.closing = True
        deadline, quiet_since = time.monotonic() + limit, None
        while time.monotonic() < deadline:
            now = time.monotonic()
            if self.in_flight:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= quiet:
                return
            time.sleep(0.002)  # Sleeping lets tf.data's threads take the interpreter and finish.


_READS = _Reads()
atexit.register(_READS.drain)


class RowReader:
    """Reads rows of a C-ordered ``.npy`` file by index, one ``pread`` per row."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.shape, self.dtype, self.offset = npy_header(path)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        expected = self.offset + self.row_bytes * self.shape[0]
        if os.path.getsize(path) < expected:
            raise ValueError(f"{path} is truncated: its header needs {expected} bytes.")
        self.descriptor = os.open(path, os.O_RDONLY)

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        rows = np.zeros((len(indices), *self.shape[1:]), self.dtype)
        try:
            if not _READS.start():
                return rows
            for position in np.argsort(indices):  # In file order, so reads move forward.
                offset = self.offset + int(indices[position]) * self.row_bytes
                data = os.pread(self.descriptor, self.row_bytes, offset)
                rows[position] = np.frombuffer(data, self.dtype).reshape(self.shape[1:])
        finally:
            _READS.end()
        return rows


def npy_dataset(
    path: str | os.PathLike,
    batch_size: int,
    example_shape: Sequence[int],
    *,
    shuffle: bool = True,
    seed: int = 0,
) -> tf.data.Dataset:
    """Returns batches ``{"input": float32 images in [0, 1]}`` read from a ``.npy`` file.

    uint8 files are scaled by 1/255; float files must already be in [0, 1].
    The order is reshuffled every pass (seeded); the last partial batch is
    dropped so every batch has one shape.
    """
    reader = RowReader(os.fspath(path))
    count = reader.shape[0]
    if batch_size < 1 or batch_size > count:
        raise ValueError(f"batch_size must lie in [1, {count}] for {path}, got {batch_size}.")
    example_shape = tuple(example_shape)
    if int(np.prod(reader.shape[1:])) != int(np.prod(example_shape)):
        raise ValueError(f"{path} holds examples of shape {reader.shape[1:]}, which do not reshape to {example_shape}.")
    # Divided, not multiplied by 1/255, to give exactly what to_model_inputs gives.
    divisor = 255.0 if reader.dtype == np.uint8 else 1.0
    output_type = tf.as_dtype(reader.dtype)

    def read(indices: tf.Tensor) -> dict[str, tf.Tensor]:
        rows = tf.numpy_function(reader, [indices], output_type, stateful=False)
        images = tf.cast(rows, tf.float32) / divisor
        return {"input": tf.reshape(images, [batch_size, *example_shape])}

    indices = tf.data.Dataset.range(count)
    if shuffle:
        indices = indices.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    batches = indices.batch(batch_size, drop_remainder=True)
    return batches.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
