"""PyTorch peers for ``benchmarks.run``: the seed models' architectures trained by a plain PyTorch loop.

PyTorch is an optional benchmark dependency (``pip install -e ".[bench]"``):
``available()`` says whether it can be imported, and ``benchmarks.run``
skips these rows with a note when it cannot. Each model has the Keras
reference's layers and parameter count (checked when built), the same
loss (binary cross-entropy of sigmoid outputs, averaged), Adam with Keras's
defaults, the same images and batch size, reshuffled every epoch with the
last partial batch dropped. ``compiled=True`` wraps the model in
``torch.compile``, as a user who cares about speed would.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np

__all__ = ["TorchLoop", "available", "torch_reference"]


def available() -> bool:
    """Returns whether PyTorch can be imported."""
    return importlib.util.find_spec("torch") is not None


def torch_reference(name: str):  # -> torch.nn.Module; torch is imported only when asked for.
    """Returns a PyTorch module with the architecture of seed model ``name`` (NCHW for conv)."""
    from torch import nn

    if name in ("dense", "deep"):
        widths = (64, 32, 8, 32, 64) if name == "dense" else (128, 64, 32, 64, 128)
        layers, previous = [], 784
        for width in widths:
            layers += [nn.Linear(previous, width), nn.ReLU()]
            previous = width
        return nn.Sequential(*layers, nn.Linear(previous, 784), nn.Sigmoid())
    if name == "conv":

        def conv(inputs: int, outputs: int, padding: int = 1) -> list:
            return [nn.Conv2d(inputs, outputs, 3, padding=padding), nn.ReLU()]

        # Keras's MaxPooling2D(padding="same") rounds up (7 -> 4): ceil_mode. UpSampling2D is nearest.
        pool, up = (lambda: nn.MaxPool2d(2, ceil_mode=True)), (lambda: nn.Upsample(scale_factor=2))
        return nn.Sequential(
            *conv(1, 16), pool(), *conv(16, 8), pool(), *conv(8, 8), pool(),
            *conv(8, 8), up(), *conv(8, 8), up(), *conv(8, 16, padding=0), up(),
            nn.Conv2d(16, 1, 3, padding=1), nn.Sigmoid(),
        )  # fmt: skip
    raise ValueError(f"No PyTorch reference for model {name!r}; choose dense, deep or conv.")


class TorchLoop:
    """A PyTorch training loop over images held in memory, eager or under ``torch.compile``."""

    def __init__(self, model_name: str, images: np.ndarray, batch_size: int, compiled: bool = False) -> None:
        import torch

        from benchmarks.baselines import keras_reference

        torch.manual_seed(0)
        self.torch = torch
        self.model = torch_reference(model_name)
        parameters = sum(parameter.numel() for parameter in self.model.parameters())
        expected = keras_reference(model_name).count_params()
        if parameters != expected:
            raise AssertionError(f"PyTorch {model_name} has {parameters} parameters, the Keras reference {expected}.")
        # Keras's Adam: learning rate 1e-3, epsilon 1e-7.
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, eps=1e-7)
        self.forward = torch.compile(self.model) if compiled else self.model
        self.name = f"pytorch {torch.__version__.split('+')[0]}, " + ("torch.compile" if compiled else "eager")
        # Images as the model takes them: (n, 784), or (n, 1, 28, 28) for conv.
        shaped = images.reshape(len(images), -1) if model_name != "conv" else np.moveaxis(images, -1, 1)
        self.images = torch.from_numpy(np.ascontiguousarray(shaped, dtype=np.float32))
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(0)
        self.traces = None

    def run_epoch(self) -> tuple[float, float]:
        """Trains one epoch; returns its mean loss and its seconds."""
        torch = self.torch
        started = time.perf_counter()
        order = torch.randperm(len(self.images), generator=self.generator)
        steps = len(self.images) // self.batch_size
        total = torch.zeros(())
        for step in range(steps):
            batch = self.images[order[step * self.batch_size : (step + 1) * self.batch_size]]
            loss = torch.nn.functional.binary_cross_entropy(self.forward(batch), batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach()
        return float(total) / steps, time.perf_counter() - started
