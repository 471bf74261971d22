"""How good each generative model's samples are: FID, KID, precision and recall on the default extractor.

Usage::

    python -m benchmarks.sample_fid --data-dir ../shared/data/mnist --out benchmarks/results/sample-fid \\
        --models vae iwae betatcvae wae aae convvae vampprior vqvae dense deep conv --epochs 20 --count 10000
    python -m benchmarks.sample_fid --dataset CIFAR-10-images/train --validation-data CIFAR-10-images/test \\
        --out benchmarks/results/cifar-fid --models convvae conv --epochs 10 --count 10000

The data is MNIST by default, or any labelled dataset the CLI takes (a
folder of class folders, as CIFAR-10's JPEGs come).

Each model trains with the CLI on the data (its registered architecture),
then ``python -m aeloops.evaluate RUN --fid --kid --prd`` draws ``--count``
images and measures them against as many held-out images: from the
model's prior where it has one, and from a Gaussian mixture fitted to its
training codes for every model (the only sampler of the deterministic ones,
Ghosh et al.'s ex-post density estimation). The extractor is aeloops'
default, a classifier of the data's labels, the same for every row. Two rows
bound the scale: the training images themselves as "samples" (near the
floor) and uniform noise (far above any model). With ``--nll-samples K``
the models with a Gaussian posterior also get their held-out likelihood, in
bits per dimension for colour images (8-bit values, as papers report it).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import numpy as np

from benchmarks import machine

# How each step starts Python: a fresh interpreter, as a user's command line does.
PYTHON = [sys.executable]


def train(model: str, data: list[str], out: pathlib.Path, epochs: int, seed: int) -> pathlib.Path:
    """Trains ``model`` on the data the CLI arguments ``data`` name unless ``out`` already holds it; returns its run."""
    run_dir = out / f"{model}-seed{seed}"
    if not (run_dir / "history.json").is_file():
        command = [
            *PYTHON, "-m", "aeloops.train", "--model", model, *data,
            "--epochs", str(epochs), "--seed", str(seed), "--run-dir", str(run_dir), "--quiet",
        ]  # fmt: skip
        subprocess.run(command, check=True)
    return run_dir


def kinds(run_dir: pathlib.Path) -> tuple[bool, bool]:
    """Asks the run's model: does it decode codebook entries, and has it a Gaussian posterior?

    A codebook model is sampled from its learned prior only (the library
    fits no mixture over code grids); a posterior gives the held-out
    likelihood ``aeloops.evaluate`` estimates (the other models have none).
    """
    from aeloops.evaluation.likelihood import has_gaussian_posterior  # Deferred: imports TensorFlow.
    from aeloops.models import load_model
    from aeloops.models.quantized import decodes_codebook_entries

    model = load_model(run_dir / "model.keras")
    return decodes_codebook_entries(model), has_gaussian_posterior(model)


def likelihood(result: dict) -> str:
    """Returns the held-out NLL evaluate measured: in bits per dimension for colour images, else in nats; or "-"."""
    if "bits_per_dim" in result:
        return f"{result['bits_per_dim']:.3f} bits/dim"
    return f"{result['nll']:.2f} nats" if "nll" in result else "-"


def train_prior(run_dir: pathlib.Path, epochs: int) -> None:
    """Trains a VQ-VAE run's PixelCNN prior over its code indices (``python -m aeloops.prior``) unless it has one."""
    if not (run_dir / "prior" / "prior.keras").is_file():
        command = [*PYTHON, "-m", "aeloops.prior", str(run_dir), "--epochs", str(epochs)]
        subprocess.run(command, check=True)


def measure(run_dir: pathlib.Path, sampler: str | None, count: int, nll_samples: int = 0) -> dict:
    """Returns the run's sample quality with ``sampler`` (evaluate's choice when None), as ``evaluate`` reports it."""
    command = [
        *PYTHON, "-m", "aeloops.evaluate", str(run_dir), "--nll-samples", str(nll_samples),
        "--examples", str(count), "--count", str(count), "--fid", "--kid", "--prd",
        *(["--sampler", sampler] if sampler else []),
    ]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.splitlines()[-1])


def bounds(run_dir: pathlib.Path, count: int) -> list[tuple[str, dict]]:
    """Returns the measures of training images and of uniform noise against the held-out images of ``run_dir``'s data.

    The same images and the same extractor (the default, a classifier of the
    data's labels) as ``evaluate`` uses for the run's samples.
    """
    from aeloops.data import to_model_inputs
    from aeloops.evaluation.classifier import classifier_extractor
    from aeloops.evaluation.sample_quality import sample_quality
    from aeloops.runs import datasets
    from aeloops.runs.commands import open_run
    from aeloops.runs.directory import RunDirectory
    from aeloops.runs.sampling import run_classifier

    config = open_run(RunDirectory(run_dir), best=False, action="measure", trust_code=False)
    own = datasets.read_images(config, log=lambda line: None)[0]
    shape = own.train.shape[1:] if own.train.ndim == 4 else (*own.train.shape[1:], 1)
    train, held_out = (to_model_inputs(images[:count], shape) for images in (own.train, own.validation))
    classifier = run_classifier(config, log=lambda line: print(line, file=sys.stderr), advice="give labelled data")
    extractor = classifier_extractor(classifier)
    noise = np.random.default_rng(0).random((count, *shape), dtype=np.float32)
    return [(name, sample_quality(held_out, images, extractor)) for name, images in
            (("training images", train), ("uniform noise", noise))]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Trains each model (unless its run is there), then prints the table's rows: the bounds, then each model's."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist", help="MNIST's files, for --dataset mnist")
    parser.add_argument("--dataset", default="mnist", help="any labelled dataset the CLI takes: a folder of class "
                        "folders, say (default mnist)")
    parser.add_argument("--validation-data", default=None, help="its held-out images, as the CLI's flag")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results/sample-fid"))
    parser.add_argument("--models", nargs="+", default=["vae", "iwae", "betatcvae", "wae", "aae", "dense", "deep"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nll-samples", type=int, default=0, help="importance samples of the held-out likelihood "
                        "(0: none)")
    parser.add_argument("--prior-epochs", type=int, default=10, help="the VQ-VAE's PixelCNN prior's epochs")
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args(argv)
    print(machine.describe(), flush=True)
    print("| model | sampler | FID | KID | precision | recall | val loss | held-out NLL |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    data = ["--dataset", args.dataset, "--data-dir", args.data_dir]
    data += ["--validation-data", args.validation_data] if args.validation_data else []
    for index, model in enumerate(args.models):
        run_dir = train(model, data, args.out, args.epochs, args.seed)
        if index == 0:  # The bounds, on the data and extractor the first run has (every run has the same).
            for name, found in bounds(run_dir, args.count):
                print(f"| {name} | - | {found['fid']:.2f} | {found['kid']:.4f} | {found['precision']:.3f} "
                      f"| {found['recall']:.3f} | - | - |", flush=True)  # fmt: skip
        codebook, posterior = kinds(run_dir)
        if codebook:  # Its samples are decoded from codes its learned prior draws.
            train_prior(run_dir, args.prior_epochs)
        nll_samples = args.nll_samples if posterior else 0
        results = [measure(run_dir, None, args.count, nll_samples)]  # The prior where there is one, else the mixture.
        if results[0]["sample_quality"]["sampler"] == "prior" and not codebook:
            results.append(measure(run_dir, "gmm", args.count))
        for result in results:
            found = result["sample_quality"]
            print(f"| {model} | {found['sampler']} | {found['fid']:.2f} | {found['kid']:.4f} "
                  f"| {found['precision']:.3f} | {found['recall']:.3f} | {result['terms']['loss']:.2f} "
                  f"| {likelihood(result)} |", flush=True)  # fmt: skip
    print(f"Extractor: {found['extractor']} (held-out accuracy {found.get('extractor_accuracy')}).")


if __name__ == "__main__":
    main()
