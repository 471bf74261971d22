"""The model registry: names the CLI accepts, each with a builder and an objective.

>>> spec = get("sparse")
>>> model = spec.build()
>>> spec.objective(model).names
('bce', 'sparsity')
>>> spec.objective(model, loss="mse").names
('mse', 'sparsity')
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from aeloops.models.adversarial import AdversarialAutoencoder
from aeloops.models.base import Autoencoder, reconstruction_term
from aeloops.models.conv import ConvAutoencoder
from aeloops.models.conv_variational import ConvVariationalAutoencoder
from aeloops.models.dense import DenseAutoencoder
from aeloops.models.importance import ImportanceWeightedAutoencoder, iwae_objective
from aeloops.models.multihead import MultiHeadAutoencoder
from aeloops.models.quantized import VectorQuantizedAutoencoder, vq_objective
from aeloops.models.sequence import SequenceAutoencoder
from aeloops.models.total_correlation import TotalCorrelationVAE, tc_objective
from aeloops.models.transposed import TransposedConvAutoencoder
from aeloops.models.vampprior import VampPriorAutoencoder
from aeloops.models.variational import VariationalAutoencoder, elbo_objective
from aeloops.models.wasserstein import WassersteinAutoencoder, wae_objective
from aeloops.objectives.objective import LossTerm, Objective

__all__ = ["MNIST_SHAPE", "ModelSpec", "flat", "get", "image", "names", "register", "rows", "squared_error"]

# An objective builder takes the model and the --loss choice (None: the default).
ObjectiveBuilder = Callable[[Autoencoder, "str | None"], Objective]


# The images the seed models were written for: MNIST's 28x28 grey digits.
MNIST_SHAPE = (28, 28, 1)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it, the objective it trains with, and the trainer that trains it.

    ``builder`` takes the images' shape, (height, width, channels), and
    returns the model built for them; a builder that takes no argument
    builds a model of one fixed shape. ``options`` are the keyword arguments
    ``builder`` also takes, with the values it uses when not given: the
    widths, depths and sizes a run may change (``--set model.<option>=...``).
    ``trainer`` returns a ``Trainer``
    subclass (imported when called, since trainers import models), for a
    model whose training is more than a weighted sum of terms, as an
    adversarial autoencoder's is; None for ``aeloops.Trainer``. ``takes``
    says which images the model takes, for ``--list-models``.
    """

    name: str
    description: str
    builder: Callable[..., Autoencoder]
    objective: ObjectiveBuilder
    trainer: Callable[[], type] | None = None
    takes: str = "any images"
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def build(self, image_shape: Sequence[int] = MNIST_SHAPE, **options: Any) -> Autoencoder:
        """Returns the model built for images of ``image_shape`` (height, width, channels), with ``options`` changed.

        >>> spec = get("conv")
        >>> spec.build((32, 32, 3)).count_params(), spec.build((32, 32, 3), encoder_filters=[32, 16, 8]).count_params()
        (4963, 9451)
        """
        image_shape = tuple(int(dim) for dim in image_shape)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (height, width, channels), got {image_shape}.")
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            offered = ", ".join(self.options) if self.options else "none"
            raise ValueError(f"Model {self.name} has no option {unknown[0]!r}; its options: {offered}.")
        given = "".join(f", {name}={value!r}" for name, value in options.items())
        try:
            if not inspect.signature(self.builder).parameters:
                return self.builder()
            return self.builder(image_shape, **options)
        except (TypeError, ValueError) as error:
            if not options:
                raise
            raise type(error)(f"Model {self.name} with {given[2:]}: {error}") from None
        except (tf.errors.ResourceExhaustedError, MemoryError) as error:
            # TensorFlow's "OOM when allocating tensor with shape[784,1000000000] and type float on ...".
            found = re.search(r"OOM when allocating tensor with shape\[[\d,]*\] and type \w+", str(error))
            cause = found[0] if found else type(error).__name__
            raise ValueError(
                f"Model {self.name} for images of {image_shape}{given} does not fit in memory ({cause}); lower its "
                "sizes (--list-models names its options; --set model.<option>=...) or the images' (--image-size)."
            ) from None


def _reconstruction_objective(model: Autoencoder, loss: str | None = None) -> Objective:
    return Objective([reconstruction_term(model, loss)])


def _model_objective(model: Autoencoder, loss: str | None = None) -> Objective:
    # A user's model brings its own objective (a VAE subclass's ELBO); --loss asks for a reconstruction alone.
    return model.default_objective() if loss is None else _reconstruction_objective(model, loss)


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    description: str,
    build: Callable[..., Autoencoder],
    objective: ObjectiveBuilder | None = None,
    trainer: Callable[[], type] | None = None,
    takes: str = "any images",
    options: Mapping[str, Any] | None = None,
) -> ModelSpec:
    """Registers a model under ``name``; the objective defaults to its reconstruction term, the trainer to Trainer.

    ``build`` takes the images' (height, width, channels), or nothing for a
    model of one fixed shape, and the keyword ``options`` (with their
    defaults) a run may change.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"A model name must be a non-empty string, got {name!r}.")
    if name in _REGISTRY:
        raise ValueError(f"A model named {name!r} is already registered.")
    objective = objective or _reconstruction_objective
    spec = ModelSpec(name, description, build, objective, trainer, takes, dict(options or {}))
    _REGISTRY[name] = spec
    return spec


def get(name: str) -> ModelSpec:
    """Returns the spec registered under ``name``, or the user's model named ``"module:attribute"``.

    The attribute may be a ``ModelSpec``, an ``Autoencoder`` subclass (built
    with its defaults) or a function returning an ``Autoencoder`` (given the
    images' (height, width, channels) if it takes an argument); importing
    the module may also ``register`` models, which are then found by name.
    """
    if ":" in name:
        return _load_user_model(name)
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}; choose one of {names()} or give module:attribute.")
    return _REGISTRY[name]


def _load_user_model(name: str) -> ModelSpec:
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"Cannot import module {module_name!r} for --model {name}: {error}.") from None
    if not hasattr(module, attribute):
        raise ValueError(f"Module {module_name!r} has no attribute {attribute!r} (from --model {name}).")
    value = getattr(module, attribute)
    if isinstance(value, ModelSpec):
        return value
    if not callable(value):
        raise ValueError(f"--model {name} must name an Autoencoder subclass, a builder function or a ModelSpec.")

    # A builder function that takes an argument is given the images' shape; a class is built with its defaults.
    try:
        accepts_shape = not isinstance(value, type) and bool(inspect.signature(value).parameters)
    except (TypeError, ValueError):  # A callable without a signature Python can read.
        accepts_shape = False

    def build(image_shape: tuple[int, int, int]) -> Autoencoder:
        called = f"{attribute}({tuple(image_shape)})" if accepts_shape else f"{attribute}()"
        try:
            model = value(image_shape) if accepts_shape else value()
        except Exception as error:  # noqa: BLE001 - the user's builder may raise anything; the line says whose.
            raise ValueError(
                f"--model {name}: the model's builder failed: {called} from {module_name} raised "
                f"{type(error).__name__}: {error}. --model takes an Autoencoder subclass, a function building one "
                "from the images' shape, or a ModelSpec (docs/custom-models.md)."
            ) from None
        if not isinstance(model, Autoencoder):
            raise ValueError(f"--model {name} built a {type(model).__name__}, not an aeloops Autoencoder.")
        return model

    return ModelSpec(name, f"{attribute} from {module_name}", build, _model_objective)


def names() -> list[str]:
    """Returns the registered model names, sorted."""
    return sorted(_REGISTRY)


def squared_error(target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    """The seed's user-written loss: ``(x - pred) ** 2``, element-wise."""
    return (target - prediction) ** 2


def _sparse_objective(model: Autoencoder, loss: str | None = None) -> Objective:
    return Objective(
        [
            reconstruction_term(model, loss),
            LossTerm("sparsity", output="code", loss="l1", target=None, weight=1e-4),
        ]
    )


def _two_head_objective(model: Autoencoder, loss: str | None = None) -> Objective:
    if loss is not None:
        raise ValueError("Model twohead trains each head with its own fixed loss; drop --loss.")
    # The seed applies Keras's binary cross-entropy to a linear head; here the
    # head is read as logits, which keeps the gradient alive outside [0, 1].
    return Objective(
        [
            LossTerm("head_1_bce", output="head_1", loss="bce_logits"),
            LossTerm("head_2_squared_error", output="head_2", loss=squared_error),
        ]
    )


def _variational_objective(model: Autoencoder, loss: str | None = None) -> Objective:
    # The negative ELBO in nats per image, with unit weights; a beta-VAE weights the KL term.
    return elbo_objective(model, loss)


def flat(shape: Sequence[int]) -> tuple[int]:
    """Returns the input shape of a dense model for images of ``shape``: all their values in one vector."""
    return (int(np.prod(shape)),)


def rows(shape: Sequence[int]) -> tuple[int, int]:
    """Returns the input shape of a row-wise model for images of ``shape``: (rows, values per row)."""
    return int(shape[0]), int(np.prod(shape[1:]))


def image(shape: Sequence[int]) -> tuple[int, ...]:
    """Returns the input shape of a convolutional model for images of ``shape``: the shape itself, as a tuple."""
    return tuple(shape)


def _register_class(
    name: str,
    description: str,
    model_class: type[Autoencoder],
    inputs: Callable[[Sequence[int]], tuple[int, ...]] = image,
    objective: ObjectiveBuilder | None = None,
    trainer: Callable[[], type] | None = None,
    takes: str = "any images",
    **chosen: Any,
) -> ModelSpec:
    """Registers ``model_class`` built for ``inputs(shape)`` with the ``chosen`` arguments; the rest are its defaults.

    Every keyword argument of the constructor is an option a run may change,
    so what ``--set model.<option>=...`` accepts is the class's own signature.
    """
    parameters = list(inspect.signature(model_class.__init__).parameters.values())[2:]  # After self and input_shape.
    options = {
        parameter.name: chosen.get(parameter.name, parameter.default)
        for parameter in parameters
        # A run's randomness flows from its own seed (--seed), not the model's.
        if parameter.default is not inspect.Parameter.empty and parameter.name != "seed"
    }

    def build(shape: Sequence[int], **given: Any) -> Autoencoder:
        return model_class(inputs(shape), **{**chosen, **given})

    return register(name, description, build, objective, trainer, takes, options)


_register_class(
    "rowwise",
    "Dense 64-32-8-32-64-28 on each row of a 28x28 image, linear output, MSE (seed model 1)",
    DenseAutoencoder, rows, takes="any images, row by row",
    encoder_units=(64, 32, 8), decoder_units=(32, 64), output_activation="linear",
)
_register_class(
    "dense",
    "Dense 784-64-32-8-32-64-784, sigmoid output, binary cross-entropy (seed model 2)",
    DenseAutoencoder, flat, takes="any images, flattened", encoder_units=(64, 32, 8), decoder_units=(32, 64),
)
_register_class(
    "sparse",
    "Dense 784-32-784 with an explicit L1 penalty (1e-4) on the code (Keras blog)",
    DenseAutoencoder, flat, _sparse_objective, takes="any images, flattened", encoder_units=(32,), decoder_units=(),
)
_register_class(
    "deep",
    "Dense 784-128-64-32-64-128-784, binary cross-entropy (Keras blog)",
    DenseAutoencoder, flat, takes="any images, flattened", encoder_units=(128, 64, 32), decoder_units=(64, 128),
)
_register_class(
    "conv",
    "Conv2D 16-8-8 with max-pooling to a 4x4x8 code, mirrored with up-sampling (Keras blog)",
    ConvAutoencoder,
)
_register_class(
    "twohead",
    "Two Dense(2)->Dense(28) branches on 28x28 input, BCE on one head, (x - pred)**2 on the other",
    MultiHeadAutoencoder, rows, _two_head_objective, takes="any images, row by row", heads=2, code_units=2,
)
_register_class(
    "denoising",
    "Keras blog denoiser: Conv 32-32 with pooling / up-sampling; inputs corrupted by 0.5 x N(0, 1) in training",
    ConvAutoencoder, encoder_filters=(32, 32), decoder_filters=(32, 32), input_noise=0.5,
)
_register_class(
    "vae",
    "Keras blog VAE: Dense 784-256 to a 2-D Gaussian code, 2-256-784; the negative ELBO in nats (BCE sum + KL)",
    VariationalAutoencoder, flat, _variational_objective, takes="any images, flattened",
    hidden_units=(256,), latent_dim=2,
)
_register_class(
    "iwae",
    "IWAE (Burda et al. 2015): Dense 784-200-200 (tanh) to a 50-D Gaussian, 50-200-200-784; the 50-sample bound",
    ImportanceWeightedAutoencoder, flat, iwae_objective, takes="any images, flattened",
    hidden_units=(200, 200), latent_dim=50, samples=50,
)
_register_class(
    "vampprior",
    "VampPrior VAE (Tomczak and Welling 2018): Dense 784-300-300 to a 40-D Gaussian, 40-300-300-784; its prior the "
    "mixture of the posteriors of 500 learned pseudo-inputs; BCE sum + the one-sample KL (activation=gated: the "
    "paper's gated layers)",
    VampPriorAutoencoder, flat, _variational_objective, takes="any images, flattened",
    hidden_units=(300, 300), latent_dim=40, components=500,
)
_register_class(
    "aae",
    "Adversarial autoencoder (Makhzani et al. 2015): Dense 784-1000-1000 to a linear 8-D code, mirrored; BCE, and "
    "a discriminator pulling the codes toward N(0, I)",
    AdversarialAutoencoder, flat,
    takes="any images, flattened", hidden_units=(1000, 1000), latent_dim=8,
)
_register_class(
    "betatcvae",
    "beta-TC-VAE (Chen et al. 2018): Dense 784-400 to a 10-D Gaussian, 10-400-784; BCE + MI + 6 x TC + dimension KL",
    TotalCorrelationVAE, flat, lambda model, loss=None: tc_objective(model, loss, beta=model.beta),
    takes="any images, flattened", hidden_units=(400,), latent_dim=10, beta=6.0,
)
_register_class(
    "vqvae",
    "VQ-VAE (van den Oord et al. 2017): Conv 32-32 (stride 2) to a 7x7 grid of 16-D vectors, 64 codebook entries",
    VectorQuantizedAutoencoder, objective=vq_objective, filters=(32, 32), embedding_dim=16, entries=64,
)
_register_class(
    "wae",
    "WAE-MMD (Tolstikhin et al. 2018): Dense 784-400 to a linear 8-D code, 8-400-784; summed squared error + 10 x MMD",
    WassersteinAutoencoder, flat, wae_objective, takes="any images, flattened", hidden_units=(400,), latent_dim=8,
)
_register_class(
    "seq2seq",
    "Keras blog LSTM sequence autoencoder: rows of a 28x28 image as a sequence, 64-unit code",
    SequenceAutoencoder, rows, takes="any images, rows as a sequence", units=64,
)
_register_class(
    "convvae",
    "Convolutional VAE of the beta-VAE papers (Burgess et al. 2018): Conv 32-32-64-64 (4x4, stride 2), Dense 256 "
    "to a 10-D Gaussian, mirrored with transposed convolutions; the negative ELBO in nats with Gaussian pixels "
    "(dequantized 8-bit values, one learned scale: likelihoods in bits per dimension; likelihood=bernoulli for "
    "near-binary images such as MNIST, on which the Gaussian's scale collapses the code)",
    ConvVariationalAutoencoder, objective=_variational_objective, takes="any images; made for 64x64 colour",
    latent_dim=10, likelihood="gaussian",
)
_register_class(
    "convtranspose",
    "TensorFlow tutorial autoencoder: strided Conv 16-8 down, transposed Conv 8-16 up",
    TransposedConvAutoencoder,
)
