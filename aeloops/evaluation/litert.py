"""LiteRT (TensorFlow Lite) export: the serving signatures as one ``.tflite`` file, checked against TensorFlow.

The file holds ``encode``, ``decode``, ``reconstruct`` and ``anomaly_score``,
as the SavedModel's (``aeloops.evaluation.serving``), taking batches of any
size where LiteRT converts the model so, else one example a call. A
variational model's ``sample`` stays SavedModel-only: LiteRT has no
stateless random normal among its built-in operations. Only built-in
operations are used, so the file runs in the plain LiteRT interpreter (no
TensorFlow "flex" delegate).

Every export is checked before it is written: each signature runs in the
LiteRT interpreter on a seeded probe batch and is compared with TensorFlow's
own outputs. In float32 an output off by more than ``FLOAT32_TOLERANCE``
(plus as much relative to its value, as ``numpy.allclose``) refuses the
export; quantized (``float16`` weights, or ``int8`` dynamic-range weights)
the largest difference is reported, as the error quantization introduced.

>>> report = write_tflite(model, "exported/dense.tflite")                 # doctest: +SKIP
>>> report.differences["reconstruct/reconstruction"]                     # doctest: +SKIP
2.4e-07
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from aeloops.evaluation.serving import FLOAT32_TOLERANCE, SIGNATURES, probe_inputs, serving_functions
from aeloops.files import replacing
from aeloops.models.base import Autoencoder
from aeloops.objectives.objective import Objective

__all__ = ["QUANTIZATIONS", "LiteRTReport", "interpreter", "write_tflite"]

QUANTIZATIONS = ("none", "float16", "int8")
_PROBE_BATCH = 8


@dataclasses.dataclass(frozen=True)
class LiteRTReport:
    """What an export wrote and how closely LiteRT reproduces TensorFlow on the probe batch."""

    path: pathlib.Path
    signatures: tuple[str, ...]
    quantize: str
    # The batch each call takes (None: any).
    batch_size: int | None
    bytes: int
    # Per signature and output ("reconstruct/reconstruction"): the largest absolute difference from TensorFlow.
    differences: Mapping[str, float]

    @property
    def largest_difference(self) -> float:
        """The largest difference over every signature's outputs."""
        return max(self.differences.values())


def interpreter(content: bytes) -> object:
    """Returns a LiteRT interpreter for a model: ``ai_edge_litert``'s, else TensorFlow's deprecated copy."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        with warnings.catch_warnings():  # "tf.lite.Interpreter is deprecated": the fallback is deliberate.
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_content=content)
    return Interpreter(model_content=content)


def _frozen(function: Callable) -> tf.types.experimental.PolymorphicFunction:
    """``function`` with its variables as constants, its outputs keeping their names.

    LiteRT's converter keeps Keras 3's variables as resource variables it
    never initialises (every output NaN); frozen, the weights are constants.
    """
    concrete = function.get_concrete_function()
    names = sorted(concrete.structured_outputs)
    frozen = convert_variables_to_constants_v2(concrete)
    # The frozen function returns its outputs in the flattened (sorted-key) order of the original's dict.
    return tf.function(
        lambda *args: dict(zip(names, frozen(*args))), input_signature=function.input_signature, autograph=False
    )


def _unsupported(error: Exception) -> str:
    """What a failed conversion says LiteRT lacks: the TensorFlow operations it names, or its first line."""
    names = sorted(set(re.findall(r"'tf\.(\w+)' op", str(error))))
    if names:
        return f"no built-in operation for TensorFlow's {', '.join(names)}"
    return " ".join(str(error).split())[:200] or type(error).__name__


def _convert(functions: Mapping[str, Callable], names: Sequence[str], batch: int | None, quantize: str) -> bytes:
    """Converts the signatures, frozen, with batch dimension ``batch`` (None: dynamic), to LiteRT's format."""
    with _quiet_stderr():
        return _converted(functions, names, batch, quantize)


def _converted(functions: Mapping[str, Callable], names: Sequence[str], batch: int | None, quantize: str) -> bytes:
    frozen = tf.Module()
    for name in names:
        function = functions[name]
        if batch is not None:
            specs = [
                tf.TensorSpec((batch, *spec.shape[1:]), spec.dtype, spec.name) if spec.shape.rank else spec
                for spec in function.input_signature
            ]
            function = tf.function(function.python_function, input_signature=specs)
        # With a dynamic batch, the signature's own trace: the check's reference outputs then reuse it.
        setattr(frozen, name, _frozen(function))
    with tempfile.TemporaryDirectory(prefix="aeloops-litert-") as scratch:
        tf.saved_model.save(frozen, scratch, signatures={name: getattr(frozen, name) for name in names})
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch, signature_keys=list(names))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Keeps LiteRT's notes off the terminal: the converter's MLIR diagnostics and the interpreter's (on stderr's
    file descriptor), and TensorFlow's retracing warnings (each signature is traced again, frozen).

    aeloops says what failed, in one line.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        logger.setLevel(level)


def write_tflite(
    model: Autoencoder,
    path: str | os.PathLike,
    objective: Objective | None = None,
    *,
    step: int = 0,
    image_shape: Sequence[int] | None = None,
    quantize: str = "none",
    batch_size: int | None = None,
    seed: int = 0,
) -> LiteRTReport:
    """Writes ``model``'s serving signatures as a LiteRT file at ``path``, checked against TensorFlow.

    Args:
      model, objective, step, image_shape: as ``write_saved_model``'s.
      path: a ``.tflite`` file that does not exist yet; nothing is overwritten.
      quantize: ``"none"`` (float32), ``"float16"`` (float16 weights) or
        ``"int8"`` (dynamic-range: int8 weights, float activations).
      batch_size: the batch every call takes; None, a batch of any size
        where LiteRT can convert the model so (dense models), else 1
        (convolutions after up-sampling and recurrent layers need a static shape).
      seed: seeds the probe batch the export is checked on.

    Raises:
      ValueError: for an existing ``path``, an unknown ``quantize``, an
        operation LiteRT lacks (named), or a float32 file that does not
        reproduce TensorFlow's outputs (``rtol`` and ``atol`` of ``FLOAT32_TOLERANCE``).
    """
    path = pathlib.Path(path)
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}.")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}.")
    if path.exists():
        raise ValueError(f"{path} already exists; export to a new file.")
    _, functions = serving_functions(model, objective, step=step, image_shape=image_shape)
    names = tuple(name for name in SIGNATURES if name in functions)
    tries = [batch_size] if batch_size is not None else [None, 1]
    for batch in tries:
        try:
            content = _convert(functions, names, batch, quantize)
            # A file LiteRT wrote may still fail to run at this batch size (shapes it cannot broadcast).
            differences, worst = _check(content, functions, names, batch, seed)
            break
        except Exception as error:  # noqa: BLE001 - the converter and the interpreter raise their own types.
            if batch == tries[-1]:
                raise ValueError(
                    f"LiteRT cannot hold this model ({_unsupported(error)}); export it as a SavedModel "
                    "(--format savedmodel)."
                ) from None
    if quantize == "none" and worst is not None:
        raise ValueError(
            f"LiteRT's {worst} differs from TensorFlow's by {differences[worst]:.3g} (more than "
            f"{FLOAT32_TOLERANCE:g} plus {FLOAT32_TOLERANCE:g} of its value) on the probe batch; export it as a "
            "SavedModel (--format savedmodel)."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as partial:
        partial.write_bytes(content)
    return LiteRTReport(path, names, quantize, batch, len(content), differences)


def _check(
    content: bytes, functions: Mapping[str, Callable], names: Sequence[str], batch: int | None, seed: int
) -> tuple[dict[str, float], str | None]:
    """Runs each signature in LiteRT and in TensorFlow on seeded inputs.

    Returns each output's largest absolute difference, and the first output
    that is not within ``FLOAT32_TOLERANCE`` (relative and absolute), or None.
    """
    with _quiet_stderr():  # The interpreter's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
        return _compare(content, functions, names, batch, seed)


def _compare(
    content: bytes, functions: Mapping[str, Callable], names: Sequence[str], batch: int | None, seed: int
) -> tuple[dict[str, float], str | None]:
    runtime = interpreter(content)
    differences, worst = {}, None
    for name in names:
        spec = functions[name].input_signature[0]
        values = probe_inputs(functions[name], name, _PROBE_BATCH, seed)
        expected = {key: value.numpy() for key, value in functions[name](tf.constant(values)).items()}
        step = batch or _PROBE_BATCH
        runner = runtime.get_signature_runner(name)
        parts = [runner(**{spec.name: values[start : start + step]}) for start in range(0, _PROBE_BATCH, step)]
        for key, value in expected.items():
            served = np.concatenate([part[key] for part in parts])
            differences[f"{name}/{key}"] = float(np.max(np.abs(served - value)))
            close = np.allclose(served, value, rtol=FLOAT32_TOLERANCE, atol=FLOAT32_TOLERANCE)
            worst = worst or (None if close else f"{name}/{key}")
    return differences, worst
