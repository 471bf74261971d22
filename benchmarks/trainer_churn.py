"""What each new trainer leaves behind in a process that builds many: a sweep's, a notebook's, a test suite's.

Usage::

    python -m benchmarks.trainer_churn --trainers 8 --modes graph,xla

Per mode, ``--trainers`` trainers are built in turn in this process, each
on a new model, and each trains one epoch (graph or XLA, Adam, batch 64, on
1,024 images of the bundled sample) and predicts once; then it is let go.
After each, the garbage is collected and the live Python objects, the live
traced graphs and the process's resident memory are read. The table gives
what the trainers after the first added per trainer (least squares over
them), near zero when a trainer let go is freed whole; the traced graphs
live at the end beyond those before the first trainer; and the seconds
each took (median), most of it tracing. TensorFlow kept every traced
training step until aeloops removed the custom gradients its trace
registered (``aeloops.training.custom_gradients``).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tensorflow.python.framework.func_graph import FuncGraph  # noqa: E402

from aeloops.data import load_sample, to_model_inputs  # noqa: E402
from aeloops.models import registry  # noqa: E402
from aeloops.training.trainer import Trainer  # noqa: E402
from benchmarks import machine  # noqa: E402


def resident_mb() -> float:
    """The process's resident memory now, in MB (Linux's /proc; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def census() -> tuple[int, int, float]:
    """Collects the garbage; returns the live Python objects, the live traced graphs and the resident MB."""
    gc.collect()
    objects = gc.get_objects()
    return len(objects), sum(isinstance(item, FuncGraph) for item in objects), resident_mb()


def slope(values: Sequence[float]) -> float:
    """The least-squares growth per trainer of ``values`` (one a trainer)."""
    return statistics.linear_regression(range(len(values)), values).slope if len(values) > 1 else 0.0


def churn(model: str, mode: str, trainers: int, images) -> dict[str, float]:
    """Builds, trains and lets go ``trainers`` trainers; returns the growth per trainer after the first."""
    counts, graphs, memory, seconds = [], [], [], []
    graphs_before = census()[1]  # Left by whatever ran in this process before.
    for _ in range(trainers):
        started = time.perf_counter()
        spec = registry.get(model)
        built = spec.build()
        trainer = Trainer(built, spec.objective(built), mode=mode)
        trainer.fit(images, epochs=1, batch_size=64, verbose=0)
        trainer.predict(images[:16])
        del trainer, built
        seconds.append(time.perf_counter() - started)
        live, traced, resident = census()
        counts.append(live)
        graphs.append(traced)
        memory.append(resident)
    return {
        "objects": slope(counts[1:]),
        "graphs": slope(graphs[1:]),
        "resident_mb": slope(memory[1:]),
        "graphs_left": graphs[-1] - graphs_before,
        "seconds": statistics.median(seconds[1:] or seconds),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Prints a Markdown table: per model and mode, what each trainer after the first left behind."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trainer_churn", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="dense,conv", help="comma-separated registered models")
    parser.add_argument("--modes", default="graph,xla", help="comma-separated modes: graph, xla")
    parser.add_argument("--trainers", type=int, default=8, help="trainers built in turn per model and mode")
    args = parser.parse_args(argv)
    if args.trainers < 2:
        parser.error("--trainers must be at least 2: the first trainer's costs are the process's, not a trainer's.")
    print(machine.describe())
    print(f"\n{args.trainers} trainers in turn per row, each one epoch on 1,024 images, then let go.\n")
    print("| model | mode | objects / trainer | traced graphs / trainer | graphs left at the end | MB / trainer "
          "| seconds / trainer |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    sample = load_sample()
    for model in args.models.split(","):
        images = to_model_inputs(sample.train_images[:1024], registry.get(model).build().example_shape)
        for mode in args.modes.split(","):
            row = churn(model, mode, args.trainers, images)
            print(f"| {model} | {mode} | {row['objects']:,.0f} | {row['graphs']:.1f} | {row['graphs_left']} "
                  f"| {row['resident_mb']:.1f} | {row['seconds']:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
