"""aeloops: autoencoders trained with an explicit, compiled TensorFlow loop.

Importing ``aeloops`` is cheap: TensorFlow loads on first use of a name below,
so ``python -m aeloops.train --help`` answers at once.

>>> import aeloops
>>> model = aeloops.DenseAutoencoder(input_shape=(784,))          # doctest: +SKIP
>>> trainer = aeloops.Trainer(model, model.default_objective())   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Autoencoder": "aeloops.models",
    "Callback": "aeloops.callbacks",
    "ConvAutoencoder": "aeloops.models",
    "Decoder": "aeloops.models",
    "DenseAutoencoder": "aeloops.models",
    "Encoder": "aeloops.models",
    "LossTerm": "aeloops.objective",
    "MultiHeadAutoencoder": "aeloops.models",
    "Objective": "aeloops.objective",
    "SequenceAutoencoder": "aeloops.models",
    "Trainer": "aeloops.loop",
    "TransposedConvAutoencoder": "aeloops.models",
    "VariationalAutoencoder": "aeloops.models",
    "load_mnist": "aeloops.data",
    "load_model": "aeloops.models",
    "load_sample": "aeloops.data",
    "registry": "aeloops.models",
    "to_model_inputs": "aeloops.data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'aeloops' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
