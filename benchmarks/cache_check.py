"""What checking a decoded-image cache costs: the SHA-256 of the whole file, read once per run that reuses it.

Usage::

    python -m benchmarks.cache_check --images 50000 --size 64 64 3 --repeats 5

Writes a cache-sized ``.npy`` of random uint8 images to a temporary
directory and times ``aeloops.data.decoded.file_digest`` on it: the median
of ``--repeats`` reads (the file in the page cache after the first, as it is
for a run that has just decoded or read it).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from aeloops.data.decoded import file_digest
from benchmarks import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--size", type=int, nargs=3, default=[64, 64, 3], metavar=("HEIGHT", "WIDTH", "CHANNELS"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(machine.describe())
    images = np.random.default_rng(0).integers(0, 256, size=(args.images, *args.size), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "decoded.npy"
        np.save(path, images)
        size = path.stat().st_size
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            file_digest(path)
            times.append(time.perf_counter() - started)
    median = statistics.median(times)
    print(f"{args.images:,} images of {'x'.join(map(str, args.size))} ({size / 1e6:,.0f} MB): checked in "
          f"{median:.3f} s (median of {args.repeats}), {size / median / 1e9:.2f} GB/s")  # fmt: skip


if __name__ == "__main__":
    main()
