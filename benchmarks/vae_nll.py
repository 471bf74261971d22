"""Reproduces pythae's VAE, IWAE and VampPrior rows on binary MNIST: test NLLs of 89.78, 86.82 and 85.79 nats.

The settings, read from pythae's reproducibility scripts
(``examples/scripts/reproducibility/vae.py`` and ``iwae.py``; README rows
"VAE | Binary MNIST | NLL (200 IS) | 89.78 (0.01) | 89.9", after Rezende and
Mohamed 2015, and "IWAE (n_samples=50) | Binary MNIST | NLL (5000 IS) |
86.82 (0.01) | 87.1", after Burda et al. 2015):

- data: binary MNIST, 50,000 training images, 10,000 validation, 10,000 test
  (Larochelle and Murray's split: a fixed stochastic binarization of MNIST).
  ``--binarized-dir`` reads their files (``binarized_mnist_train.amat``,
  ``_valid``, ``_test``); without it the script redraws the split from
  MNIST's IDX files with fixed seeds;
- ``--model vae``: encoder 784-400 (ReLU) to a 40-dimensional Gaussian,
  decoder 40-400 (ReLU)-784 (sigmoid), the ELBO with unit weights, 676,864
  parameters; Adam (learning rate 1e-4, epsilon 1e-8), batch 100, 500
  epochs, the rate times 10^(-1/5) after epochs 200 and 350; the test NLL
  with 200 importance samples, the mean of 5 rounds;
- ``--model iwae``: 784-200-200 (tanh) to 50 and back, trained on the
  50-sample bound, 425,284 parameters; Adam (1e-3, epsilon 1e-4), batch 20,
  3,280 epochs, the rate times 10^(-1/7) after epochs 2, 5, 14, 28, 41, 122,
  365 and 1,094 (Burda et al.'s 3^i epochs per rate); the test NLL with
  5,000 importance samples;
- ``--model vamp``: the VampPrior VAE (Tomczak and Welling 2018) as pythae's
  ``vamp.py`` builds it, gated dense layers 784-300-300 to 40 and back, 500
  pseudo-inputs, the log-variances bounded by 6 (pythae clips to [-6, 2]);
  RMSprop (1e-4, smoothing 0.99), batch 100, the KL's weight rising from 0 to
  1 over the first 100 epochs (validation always at 1, as pythae's), 2,000
  epochs, the rate times 10^(-1/5) after epochs 200, 350, 500, 750 and
  1,000; the test NLL with 5,000 importance samples, the mean of 5 rounds;
- all: the model evaluated is the epoch of the lowest validation loss, as
  pythae's trainer saves it; the last epoch's NLL is written beside it.

Resumable: run the same command again after an interruption and it goes on
from the newest checkpoint in ``--run-dir``; ``--epochs`` stops a run early
(the schedule stays the full run's). It ends by printing the table's row and
writing ``evaluation.json`` in the run directory.

Usage: ``python -m benchmarks.vae_nll (--data-dir ../shared/data/mnist | --binarized-dir DIR)
[--model vae|iwae|vamp] [--run-dir runs/vae-nll] [--epochs N] [--rounds R] [--nll-samples K]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TRAIN, VALIDATION = 50_000, 10_000
# The splits of Larochelle and Murray's files, in aeloops.data.load_binarized_mnist's order.
AMAT_FILES = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One row of pythae's table: the model, its optimizer and schedule, the metric, and the numbers to meet."""

    model: str
    parameters: int
    learning_rate: float
    epsilon: float
    batch_size: int
    epochs: int
    milestones: tuple[int, ...]  # Epochs after which the learning rate is multiplied by ``gamma``.
    gamma: float
    nll_samples: int
    rounds: int
    reference: dict[str, float]
    # XLA computed IWAE's bound (K = 5,000) 1.42x faster than graph mode here, the VAE's (K = 200) 0.56x
    # (python -m benchmarks.likelihood_speed).
    nll_jit_compile: bool
    optimizer: str = "adam"  # "rmsprop": torch's RMSprop, smoothing 0.99.
    kl_warmup_epochs: int = 0  # The KL's weight rises linearly from 0 to 1 over these epochs (training only).


SETTINGS = {
    # examples/scripts/reproducibility/vae.py: 784-400-40, Adam 1e-4, batch 100, 500 epochs.
    "vae": Setting(
        "vae", 676_864, 1e-4, 1e-8, 100, 500, (200, 350), 10 ** (-1 / 5), 200, 5,
        {"pythae": 89.78, "Rezende and Mohamed 2015": 89.9}, False,
    ),
    # examples/scripts/reproducibility/iwae.py: Burda et al.'s 784-200-200 (tanh)-50, K = 50, batch 20, Adam 1e-3
    # with epsilon 1e-4, 3,280 epochs (3^i epochs at the i-th rate), NLL with 5,000 samples.
    "iwae": Setting(
        "iwae", 425_284, 1e-3, 1e-4, 20, 3280, (2, 5, 14, 28, 41, 122, 365, 1094), 10 ** (-1 / 7), 5000, 5,
        {"pythae": 86.82, "Burda et al. 2015": 87.1}, True,
    ),
    # examples/scripts/reproducibility/vamp.py: gated dense 784-300-300 to 40 and back, K = 500 pseudo-inputs,
    # log-variances in [-6, 2], RMSprop 1e-4, batch 100, the KL warmed up over 100 epochs, 2,000 epochs.
    "vamp": Setting(
        "vamp", 1_508_864, 1e-4, 1e-8, 100, 2000, (200, 350, 500, 750, 1000), 10 ** (-1 / 5), 5000, 5,
        {"pythae": 85.79, "Tomczak and Welling 2018": 85.57}, True, optimizer="rmsprop", kl_warmup_epochs=100,
    ),
}  # fmt: skip


def larochelle_mnist(binarized_dir: str, examples: int | None = None) -> dict[str, object]:
    """Returns Larochelle and Murray's binarized MNIST (``aeloops.data.load_binarized_mnist``) as 0/1 rows."""
    from aeloops.data import load_binarized_mnist, to_model_inputs

    try:
        splits = load_binarized_mnist(binarized_dir, examples)
    except ValueError as error:
        raise SystemExit(f"--binarized-dir {binarized_dir}: {error}") from None
    return {name: to_model_inputs(images, (784,)) for name, images in zip(AMAT_FILES, splits)}


def binary_mnist(data_dir: str | None, examples: int | None = None) -> dict[str, object]:
    """Returns the 50,000 / 10,000 / 10,000 split of MNIST, each binarized once with its own fixed seed."""
    import aeloops
    from aeloops.data import binarize

    splits = aeloops.load_mnist(data_dir, download=False)
    train = aeloops.to_model_inputs(splits.train_images, (784,))
    test = aeloops.to_model_inputs(splits.test_images, (784,))
    splits = {
        "train": binarize(train[:TRAIN], "fixed", seed=0),
        "validation": binarize(train[TRAIN : TRAIN + VALIDATION], "fixed", seed=1),
        "test": binarize(test, "fixed", seed=2),
    }
    return {name: images[:examples] for name, images in splits.items()}


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--data-dir`` and ``--binarized-dir``, one or the other, to a benchmark's parser."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", default=None, help="MNIST's IDX files, binarized here with fixed seeds")
    source.add_argument("--binarized-dir", default=None, help="Larochelle and Murray's binarized_mnist_*.amat files")


def load_data(args: argparse.Namespace, examples: int | None = None) -> tuple[dict[str, object], str]:
    """Returns the three splits the arguments name, and what they are for the table's data column."""
    if args.binarized_dir:
        return larochelle_mnist(args.binarized_dir, examples), "Larochelle and Murray's file"
    return binary_mnist(args.data_dir, examples), "fixed draw"


def build_model(setting: Setting):
    """Returns ``setting``'s model, checked to have the parameter count of pythae's."""
    import aeloops

    if setting.model == "vae":
        model = aeloops.VariationalAutoencoder((784,), (400,), latent_dim=40)
    elif setting.model == "vamp":
        from aeloops.models.vampprior import VampPriorAutoencoder

        # pythae clips the log-variances to [-6, 2] (a hard tanh); the bound of 6 keeps them in (-6, 6) smoothly.
        # pythae also counts a bias its 500 pseudo-inputs share (784 more parameters, which add nothing they
        # cannot already learn).
        model = VampPriorAutoencoder(activation="gated", log_variance_bound=6.0)
    else:
        from aeloops.models.importance import ImportanceWeightedAutoencoder

        model = ImportanceWeightedAutoencoder(samples=50)
    if model.count_params() != setting.parameters:
        raise AssertionError(f"The model has {model.count_params()} parameters, pythae's {setting.parameters}.")
    return model


def build_trainer(setting: Setting, mode: str, steps_per_epoch: int):
    """Returns pythae's model for ``setting`` and its trainer: Adam with the milestone decay, the model's objective."""
    import keras

    import aeloops

    keras.utils.set_random_seed(123)  # pythae's scripts' seed.
    model = build_model(setting)
    rates = [setting.learning_rate * setting.gamma**index for index in range(len(setting.milestones) + 1)]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [milestone * steps_per_epoch for milestone in setting.milestones], rates
    )
    if setting.optimizer == "rmsprop":
        optimizer = keras.optimizers.RMSprop(learning_rate=schedule, rho=0.99, epsilon=setting.epsilon)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=schedule, epsilon=setting.epsilon)
    objective = model.default_objective()
    if not setting.kl_warmup_epochs:
        return aeloops.Trainer(model, objective, optimizer, mode=mode, steps_per_loop=50, seed=123)
    import tensorflow as tf

    from aeloops.data.sources import INPUT, SAMPLE_WEIGHT
    from aeloops.objectives.schedules import linear_warmup

    warmup_steps = setting.kl_warmup_epochs * steps_per_epoch
    objective = aeloops.Objective(
        [dataclasses.replace(term, weight=linear_warmup(1.0, warmup_steps)) if term.name == "kl" else term
         for term in objective.terms]
    )  # fmt: skip

    class FullWeightValidation(aeloops.Trainer):
        """Validates with the KL at its full weight, as pythae does, so no warm-up epoch can look best."""

        def test_step(self, batch):
            outputs = self.model(batch[INPUT], training=False)
            warm = tf.constant(warmup_steps, tf.int64)
            return self.objective(
                outputs, batch, warm, sample_weight=batch.get(SAMPLE_WEIGHT), layer_losses=self.model.losses
            )

    return FullWeightValidation(model, objective, optimizer, mode=mode, steps_per_loop=50, seed=123)


def main(argv: Sequence[str] | None = None) -> int:
    """Trains (or resumes) the model, then prints the test NLL row and writes evaluation.json."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vae_nll", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(SETTINGS), default="vae")
    add_data_arguments(parser)
    parser.add_argument("--run-dir", default=None, help="checkpoints, results; rerun to resume (runs/MODEL-nll)")
    parser.add_argument("--epochs", type=int, default=None, help="stop after this epoch (default: the setting's)")
    parser.add_argument("--nll-samples", type=int, default=None, help="importance samples (default: the setting's)")
    parser.add_argument("--rounds", type=int, default=None, help="NLL evaluations, each with its own seed")
    parser.add_argument("--mode", default="auto")
    parser.add_argument("--examples", type=int, default=None, help="the first N of each split, a quick check only")
    args = parser.parse_args(argv)
    if args.examples is not None and (args.examples < 100 or args.examples % 100):
        parser.error(f"--examples must be a positive multiple of 100 (both batch sizes divide it), got {args.examples}")
    setting = SETTINGS[args.model]
    epochs = args.epochs or setting.epochs
    samples = args.nll_samples or setting.nll_samples
    rounds = args.rounds or setting.rounds
    from aeloops.evaluation.likelihood import negative_log_likelihood
    from aeloops.runs.checkpoints import Checkpointer
    from aeloops.runs.early_stopping import EarlyStopping
    from aeloops.training.callbacks import Callback

    class Record(Callback):
        """Keeps each epoch's logs in the history the checkpoints carry."""

        def on_epoch_end(self, trainer, epoch: int, logs: dict[str, float]) -> None:
            for name, value in logs.items():
                history.setdefault(name, []).append(value)

    data, data_name = load_data(args, args.examples)
    steps_per_epoch = len(data["train"]) // setting.batch_size  # --examples is a multiple of both batch sizes.
    trainer = build_trainer(setting, args.mode, steps_per_epoch)
    run_dir = Path(args.run_dir or f"runs/{setting.model}-nll")
    history: dict[str, list[float]] = {}
    checkpointer = Checkpointer(trainer, run_dir / "checkpoints", max_to_keep=2)
    checkpointer.track("history", history)
    # pythae's trainer saves, as its final model, the epoch of the lowest validation loss; so does this run.
    best = EarlyStopping(trainer, run_dir / "checkpoints" / "best", monitor="val_loss")
    checkpointer.track("best", best.state)
    resumed = checkpointer.restore()
    initial_epoch = int(trainer.step.numpy()) // steps_per_epoch
    print(f"{'Resuming at' if resumed else 'Starting'} epoch {initial_epoch + 1} of {epochs}.", flush=True)
    started = time.perf_counter()
    trainer.fit(
        data["train"], epochs=epochs, batch_size=setting.batch_size, validation_data=data["validation"],
        initial_epoch=initial_epoch, callbacks=[Record(), best, checkpointer], verbose=2,
    )  # fmt: skip
    training_seconds = time.perf_counter() - started

    def test_nll() -> dict[str, float]:
        """Returns the test NLL's mean and spread over the rounds (one seed each), and the mean negative ELBO."""
        results = [
            negative_log_likelihood(
                trainer.model, data["test"], samples=samples, seed=seed, jit_compile=setting.nll_jit_compile
            )
            for seed in range(rounds)
        ]
        nll = [result["nll"] for result in results]
        elbo = statistics.mean(result["negative_elbo"] for result in results)
        return {"nll": statistics.mean(nll), "nll_std_over_rounds": statistics.pstdev(nll), "negative_elbo": elbo}

    started = time.perf_counter()
    last = test_nll()
    # The best epoch is often the last; its weights are then the same and need no second evaluation.
    last_epoch = int(trainer.step.numpy()) // steps_per_epoch
    chosen = last
    if best.state["best_epoch"] != last_epoch and best.restore_best():
        chosen = test_nll()
    result = {
        "model": setting.model,
        "data": data_name,
        **chosen,
        "best_epoch": best.state["best_epoch"],
        "best_validation_loss": best.state["best"],
        "last_epoch": {**last, "validation_loss": history.get("val_loss", [None])[-1]},
        "samples": samples,
        "rounds": rounds,
        "xla": setting.nll_jit_compile,
        "epochs": epochs,
        "setting_epochs": setting.epochs,
        "training_seconds_this_session": round(training_seconds, 1),
        "evaluation_seconds": round(time.perf_counter() - started, 1),
        "epoch_seconds_median": statistics.median(history["epoch_seconds"]) if history.get("epoch_seconds") else None,
        "reference": setting.reference,
    }
    (run_dir / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    references = " / ".join(f"{value} ({name})" for name, value in setting.reference.items())
    print(
        f"| {setting.model.upper()} | binary MNIST ({data_name}) | NLL ({samples} IS) | {result['nll']:.2f} "
        f"({result['nll_std_over_rounds']:.2f}) | {references} | {epochs} of {setting.epochs} epochs |"
    )
    print(f"Best validation loss at epoch {result['best_epoch']}; the last epoch's NLL is {last['nll']:.2f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
