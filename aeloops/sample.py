"""New images from a trained run: ``python -m aeloops.sample RUN_DIR --sampler prior|gmm [--count N]``.

Restores the run's newest checkpoint (``--best``: its best one; the
weights' moving average where the run keeps one) and draws ``--count`` codes
with the sampler (``aeloops.evaluation.samplers``): ``prior`` for a model
trained toward N(0, I) (the VAE family, WAE, AAE) and for a VQ-VAE whose
learned prior ``python -m aeloops.prior`` trained, ``gmm`` for any model with
a continuous code, a mixture fitted to its training images' codes. Writes,
in the run, ``samples/<sampler>-step<S>-seed<K>.png`` (a grid) and ``.npz``
(``images`` and ``codes``), and prints their paths. The same command on the
same checkpoint draws the same images. TensorFlow is imported only once the
arguments check out.
"""

from __future__ import annotations

import argparse
import io
import pathlib
import sys
from collections.abc import Sequence

from aeloops.files import replacing
from aeloops.runs import config as config_lib
from aeloops.runs.choices import SAMPLERS
from aeloops.runs.commands import check_counts, open_run, restored, usage_error
from aeloops.runs.directory import RunDirectory, RunWriteError, writing
from aeloops.runs.stderr_filter import StderrFilter

__all__ = ["main", "sample_run"]


def sample_run(
    run_dir: RunDirectory,
    sampler: str,
    count: int = 64,
    *,
    components: int = 10,
    seed: int = 0,
    best: bool = False,
    trust_code: bool = False,
) -> tuple[pathlib.Path, pathlib.Path]:
    """Draws ``count`` images from the run's model and writes them into it; returns the PNG's and NPZ's paths."""
    with restored(run_dir, best, "sample", trust_code) as (config, trainer):
        import numpy as np  # Deferred, like everything below: imports TensorFlow.

        from aeloops.runs.sampling import draw
        from aeloops.tensorboard.images import image_grid, write_png

        drawn = draw(trainer, config, sampler, count, components=components, seed=seed, run_dir=run_dir)
    step = int(trainer.step.numpy())
    name = f"{sampler}-step{step}-seed{seed}"
    folder = run_dir.path / "samples"
    png, npz = folder / f"{name}.png", folder / f"{name}.npz"
    shape = config.image_shape
    rows = [drawn.images[start : start + 8] for start in range(0, count, 8)]
    with writing(run_dir.path):
        folder.mkdir(exist_ok=True)
        write_png(png, image_grid(rows, shape=shape))
        buffer = io.BytesIO()
        np.savez(buffer, images=drawn.images, codes=drawn.codes, sampler=sampler, seed=seed, step=step,
                 components=components if sampler == "gmm" else 0)  # fmt: skip
        with replacing(npz) as partial:
            partial.write_bytes(buffer.getvalue())
    return png, npz


def build_parser() -> argparse.ArgumentParser:
    """Returns the sample command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m aeloops.sample",
        description="Draw new images from a trained run: from its prior (the VAE family, WAE, AAE) or from a "
        "Gaussian mixture fitted to its training codes (any model with a continuous code).",
        epilog="Example: python -m aeloops.sample runs/dense --sampler gmm --count 64",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by python -m aeloops.train")
    parser.add_argument("--sampler", choices=SAMPLERS, default="prior", help="where codes come from (default prior)")
    parser.add_argument("--count", type=int, default=64, help="images to draw (default 64)")
    parser.add_argument("--components", type=int, default=10, help="gmm: the mixture's components (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws and the mixture's fit (default 0)")
    parser.add_argument("--best", action="store_true", help="draw from the best checkpoint instead of the newest")
    parser.add_argument("--trust-code", action="store_true", help=config_lib.TRUST_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the sample command and returns its exit status."""
    args = build_parser().parse_args(argv)
    run_dir = RunDirectory(args.run_dir)
    try:
        check_counts(args, ("count", "components"))
        open_run(run_dir, args.best, "sample", args.trust_code)
        with StderrFilter():  # TensorFlow's start-up notices are not the user's business.
            png, npz = sample_run(
                run_dir, args.sampler, args.count, components=args.components, seed=args.seed, best=args.best,
                trust_code=args.trust_code,
            )  # fmt: skip
    except (ValueError, TypeError) as error:
        return usage_error("aeloops.sample", error)
    except RunWriteError as error:
        print(f"aeloops.sample: {error}", file=sys.stderr)
        return 1
    print(f"Samples: {png}")
    print(f"Images and codes: {npz}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
