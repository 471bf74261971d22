"""python -m aeloops.sweep SWEEP.toml: many training runs over a search space, on Optuna.

Thin: parses arguments, checks the sweep file before anything is written,
runs the trials (``--workers K`` processes on this machine; the same command
on other machines with ``--storage URL`` shares one study), then prints and
writes the summary (``<directory>/summary.json``). Exit status: 0 the sweep
has its trials; 2 a bad sweep file or missing package (one line); 130 / 143
stopped by SIGINT / SIGTERM (run the same command to continue).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence

from aeloops.runs.directory import write_json
from aeloops.sweeps import spec as spec_lib

__all__ = ["main"]

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """Returns the sweep command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m aeloops.sweep",
        description="Train a model over a search space on Optuna; every trial is an ordinary run directory.",
        epilog="Example: python -m aeloops.sweep sweeps/kl.toml --workers 2 (docs/sweeps.md)",
    )
    parser.add_argument("sweep", metavar="SWEEP.toml", help="the sweep file: base settings, search space, sampler")
    parser.add_argument("--workers", type=int, default=1, help="trials run at once, each in its own process")
    parser.add_argument(
        "--storage", help="an Optuna storage URL shared by machines (postgresql://..., mysql://..., or a journal "
        "file); default: an SQLite file in the sweep's directory",
    )  # fmt: skip
    parser.add_argument("--trust-code", action="store_true", help="allow a module:attribute model the file names")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # One of --workers' processes.
    return parser


def _fail(message: str) -> int:
    print(f"aeloops.sweep: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


def _check_same_sweep(spec: spec_lib.SweepSpec, described: dict) -> None:
    """Refuses to continue a sweep whose file changed since it began (its trials would mean other things)."""
    path = spec.directory / "sweep.json"
    if not path.exists():
        write_json(path, described)
        return
    before = json.loads(path.read_text(encoding="utf-8"))
    if before != described:
        changed = sorted(key for key in {*before, *described} if before.get(key) != described.get(key))
        raise ValueError(
            f"{spec.source} changed since {spec.directory} began ({', '.join(changed)}); its trials would mean "
            "other things. Give the sweep a new name or directory, or put the file back."
        )


def _describe(spec: spec_lib.SweepSpec) -> dict:
    """The sweep file's meaning as JSON, to tell a rerun of the same sweep from a changed one."""
    space = {key: dimension.__dict__ | {"kind": type(dimension).__name__} for key, dimension in spec.space.items()}
    space = json.loads(json.dumps(space, default=list))
    return {"base": spec.base, "space": space, "sampler": spec.sampler, "trials": spec.trials, "metric": spec.metric,
            "direction": spec.direction, "pruning": spec.pruning, "seeds": spec.seeds and list(spec.seeds),
            "seed": spec.seed}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the sweep command and returns its exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {args.workers}.")
        spec = spec_lib.load_sweep(args.sweep, trust_code=args.trust_code)
        from aeloops.sweeps import study as study_lib  # Deferred: imports TensorFlow and Optuna.

        study = _open_study(study_lib, spec, args.storage)
        if not args.worker:
            spec.directory.mkdir(parents=True, exist_ok=True)
            _check_same_sweep(spec, _describe(spec))
    except (ValueError, TypeError) as error:
        return _fail(str(error))
    if args.workers > 1 and not args.worker:
        code = _spawn(args, argv if argv is not None else sys.argv[1:])
    else:
        code = study_lib.run_workers(spec, study, trust_code=args.trust_code)
    if args.worker:
        return code or 0
    result = study_lib.summary(spec, study)
    write_json(spec.directory / "summary.json", result)
    print(study_lib.table(result))
    if result["best"] is not None:
        best = result["best"]
        runs = ", ".join(best["run_dirs"])
        print(f"Best: trial {best['number']}, {spec.metric} {best['value']:.6g}; its run: {runs}")
    print(f"Summary: {spec.directory / 'summary.json'}; compare the trials in HParams: "
          f"tensorboard --logdir {shlex.quote(str(spec.directory))}")  # fmt: skip
    return code or 0


def _open_study(study_lib: object, spec: spec_lib.SweepSpec, storage: str | None) -> object:
    """Creates or loads the sweep's study; a storage that cannot be reached or read is one line."""
    try:
        return study_lib.create_study(spec, storage)
    except (ValueError, TypeError):
        raise
    except Exception as error:  # noqa: BLE001 - SQLAlchemy's and the database drivers' own errors.
        cause = " ".join(str(error).split("\n")[0].split())[:200] or type(error).__name__
        where = storage if storage is not None else str(spec.directory / "study.db")
        hidden = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", where)  # A password in the URL stays off the screen.
        cause = cause.replace(where, hidden)  # Should the driver's message quote the URL.
        raise ValueError(f"Cannot open the study's storage {hidden}: {cause}. Check --storage.") from None


def _spawn(args: argparse.Namespace, argv: Sequence[str]) -> int | None:
    """Runs ``--workers`` worker processes of this command and waits; a signal to this one goes to them all."""
    command = [sys.executable, "-m", "aeloops.sweep", *argv, "--worker"]
    workers = [subprocess.Popen(command) for _ in range(args.workers)]

    def forward(number: int, frame: object) -> None:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, number)

    previous = {number: signal.signal(number, forward) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [worker.wait() for worker in workers]
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    stopped = [code for code in codes if code in (130, 143)]
    return stopped[0] if stopped else None


if __name__ == "__main__":
    sys.exit(main())
