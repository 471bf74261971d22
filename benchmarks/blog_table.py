"""Reproduces the Keras blog's autoencoder runs ("Building Autoencoders in Keras", 2016) with aeloops.

Usage::

    python -m benchmarks.blog_table --data-dir ../shared/data/mnist

Each run uses the blog's architecture, epochs, batch size and optimizer
(Adadelta at learning rate 1.0, as Keras 1 had it), MNIST's training images
and the test images as validation, and prints the final training and
validation loss next to the value the blog reports.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from aeloops.data import load_mnist, to_model_inputs  # noqa: E402
from aeloops.models import DenseAutoencoder, registry  # noqa: E402
from aeloops.training.trainer import Trainer  # noqa: E402
from benchmarks import machine  # noqa: E402


class BlogRun(NamedTuple):
    name: str
    model: str  # A registry name, or "simple" for the blog's first model.
    epochs: int
    batch_size: int
    blog: str


RUNS = (
    BlogRun("simple 784-32-784", "simple", 50, 256, "~0.11"),
    BlogRun("sparse (L1 1e-4 on the code)", "sparse", 100, 256, "0.11 train / 0.10 validation"),
    BlogRun("deep 784-128-64-32", "deep", 100, 256, "~0.097"),
    BlogRun("convolutional", "conv", 50, 128, "0.094"),
)


def run(blog_run: BlogRun, splits, epochs_override: int | None, examples: int | None = None) -> dict:
    """Trains one of the blog's models (on the first ``examples`` training images if given) and returns its row."""
    keras.utils.set_random_seed(0)
    if blog_run.model == "simple":
        model = DenseAutoencoder((784,), (32,), ())
        objective = model.default_objective()
    else:
        spec = registry.get(blog_run.model)
        model = spec.build()
        objective = spec.objective(model)
    train = to_model_inputs(splits.train_images[:examples], model.example_shape)
    test = to_model_inputs(splits.test_images, model.example_shape)
    trainer = Trainer(model, objective, "adadelta", mode="auto", steps_per_loop=50)
    epochs = epochs_override or blog_run.epochs
    started = time.perf_counter()
    history = trainer.fit(train, epochs=epochs, batch_size=blog_run.batch_size, validation_data=test, verbose=0)
    return {
        "run": blog_run,
        "epochs": epochs,
        "train": history["loss"][-1],
        "validation": history["val_loss"][-1],
        "mode": trainer.mode,
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    """Runs the blog's models and prints a Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blog_table", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST IDX files (default: the Keras cache)")
    parser.add_argument("--epochs", type=int, help="override every run's epochs (for a quick look)")
    parser.add_argument("--examples", type=int, help="train on the first N training images (for a quick look)")
    args = parser.parse_args(argv)
    splits = load_mnist(args.data_dir, download=False)
    rows = []
    for blog_run in RUNS:
        rows.append(run(blog_run, splits, args.epochs, args.examples))
        print(f"{blog_run.name}: {rows[-1]['seconds']:.0f} s", file=sys.stderr)
    lines = [
        f"Machine: {machine.describe()}. Adadelta (learning rate 1.0), seed 0, MNIST test set as validation"
        + (f"; the first {args.examples:,} training images." if args.examples else "."),
        "",
        "| model | epochs | batch | aeloops train loss | aeloops validation loss | blog | mode | wall time |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for row in rows:
        blog_run = row["run"]
        lines.append(
            f"| {blog_run.name} | {row['epochs']} | {blog_run.batch_size} | {row['train']:.4f} | "
            f"{row['validation']:.4f} | {blog_run.blog} | {row['mode']} | {row['seconds']:.0f} s |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
