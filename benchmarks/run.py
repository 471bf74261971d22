"""Times aeloops' modes against Keras ``fit``, a hand-written loop and PyTorch, side by side.

Usage::

    python -m benchmarks.run --data-dir ../shared/data/mnist            # CPU, dense/deep/conv
    python -m benchmarks.run --device gpu --models conv --repeats 5     # on a GPU machine
    python -m benchmarks.run --tiny                                     # a smoke run

Every configuration lives in one process. An epoch's time is measured from
its first step to its last (setup such as copying the data to the device,
done once per ``fit`` call, is left out for every configuration alike).
After a first (warm-up) epoch,
which includes tracing and compilation, the configurations take turns, one
epoch each, for ``--repeats`` rounds, so a noisy neighbour slows them alike;
the table gives medians and spreads. Each row also gives the final loss (a
fast but wrong configuration stands out), the peak host memory the
configuration added, device memory on a GPU, and the number of traces after
warm-up (0 means nothing retraced).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from aeloops.data import load_mnist, load_sample, to_model_inputs  # noqa: E402
from aeloops.models import registry  # noqa: E402
from aeloops.training.trainer import Trainer  # noqa: E402
from benchmarks import machine, torch_peers  # noqa: E402
from benchmarks.baselines import HandWrittenLoop, KerasFit, image_shape_of  # noqa: E402
from benchmarks.torch_peers import TorchLoop  # noqa: E402

MODELS = ("dense", "deep", "conv")
# The rows of what a user would pick instead of aeloops.
PEERS = ("keras fit", "hand-written", "pytorch")


class AeloopsRun:
    """One aeloops configuration: a mode, steps per call and a precision."""

    def __init__(self, model_name: str, images: np.ndarray, batch_size: int, mode: str, steps: int, precision: str):
        self.name = f"aeloops {mode}, {steps} step{'s' if steps > 1 else ''}/call" + (
            f", {precision}" if precision != "float32" else ""
        )
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(precision)
        keras.utils.set_random_seed(0)  # Every configuration starts from the same weights.
        try:
            model = registry.get(model_name).build(image_shape_of(images))
            self.trainer = Trainer(model, registry.get(model_name).objective(model), mode=mode, steps_per_loop=steps)
        finally:
            keras.mixed_precision.set_global_policy(previous)
        self.images = images
        self.batch_size = batch_size
        self.epoch = 0

    @property
    def traces(self) -> int | None:
        # Eager mode runs the Python function on every call: there is no trace to count.
        return None if self.trainer.mode == "eager" else self.trainer.trace_counts["train"]

    def run_epoch(self) -> tuple[float, float]:
        """Trains one epoch; returns its mean loss and its seconds, as timed inside ``fit``."""
        history = self.trainer.fit(
            self.images, epochs=self.epoch + 1, initial_epoch=self.epoch, batch_size=self.batch_size, verbose=0
        )
        self.epoch += 1
        return history["loss"][-1], history["epoch_seconds"][-1]


class PeakMemory:
    """Samples this process's resident memory on a thread; reports the peak above the start."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval

    @staticmethod
    def resident_bytes() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = self.resident_bytes()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self.peak = max(self.peak, self.resident_bytes())

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self.resident_bytes())

    @property
    def added_megabytes(self) -> float:
        return (self.peak - self.start) / 2**20


def blocky_colour_images(count: int, side: int) -> np.ndarray:
    """Returns ``count`` random uint8 colour images of 4x4 blocks (a conv step's speed does not depend on content).

    Not ``benchmarks.own_data.colour_images``' blobs: those take 38 s to draw at MNIST's 60,000, these 0.3 s.
    """
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, side // 4, side // 4, 3)).astype(np.uint8).repeat(4, axis=1).repeat(4, axis=2)


def _cpu_has_bfloat16() -> bool:
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    return cpuinfo.is_file() and "avx512_bf16" in cpuinfo.read_text()


def configurations(
    model: str, images: np.ndarray, batch: int, device: str, eager: bool, tiny: bool = False, xla: bool = True
) -> list:
    """Returns every configuration to time for ``model`` (aeloops' XLA rows only with ``xla``)."""
    runs = [KerasFit(model, images, batch), HandWrittenLoop(model, images, batch)]
    # Keras fit as a user who cares about speed sets it: 50 steps per call, with and without XLA.
    runs += [KerasFit(model, images, batch, jit, steps_per_execution=50) for jit in (True, False)]
    # PyTorch, eager and compiled, on the CPU only (the rows say so); torch.compile's 20-30 s
    # compilation is left out of a smoke run.
    if torch_peers.available() and device == "cpu" and images.shape[1:] in ((784,), (28, 28, 1)):
        runs += [TorchLoop(model, images, batch, compiled) for compiled in ((False,) if tiny else (False, True))]
    modes = [("graph", 1), ("graph", 50), *([("xla", 1), ("xla", 50)] if xla else [])]
    if eager:
        modes.insert(0, ("eager", 1))
    runs += [AeloopsRun(model, images, batch, mode, steps, "float32") for mode, steps in modes]
    # Mixed precision where the device has fast reduced-precision math.
    if device == "gpu":
        runs.append(AeloopsRun(model, images, batch, "xla", 50, "mixed_float16"))
    elif _cpu_has_bfloat16():
        runs.append(AeloopsRun(model, images, batch, "graph", 50, "mixed_bfloat16"))
    return runs


def benchmark_model(model: str, images: np.ndarray, args: argparse.Namespace) -> list[dict]:
    """Times every configuration of ``model``, interleaved, and returns one row each."""
    runs = configurations(model, images, args.batch_size, args.device, not args.no_eager, args.tiny, not args.no_xla)
    rows = []
    for run in runs:
        with PeakMemory() as memory:
            started = time.perf_counter()  # The first epoch's wall time includes every setup cost.
            loss, _ = run.run_epoch()
            first = time.perf_counter() - started
        rows.append(
            {
                "model": model,
                "config": run.name,
                "first_epoch": first,
                "epochs": [],
                "losses": [loss],
                "host_mb": memory.added_megabytes,
                "traces_warm": run.traces,
            }
        )
    for _ in range(args.repeats):
        for run, row in zip(runs, rows):
            with PeakMemory() as memory:
                loss, seconds = run.run_epoch()
            row["losses"].append(loss)
            row["epochs"].append(seconds)
            row["host_mb"] = max(row["host_mb"], memory.added_megabytes)
    steps = len(images) // args.batch_size
    for run, row in zip(runs, rows):
        warm_traces = row.pop("traces_warm")
        median = statistics.median(row["epochs"])
        row.update(
            epoch=median,
            spread=(min(row["epochs"]), max(row["epochs"])),
            compile=max(row["first_epoch"] - median, 0.0),
            steps_per_second=steps / median,
            samples_per_second=steps * args.batch_size / median,
            final_loss=row["losses"][-1],
            retraces=None if run.traces is None else run.traces - warm_traces,
        )
        if args.device == "gpu":
            row["device_peak_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return rows


def markdown(rows: list[dict], header: str) -> str:
    """Returns the results as a Markdown table with ratios to both baselines."""
    lines = [header, ""]
    for model in dict.fromkeys(row["model"] for row in rows):
        group = [row for row in rows if row["model"] == model]
        fit = next(row["epoch"] for row in group if row["config"].startswith("keras fit"))
        hand = next(row["epoch"] for row in group if row["config"].startswith("hand-written"))
        # The fastest of the peers a user would pick instead of aeloops.
        best_peer = min(row["epoch"] for row in group if row["config"].startswith(PEERS))
        lines += [
            f"### {model}",
            "",
            "| configuration | epoch (median) | spread | vs fit | vs hand loop | vs best peer | compile | samples/s "
            "| final loss | host MB | retraces |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in group:
            retraces = "n/a" if row["retraces"] is None else str(row["retraces"])
            lines.append(
                f"| {row['config']} | {row['epoch']:.3f} s | {row['spread'][0]:.3f}-{row['spread'][1]:.3f} s "
                f"| {row['epoch'] / fit:.2f}x | {row['epoch'] / hand:.2f}x | {row['epoch'] / best_peer:.2f}x "
                f"| {row['compile']:.2f} s "
                f"| {row['samples_per_second']:,.0f} | {row['final_loss']:.4f} | {row['host_mb']:.0f} | {retraces} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and writes JSON and Markdown results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST IDX files (default: the Keras cache)")
    parser.add_argument("--sample", action="store_true", help="use the bundled 5,000-image MNIST sample")
    parser.add_argument("--tiny", action="store_true", help="512 images, 1 repeat: checks that the suite runs")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=registry.names())
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--colour",
        action="store_true",
        help="conv on 32x32x3 images (MNIST's count of random colour images in 4x4 blocks) instead of MNIST",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-eager", action="store_true", help="skip eager mode (slow for conv)")
    parser.add_argument("--no-xla", action="store_true", help="skip aeloops' XLA rows (slow for conv on a CPU)")
    parser.add_argument("--output", default="benchmarks/results", help="folder for results.json and results.md")
    args = parser.parse_args(argv)
    if args.device == "gpu" and not tf.config.list_physical_devices("GPU"):
        print("--device gpu: no GPU is visible to TensorFlow; every GPU row is unmeasured (no GPU).")
        return 0
    splits = load_sample() if args.sample or args.tiny else load_mnist(args.data_dir, download=False)
    if args.tiny:
        splits = splits._replace(train_images=splits.train_images[:512])
        args.repeats, args.batch_size = 1, 64
    keras.utils.set_random_seed(0)
    rows = []
    if args.colour:
        if args.models != ["conv"]:
            parser.error("--colour times the conv model only: pass --models conv")
        splits = splits._replace(train_images=blocky_colour_images(len(splits.train_images), 32))
    image_shape = (32, 32, 3) if args.colour else (28, 28, 1)
    with tf.device("/GPU:0" if args.device == "gpu" else "/CPU:0"):
        for model in args.models:
            example_shape = registry.get(model).build(image_shape).example_shape
            images = to_model_inputs(splits.train_images, example_shape)
            rows += benchmark_model(model, images, args)
            print(f"{model}: done", file=sys.stderr)
    header = (
        f"Machine: {machine.describe()}. Device: {args.device}. {len(splits.train_images)} "
        f"{'32x32x3 colour ' if args.colour else ''}images, "
        f"batch {args.batch_size}, one epoch per timing, {args.repeats} rounds; times are medians."
    )
    if not torch_peers.available():
        header += ' PyTorch rows skipped: PyTorch is not installed (pip install -e ".[bench]").'
    elif args.device == "gpu":
        header += " PyTorch rows are timed on the CPU only."
    table = markdown(rows, header)
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps({"header": header, "rows": rows}, indent=2) + "\n")
    (output / "results.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
