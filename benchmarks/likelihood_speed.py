"""Times the importance-sampled NLL in graph mode against XLA, side by side in one process.

For ``--model`` (``iwae``, Burda et al.'s 784-200-200-50, or ``vae``,
784-400-40; untrained: the cost does not depend on the weights) on the
first ``--examples`` test images binarized once, each repeat times
``negative_log_likelihood`` with ``--samples`` importance samples in both
modes, interleaved; the first call of each mode (tracing, compiling) is
not timed. Prints seconds per 1,000 images (medians) and their ratio.

Usage: ``python -m benchmarks.likelihood_speed --data-dir ../shared/data/mnist
[--model iwae] [--examples 200] [--samples 5000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.vae_nll import SETTINGS, build_model  # noqa: E402 - TensorFlow's log level first.


def main(argv: Sequence[str] | None = None) -> int:
    """Prints one Markdown row: graph and XLA seconds per 1,000 images, and graph over XLA."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.likelihood_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="MNIST's IDX files (default: the bundled sample)")
    parser.add_argument("--model", choices=sorted(SETTINGS), default="iwae")
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import keras

    import aeloops
    from aeloops.data import binarize
    from aeloops.evaluation.likelihood import negative_log_likelihood

    keras.utils.set_random_seed(0)
    splits = aeloops.load_mnist(args.data_dir, download=False) if args.data_dir else aeloops.load_sample()
    images = binarize(aeloops.to_model_inputs(splits.test_images[: args.examples], (784,)), "fixed", seed=0)
    model = build_model(SETTINGS[args.model])  # The models of pythae's rows, as benchmarks.vae_nll trains them.
    times: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(args.repeats + 1):
        for jit_compile in (False, True):
            started = time.perf_counter()
            negative_log_likelihood(model, images, samples=args.samples, jit_compile=jit_compile)
            if repeat:  # The first call traces and compiles.
                times[jit_compile].append(time.perf_counter() - started)
    per_thousand = {jit: 1000 * statistics.median(values) / len(images) for jit, values in times.items()}
    print("| model | images | samples | graph, s per 1,000 images | XLA | graph / XLA |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {args.model} | {len(images)} | {args.samples} | {per_thousand[False]:.2f} | {per_thousand[True]:.2f} "
        f"| {per_thousand[False] / per_thousand[True]:.2f}x |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
