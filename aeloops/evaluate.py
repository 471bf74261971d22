"""A run's held-out figures: ``python -m aeloops.evaluate RUN_DIR [--nll-samples K]``.

Restores the run's newest checkpoint (``--best``: its best one; the weights'
moving average where the run keeps one) and evaluates it on the run's
validation images, binarized as the run's ``binarize`` setting says (or on
``--data``): for every model, the objective's terms (``"terms"``, as
``val_*`` in the history) and the reconstruction's mean squared error per
pixel; where the model has a likelihood (a Gaussian posterior), also the
importance-sampled negative log-likelihood with K samples (default 1,000;
0 skips it) and the negative ELBO (``aeloops.evaluation.likelihood``). It
prints one JSON object:

    {"terms": {"loss": 94.1, "bce": ...}, "mean_squared_error": 0.02, "nll": 89.9, "negative_elbo": 94.1,
     "samples": 1000, "examples": 10000, ...}

and writes it to ``RUN_DIR/evaluation.json``. An earlier, different
evaluation there is kept as ``evaluation.1.json`` (``.2``, ...), never
overwritten. TensorFlow is imported only once the arguments check out.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import zipfile
from collections.abc import Sequence
from typing import Any

from aeloops.runs import config as config_lib
from aeloops.runs.choices import SAMPLE_METRICS, SAMPLERS
from aeloops.runs.commands import check_counts, open_run, restored, usage_error
from aeloops.runs.directory import RunDirectory, RunWriteError, write_json
from aeloops.runs.stderr_filter import StderrFilter

__all__ = ["DEFAULT_SAMPLES", "evaluate_run", "main"]

EVALUATION = "evaluation.json"
# Importance samples when none are asked for: the vae model's bound on MNIST's 10,000 test images took
# 1 min 30 s with them (the whole command, on two Xeon cores beside another job). Papers report K = 5,000.
DEFAULT_SAMPLES = 1000


def evaluate_run(
    run_dir: RunDirectory,
    samples: int | None = None,
    *,
    best: bool = False,
    data: str | None = None,
    examples: int | None = None,
    batch_size: int = 50,
    seed: int = 0,
    xla: bool = False,
    trust_code: bool = False,
    metrics: Sequence[str] = (),
    extractor: str | None = None,
    extractor_layer: str | None = None,
    inception: str | None = None,
    sampler: str | None = None,
    sample_count: int | None = None,
    disentanglement: bool = False,
    factors: str | None = None,
    factor_examples: int = 10_000,
    factor_votes: int = 10_000,
) -> dict[str, Any]:
    """Returns the held-out figures of ``run_dir``'s model (newest or best checkpoint) and what they were computed on.

    ``samples``: importance samples for the likelihood; None, ``DEFAULT_SAMPLES``
    where the model has a likelihood (none where it has not); 0, no likelihood.
    A model given as ``module:attribute`` in the run's ``config.json`` is
    imported only with ``trust_code=True``: the run may come from someone else.
    With ``metrics`` (of ``"fid"``, ``"kid"``, ``"prd"``; all three when
    only an ``extractor`` is given) the result also holds the sample quality
    (``aeloops.runs.sampling.measure_samples``) of ``sample_count`` images
    drawn by ``sampler`` against the held-out images, on the features of
    ``extractor`` (a ``.keras`` file), of InceptionV3 with the weights in
    ``inception``, or of a classifier trained on the
    dataset's labels.
    With ``disentanglement`` it holds MIG, DCI, SAP and the FactorVAE score
    (``aeloops.evaluation.disentanglement``) of the model's code on images
    with known factors: the procedural shapes a ``--dataset shapes`` run
    trained on, or the real dSprites at ``factors``.

    Raises:
      ValueError: when ``samples`` is asked of a model without a likelihood,
        or the run has no validation images and no ``data`` is given.
    """
    with restored(run_dir, best, "evaluate", trust_code) as (config, trainer):
        import numpy as np

        from aeloops import data as data_lib  # Deferred, like everything below: imports TensorFlow.
        from aeloops.evaluation import likelihood
        from aeloops.runs import datasets as run_data

        example_shape = trainer.model.example_shape
        if data is None:
            images = run_data.load_datasets(config, example_shape, log=lambda line: None).validation
            if images is None:
                raise ValueError(f"{run_dir.path} trained without validation data; give the images with --data.")
        else:
            # Binary images pass through either binarization unchanged.
            images = run_data.binarize_validation(data_lib.to_model_inputs(_load(data), example_shape, data), config)
        images = images[:examples] if examples else images
        result: dict[str, Any] = {"examples": len(images)}
        # The objective's terms, as validation computes them (the weights' moving average, if kept).
        result["terms"] = trainer.evaluate(images, batch_size=batch_size)
        reconstructions = trainer.predict(images, batch_size=batch_size)["reconstruction"]
        result["mean_squared_error"] = float(np.mean(np.square(reconstructions.astype(np.float64) - images)))
        has_likelihood = likelihood.has_gaussian_posterior(trainer.model)
        if samples and not has_likelihood:  # Asked for explicitly: say why it cannot be.
            likelihood.negative_log_likelihood(trainer.model, images[:1], samples=samples)
        if samples != 0 and has_likelihood:
            with trainer.averaged_weights():
                result.update(likelihood.negative_log_likelihood(
                    trainer.model, images, samples=samples or DEFAULT_SAMPLES, batch_size=batch_size, seed=seed,
                    jit_compile=xla,
                ))  # fmt: skip
        if (extractor is not None or inception is not None) and not metrics:
            metrics = SAMPLE_METRICS  # An extractor alone asks for every measure, as it always has.
        if metrics:
            from aeloops.runs.sampling import measure_samples

            result["sample_quality"] = measure_samples(
                trainer, config, images, metrics, extractor=extractor, layer=extractor_layer, inception=inception,
                sampler=sampler, count=sample_count, seed=seed, run_dir=run_dir,
                log=lambda line: print(line, file=sys.stderr),
            )  # fmt: skip
        if disentanglement:
            result["disentanglement"] = _disentanglement(
                trainer, config, factors, factor_examples, factor_votes, batch_size, seed
            )
    return {
        **result,
        "checkpoint": "best" if best else "newest",
        "step": int(trainer.step.numpy()),
        "data": data or "validation",
        "binarize": config.binarize,
        "xla": xla,
    }


def _disentanglement(
    trainer: Any, config: Any, factors: str | None, examples: int, votes: int, batch_size: int, seed: int
) -> dict[str, Any]:
    """Scores the run's code against known factors: the shapes it trained on, or dSprites at ``factors``."""
    import numpy as np

    from aeloops.data import to_model_inputs
    from aeloops.data.factors import DSprites, Shapes
    from aeloops.evaluation import disentanglement

    if factors is None:
        _check_factors(config)
    data = DSprites(factors) if factors is not None else Shapes()
    model = trainer.model

    def encode(images: np.ndarray) -> np.ndarray:
        inputs = to_model_inputs(images, model.example_shape, "the factors' images")
        return np.concatenate([np.asarray(model.encode(inputs[start : start + batch_size * 10]))
                               for start in range(0, len(inputs), batch_size * 10)])  # fmt: skip

    with trainer.averaged_weights():
        found = disentanglement.scores(encode, data, examples=examples, votes=votes, seed=seed)
    return {**found, "factors": "shapes" if factors is None else f"dsprites:{factors}"}


def _check_factors(config: Any) -> None:
    """Refuses to score disentanglement of a run whose images have no known factors."""
    if config.dataset != "shapes":
        raise ValueError(
            f"--disentanglement needs images whose generating factors are known; {config.dataset} has none. Train "
            "on --dataset shapes, or give --factors dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz."
        )


def _load(path: str) -> Any:
    """Returns the images of a .npy file, or of a .npz file's ``x_test`` (else ``x_train``, else its only array)."""
    import numpy as np

    from aeloops.data import load_array_file

    if path.endswith(".npz") and pathlib.Path(path).is_file():
        try:
            with np.load(path, allow_pickle=False) as archive:
                names = archive.files
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"Cannot read {path}: it is truncated or not a NumPy file ({error}).") from None
        if "x_test" in names:
            return load_array_file(path, "x_test")  # Reads it with the checks (a bad CRC is one line).
    return load_array_file(path)


def save(run_dir: RunDirectory, result: dict[str, Any]) -> pathlib.Path:
    """Writes ``result`` to ``evaluation.json``, first moving an earlier, different one to ``evaluation.<n>.json``."""
    path = run_dir.path / EVALUATION
    if path.is_file():
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            earlier = None
        if earlier != json.loads(json.dumps(result)):
            number = 1
            while (run_dir.path / f"evaluation.{number}.json").exists():
                number += 1
            os.replace(path, run_dir.path / f"evaluation.{number}.json")
    write_json(path, result)
    return path


def build_parser() -> argparse.ArgumentParser:
    """Returns the evaluate command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m aeloops.evaluate",
        description="Evaluate a training run on held-out images: its loss terms, reconstruction error and, where "
        "the model has one, its importance-sampled negative log-likelihood (nats per image).",
        epilog="Example: python -m aeloops.evaluate runs/vae --nll-samples 5000",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by python -m aeloops.train")
    parser.add_argument(
        "--nll-samples", type=int, metavar="K",
        help=f"importance samples per image for the likelihood (default {DEFAULT_SAMPLES} where the model has one; "
        "0 skips it)",
    )  # fmt: skip
    parser.add_argument("--best", action="store_true", help="evaluate the best checkpoint instead of the newest")
    parser.add_argument("--data", help="a .npy/.npz of images (default: the run's validation images)")
    parser.add_argument("--examples", type=int, help="evaluate only the first N images")
    parser.add_argument("--batch-size", type=int, default=50, help="images per compiled call (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the importance samples (default 0)")
    parser.add_argument(
        "--xla",
        action="store_true",
        help="compile with XLA: faster for some models (IWAE), slower for others (the VAE); other samples",
    )
    quality = parser.add_argument_group(
        "sample quality", "drawn samples against the held-out images, on an extractor's features (recorded with them)"
    )
    quality.add_argument("--fid", action="store_true", help="the Frechet distance of the features (FID)")
    quality.add_argument("--kid", action="store_true", help="the kernel distance (KID, unbiased) and its spread")
    quality.add_argument("--prd", action="store_true", help="precision and recall (k-nearest-neighbour balls)")
    quality.add_argument(
        "--extractor", metavar="FILE.keras",
        help="take features from this Keras model (its penultimate layer, or --extractor-layer); alone, it measures "
        "all three. Default: a classifier trained once on the dataset's labels and kept in the user's cache",
    )  # fmt: skip
    quality.add_argument("--extractor-layer", metavar="NAME", help="the extractor's layer whose output is the features")
    quality.add_argument(
        "--inception-weights", metavar="FILE.h5",
        help="take features from InceptionV3 (its 2,048 pooled ones) with these weights, e.g. Keras's "
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5; nothing is downloaded",
    )  # fmt: skip
    quality.add_argument(
        "--sampler", choices=SAMPLERS,
        help="how samples are drawn (default: the model's prior where it has one, else gmm)",
    )  # fmt: skip
    quality.add_argument("--count", type=int, help="samples to draw (default: as many as held-out images)")
    factors = parser.add_argument_group(
        "disentanglement", "the code scored against the factors that made the images (disentanglement_lib's scores)"
    )
    factors.add_argument(
        "--disentanglement", action="store_true",
        help="also score the code against known factors (MIG, DCI, SAP, FactorVAE score) on the procedural shapes "
        "of a --dataset shapes run, or on dSprites with --factors",
    )  # fmt: skip
    factors.add_argument("--factors", metavar="DSPRITES.npz", help="with --disentanglement: the real dSprites file")
    factors.add_argument(
        "--factor-examples", type=int, default=10_000,
        help="with --disentanglement: images for MIG and to train DCI and SAP, half as many to test (default 10000)",
    )  # fmt: skip
    factors.add_argument(
        "--factor-votes", type=int, default=10_000,
        help="with --disentanglement: the FactorVAE score's training votes of 64 images, half as many to test "
        "(default 10000)",
    )  # fmt: skip
    parser.add_argument("--trust-code", action="store_true", help=config_lib.TRUST_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the evaluate command and returns its exit status."""
    args = build_parser().parse_args(argv)
    run_dir = RunDirectory(args.run_dir)
    try:
        check_counts(args, ("nll_samples",), least=0)
        check_counts(args, ("batch_size", "examples", "count", "factor_examples", "factor_votes"))
        metrics = tuple(name for name in SAMPLE_METRICS if getattr(args, name))
        if args.extractor is None and not metrics and (args.sampler or args.count or args.extractor_layer):
            raise ValueError("--sampler, --count and --extractor-layer measure samples; add --fid, --kid or --prd.")
        if args.extractor is not None and args.inception_weights is not None:
            raise ValueError("--extractor and --inception-weights each name the features; give one.")
        if args.inception_weights is not None and not metrics:
            metrics = SAMPLE_METRICS
        if args.extractor_layer and args.extractor is None:
            raise ValueError("--extractor-layer names a layer of --extractor FILE.keras; give the file too.")
        if args.factors is not None and not args.disentanglement:
            raise ValueError("--factors scores disentanglement; add --disentanglement.")
        for name in ("data", "extractor", "factors", "inception_weights"):
            if getattr(args, name) is not None and not pathlib.Path(getattr(args, name)).is_file():
                raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)} does not exist.")
        config = open_run(run_dir, args.best, "evaluate", args.trust_code)
        if args.disentanglement and args.factors is None:
            _check_factors(config)
        with StderrFilter():  # TensorFlow's start-up notices are not the user's business.
            result = evaluate_run(
                run_dir, args.nll_samples, best=args.best, data=args.data, examples=args.examples,
                batch_size=args.batch_size, seed=args.seed, xla=args.xla, trust_code=args.trust_code,
                metrics=metrics, extractor=args.extractor, extractor_layer=args.extractor_layer, sampler=args.sampler,
                inception=args.inception_weights,
                sample_count=args.count, disentanglement=args.disentanglement, factors=args.factors,
                factor_examples=args.factor_examples, factor_votes=args.factor_votes,
            )  # fmt: skip
        save(run_dir, result)
    except (ValueError, TypeError) as error:
        return usage_error("aeloops.evaluate", error)
    except RunWriteError as error:
        print(f"aeloops.evaluate: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
