"""How aeloops' cost grows with the data, in memory and streamed from disk.

Usage::

    python -m benchmarks.scale --data-dir ../shared/data/mnist

Times the dense seed model (``xla``, 50 steps per call) on MNIST's 60,000
training images and on 240,000 (MNIST and three copies shifted by up to two
pixels), kept in memory; then the same 240,000 streamed from a ``.npy`` file
with ``aeloops.data.npy_rows.npy_dataset``. Reports the median epoch over
``--repeats`` epochs after a warm-up one, samples/s, and the peak host memory
each configuration added.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from aeloops.data import load_mnist, load_sample, to_model_inputs  # noqa: E402
from aeloops.data.npy_rows import npy_dataset  # noqa: E402
from aeloops.models import registry  # noqa: E402
from aeloops.training.trainer import Trainer  # noqa: E402
from benchmarks import machine  # noqa: E402
from benchmarks.run import PeakMemory  # noqa: E402


def shifted_copies(images: np.ndarray, copies: int, seed: int = 0) -> np.ndarray:
    """Returns ``images`` followed by ``copies`` copies, each shifted by up to 2 pixels."""
    rng = np.random.default_rng(seed)
    parts = [images]
    for _ in range(copies):
        dy, dx = rng.integers(-2, 3, size=2)
        parts.append(np.roll(images, (int(dy), int(dx)), axis=(1, 2)))
    return np.concatenate(parts)


def time_epochs(data, repeats: int, batch_size: int) -> dict:
    """Trains the dense model on ``data``; returns the median epoch, samples/s and final loss."""
    keras.utils.set_random_seed(0)
    model = registry.get("dense").build()
    trainer = Trainer(model, mode="xla", steps_per_loop=50)
    history = trainer.fit(data, epochs=repeats + 1, batch_size=batch_size, verbose=0)
    return {
        "epoch": statistics.median(history["epoch_seconds"][1:]),
        "samples_per_second": statistics.median(history["samples_per_second"][1:]),
        "loss": history["loss"][-1],
    }


def main(argv: list[str] | None = None) -> int:
    """Runs the scaling measurements and prints a Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST IDX files (default: the Keras cache)")
    parser.add_argument("--sample", action="store_true", help="use the bundled 5,000-image sample")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    splits = load_sample() if args.sample else load_mnist(args.data_dir, download=False)
    base = splits.train_images
    large = shifted_copies(base, 3)
    rows = []
    # The uint8 images are converted inside the configuration, so its memory counts them.
    with PeakMemory() as memory:
        small_result = time_epochs(to_model_inputs(base, (784,)), args.repeats, args.batch_size)
    rows.append((f"in memory, {len(base):,} images", small_result, memory.added_megabytes))
    with PeakMemory() as memory:
        large_result = time_epochs(to_model_inputs(large, (784,)), args.repeats, args.batch_size)
    rows.append((f"in memory, {len(large):,} images", large_result, memory.added_megabytes))
    with tempfile.TemporaryDirectory() as scratch:
        path = pathlib.Path(scratch) / "images.npy"
        np.save(path, large)
        del large
        with PeakMemory() as memory:
            streamed = time_epochs(npy_dataset(path, args.batch_size, (784,)), args.repeats, args.batch_size)
        rows.append((f"streamed from .npy, {len(base) * 4:,} images", streamed, memory.added_megabytes))
    lines = [
        f"Machine: {machine.describe()}. Dense seed model, xla, 50 steps/call, batch {args.batch_size}; "
        f"median of {args.repeats} epochs after a warm-up one.",
        "",
        "| data | epoch | vs 60,000 in memory | samples/s | final loss | host MB added |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, result, host in rows:
        lines.append(
            f"| {name} | {result['epoch']:.3f} s | {result['epoch'] / small_result['epoch']:.2f}x "
            f"| {result['samples_per_second']:,.0f} | {result['loss']:.4f} | {host:.0f} |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
