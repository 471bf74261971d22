"""A VQ-VAE run's learned prior: ``python -m aeloops.prior RUN_DIR [--epochs N] [--resume]``.

Trains a PixelCNN (``aeloops.models.pixelcnn``) on the code indices the
run's VQ-VAE chooses for its training images, with ``aeloops.Trainer`` like
any model, and keeps it in the run: ``RUN/prior/`` holds its checkpoints
(one an epoch, so ``--resume`` goes on exactly), ``history.json`` (its
negative log-likelihood in nats per code grid, on the training and held-out
indices) and ``prior.keras``. ``python -m aeloops.sample RUN`` and
``evaluate --fid`` then draw from it.

>>> main(["runs/vqvae", "--epochs", "20"])     # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from aeloops.files import replacing
from aeloops.runs import config as config_lib
from aeloops.runs.commands import check_counts, open_run, restored, usage_error
from aeloops.runs.directory import RunDirectory, RunWriteError, write_json, writing
from aeloops.runs.stderr_filter import StderrFilter

__all__ = ["PRIOR", "main", "train_prior"]

# The folder of a run's prior, inside the run.
PRIOR = "prior"


def train_prior(
    run_dir: RunDirectory,
    epochs: int = 10,
    *,
    batch_size: int = 64,
    resume: bool = False,
    best: bool = False,
    seed: int = 0,
    trust_code: bool = False,
) -> dict[str, Any]:
    """Trains the run's PixelCNN prior for ``epochs`` epochs, or goes on with ``resume``; returns its whole history.

    With ``resume`` it goes on from the prior's newest checkpoint up to
    ``epochs`` epochs in all, as ``--resume --epochs`` does for a run: an
    interrupted epoch is finished exactly, and the history holds every epoch.
    """
    folder = run_dir.path / PRIOR
    if (folder / "checkpoints").exists() and not resume:
        raise ValueError(f"{folder} already holds a prior; add --resume to train it further (nothing is replaced).")
    if resume and not (folder / "checkpoints").exists():
        raise ValueError(f"{folder} holds no prior to resume; train one first (drop --resume).")
    with restored(run_dir, best, "train a prior for", trust_code) as (config, trainer):
        import keras
        import numpy as np

        from aeloops.models.pixelcnn import PixelCNN, prior_objective
        from aeloops.models.quantized import decodes_codebook_entries
        from aeloops.runs import datasets as run_data
        from aeloops.runs.checkpoints import Checkpointer
        from aeloops.runs.sampling import code_indices
        from aeloops.training.trainer import Trainer

        model = trainer.model
        if not decodes_codebook_entries(model):
            raise ValueError(
                f"{config.model} has a continuous code; a learned prior over code indices is for a VQ-VAE."
            )
        datasets = run_data.load_datasets(config, model.example_shape, log=lambda line: None)
        with trainer.averaged_weights():
            train = code_indices(model, datasets.train).astype(np.float32)
            held_out = None if datasets.validation is None else code_indices(model, datasets.validation)
        keras.utils.set_random_seed(seed)
        prior = PixelCNN(grid=train.shape[1:], entries=model.encoder.quantizer.entries, name="prior")
        prior_trainer = Trainer(prior, prior_objective(), optimizer="adam", mode="graph", steps_per_loop=50, seed=seed)
        checkpointer = Checkpointer(prior_trainer, folder / "checkpoints", max_to_keep=2)
        if resume:
            checkpointer.restore()
            if prior_trainer.completed_epochs >= epochs:
                raise ValueError(
                    f"The prior in {folder} has trained {prior_trainer.completed_epochs} epochs, and --epochs counts "
                    f"them all; pass --epochs {prior_trainer.completed_epochs + 1} or more to train it further."
                )
        with writing(folder):
            history = prior_trainer.fit(
                train, epochs=epochs, batch_size=batch_size, callbacks=[checkpointer], verbose=2,
                validation_data=None if held_out is None else held_out.astype(np.float32),
            )  # fmt: skip
            with replacing(folder / "prior.keras", suffix=".partial.keras") as partial:
                prior.save(partial)
            write_json(folder / "history.json", history)
    return history


def build_parser() -> argparse.ArgumentParser:
    """Returns the prior command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m aeloops.prior",
        description="Train a VQ-VAE run's learned prior: a PixelCNN over the code indices its encoder chooses, "
        "which lets it generate (python -m aeloops.sample, evaluate --fid).",
        epilog="Example: python -m aeloops.prior runs/vqvae --epochs 20",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a VQ-VAE run directory written by python -m aeloops.train")
    parser.add_argument(
        "--epochs", type=int, default=10, help="epochs of the prior's training, in all with --resume (default 10)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="code grids per step (default 64)")
    parser.add_argument("--resume", action="store_true", help="go on training the run's prior from its checkpoint")
    parser.add_argument("--best", action="store_true", help="read codes from the best checkpoint, not the newest")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prior's weights and shuffles (default 0)")
    parser.add_argument("--trust-code", action="store_true", help=config_lib.TRUST_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the prior command and returns its exit status."""
    args = build_parser().parse_args(argv)
    run_dir = RunDirectory(args.run_dir)
    try:
        check_counts(args, ("epochs", "batch_size"))
        config = open_run(run_dir, args.best, "train a prior for", args.trust_code)
        if config.model != "vqvae" and ":" not in config.model:
            raise ValueError(f"{config.model} has a continuous code; a learned prior over code indices is for vqvae.")
        with StderrFilter():  # TensorFlow's start-up notices are not the user's business.
            history = train_prior(
                run_dir, args.epochs, batch_size=args.batch_size, resume=args.resume, best=args.best, seed=args.seed,
                trust_code=args.trust_code,
            )  # fmt: skip
    except (ValueError, TypeError) as error:
        return usage_error("aeloops.prior", error)
    except RunWriteError as error:
        print(f"aeloops.prior: {error}", file=sys.stderr)
        return 1
    held_out = f", {history['val_loss'][-1]:.2f} on the held-out images' codes" if "val_loss" in history else ""
    print(f"Prior: {run_dir.path / PRIOR / 'prior.keras'} ({history['loss'][-1]:.2f} nats per code grid on the "
          f"training images' codes{held_out}).")  # fmt: skip
    print(f"  Draw from it: python -m aeloops.sample {shlex.quote(str(run_dir.path))} --count 64")
    return 0


if __name__ == "__main__":
    sys.exit(main())
