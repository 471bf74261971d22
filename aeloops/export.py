"""Export for serving: ``python -m aeloops.export RUN_DIR [--format tflite]`` and ``export(model, path)``.

Writes a TensorFlow SavedModel that TensorFlow alone can load (no aeloops
needed), with the signatures ``encode``, ``decode``, ``reconstruct`` and
``anomaly_score`` (and ``sample`` for a variational model); see
``aeloops.evaluation.serving`` for what each returns. ``--format tflite``
writes the same signatures (``sample`` aside) as one LiteRT file, checked
against TensorFlow before it is written (``aeloops.evaluation.litert``),
optionally quantized (``--quantize float16`` or ``int8``). Without ``--out``
the export goes into the run: ``RUN/exported`` or ``RUN/model.tflite``. From a run directory the export
holds the newest checkpoint's weights (``--best``: the best checkpoint's),
as the optimizer's moving average where the run keeps one.

>>> from aeloops.export import export
>>> export(model, "exported/dense")                                 # doctest: +SKIP
>>> served = tf.saved_model.load("exported/dense")                  # doctest: +SKIP
>>> served.signatures["anomaly_score"](inputs=images)["score"]      # doctest: +SKIP

TensorFlow is imported only once the arguments check out.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aeloops.files import refuse_link
from aeloops.runs import config as config_lib
from aeloops.runs.commands import open_run, restored, usage_error
from aeloops.runs.directory import RunDirectory
from aeloops.runs.stderr_filter import StderrFilter

if TYPE_CHECKING:
    from aeloops.models.base import Autoencoder
    from aeloops.objectives.objective import Objective

__all__ = ["export", "export_run", "main"]

SAVEDMODEL, TFLITE, ONNX = "savedmodel", "tflite", "onnx"
# Kept here rather than imported: the flags are checked before TensorFlow loads (aeloops.evaluation.litert's).
QUANTIZATIONS = ("none", "float16", "int8")
OPSET = 17  # aeloops.evaluation.onnx_files.OPSET


def export(
    model: Autoencoder,
    path: str | os.PathLike,
    objective: Objective | None = None,
    *,
    step: int = 0,
    image_shape: Sequence[int] | None = None,
) -> pathlib.Path:
    """Writes ``model`` as a SavedModel at the new directory ``path`` (``aeloops.evaluation.serving``).

    Served images take ``image_shape`` (default: the model's input shape).
    """
    from aeloops.evaluation.serving import write_saved_model  # Deferred: imports TensorFlow.

    return write_saved_model(model, path, objective, step=step, image_shape=image_shape)


def default_out(
    run_dir: RunDirectory, best: bool = False, file_format: str = SAVEDMODEL, quantize: str = "none"
) -> str:
    """Where an export goes without ``--out``: into the run, named for what it holds."""
    tag = "-best" if best else ""
    if file_format == SAVEDMODEL:
        return str(run_dir.path / f"exported{tag}")
    if file_format == ONNX:
        return str(run_dir.path / f"model{tag}.onnx")
    return str(run_dir.path / f"model{tag}{'' if quantize == 'none' else f'.{quantize}'}.tflite")


def export_run(
    run_dir: RunDirectory,
    out: str | os.PathLike,
    best: bool = False,
    *,
    trust_code: bool = False,
    file_format: str = SAVEDMODEL,
    quantize: str = "none",
) -> str:
    """Exports the newest (or best) checkpoint of ``run_dir`` to ``out``; returns a line saying what was written.

    A ``module:attribute`` model in the run's ``config.json`` is imported only with ``trust_code=True``.
    ``file_format`` is ``"savedmodel"`` or ``"tflite"`` (with ``quantize``).
    """
    with restored(run_dir, best, "export", trust_code) as (config, trainer):
        step = int(trainer.step.numpy())
        # What is served is what was validated: the weights' moving average, where the run keeps one.
        with trainer.averaged_weights():
            # Served in the shape of the run's images, whatever shape the model reads them in.
            if file_format == TFLITE:
                from aeloops.evaluation.litert import write_tflite

                report = write_tflite(
                    trainer.model, out, trainer.objective, step=step, image_shape=config.image_shape,
                    quantize=quantize,
                )  # fmt: skip
            elif file_format == ONNX:
                from aeloops.evaluation.onnx_files import write_onnx

                report = write_onnx(trainer.model, out, trainer.objective, step=step, image_shape=config.image_shape)
            else:
                path = export(trainer.model, out, trainer.objective, step=step, image_shape=config.image_shape)
    which = f"the best checkpoint (step {step})" if best else f"the newest checkpoint (step {step})"
    shape = "x".join(map(str, config.image_shape or trainer.model.example_shape))
    if file_format == ONNX:
        return (
            f"Exported {which} of {run_dir.path} to {report.path}: "
            f"{', '.join(f'{name}.onnx' for name in report.signatures)} (ONNX opset {OPSET}), inputs {shape} floats "
            f"in [0, 1], any batch size; largest difference from TensorFlow on the probe batch "
            f"{max(report.differences.values()):.2g} (ONNX Runtime)."
        )
    if file_format == TFLITE:
        batch = "any batch size" if report.batch_size is None else f"batches of {report.batch_size}"
        error = max(report.differences.values())
        kind = "float32" if quantize == "none" else f"{quantize}-quantized"
        return (
            f"Exported {which} of {run_dir.path} to {report.path} ({kind} LiteRT, {report.bytes:,} bytes): signatures "
            f"{', '.join(report.signatures)}, inputs {shape} floats in [0, 1], {batch}; largest difference from "
            f"TensorFlow on the probe batch {error:.2g}."
        )
    from aeloops.evaluation.serving import signature_names

    return f"Exported {which} of {run_dir.path} to {path}: signatures {', '.join(signature_names(trainer.model))}."


def build_parser() -> argparse.ArgumentParser:
    """Returns the export command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m aeloops.export",
        description="Export a training run's model for serving: a TensorFlow SavedModel, or a LiteRT file.",
        epilog="Example: python -m aeloops.export runs/dense --format tflite --quantize float16",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by python -m aeloops.train")
    parser.add_argument(
        "--out", help="the SavedModel directory or .tflite file to create (must not exist; default: in the run, "
        "RUN/exported, RUN/model.tflite or RUN/model.onnx)",
    )  # fmt: skip
    parser.add_argument(
        "--format", dest="file_format", choices=(SAVEDMODEL, TFLITE, ONNX), default=SAVEDMODEL,
        help="savedmodel (TensorFlow Serving, tf.saved_model.load), tflite (LiteRT, on devices) or onnx (a "
        ".onnx file per signature, for ONNX Runtime; needs pip install 'aeloops[onnx]')",
    )  # fmt: skip
    parser.add_argument(
        "--quantize", choices=QUANTIZATIONS, default="none",
        help="with --format tflite: float16 weights, or int8 dynamic-range weights (docs/tools.md gives the error)",
    )  # fmt: skip
    parser.add_argument("--best", action="store_true", help="export the best checkpoint instead of the newest")
    parser.add_argument("--trust-code", action="store_true", help=config_lib.TRUST_HELP)
    return parser


class _Stopped(BaseException):
    """SIGTERM during an export: raised so the partial SavedModel is removed on the way out."""


def _stop(number: int, frame: Any) -> None:
    raise _Stopped(number)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the export command and returns its exit status.

    0 exported; 2 a user error (one line); 1 the SavedModel could not be
    written (one line naming the cause); 130 / 143 stopped by SIGINT /
    SIGTERM, with nothing left at ``--out``.
    """
    args = build_parser().parse_args(argv)
    run_dir = RunDirectory(args.run_dir)
    previous = signal.signal(signal.SIGTERM, _stop)
    given = args.out is not None
    args.out = args.out if given else default_out(run_dir, args.best, args.file_format, args.quantize)
    try:
        if args.quantize != "none" and args.file_format != TFLITE:
            raise ValueError("--quantize applies to LiteRT files; add --format tflite.")
        refuse_link(args.out)
        if pathlib.Path(args.out).exists():
            if given:
                raise ValueError(f"--out {args.out} already exists; choose a new one.")
            raise ValueError(f"{args.out} already exists (an earlier export); name another with --out.")
        open_run(run_dir, args.best, "export", args.trust_code)
        with StderrFilter():  # TensorFlow's start-up notices are not the user's business.
            print(export_run(
                run_dir, args.out, args.best, trust_code=args.trust_code, file_format=args.file_format,
                quantize=args.quantize,
            ))  # fmt: skip
    except (ValueError, TypeError) as error:
        return usage_error("aeloops.export", error)
    except OSError as error:  # A read-only or full disk: the partial directory is already gone.
        cause = error.strerror or " ".join(str(error).split()) or type(error).__name__
        print(f"aeloops.export: cannot write {args.out}: {cause}; nothing was left there.", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Stopped) as stop:
        number = stop.args[0] if isinstance(stop, _Stopped) else signal.SIGINT
        print(f"aeloops.export: stopped; nothing was left at {args.out}.", file=sys.stderr)
        return 128 + number
    finally:  # main() may run inside a larger program: leave it as found.
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
