"""Trains every seed model on MNIST and prints a Markdown table of what each reaches.

Usage::

    python -m benchmarks.seed_table --data-dir ../shared/data/mnist --epochs 10

Every model trains with the same recipe (Adam at its default learning rate,
batch 256, ``mode="auto"``, seed 0) on the 60,000 training images, with the
10,000 test images as validation.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from aeloops.data import load_mnist, load_sample, to_model_inputs  # noqa: E402
from aeloops.models import registry  # noqa: E402
from aeloops.training.trainer import Trainer  # noqa: E402
from benchmarks import machine  # noqa: E402

SEED_MODELS = ("rowwise", "dense", "sparse", "deep", "conv", "twohead")


def train_one(name: str, splits, epochs: int, batch_size: int) -> dict:
    """Trains model ``name`` and returns its row of the table."""
    keras.utils.set_random_seed(0)
    spec = registry.get(name)
    model = spec.build()
    objective = spec.objective(model)
    train = to_model_inputs(splits.train_images, model.example_shape)
    test = to_model_inputs(splits.test_images, model.example_shape)
    trainer = Trainer(model, objective, "adam", mode="auto", steps_per_loop=50)
    started = time.perf_counter()
    history = trainer.fit(train, epochs=epochs, batch_size=batch_size, validation_data=test, verbose=0)
    return {
        "model": name,
        "params": model.count_params(),
        "mode": trainer.mode,
        "terms": objective.names,
        "history": history,
        "seconds": time.perf_counter() - started,
    }


def markdown(rows: list[dict], epochs: int, batch_size: int, data: str) -> str:
    """Returns the table, with the machine and recipe in its header."""
    lines = [
        f"Seed models after {epochs} epochs on {data} (Adam, batch {batch_size}, seed 0).",
        f"Machine: {machine.describe()}.",
        "",
        "| model | params | mode | train loss | validation loss | terms (validation) | wall time |",
        "| --- | ---: | --- | ---: | ---: | --- | ---: |",
    ]
    for row in rows:
        history = row["history"]
        terms = ", ".join(f"{term} {history[f'val_{term}'][-1]:.4f}" for term in row["terms"])
        lines.append(
            f"| {row['model']} | {row['params']:,} | {row['mode']} | {history['loss'][-1]:.4f} | "
            f"{history['val_loss'][-1]:.4f} | {terms} | {row['seconds']:.1f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the table and prints it."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.seed_table", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST IDX files (default: the Keras cache)")
    parser.add_argument("--sample", action="store_true", help="use the bundled 5,000-image sample")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--models", nargs="+", default=list(SEED_MODELS), choices=registry.names())
    args = parser.parse_args(argv)
    splits = load_sample() if args.sample else load_mnist(args.data_dir, download=False)
    data = "the bundled MNIST sample" if args.sample else "MNIST"
    rows = []
    for name in args.models:
        rows.append(train_one(name, splits, args.epochs, args.batch_size))
        print(f"{name}: done in {rows[-1]['seconds']:.1f} s", file=sys.stderr)
    print(markdown(rows, args.epochs, args.batch_size, data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
