"""Runs pythae's own VAE and trainer on the data draw ``benchmarks.vae_nll`` uses: a control for that table.

``benchmarks.vae_nll`` compares aeloops with pythae's published 89.78 nats,
which pythae measured on Larochelle and Murray's binarized MNIST file; this
machine has only MNIST, so the aeloops run draws its own fixed binarization.
This script trains pythae's ``VAE`` with pythae's ``BaseTrainer`` in the
setting of pythae's reproducibility script (784-400-40, Adam 1e-4, batch 100,
500 epochs, MultiStepLR at 200 and 350 by 10^(-1/5), seed 123) on that same
draw, and measures the test NLL with pythae's ``get_nll`` (200 samples, 5
rounds). The two numbers side by side tell how much of a gap is the data and
how much is the trainer.

Needs PyTorch and pythae, which aeloops does not depend on
(``pip install torch pythae``); exits with a note when they are absent.
Not resumable: 41 minutes here (two CPU cores, shared with other runs).

Usage: ``python -m benchmarks.pythae_vae (--data-dir ../shared/data/mnist |
--binarized-dir DIR) --output runs/pythae-vae [--epochs 500]``; with
``--binarized-dir``, on Larochelle and Murray's own files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.vae_nll import SETTINGS, add_data_arguments, load_data


def build_model(torch_nn, pythae_models, pythae_nn, output_class):
    """Returns pythae's VAE with the reproducibility script's networks (one ReLU layer of 400 each way)."""

    class Encoder(pythae_nn.BaseEncoder):
        def __init__(self):
            super().__init__()
            self.hidden = torch_nn.Sequential(torch_nn.Linear(784, 400), torch_nn.ReLU())
            self.embedding = torch_nn.Linear(400, 40)
            self.log_var = torch_nn.Linear(400, 40)

        def forward(self, inputs):
            hidden = self.hidden(inputs.reshape(-1, 784))
            return output_class(embedding=self.embedding(hidden), log_covariance=self.log_var(hidden))

    class Decoder(pythae_nn.BaseDecoder):
        def __init__(self):
            super().__init__()
            self.layers = torch_nn.Sequential(
                torch_nn.Linear(40, 400), torch_nn.ReLU(), torch_nn.Linear(400, 784), torch_nn.Sigmoid()
            )

        def forward(self, codes):
            return output_class(reconstruction=self.layers(codes))

    config = pythae_models.VAEConfig(input_dim=(784,), latent_dim=40, reconstruction_loss="bce")
    return pythae_models.VAE(model_config=config, encoder=Encoder(), decoder=Decoder())


def main(argv: Sequence[str] | None = None) -> int:
    """Trains pythae's VAE on the data, then prints its test NLL and writes result.json."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pythae_vae", description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
    parser.add_argument("--output", default="runs/pythae-vae", help="pythae's output directory and result.json")
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--nll-samples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        import torch
        from pythae import models as pythae_models
        from pythae.data.preprocessors import DataProcessor
        from pythae.models import nn as pythae_nn
        from pythae.models.base.base_utils import ModelOutput
        from pythae.trainers import BaseTrainer, BaseTrainerConfig
    except ImportError as error:
        print(f"Skipped: this control needs PyTorch and pythae ({error}); pip install torch pythae.")
        return 0
    splits, data_name = load_data(args)
    data = {name: torch.from_numpy(images) for name, images in splits.items()}
    torch.manual_seed(123)  # pythae's script's seed, set before its model as there.
    model = build_model(torch.nn, pythae_models, pythae_nn, ModelOutput)
    setting = SETTINGS["vae"]
    parameters = sum(parameter.numel() for parameter in model.parameters())
    if parameters != setting.parameters:
        raise AssertionError(f"pythae's model has {parameters} parameters, {setting.parameters} expected.")
    config = BaseTrainerConfig(
        output_dir=args.output,
        per_device_train_batch_size=setting.batch_size,
        per_device_eval_batch_size=setting.batch_size,
        num_epochs=args.epochs,
        learning_rate=setting.learning_rate,  # Adam's epsilon stays PyTorch's 1e-8, the setting's.
        steps_saving=None,
        steps_predict=None,
        no_cuda=True,
        scheduler_cls="MultiStepLR",
        scheduler_params={"milestones": list(setting.milestones), "gamma": setting.gamma},
    )
    datasets = {name: DataProcessor.to_dataset(data[name]) for name in ("train", "validation")}
    trainer = BaseTrainer(
        model=model, train_dataset=datasets["train"], eval_dataset=datasets["validation"], training_config=config
    )
    started = time.perf_counter()
    trainer.train()
    training_seconds = time.perf_counter() - started
    # pythae's script evaluates the model its trainer saved as final: the epoch of the lowest validation loss.
    best = trainer._best_model.eval()
    with torch.no_grad():  # get_nll returns the log-likelihood, a negative number; the table's NLL is its negation.
        nll = [-float(best.get_nll(data["test"], n_samples=args.nll_samples)) for _ in range(args.rounds)]
    result = {
        "data": data_name,
        "nll": statistics.mean(nll),
        "nll_std_over_rounds": statistics.pstdev(nll),
        "samples": args.nll_samples,
        "rounds": args.rounds,
        "epochs": args.epochs,
        "training_seconds": round(training_seconds, 1),
        "torch": torch.__version__,
    }
    Path(args.output).mkdir(parents=True, exist_ok=True)
    (Path(args.output) / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"| VAE (pythae's own code) | binary MNIST ({data_name}) | NLL ({args.nll_samples} IS) | {result['nll']:.2f} "
        f"({result['nll_std_over_rounds']:.2f}) | {args.epochs} epochs | {training_seconds / 60:.0f} min |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
