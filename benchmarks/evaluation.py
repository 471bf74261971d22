"""Times evaluation and prediction against training, per example, for the CLI's per-epoch validation.

For each model, in one process: a warm-up epoch traces everything, then
each repeat times one training epoch on ``--examples`` training images
(``fit``, batch 64 as the CLI trains), one ``evaluate`` of the 10,000 test
images at the same batch (what the CLI runs after every epoch) and one
``predict`` of them (batch 256, every output of the model). The table gives
medians; "validation / epoch" is the share the CLI's validation adds to a
full 60,000-image epoch, scaled from the per-example times.

Usage: ``python -m benchmarks.evaluation --data-dir ../shared/data/mnist
[--models dense,deep,conv] [--mode graph] [--repeats 3] [--examples 10000]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# A full MNIST epoch, and the validation set the CLI evaluates after each.
TRAIN_EXAMPLES, TEST_EXAMPLES = 60_000, 10_000


def time_model(model_name: str, mode: str, data_dir: str | None, examples: int, repeats: int) -> dict[str, float]:
    """Returns median microseconds per example of training, evaluation and prediction for ``model_name``."""
    import keras

    import aeloops
    from aeloops.models import registry

    keras.utils.set_random_seed(0)
    spec = registry.get(model_name)
    model = spec.build()
    splits = aeloops.load_mnist(data_dir, download=False) if data_dir else aeloops.load_sample()
    train = aeloops.to_model_inputs(splits.train_images[:examples], model.example_shape)
    test = aeloops.to_model_inputs(splits.test_images[:TEST_EXAMPLES], model.example_shape)
    trainer = (spec.trainer() if spec.trainer else aeloops.Trainer)(model, spec.objective(model), mode=mode)
    trainer.fit(train, epochs=1, batch_size=64, validation_data=test, verbose=0)  # Traces everything.
    trainer.predict(test)
    times: dict[str, list[float]] = {"train": [], "evaluate": [], "predict": []}
    for _ in range(repeats):
        started = time.perf_counter()
        trainer.fit(train, epochs=1, batch_size=64, verbose=0)
        times["train"].append((time.perf_counter() - started) / len(train))
        started = time.perf_counter()
        trainer.evaluate(test, batch_size=64)
        times["evaluate"].append((time.perf_counter() - started) / len(test))
        started = time.perf_counter()
        trainer.predict(test)
        times["predict"].append((time.perf_counter() - started) / len(test))
    return {name: 1e6 * statistics.median(values) for name, values in times.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Prints a Markdown table: microseconds per example, and validation's share of a CLI epoch."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.evaluation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="MNIST's IDX files (default: the bundled sample)")
    parser.add_argument("--models", default="dense,deep,conv", help="comma-separated registered models")
    parser.add_argument("--mode", default="graph", help="graph or xla")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--examples", type=int, default=10000, help="training images per timed epoch")
    args = parser.parse_args(argv)
    print(f"Microseconds per example ({args.mode} mode, medians of {args.repeats}):")
    print("| model | train | evaluate | predict | evaluate / train | validation / epoch |")
    print("|---|---|---|---|---|---|")
    for model_name in args.models.split(","):
        per_example = time_model(model_name, args.mode, args.data_dir, args.examples, args.repeats)
        train, evaluate, predict = (per_example[name] for name in ("train", "evaluate", "predict"))
        share = evaluate * TEST_EXAMPLES / (train * TRAIN_EXAMPLES)
        print(
            f"| {model_name} | {train:.1f} | {evaluate:.1f} | {predict:.1f} | {evaluate / train:.2f} "
            f"| {100 * share:.1f}% |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
