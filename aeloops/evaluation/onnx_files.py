"""ONNX export: one ``.onnx`` file per serving signature, converted by tf2onnx and checked by ONNX Runtime.

ONNX has no named signatures, so the export is a directory holding
``encode.onnx``, ``decode.onnx``, ``reconstruct.onnx`` and
``anomaly_score.onnx``, each with the SavedModel's input and output names
(``inputs`` or ``code``; ``code``, ``reconstruction`` or ``score``) and a
dynamic batch dimension (a variational model's ``sample`` stays
SavedModel-only). tf2onnx has no converter for TensorFlow's ``Log1p`` (in
the cross-entropy of ``anomaly_score``); it is written as ONNX's
``Log(1 + x)``.

Every file is run by ONNX Runtime on a seeded probe batch before the
directory is written, and an output off TensorFlow's by more than
``FLOAT32_TOLERANCE`` (relative and absolute) refuses the export.

>>> report = write_onnx(model, "exported/dense.onnx")                   # doctest: +SKIP
>>> import onnxruntime                                                 # doctest: +SKIP
>>> onnxruntime.InferenceSession("exported/dense.onnx/encode.onnx").run(None, {"inputs": images})  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from aeloops.evaluation.serving import FLOAT32_TOLERANCE, SIGNATURES, probe_inputs, serving_functions
from aeloops.files import replacing_directory
from aeloops.models.base import Autoencoder
from aeloops.objectives.objective import Objective

__all__ = ["OPSET", "OnnxReport", "write_onnx"]

# ONNX's operator set the files use: ONNX Runtime 1.17 (2024) and later run it.
OPSET = 17
_PROBE_BATCH = 8


@dataclasses.dataclass(frozen=True)
class OnnxReport:
    """What an export wrote and how closely ONNX Runtime reproduces TensorFlow on the probe batch."""

    path: pathlib.Path
    signatures: tuple[str, ...]
    # Per signature and output ("reconstruct/reconstruction"): the largest absolute difference from TensorFlow.
    differences: Mapping[str, float]


def _log1p(ctx: Any, node: Any, name: str, args: Any) -> Any:
    """tf2onnx's handler for ``Log1p``, which it lacks: ``Log(x + 1)`` in x's own type."""
    from tf2onnx import utils

    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
    added = ctx.make_node("Add", [node.input[0], one.output[0]])
    ctx.replace_inputs(node, [added.output[0]])
    node.type = "Log"
    return node


def _needs() -> tuple[Any, Any]:
    """Imports tf2onnx and ONNX Runtime, or says how to install them."""
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as error:
        raise ValueError(
            f"ONNX export needs tf2onnx and onnxruntime ({error.name} is not installed): pip install 'aeloops[onnx]'."
        ) from None
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)  # Its per-op INFO lines are not the user's business.
    return tf2onnx, onnxruntime


def write_onnx(
    model: Autoencoder,
    path: str | os.PathLike,
    objective: Objective | None = None,
    *,
    step: int = 0,
    image_shape: Sequence[int] | None = None,
    seed: int = 0,
) -> OnnxReport:
    """Writes ``model``'s serving signatures as ONNX files in the new directory ``path``, checked by ONNX Runtime.

    Args:
      model, objective, step, image_shape: as ``write_saved_model``'s.
      path: a directory that does not exist yet; nothing is overwritten.
      seed: seeds the probe batch the export is checked on.

    Raises:
      ValueError: for an existing ``path``, missing packages, an operation
        tf2onnx cannot convert, or a file whose outputs are not TensorFlow's.
    """
    path = pathlib.Path(path)
    if path.exists():
        raise ValueError(f"{path} already exists; export to a new directory.")
    tf2onnx, onnxruntime = _needs()
    _, functions = serving_functions(model, objective, step=step, image_shape=image_shape)
    names = tuple(name for name in SIGNATURES if name in functions)
    files, differences = {}, {}
    for name in names:
        function = functions[name]
        try:
            proto, _ = tf2onnx.convert.from_function(
                function, input_signature=function.input_signature, opset=OPSET,
                custom_op_handlers={"Log1p": (_log1p, [])},
            )  # fmt: skip
            session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - tf2onnx and ONNX Runtime raise their own types.
            cause = " ".join(str(error).split())[:200] or type(error).__name__
            raise ValueError(
                f"ONNX cannot hold this model's {name} ({cause}); export it as a SavedModel (--format savedmodel)."
            ) from None
        values = probe_inputs(function, name, _PROBE_BATCH, seed)
        expected = {key: value.numpy() for key, value in function(tf.constant(values)).items()}
        outputs = [output.name for output in session.get_outputs()]
        served = dict(zip(outputs, session.run(outputs, {session.get_inputs()[0].name: values})))
        for key, value in expected.items():
            differences[f"{name}/{key}"] = float(np.max(np.abs(served[key] - value)))
            if not np.allclose(served[key], value, rtol=FLOAT32_TOLERANCE, atol=FLOAT32_TOLERANCE):
                raise ValueError(
                    f"ONNX Runtime's {name}/{key} differs from TensorFlow's by {differences[f'{name}/{key}']:.3g} "
                    "on the probe batch; export it as a SavedModel (--format savedmodel)."
                )
        files[f"{name}.onnx"] = proto.SerializeToString()
    # Written beside the target and renamed, so a failed export leaves nothing behind.
    with replacing_directory(path) as partial:
        for file_name, content in files.items():
            (partial / file_name).write_bytes(content)
    return OnnxReport(path, names, differences)
