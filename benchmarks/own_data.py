"""Training from disk against the same images in memory: does the input pipeline keep up with the loop?

Usage::

    python -m benchmarks.own_data --data-dir ../shared/data/mnist [--examples 20000] [--rounds 3]

Writes the first ``--examples`` MNIST training images as a folder of PNGs
and as 8 TFRecord shards in a temporary directory (or, with ``--colour``,
synthetic 32x32 colour images), then, in interleaved rounds, trains one
model (``--model``, ``--mode``) for ``--epochs`` epochs on each of: the
arrays in memory, the folder streamed (``aeloops.data.stream.ImageStream``)
and the shards streamed, each decoded every epoch and read from a cache of
its decoded images (``--cache``, written once beforehand and timed); and,
to tell the disk's cost from the loop's, the arrays in memory batched by
``tf.data`` (an iterator each epoch, as streams are read). It reports each one's median steps per second over
the epochs after the first (which compiles) and rounds, its ratio to memory,
and decoding alone (images per second through ``aeloops.image_dataset``
with nothing training).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from aeloops.data import load_mnist, load_sample, to_model_inputs  # noqa: E402
from aeloops.data.decoded import decoded_images  # noqa: E402
from aeloops.data.images import image_dataset, scan  # noqa: E402
from aeloops.data.stream import ImageStream  # noqa: E402
from aeloops.models import registry  # noqa: E402
from aeloops.training.trainer import Trainer  # noqa: E402
from benchmarks import machine  # noqa: E402

SHARDS = 8


def colour_images(count: int, side: int = 32, seed: int = 0) -> np.ndarray:
    """Coloured blobs, one Gaussian bump per channel: uint8 (count, side, side, 3)."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:side, :side]
    centres = rng.uniform(0.2 * side, 0.8 * side, (count, 3, 2))
    widths = rng.uniform(0.1 * side, 0.25 * side, (count, 3))
    distance = (rows - centres[..., 0, None, None]) ** 2 + (columns - centres[..., 1, None, None]) ** 2
    return (np.moveaxis(np.exp(-distance / (2 * widths[..., None, None] ** 2)), 1, -1) * 255).astype(np.uint8)


def write_sources(images: np.ndarray, root: pathlib.Path) -> dict[str, str]:
    """Writes ``images`` as a folder of PNGs and as TFRecord shards; returns their paths."""
    images = images if images.ndim == 4 else images[..., None]
    folder, shards = root / "png", root / "shards"
    folder.mkdir()
    shards.mkdir()
    encoded = [tf.io.encode_png(image).numpy() for image in images]
    for index, content in enumerate(encoded):
        (folder / f"{index:06d}.png").write_bytes(content)
    for number, part in enumerate(np.array_split(np.arange(len(images)), SHARDS)):
        with tf.io.TFRecordWriter(str(shards / f"train-{number:05d}-of-{SHARDS:05d}.tfrecord")) as writer:
            for index in part:
                feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded[index]]))
                example = tf.train.Example(features=tf.train.Features(feature={"image": feature}))
                writer.write(example.SerializeToString())
    return {"folder": str(folder), "tfrecord": str(shards)}


def steps_per_second(data, model_name: str, shape: tuple[int, ...], args: argparse.Namespace) -> list[float]:
    """Trains on ``data``; returns the steps per second of each epoch after the first."""
    keras.utils.set_random_seed(0)
    trainer = Trainer(registry.get(model_name).build(shape), mode=args.mode, steps_per_loop=args.steps_per_loop)
    history = trainer.fit(data, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
    return [rate / args.batch_size for rate in history["samples_per_second"][1:]]


def cache_time(files, directory: pathlib.Path) -> float:
    """Seconds to decode ``files`` into a cache in ``directory`` (``aeloops.data.decoded``), done once."""
    started = time.perf_counter()
    decoded_images(files, directory)
    return time.perf_counter() - started


def decode_rate(files) -> float:
    """Images per second through the decoding pipeline alone, one full pass."""
    started = time.perf_counter()
    count = sum(int(batch.shape[0]) for batch in image_dataset(files).batch(256).prefetch(tf.data.AUTOTUNE))
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    """Runs the comparison and prints its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST's IDX files (default: the bundled sample)")
    parser.add_argument("--colour", action="store_true", help="synthetic 32x32 colour images instead of MNIST")
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--model", default="conv")
    parser.add_argument("--mode", default="graph")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps-per-loop", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.colour:
        images = colour_images(args.examples)
    else:
        splits = load_mnist(args.data_dir, download=False) if args.data_dir else load_sample()
        images = splits.train_images[: args.examples]
    print(machine.describe())
    with tempfile.TemporaryDirectory() as directory:
        paths = write_sources(images, pathlib.Path(directory))
        files = {kind: scan(path) for kind, path in paths.items()}
        shape = files["folder"].shape
        arrays = to_model_inputs(images, registry.get(args.model).build(shape).example_shape)
        cache = pathlib.Path(directory) / "cache"

        def through_tf_data():  # The same arrays in memory, batched by tf.data as a stream is: the loop's cost.
            # One order every epoch, as the library asks of a dataset whose run may be resumed (it warns otherwise).
            dataset = tf.data.Dataset.from_tensor_slices({"input": arrays})
            dataset = dataset.shuffle(len(arrays), seed=0, reshuffle_each_iteration=False)
            return dataset.batch(args.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

        sources = {
            "memory": lambda: arrays,
            "memory, through tf.data": through_tf_data,
            "folder": lambda: ImageStream(files["folder"], args.batch_size, arrays.shape[1:]),
            "tfrecord": lambda: ImageStream(files["tfrecord"], args.batch_size, arrays.shape[1:]),
            "folder, cached": lambda: ImageStream(files["folder"], args.batch_size, arrays.shape[1:], cache=cache),
            "tfrecord, cached": lambda: ImageStream(files["tfrecord"], args.batch_size, arrays.shape[1:], cache=cache),
        }
        writing = {kind: cache_time(found, cache) for kind, found in files.items()}
        rates: dict[str, list[float]] = {name: [] for name in sources}
        decoding = {kind: [] for kind in files}
        for round_number in range(args.rounds):  # Interleaved, so a busy spell of the machine hits every source.
            for name, make in sources.items():
                rates[name] += steps_per_second(make(), args.model, shape, args)
            for kind, found in files.items():
                decoding[kind].append(decode_rate(found))
            medians = ", ".join(f"{name} {statistics.median(values):.1f}" for name, values in rates.items())
            print(f"round {round_number + 1}: {medians} steps/s")
    memory = statistics.median(rates["memory"])
    what = "32x32 colour blobs" if args.colour else "MNIST"
    print(f"\n{args.examples:,} {what} images, model {args.model} ({args.mode}, {args.steps_per_loop} steps a call), "
          f"batch {args.batch_size}; medians of {args.rounds} rounds x {args.epochs - 1} epochs")  # fmt: skip
    print("| source | steps/s | vs memory | decoding alone (images/s) |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in rates.items():
        rate = statistics.median(values)
        decode = f"{statistics.median(decoding[name]):,.0f}" if name in decoding else "-"
        print(f"| {name} | {rate:.1f} | {rate / memory:.2f}x | {decode} |")
    for kind, seconds in writing.items():
        print(f"Decoding the {kind} into the cache, once: {seconds:.1f} s ({args.examples / seconds:,.0f} images/s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
