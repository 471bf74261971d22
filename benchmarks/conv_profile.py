"""Profiles the convolutional training step by op: each op's share of the step and a convolution's GFLOP/s.

Usage::

    python -m benchmarks.conv_profile --data-dir ../shared/data/mnist   # seed conv (28x28x1) and 32x32x3
    python -m benchmarks.conv_profile --rewrites                          # the rewrites, timed side by side
    python -m benchmarks.conv_profile --threads                           # thread settings, a process each

TensorFlow's profiler traces a few compiled calls of aeloops' train step
(after a warm-up call) in graph mode and under XLA. In graph mode each
TensorFlow kernel is one event (``<op name>:<op type>``) on an executor
thread; under XLA each HLO thunk (``convolution.3``, ``fusion.7``) is one
event on the thread that ran it. The table sums each kind's time over the
threads, per step, and gives its share of all op time (two threads run at
once, so the shares are of the sum, not of the wall time). A convolution's
GFLOP/s counts the multiply-adds its layer's shapes imply (2 FLOPs each) for
the forward pass, the input gradient and the filter gradient alike.

``--threads`` times the seed model in graph mode under TensorFlow's thread
settings and with the batch split over two logical CPUs, each in a fresh
process (threads are fixed when TensorFlow starts). ``--rewrites`` times, in
one process and in interleaved rounds, the seed conv model as Keras builds it
against the same model with its layers rewritten (``benchmarks.conv_rewrites``):
max-pooling as a reshape and a maximum, nearest up-sampling as a broadcast,
and 3x3 convolutions as one matrix product followed by nine shifted sums. Each computes the same numbers to float
tolerance, gradients included (``tests/test_benchmarks.py``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from aeloops.data import load_mnist, load_sample, to_model_inputs  # noqa: E402
from aeloops.models import registry  # noqa: E402
from aeloops.training.trainer import Trainer  # noqa: E402
from benchmarks import conv_rewrites, machine  # noqa: E402
from benchmarks.run import blocky_colour_images  # noqa: E402

# Events that contain ops rather than being one: executor and thread-pool bookkeeping.
_CONTAINERS = re.compile(r"::|^Threadpool|^Memory|^ParallelFor|^resident|^tf\.constant")
_CONVOLUTION_TYPES = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")


def conv_layer_flops(model: keras.Model, batch: int) -> dict[str, float]:
    """Returns each 2-D convolution layer's FLOPs for one pass over ``batch`` examples, by layer path.

    In the order the forward pass calls them (the first sees the input, so
    it has no input gradient): the model is run once on a zero example.
    """
    called = []
    originals = {}
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2D):
            originals[layer] = layer.call

            def call(inputs, layer=layer, original=layer.call):
                outputs = original(inputs)
                called.append((layer, tuple(int(side) for side in outputs.shape[1:])))
                return outputs

            layer.call = call
    try:
        model(np.zeros((1, *model.example_shape), np.float32), training=False)
    finally:
        for layer, original in originals.items():
            layer.call = original
    flops = {}
    for layer, (height, width, _) in called:
        kh, kw, channels_in, channels_out = layer.kernel.shape
        flops[layer.path] = 2.0 * batch * height * width * channels_out * kh * kw * channels_in
    return flops


def _layer_of(op_name: str, paths: list[str]) -> str | None:
    """Returns the layer path an op's name belongs to (TensorFlow numbers scopes: ``conv_1_1``)."""
    for path in paths:
        pattern = "".join(rf"{re.escape(part)}(_\d+)*/" for part in path.split("/")[1:])
        if re.search(pattern, op_name):
            return path
    return None


def read_trace(logdir: str) -> list[tuple[str, float]]:
    """Returns every op event of the newest trace under ``logdir`` as (name, seconds of its own).

    An event's own time leaves out the events nested in it on its thread
    (a kernel's shards, a thunk's runtime call), so nothing counts twice;
    bookkeeping events (executor, thread pool, allocator) are left out.
    """
    path = sorted(pathlib.Path(logdir).rglob("*.xplane.pb"))[-1]
    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    events = []
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if line.name == "python":  # The caller's thread: the compiled call, which holds every op.
                continue
            ordered = sorted(line.events, key=lambda event: (event.offset_ps, -event.duration_ps))
            own = [event.duration_ps for event in ordered]
            open_events: list[int] = []
            for index, event in enumerate(ordered):
                while open_events and ordered[open_events[-1]].offset_ps + ordered[open_events[-1]].duration_ps <= (
                    event.offset_ps
                ):
                    open_events.pop()
                if open_events:
                    own[open_events[-1]] -= event.duration_ps
                open_events.append(index)
            for event, picoseconds in zip(ordered, own):
                name = plane.event_metadata[event.metadata_id].name
                if not _CONTAINERS.search(name):
                    events.append((name, max(picoseconds, 0) * 1e-12))
    return events


def profile(model_name: str, images: np.ndarray, mode: str, calls: int, steps: int, batch: int) -> list[dict]:
    """Profiles ``calls`` compiled calls of ``steps`` train steps; returns one row per op kind, largest first."""
    keras.utils.set_random_seed(0)
    spec = registry.get(model_name)
    model = spec.build(images.shape[1:])
    inputs = to_model_inputs(images[: batch * steps * (calls + 1)], model.example_shape)
    flops = conv_layer_flops(model, batch)
    trainer = Trainer(model, spec.objective(model), mode=mode, steps_per_loop=steps)
    trainer.fit(inputs[: batch * steps], batch_size=batch, verbose=0)  # Traced and compiled here.
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        trainer.fit(inputs[batch * steps :], batch_size=batch, verbose=0)
        tf.profiler.experimental.stop()
        events = read_trace(logdir)
    total_steps = calls * steps
    kinds: dict[str, float] = collections.Counter()
    flops_of: dict[str, float] = {}  # A kind's FLOPs per step, where its layers are known.
    for name, seconds in events:
        if ":" in name:  # Graph mode: "<op name>:<op type>".
            op_name, kind = name.rsplit(":", 1)
            kind = kind.removeprefix("_MklNative").removeprefix("_Mkl").removesuffix("WithBias")
            kind = "Conv2D" if kind == "FusedConv2D" else kind  # Conv2D + bias (+ ReLU), fused by oneDNN.
            layer = _layer_of(op_name, list(flops)) if kind in _CONVOLUTION_TYPES else None
            if layer is not None:
                kind = f"{kind} {layer.split('/', 1)[1]}"
                flops_of[kind] = flops[layer]
        elif re.fullmatch(r"[a-z][\w.-]*|[A-Z]\w*\.\d+", name):  # XLA: an HLO thunk, "convolution.12".
            kind = re.sub(r"[._]\d+$", "", name)
            if kind in _CONVOLUTION_TYPES or kind == "convolution":  # TensorFlow's gradient ops, lowered.
                # XLA names no layer: the pass over every layer (the first has no input gradient).
                passes = list(flops.values())[1:] if kind == "Conv2DBackpropInput" else flops.values()
                kind = kind if kind == "convolution" else f"{kind} (XLA)"
                flops_of[kind] = sum(passes)
        else:  # XLA compiling (MLIR passes) and its runtime's own work.
            kind = "XLA compiler and runtime"
        kinds[kind] += seconds
    everything = sum(kinds.values())
    rows = []
    for kind, seconds in kinds.most_common():
        row = {"op": kind, "ms_per_step": 1000 * seconds / total_steps, "share": seconds / everything}
        if kind in flops_of:
            row["gflops"] = flops_of[kind] * total_steps / seconds / 1e9
        rows.append(row)
    return rows


def profile_table(title: str, rows: list[dict], limit: int) -> str:
    """Returns the profile as a Markdown table of the ``limit`` largest op kinds."""
    lines = [f"### {title}", "", "| op | ms per step | share | GFLOP/s |", "| --- | ---: | ---: | ---: |"]
    for row in rows[:limit]:
        gflops = f"{row['gflops']:.1f}" if "gflops" in row else ""
        lines.append(f"| {row['op']} | {row['ms_per_step']:.2f} | {100 * row['share']:.1f}% | {gflops} |")
    rest = rows[limit:]
    if rest:
        lines.append(
            f"| {len(rest)} other kinds | {sum(row['ms_per_step'] for row in rest):.2f} "
            f"| {100 * sum(row['share'] for row in rest):.1f}% | |"
        )
    return "\n".join(lines)


def time_rewrites(images: np.ndarray, modes: list[str], steps: int, batch: int, repeats: int) -> str:
    """Times the seed conv model as built and with each rewrite, interleaved; returns a Markdown table."""
    runs = {}
    for name, rewrites in conv_rewrites.VARIANTS.items():
        for mode in modes:
            keras.utils.set_random_seed(0)
            with conv_rewrites.rewritten(**rewrites):
                spec = registry.get("conv")
                model = spec.build(images.shape[1:])
            inputs = to_model_inputs(images[: batch * steps], model.example_shape)
            trainer = Trainer(model, spec.objective(model), mode=mode, steps_per_loop=steps)
            trainer.fit(inputs, batch_size=batch, verbose=0)
            runs[name, mode] = (trainer, inputs, [])
    for _ in range(repeats):
        for trainer, inputs, times in runs.values():
            times.append(trainer.fit(inputs, batch_size=batch, verbose=0)["epoch_seconds"][-1] / steps)
    plain = {mode: statistics.median(runs["as built", mode][2]) for mode in modes}
    lines = ["| layers | mode | ms per step | spread | vs as built, same mode | vs as built, graph |",
             "| --- | --- | ---: | --- | ---: | ---: |"]  # fmt: skip
    for (name, mode), (_, _, times) in runs.items():
        median = statistics.median(times)
        lines.append(
            f"| {name} | {mode} | {1000 * median:.1f} | {1000 * min(times):.1f}-{1000 * max(times):.1f} "
            f"| {median / plain[mode]:.2f}x | {median / plain.get('graph', plain[mode]):.2f}x |"
        )
    return "\n".join(lines)


THREAD_SETTINGS = [(2, 2, False), (2, 1, False), (1, 2, False), (1, 1, False), (1, 2, True), (2, 2, True)]


def time_threads(data_dir: str | None, steps: int, batch: int, repeats: int) -> str:
    """Times the seed conv model in graph mode under each thread setting, each in a fresh process."""
    lines = ["| intra-op threads | inter-op threads | batch split over 2 logical CPUs | ms per step |",
             "| ---: | ---: | --- | ---: |"]  # fmt: skip
    for intra, inter, split in THREAD_SETTINGS:
        setting = ["--one-setting", str(intra), str(inter), str(int(split))]
        sizes = ["--steps", str(steps), "--batch-size", str(batch), "--repeats", str(repeats)]
        command = [sys.executable, "-m", "benchmarks.conv_profile", *setting, *sizes]
        if data_dir:
            command += ["--data-dir", data_dir]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        lines.append(f"| {intra} | {inter} | {'yes' if split else 'no'} | {float(result.stdout.split()[-1]):.1f} |")
    return "\n".join(lines)


def time_one_setting(images: np.ndarray, intra: int, inter: int, split: bool, steps: int, batch: int, repeats: int):
    """Prints the median ms per step of the seed conv model in graph mode with these threads (a fresh process)."""
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    strategy = None
    if split:  # Two replicas on two logical CPUs: each runs half the batch.
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    keras.utils.set_random_seed(0)
    with (strategy or tf.distribute.get_strategy()).scope():
        spec = registry.get("conv")
        model = spec.build()
    trainer = Trainer(model, spec.objective(model), mode="graph", steps_per_loop=steps, strategy=strategy)
    inputs = to_model_inputs(images[: batch * steps], model.example_shape)
    trainer.fit(inputs, batch_size=batch, verbose=0)
    times = [trainer.fit(inputs, batch_size=batch, verbose=0)["epoch_seconds"][-1] / steps for _ in range(repeats)]
    print(f"{1000 * statistics.median(times):.2f}")


def main(argv: list[str] | None = None) -> int:
    """Profiles the conv step (or times the rewrites) and prints Markdown."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.conv_profile", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST IDX files (default: the bundled sample)")
    parser.add_argument("--modes", nargs="+", default=["graph", "xla"], choices=("graph", "xla"))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="train steps per compiled call")
    parser.add_argument("--calls", type=int, default=3, help="compiled calls profiled")
    parser.add_argument("--rows", type=int, default=14, help="op kinds shown per table")
    parser.add_argument("--rewrites", action="store_true", help="time the rewritten layers instead")
    parser.add_argument("--threads", action="store_true", help="time thread settings instead, a process each")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of --rewrites and --threads timings")
    parser.add_argument("--one-setting", nargs=3, type=int, help=argparse.SUPPRESS)  # A --threads child.
    args = parser.parse_args(argv)
    splits = load_mnist(args.data_dir, download=False) if args.data_dir else load_sample()
    needed = args.batch_size * args.steps * (args.calls + 1)
    mnist = np.resize(splits.train_images, (needed, 28, 28, 1))  # The sample repeats if it is short.
    if args.one_setting:
        time_one_setting(mnist, *args.one_setting, args.steps, args.batch_size, args.repeats)
        return 0
    print(f"Machine: {machine.describe()}. Batch {args.batch_size}, {args.steps} steps per compiled call.\n")
    if args.threads:
        print(time_threads(args.data_dir, args.steps, args.batch_size, args.repeats))
        return 0
    if args.rewrites:
        print(time_rewrites(mnist, args.modes, args.steps, args.batch_size, args.repeats))
        return 0
    for shape, images in (("28x28x1", mnist), ("32x32x3", blocky_colour_images(needed, 32))):
        for mode in args.modes:
            rows = profile("conv", images, mode, args.calls, args.steps, args.batch_size)
            step = sum(row["ms_per_step"] for row in rows)
            print(profile_table(f"conv {shape}, {mode}: {step:.1f} ms of op time per step", rows, args.rows))
            print()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
