"""Times how long ``python -m aeloops.train`` takes to start training, with a cold and a warm compilation cache.

Each repeat gives the CLI a new, empty cache directory (``XDG_CACHE_HOME``)
and runs the same one-epoch configuration twice in fresh processes: the first
run compiles and fills the cache, the second reads it. The time to the first
step is the CLI's own figure ("the first training step ended at ... s",
counted from the command's start); a process that only imports TensorFlow is
timed alongside, as the floor no cache can lower. Runs are interleaved so the
machine's noise falls on all alike; the table gives medians.

Usage: ``python -m benchmarks.startup [--data-dir ../shared/data/mnist]
[--models dense,conv] [--modes graph,xla] [--repeats 3]``; without
``--data-dir`` the runs train on the bundled 5,000-image sample.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

_CLOSING = re.compile(r"Finished in (?P<total>[\d.]+) s \(the first training step ended at (?P<first>[\d.]+) s\)")


def time_run(model: str, mode: str, data_dir: str | None, cache: Path, run_dir: Path) -> dict:
    """Runs the CLI once; returns the seconds to its first step and in all, from its closing line."""
    command = [sys.executable, "-m", "aeloops.train", "--model", model, "--mode", mode, "--epochs", "1"]
    command += ["--run-dir", str(run_dir), "--quiet"]
    command += ["--data-dir", data_dir] if data_dir else ["--dataset", "mnist-sample"]
    result = subprocess.run(command, capture_output=True, text=True, env=_env(cache), check=False)
    match = _CLOSING.search(result.stdout)
    if result.returncode or match is None:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return {"first_step": float(match["first"]), "total": float(match["total"])}


def time_import() -> float:
    """Returns how long a fresh process takes to import TensorFlow (and start)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, capture_output=True)
    return time.perf_counter() - started


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(cache), "TF_CPP_MIN_LOG_LEVEL": "3"}


def main(argv: Sequence[str] | None = None) -> int:
    """Prints a Markdown table: per model and mode, the first step with a cold and a warm cache."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="MNIST's IDX files (default: the bundled sample)")
    parser.add_argument("--models", default="dense,conv", help="comma-separated registered models")
    parser.add_argument("--modes", default="graph,xla", help="comma-separated modes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    runs: dict[tuple[str, str], dict[str, list[float]]] = {}
    imports = []
    with tempfile.TemporaryDirectory(prefix="aeloops-startup-") as scratch:
        for repeat in range(args.repeats):
            imports.append(time_import())
            for model in args.models.split(","):
                for mode in args.modes.split(","):
                    cache = Path(scratch) / f"cache-{model}-{mode}-{repeat}"
                    times = runs.setdefault((model, mode), {"cold": [], "warm": [], "total_cold": [], "total_warm": []})
                    for kind in ("cold", "warm"):
                        run_dir = Path(scratch) / f"{model}-{mode}-{repeat}-{kind}"
                        result = time_run(model, mode, args.data_dir, cache, run_dir)
                        times[kind].append(result["first_step"])
                        times[f"total_{kind}"].append(result["total"])
    floor = statistics.median(imports)
    print(f"Import of TensorFlow in a fresh process: {floor:.2f} s (median of {len(imports)}).")
    print("| model | mode | first step, cold cache | first step, warm cache | cold / warm | run, cold | run, warm |")
    print("|---|---|---|---|---|---|---|")
    for (model, mode), times in runs.items():
        cold, warm = statistics.median(times["cold"]), statistics.median(times["warm"])
        print(
            f"| {model} | {mode} | {cold:.2f} s | {warm:.2f} s | {cold / warm:.2f}x "
            f"| {statistics.median(times['total_cold']):.2f} s | {statistics.median(times['total_warm']):.2f} s |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
