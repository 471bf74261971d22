"""How good each generative model's samples are on MNIST: FID, KID, precision and recall on the default extractor.

Usage::

    python -m benchmarks.sample_fid --data-dir ../shared/data/mnist --out benchmarks/results/sample-fid \\
        --models vae iwae betatcvae wae aae convvae dense deep conv --epochs 20 --count 10000

Each model trains with the CLI on MNIST (its registered architecture), then
``python -m aeloops.evaluate RUN --fid --kid --prd`` draws ``--count``
images and measures them against as many held-out test images: from the
model's prior where it has one, and from a Gaussian mixture fitted to its
training codes for every model (the only sampler of the deterministic ones,
Ghosh et al.'s ex-post density estimation). The extractor is aeloops'
default, a classifier of MNIST's labels, the same for every row. Two rows
bound the scale: the training images themselves as "samples" (near the
floor) and uniform noise (far above any model).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import numpy as np

from benchmarks import machine


def train(model: str, data_dir: str, out: pathlib.Path, epochs: int, seed: int) -> pathlib.Path:
    """Trains ``model`` on MNIST unless ``out`` already holds it; returns its run directory."""
    run_dir = out / f"{model}-seed{seed}"
    if not (run_dir / "history.json").is_file():
        command = [
            sys.executable, "-m", "aeloops.train", "--model", model, "--dataset", "mnist", "--data-dir", data_dir,
            "--epochs", str(epochs), "--seed", str(seed), "--run-dir", str(run_dir), "--quiet",
        ]  # fmt: skip
        subprocess.run(command, check=True)
    return run_dir


def measure(run_dir: pathlib.Path, sampler: str | None, count: int) -> dict:
    """Returns the run's sample quality with ``sampler`` (evaluate's choice when None), as ``evaluate`` reports it."""
    command = [
        sys.executable, "-m", "aeloops.evaluate", str(run_dir), "--nll-samples", "0", "--examples", str(count),
        "--count", str(count), "--fid", "--kid", "--prd", *(["--sampler", sampler] if sampler else []),
    ]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.splitlines()[-1])


def bounds(data_dir: str, count: int) -> list[tuple[str, dict]]:
    """Returns the measures of training images and of uniform noise against the test images, on the same extractor."""
    from aeloops.data import load_mnist, to_model_inputs
    from aeloops.evaluation.classifier import classifier_extractor, dataset_classifier
    from aeloops.evaluation.sample_quality import sample_quality

    splits = load_mnist(data_dir)
    train = to_model_inputs(splits.train_images, (28, 28, 1))
    test = to_model_inputs(splits.test_images, (28, 28, 1))
    extractor = classifier_extractor(dataset_classifier(train, splits.train_labels, test, splits.test_labels))
    noise = np.random.default_rng(0).random((count, 28, 28, 1), dtype=np.float32)
    return [(name, sample_quality(test[:count], images, extractor)) for name, images in
            (("training images", train[:count]), ("uniform noise", noise))]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results/sample-fid"))
    parser.add_argument("--models", nargs="+", default=["vae", "iwae", "betatcvae", "wae", "aae", "dense", "deep"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    print(machine.describe(), flush=True)
    print("| model | sampler | FID | KID | precision | recall | val loss |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |", flush=True)
    for name, found in bounds(args.data_dir, args.count):
        print(f"| {name} | - | {found['fid']:.2f} | {found['kid']:.4f} | {found['precision']:.3f} "
              f"| {found['recall']:.3f} | - |", flush=True)  # fmt: skip
    for model in args.models:
        run_dir = train(model, args.data_dir, args.out, args.epochs, args.seed)
        results = [measure(run_dir, None, args.count)]  # The prior where the model has one, else the mixture.
        if results[0]["sample_quality"]["sampler"] == "prior":
            results.append(measure(run_dir, "gmm", args.count))
        for result in results:
            found = result["sample_quality"]
            print(f"| {model} | {found['sampler']} | {found['fid']:.2f} | {found['kid']:.4f} "
                  f"| {found['precision']:.3f} | {found['recall']:.3f} | {result['terms']['loss']:.2f} |",
                  flush=True)  # fmt: skip
    print(f"Extractor: {found['extractor']} (held-out accuracy {found.get('extractor_accuracy')}).")


if __name__ == "__main__":
    main()
