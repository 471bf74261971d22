"""Times ``mode="auto"`` against the best fixed mode (graph or XLA) for every registered model, side by side.

Each run is a fresh process (XLA's compilations are not shared between
them) that times ``Trainer.fit`` alone: tracing, compiling, measuring and
training, not the import of TensorFlow. Runs are interleaved (model by
model, mode by mode, repeat by repeat) so the machine's noise falls on all
alike; the table gives medians.

Usage: ``python -m benchmarks.mode_choice --data-dir ../shared/data/mnist
[--examples 60000] [--epochs 3] [--repeats 3] [--models dense,conv,...]``.
``contractive`` is docs/train-step.md's contractive autoencoder (a nested
``GradientTape``, on which XLA compiles on every call).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.conftest import REPO  # noqa: E402

MODES = ("auto", "graph", "xla")
# How each measured run starts Python: a fresh interpreter, as a user's command line does.
PYTHON = [sys.executable]


def readme_example(name: str) -> str:
    """Returns the code of docs/train-step.md's ``<!-- example: name -->`` block."""
    page = REPO / "docs" / "train-step.md"
    match = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", page.read_text(), re.S)
    if match is None:
        raise SystemExit(f"{page} has no example {name!r}")
    return match.group(1)


def time_one(
    model_name: str, mode: str, data_dir: str | None, examples: int, epochs: int, batch_size: int, steps_per_loop: int
) -> dict:
    """Builds ``model_name`` and times one ``fit`` in ``mode``; returns seconds, the mode it ended in, auto's report."""
    import keras

    import aeloops
    from aeloops.models import registry

    keras.utils.set_random_seed(0)
    if model_name == "contractive":
        namespace: dict = {}
        code = readme_example("contractive").split("history = trainer.fit")[0]
        exec(code.replace('mode="auto"', f'mode="{mode}"'), namespace)  # noqa: S102 - README's own code.
        trainer, images = namespace["trainer"], namespace["images"]
    else:
        spec = registry.get(model_name)
        model = spec.build()
        splits = aeloops.load_mnist(data_dir, download=False) if data_dir else aeloops.load_sample()
        images = aeloops.to_model_inputs(splits.train_images[:examples], model.example_shape)
        trainer_class = spec.trainer() if spec.trainer else aeloops.Trainer
        trainer = trainer_class(model, spec.objective(model), mode=mode, steps_per_loop=steps_per_loop)
    started = time.perf_counter()
    trainer.fit(images, epochs=epochs, batch_size=batch_size, verbose=0)
    return {"seconds": time.perf_counter() - started, "ended": trainer.mode, "report": trainer.mode_report}


def main(argv: Sequence[str] | None = None) -> int:
    """Prints one Markdown row per model."""
    from aeloops.runs.stderr_filter import StderrFilter

    with StderrFilter():  # TensorFlow's start-up notices would come before the table.
        from aeloops.models import registry
        from benchmarks.machine import describe

        machine = describe()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mode_choice", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST directory (default: the bundled 5,000-image sample)")
    parser.add_argument("--examples", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps-per-loop", type=int, default=50, help="steps per compiled call (the CLI's default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join([*registry.names(), "contractive"]))
    parser.add_argument(
        "--skip-xla",
        default="",
        help="comma-separated models whose fixed-XLA run is left out (too slow to time: XLA convolutions on a CPU)",
    )
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        settings = (args.data_dir, args.examples, args.epochs, args.batch_size, args.steps_per_loop)
        print(json.dumps(time_one(*args.one, *settings)))
        return 0
    settings = ["--examples", str(args.examples), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                "--steps-per-loop", str(args.steps_per_loop)]  # fmt: skip
    settings += ["--data-dir", args.data_dir] if args.data_dir else []
    print(machine)
    print(
        f"{args.examples} examples, {args.epochs} epochs, batch {args.batch_size}, {args.steps_per_loop} steps per "
        f"call, medians of {args.repeats} runs"
    )
    # "rest / tracing": the rest of the run in graph mode over graph mode's tracing, which auto compares with
    # its threshold (aeloops.training.mode_probe), and whether the program has convolutions, which sets the threshold.
    columns = "graph | xla | auto | auto chose | auto / best fixed | measuring cost | rest / tracing | convolutions"
    print(f"| model | {columns} |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |")
    skipped = set(filter(None, args.skip_xla.split(",")))
    for name in args.models.split(","):
        modes = [mode for mode in MODES if not (mode == "xla" and name in skipped)]
        runs: dict[str, list[dict]] = {mode: [] for mode in modes}
        for _ in range(args.repeats):
            for mode in modes:
                command = [*PYTHON, "-m", "benchmarks.mode_choice", "--one", name, mode, *settings]
                result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
                runs[mode].append(json.loads(result.stdout.strip().splitlines()[-1]))
        median = {mode: statistics.median(run["seconds"] for run in runs[mode]) for mode in modes}
        chose = sorted({run["ended"] for run in runs["auto"]})
        reports = [run["report"] for run in runs["auto"] if run["report"]]
        costs = [report["measuring_cost_seconds"] for report in reports]
        cost = f"{statistics.median(costs):.1f} s" if costs else "-"
        ratios = [report["rest_over_tracing"] for report in reports if report.get("rest_over_tracing") is not None]
        ratio = f"{statistics.median(ratios):.1f}" if ratios else "-"
        convolutions = sorted(
            {"yes" if report["convolutions"] else "no" for report in reports if "convolutions" in report}
        )
        # Without an XLA run, the best fixed mode is taken to be graph mode (the skipped XLA is far slower).
        best = min(median["graph"], median.get("xla", median["graph"]))
        xla = f"{median['xla']:.1f} s" if "xla" in median else "not run"
        print(
            f"| {name} | {median['graph']:.1f} s | {xla} | {median['auto']:.1f} s | "
            f"{', '.join(chose)} | {median['auto'] / best:.2f}x | {cost} | {ratio} | {'/'.join(convolutions) or '-'} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
