"""Times ``python -m aeloops.train --help`` (it must not import TensorFlow).

Usage: ``python -m benchmarks.help_time`` prints the median of five runs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def main() -> int:
    """Prints the median and spread of five timed ``--help`` runs."""
    times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aeloops.train", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    print(
        f"python -m aeloops.train --help: median {statistics.median(times):.3f} s ({min(times):.3f}-{max(times):.3f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
