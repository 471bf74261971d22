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
    "DivergedError": "aeloops.training.outer_loop",
    "ImageData": "aeloops.data",
    "Decoder": "aeloops.models",
    "DenseAutoencoder": "aeloops.models",
    "Encoder": "aeloops.models",
    "LossTerm": "aeloops.objectives.objective",
    "MultiHeadAutoencoder": "aeloops.models",
    "NonFiniteLossError": "aeloops.training.outer_loop",
    "Objective": "aeloops.objectives.objective",
    "Recovery": "aeloops.training.recovery",
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


def _loading_modules(just_loaded: str | None) -> list[str]:
    """Names of the modules (Keras, TensorFlow, this package's) still being imported, ``just_loaded`` aside.

    Python marks a module as initializing until its loader returns, so the
    module whose loading has just finished is named by the caller.
    """
    return [
        name
        for name, module in list(sys.modules.items())
        if (name in ("keras", "tensorflow") or name.startswith("aeloops."))
        and name != just_loaded
        and getattr(getattr(module, "__spec__", None), "_initializing", False)
    ]


def _register_models_once_loaded(just_loaded: str | None = None) -> bool:
    """Imports ``aeloops.models`` (registering its classes with Keras) once nothing it needs is half-imported.

    It waits for Keras and TensorFlow to finish loading, and for every module
    of this package being imported: TensorFlow is often first imported by
    one of ours (``aeloops.objectives.objective``, say), and importing the
    models then would re-enter that module half-initialised.
    """
    if "keras" not in sys.modules:
        return False
    if _loading_modules(just_loaded):
        return False
    importlib.import_module("aeloops.models")
    return True


class _RegisterModelsAfterKeras(importlib.abc.MetaPathFinder):
    """Registers the model classes once Keras has loaded and no import of Keras, TensorFlow or ours is under way.

    It watches the modules whose end may be that moment: ``keras`` and
    ``tensorflow`` (TensorFlow loads Keras in the middle of its own import,
    when our models, which need TensorFlow, cannot load yet), and this
    package's own modules (when one of them imported TensorFlow, the
    registration waits until the outermost has finished). It never imports
    the package while a module of it is half-initialised, and leaves
    ``sys.meta_path`` once the models are registered.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name not in ("keras", "tensorflow") and not name.startswith("aeloops."):
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
