"""Rebuilds ``mnist_sample.npz`` from a directory of MNIST IDX files.

Usage: ``python -m aeloops.data.sample.make_sample ../shared/data/mnist``
"""

from __future__ import annotations

import sys

import numpy as np

from aeloops.data.mnist import SAMPLE_PATH, load_mnist

TRAIN_EXAMPLES = 5000
TEST_EXAMPLES = 1000


def main(argv: list[str]) -> int:
    """Writes the first examples of each split to the bundled sample file."""
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    splits = load_mnist(argv[0], download=False)
    np.savez_compressed(
        SAMPLE_PATH,
        x_train=splits.train_images[:TRAIN_EXAMPLES],
        y_train=splits.train_labels[:TRAIN_EXAMPLES],
        x_test=splits.test_images[:TEST_EXAMPLES],
        y_test=splits.test_labels[:TEST_EXAMPLES],
    )
    print(f"wrote {SAMPLE_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
