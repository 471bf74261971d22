"""aeloops: autoencoders trained with an explicit, compiled TensorFlow loop.

Importing ``aeloops`` is cheap: TensorFlow loads on first use of a name below,
so ``python -m aeloops.train --help`` answers at once. Yet ``import aeloops``
is all ``keras.saving.load_model`` needs to load an aeloops model: the model
classes register themselves with Keras as soon as Keras is imported (at once
if it already is).

>>> import aeloops
>>> model = aeloops.DenseAutoencoder(input_shape=(784,))          # doctest: +SKIP
>>> trainer = aeloops.Trainer(model, model.default_objective())   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Autoencoder": "aeloops.models",
    "Callback": "aeloops.training.callbacks",
    "Checkpointer": "aeloops.runs.checkpoints",
    "ConvAutoencoder": "aeloops.models",
    "ConvVariationalAutoencoder": "aeloops.models",
    "ImageData": "aeloops.data",
    "Decoder": "aeloops.models",
    "DenseAutoencoder": "aeloops.models",
    "Encoder": "aeloops.models",
    "LossTerm": "aeloops.objectives.objective",
    "MultiHeadAutoencoder": "aeloops.models",
    "Objective": "aeloops.objectives.objective",
    "StepError": "aeloops.objectives.objective",
    "SummaryWriter": "aeloops.tensorboard.summaries",
    "SequenceAutoencoder": "aeloops.models",
    "Trainer": "aeloops.training.trainer",
    "TransposedConvAutoencoder": "aeloops.models",
    "VariationalAutoencoder": "aeloops.models",
    "image_dataset": "aeloops.data",
    "load_binarized_mnist": "aeloops.data",
    "load_images": "aeloops.data",
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


def _register_models_once_loaded(just_loaded: str | None = None) -> bool:
    """Imports ``aeloops.models`` (registering its classes with Keras) once Keras and TensorFlow are fully loaded.

    ``just_loaded`` names the module whose loading has just finished (Python
    still marks it as initializing until the loader returns).
    """
    if "keras" not in sys.modules:
        return False
    for name in ("keras", "tensorflow"):
        spec = getattr(sys.modules.get(name), "__spec__", None)
        if name != just_loaded and getattr(spec, "_initializing", False):
            return False
    importlib.import_module("aeloops.models")
    return True


class _RegisterModelsAfterKeras(importlib.abc.MetaPathFinder):
    """Registers the model classes right after ``keras`` (or ``tensorflow``, which may load it) finishes loading.

    TensorFlow loads Keras in the middle of its own import, when importing
    our models (which need TensorFlow) would fail, so both are watched and
    the registration waits until neither is still loading.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name not in ("keras", "tensorflow"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        load = loader.exec_module

        def exec_module(module: Any) -> None:
            load(module)
            if self in sys.meta_path and _register_models_once_loaded(just_loaded=name):
                sys.meta_path.remove(self)

        loader.exec_module = exec_module
        return spec


if not _register_models_once_loaded() and not any(
    isinstance(finder, _RegisterModelsAfterKeras) for finder in sys.meta_path
):
    sys.meta_path.insert(0, _RegisterModelsAfterKeras())
