"""Times README's contractive autoencoder in ``auto`` mode against ``graph`` (and ``xla``), side by side.

Its nested ``GradientTape.batch_jacobian`` makes XLA compile again on every
call; ``auto`` notices after two calls and falls back to graph mode. What
that detection costs is the difference between the two columns.

Usage: ``python -m benchmarks.mode_probe [--repeats 3] [--with-xla]`` prints
one Markdown row per mode: the median of the interleaved repeats, their
spread, the mode the trainer ended in and the ratio to graph mode.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
import warnings
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.machine import describe  # noqa: E402
from tests.conftest import REPO  # noqa: E402


def readme_example(name: str) -> str:
    """Returns the code of README's ``<!-- example: name -->`` block."""
    match = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    if match is None:
        raise SystemExit(f"README.md has no example {name!r}")
    return match.group(1)


def run_once(code: str, mode: str) -> tuple[float, str]:
    """Runs the example with ``mode``; returns its wall time (building, compiling, training) and the final mode."""
    namespace: dict = {}
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # The probe's warning is expected here.
        exec(code.replace('mode="auto"', f'mode="{mode}"').replace("print(trainer.mode)", ""), namespace)  # noqa: S102
    return time.perf_counter() - started, namespace["trainer"].mode


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the timing table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mode_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--with-xla", action="store_true", help="also time mode='xla' (recompiles every call: slow)")
    args = parser.parse_args(argv)
    code = readme_example("contractive")
    modes = ["auto", "graph", *(["xla"] if args.with_xla else [])]
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    ended: dict[str, str] = {}
    for _ in range(args.repeats):
        for mode in modes:  # Interleaved, so that the machine's noise falls on every mode alike.
            seconds, ended[mode] = run_once(code, mode)
            times[mode].append(seconds)
    print(describe())
    print("| mode asked | ended in | wall time (median) | spread | vs graph |")
    print("| --- | --- | ---: | --- | ---: |")
    graph = statistics.median(times["graph"])
    for mode in modes:
        median = statistics.median(times[mode])
        spread = f"{min(times[mode]):.1f}-{max(times[mode]):.1f} s"
        print(f"| {mode} | {ended[mode]} | {median:.1f} s | {spread} | {median / graph:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
