"""Reproduces pythae's VAE row on binary MNIST: the test NLL with 200 importance samples (89.78 reported).

The setting, read from pythae's reproducibility script and configs
(``examples/scripts/reproducibility/vae.py`` and
``configs/binary_mnist/vae``; README row "VAE | Binary MNIST | NLL (200 IS) |
89.78 (0.01) | 89.9", after Rezende and Mohamed 2015):

- data: binary MNIST, 50,000 training images, 10,000 validation, 10,000 test
  (Larochelle and Murray's split: a fixed stochastic binarization of MNIST,
  which this script redraws from MNIST with fixed seeds, since that file is
  not on this machine);
- model: encoder 784-400 (ReLU) to a 40-dimensional Gaussian (mean and
  log-variance heads), decoder 40-400 (ReLU)-784 (sigmoid); Bernoulli
  likelihood, the ELBO with unit weights; 676,864 parameters;
- training: Adam (learning rate 1e-4, epsilon 1e-8 as PyTorch's), batch
  100, 500 epochs, the learning rate multiplied by 10^(-1/5) after epochs
  200 and 350 (pythae's MultiStepLR milestones);
- metric: the test NLL with 200 importance samples, the mean of 5 rounds.

Resumable: run the same command again after an interruption and it goes on
from the newest checkpoint in ``--run-dir``. It ends by printing the
table's row and writing ``evaluation.json`` in the run directory.

Usage: ``python -m benchmarks.vae_nll --data-dir ../shared/data/mnist
--run-dir runs/vae-nll [--epochs 500] [--rounds 5] [--nll-samples 200]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REFERENCE = {"pythae": 89.78, "Rezende and Mohamed 2015": 89.9}
PARAMETERS = 676_864
TRAIN, VALIDATION = 50_000, 10_000
STEPS_PER_EPOCH = TRAIN // 100
MILESTONES = (200, 350)  # Epochs after which the learning rate falls by 10^(-1/5).


def binary_mnist(data_dir: str | None) -> dict[str, object]:
    """Returns the 50,000 / 10,000 / 10,000 split of MNIST, each binarized once with its own fixed seed."""
    import aeloops
    from aeloops.data import binarize

    splits = aeloops.load_mnist(data_dir, download=False)
    train = aeloops.to_model_inputs(splits.train_images, (784,))
    test = aeloops.to_model_inputs(splits.test_images, (784,))
    return {
        "train": binarize(train[:TRAIN], "fixed", seed=0),
        "validation": binarize(train[TRAIN : TRAIN + VALIDATION], "fixed", seed=1),
        "test": binarize(test, "fixed", seed=2),
    }


def build_trainer(mode: str):
    """Returns pythae's VAE and its trainer: Adam at 1e-4 with the milestone decay, the ELBO objective."""
    import keras

    import aeloops

    keras.utils.set_random_seed(123)  # pythae's script's seed.
    model = aeloops.VariationalAutoencoder((784,), (400,), latent_dim=40)
    if model.count_params() != PARAMETERS:
        raise AssertionError(f"The model has {model.count_params()} parameters, pythae's {PARAMETERS}.")
    rates = [1e-4 * 10 ** (-index / 5) for index in range(len(MILESTONES) + 1)]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [milestone * STEPS_PER_EPOCH for milestone in MILESTONES], rates
    )
    optimizer = keras.optimizers.Adam(learning_rate=schedule, epsilon=1e-8)
    return aeloops.Trainer(model, model.default_objective(), optimizer, mode=mode, steps_per_loop=50, seed=123)


def main(argv: Sequence[str] | None = None) -> int:
    """Trains (or resumes) the VAE, then prints the test NLL row and writes evaluation.json."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vae_nll", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="MNIST's IDX files")
    parser.add_argument("--run-dir", default="runs/vae-nll", help="checkpoints and results; rerun to resume")
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--nll-samples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="NLL evaluations, each with its own seed")
    parser.add_argument("--mode", default="auto")
    args = parser.parse_args(argv)
    from aeloops.callbacks import Callback
    from aeloops.checkpoints import Checkpointer
    from aeloops.early_stopping import EarlyStopping
    from aeloops.likelihood import negative_log_likelihood

    class Record(Callback):
        """Keeps each epoch's logs in the history the checkpoints carry."""

        def on_epoch_end(self, trainer, epoch: int, logs: dict[str, float]) -> None:
            for name, value in logs.items():
                history.setdefault(name, []).append(value)

    data = binary_mnist(args.data_dir)
    trainer = build_trainer(args.mode)
    run_dir = Path(args.run_dir)
    history: dict[str, list[float]] = {}
    checkpointer = Checkpointer(trainer, run_dir / "checkpoints", max_to_keep=2)
    checkpointer.track("history", history)
    # pythae's trainer saves, as its final model, the epoch of the lowest validation loss; so does this run.
    best = EarlyStopping(trainer, run_dir / "checkpoints" / "best", monitor="val_loss")
    checkpointer.track("best", best.state)
    resumed = checkpointer.restore()
    initial_epoch = int(trainer.step.numpy()) // STEPS_PER_EPOCH
    print(f"{'Resuming at' if resumed else 'Starting'} epoch {initial_epoch + 1} of {args.epochs}.", flush=True)
    started = time.perf_counter()
    trainer.fit(
        data["train"], epochs=args.epochs, batch_size=100, validation_data=data["validation"],
        initial_epoch=initial_epoch, callbacks=[Record(), best, checkpointer], verbose=2,
    )  # fmt: skip
    training_seconds = time.perf_counter() - started

    def test_nll() -> dict[str, float]:
        """Returns the test NLL's mean and spread over the rounds (one seed each), and the mean negative ELBO."""
        rounds = [
            negative_log_likelihood(trainer.model, data["test"], samples=args.nll_samples, seed=seed)
            for seed in range(args.rounds)
        ]
        nll = [result["nll"] for result in rounds]
        elbo = statistics.mean(result["elbo"] for result in rounds)
        return {"nll": statistics.mean(nll), "nll_std_over_rounds": statistics.pstdev(nll), "elbo": elbo}

    last = test_nll()
    best.restore_best()
    result = {
        **test_nll(),
        "best_epoch": best.state["best_epoch"],
        "best_validation_loss": best.state["best"],
        "last_epoch": {**last, "validation_loss": history.get("val_loss", [None])[-1]},
        "samples": args.nll_samples,
        "rounds": args.rounds,
        "epochs": args.epochs,
        "training_seconds_this_session": round(training_seconds, 1),
        "epoch_seconds_median": statistics.median(history["epoch_seconds"]) if history.get("epoch_seconds") else None,
        "reference": REFERENCE,
    }
    (run_dir / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"| VAE | binary MNIST (fixed draw) | NLL ({args.nll_samples} IS) | {result['nll']:.2f} "
        f"({result['nll_std_over_rounds']:.2f}) | 89.78 (pythae) / 89.9 (paper) | {args.epochs} epochs |"
    )
    print(f"Best validation loss at epoch {result['best_epoch']}; the last epoch's NLL is {last['nll']:.2f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
