"""Disentanglement of the VAE family on the procedural shapes: MIG, DCI, SAP and the FactorVAE score at several betas.

Usage::

    python -m benchmarks.disentanglement --out benchmarks/results/disentanglement \\
        --runs convvae:1 convvae:4 betatcvae:1 betatcvae:6 --epochs 20 --examples 10000 --votes 10000

Each ``model:beta`` trains with the CLI on ``--dataset shapes`` (20,000
images, 10-D code; convvae with a Bernoulli likelihood, since the shapes are
binary: a Gaussian one drives its scale to zero and its code collapses) and
is scored with ``python -m aeloops.evaluate RUN --disentanglement``; the
table gives each figure beside the run's held-out loss. Runs already
trained under ``--out`` are scored again, not retrained.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

from benchmarks import machine


def run(model: str, beta: float, out: pathlib.Path, epochs: int, seed: int) -> pathlib.Path:
    """Trains ``model`` at ``beta`` on the shapes (unless already trained); returns its run directory."""
    run_dir = out / f"{model}-beta{beta:g}-seed{seed}"
    if not (run_dir / "history.json").is_file():
        command = [
            sys.executable, "-m", "aeloops.train", "--model", model, "--dataset", "shapes", "--epochs", str(epochs),
            "--seed", str(seed), "--set", f"model.beta={beta}", "--set", "model.latent_dim=10",
            "--run-dir", str(run_dir), "--quiet",
        ]  # fmt: skip
        if model == "betatcvae":
            command += ["--set", "model.dataset_size=20000"]
        if model == "convvae":  # The shapes are binary, as dSprites is: a Bernoulli likelihood, as the papers use.
            command += ["--set", "model.likelihood=bernoulli"]
        subprocess.run(command, check=True)
    return run_dir


def score(run_dir: pathlib.Path, examples: int, votes: int) -> dict:
    """Returns the run's evaluation with its disentanglement scores, and how long scoring took."""
    started = time.perf_counter()
    command = [
        sys.executable, "-m", "aeloops.evaluate", str(run_dir), "--nll-samples", "0", "--disentanglement",
        "--factor-examples", str(examples), "--factor-votes", str(votes),
    ]  # fmt: skip
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    return {**result, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results/disentanglement"))
    parser.add_argument("--runs", nargs="+", default=["convvae:1", "convvae:4", "betatcvae:1", "betatcvae:6"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--votes", type=int, default=10_000)
    args = parser.parse_args()
    print(machine.describe(), flush=True)
    columns = (
        "model | beta | val loss | MIG | DCI dis. | DCI comp. | DCI info. | SAP | SAP (cont.) | FactorVAE | scored in"
    )
    print(f"| {columns} |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    for spec in args.runs:
        model, beta = spec.split(":")
        run_dir = run(model, float(beta), args.out, args.epochs, args.seed)
        found = score(run_dir, args.examples, args.votes)
        scores, dci = found["disentanglement"], found["disentanglement"]["dci"]
        print(f"| {model} | {beta} | {found['terms']['loss']:.2f} | {scores['mig']:.3f} | {dci['disentanglement']:.3f} "
              f"| {dci['completeness']:.3f} | {dci['informativeness']:.3f} | {scores['sap']:.3f} "
              f"| {scores['sap_continuous']:.3f} | {scores['factor_vae_score']:.3f} | {found['seconds']:.0f} s |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
