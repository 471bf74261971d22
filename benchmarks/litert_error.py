"""The error LiteRT export introduces, per model and quantization, on trained models and real test images.

Usage::

    python -m benchmarks.litert_error --data-dir ../shared/data/mnist --epochs 3 --models dense conv vae

Each model trains with its own objective (Adam, batch 256, seed 0) on the
training images, is exported as float32, float16 and int8 (dynamic-range)
LiteRT files, and each file is run by LiteRT's interpreter on the first
1,000 test images. A Markdown table gives each file's size and how far its
outputs lie from TensorFlow's: reconstructed pixels (in [0, 1]) and codes,
largest and mean absolute difference, and the anomaly score's largest
difference relative to the score.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from aeloops.data import load_mnist, load_sample, to_model_inputs  # noqa: E402
from aeloops.evaluation.anomaly import anomaly_scores  # noqa: E402
from aeloops.evaluation.litert import QUANTIZATIONS, interpreter, write_tflite  # noqa: E402
from aeloops.models import registry  # noqa: E402
from aeloops.training.trainer import Trainer  # noqa: E402
from benchmarks import machine  # noqa: E402


def served(path: str, signature: str, values: np.ndarray, batch: int | None) -> np.ndarray:
    """Runs one signature of a LiteRT file on ``values`` and returns its only output."""
    with open(path, "rb") as stream:
        runner = interpreter(stream.read()).get_signature_runner(signature)
    step = batch or len(values)
    parts = [runner(inputs=values[start : start + step]) for start in range(0, len(values), step)]
    (key,) = parts[0]
    return np.concatenate([part[key] for part in parts])


def rows_for(name: str, splits, epochs: int, scratch: str) -> list[str]:
    """Trains model ``name`` and returns its table rows, one per quantization."""
    keras.utils.set_random_seed(0)
    spec = registry.get(name)
    model = spec.build()
    trainer = Trainer(model, spec.objective(model), mode="graph")
    trainer.fit(to_model_inputs(splits.train_images, model.example_shape), epochs=epochs, batch_size=256, verbose=0)
    images = to_model_inputs(splits.test_images[:1000], model.example_shape)
    exact = {
        "reconstruct": np.asarray(model.reconstruct(images)),
        "encode": np.asarray(model.encode(images)),
        "anomaly_score": anomaly_scores(trainer, images),
    }
    rows = []
    for quantize in QUANTIZATIONS:
        report = write_tflite(model, os.path.join(scratch, f"{name}-{quantize}.tflite"), trainer.objective,
                              quantize=quantize)  # fmt: skip
        got = {signature: served(str(report.path), signature, images, report.batch_size) for signature in exact}
        pixels = np.abs(got["reconstruct"] - exact["reconstruct"])
        codes = np.abs(got["encode"] - exact["encode"])
        scores = np.abs(got["anomaly_score"] - exact["anomaly_score"]) / np.abs(exact["anomaly_score"])
        rows.append(
            f"| {name} | {quantize} | {report.bytes / 1024:,.0f} KiB | {pixels.max():.1e} | {pixels.mean():.1e} | "
            f"{codes.max():.1e} | {scores.max():.1e} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST's files (default: the bundled 5,000-image sample)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["dense", "conv", "vae"])
    args = parser.parse_args(argv)
    splits = load_mnist(args.data_dir, download=False) if args.data_dir else load_sample()
    print(machine.describe())
    print()
    print("| model | weights | file | pixels, largest | pixels, mean | code, largest | score, largest relative |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models:
            for row in rows_for(name, splits, args.epochs, scratch):
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
