"""The command-line trainer: ``python -m aeloops.train``.

Settings come from the defaults, then a ``--config`` file (TOML or JSON),
then flags, then ``--set key=value`` overrides. Errors a user can cause exit
with status 2 and one line on stderr; SIGINT and SIGTERM save a checkpoint
and exit 130 and 143; ``--resume`` continues a stopped run.

TensorFlow is imported only once training starts, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import pathlib
import shlex
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from aeloops.files import WriteError
from aeloops.runs import config as config_lib
from aeloops.runs.choices import MLFLOW_DEFAULT
from aeloops.runs.directory import RunDirectory, default_run_dir, is_chief_task
from aeloops.runs.stderr_filter import SHOW_ALL_VARIABLE, StderrFilter
from aeloops.training import compile_cache

__all__ = ["build_parser", "main", "resolve_config"]

EXIT_USAGE = 2
EXIT_INTERNAL = 1


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser, one flag per ``TrainConfig`` field; every flag defaults to None (not given)."""
    defaults = config_lib.TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m aeloops.train",
        description="Train an aeloops autoencoder and write a self-describing run directory.",
        epilog="Example: python -m aeloops.train --model conv --epochs 3 --mode graph --run-dir runs/conv",
        argument_default=None,
    )
    parser.add_argument("--config", help="a .toml or .json file of settings (a run's config.json repeats it)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set objective.sparsity.weight=1e-5 or "
        "--set optimizers.decoder.learning_rate=1e-4 (repeatable)",
    )
    parser.add_argument("--list-models", action="store_true", help="list the registered models and exit")
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="allow a module:attribute model named by --config or a resumed run's config.json to be imported "
        "(a model typed with --model needs nothing)",
    )
    parser.add_argument(
        "--show-tf-logs",
        action="store_true",
        help=f"show TensorFlow's C++ start-up messages, hidden by default (or set {SHOW_ALL_VARIABLE}=1)",
    )
    parser.add_argument(
        "--mlflow",
        nargs="?",
        const=MLFLOW_DEFAULT,
        metavar="TRACKING_URI",
        help="also log the run to MLflow: its settings, every epoch's values, its pictures and model.keras; "
        "without a URI to an SQLite store beside the runs (mlflow.db), with one to that store or server "
        "(needs pip install 'aeloops[mlflow]')",
    )
    for field in dataclasses.fields(config_lib.TrainConfig):
        if not field.metadata.get("flag", True):
            continue
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        help_text = field.metadata["help"]
        if isinstance(default, bool):
            if default:  # A setting that is on unless turned off: --no-<name>.
                parser.add_argument(
                    f"--no-{field.name.replace('_', '-')}",
                    dest=field.name,
                    action="store_false",
                    default=None,
                    help=f"do not {help_text}",
                )
            else:
                parser.add_argument(flag, action="store_true", default=None, help=help_text)
            continue
        kind = _FLAG_TYPES.get(field.type, str)
        shown = f" (default {default})" if default is not None else ""
        metavar = field.metadata.get("metavar")
        nargs = len(metavar) if isinstance(metavar, tuple) else None
        parser.add_argument(flag, type=kind, nargs=nargs, metavar=metavar, help=f"{help_text}{shown}")
    return parser


# A field's annotation (a string, under `from __future__ import annotations`) to its flag's type.
_FLAG_TYPES = {"int": int, "int | None": int, "float": float, "float | None": float, "list[int] | None": int}
# Flags of the command, not settings of the run: a tracking URI is where this process reports, and one read
# from a received run's config.json would send its values to a stranger's server.
_NOT_SETTINGS = {"config", "set", "list_models", "show_tf_logs", "trust_code", "mlflow"}


def resolve_config(args: argparse.Namespace) -> tuple[config_lib.TrainConfig, RunDirectory]:
    """Returns the run's config and directory from parsed arguments (no files written)."""
    given = {name: value for name, value in vars(args).items() if name not in _NOT_SETTINGS and value is not None}
    layered = config_lib.TrainConfig()
    if args.config:
        layered = config_lib.merge(layered, config_lib.load_config_file(args.config), args.config)
    layered = config_lib.merge(layered, given, "command line")
    layered = config_lib.apply_overrides(layered, args.set)
    # The model the user typed (--model or --set model=...) is theirs to run; one a file names is not.
    typed = _set_values(args.set, config_lib.TrainConfig()).get("model", given.get("model"))
    if not layered.resume:
        if layered.model != typed and not args.trust_code:
            fix = config_lib.code_fix(layered.model, typed=True)
            config_lib.check_code_source(layered.model, args.config, fix)
        run_dir = layered.run_dir or default_run_dir(layered.model)
        return dataclasses.replace(layered, run_dir=run_dir), RunDirectory(run_dir)
    if not layered.run_dir:
        raise ValueError("--resume needs --run-dir naming the run to continue.")
    run_dir = RunDirectory(layered.run_dir)
    run_dir.check_resumable()
    saved = config_lib.merge(config_lib.TrainConfig(), config_lib.load_config_file(run_dir.config), str(run_dir.config))
    if saved.model != typed and not args.trust_code:
        config_lib.check_code_source(saved.model, str(run_dir.config), config_lib.code_fix(saved.model, typed=True))
    # Settings given now override the saved ones only where a resume allows it.
    requested = config_lib.merge(saved, {**given, **_set_values(args.set, saved)}, "command line")
    if requested.mode == "auto":  # config.json holds the mode "auto" chose: asking for "auto" again is no change.
        requested = dataclasses.replace(requested, mode=saved.mode)
    changed = sorted(
        field.name
        for field in dataclasses.fields(saved)
        if field.name not in config_lib.RESUMABLE_CHANGES | {"run_dir"}
        and getattr(requested, field.name) != getattr(saved, field.name)
    )
    if changed:
        raise ValueError(
            f"--resume continues {run_dir.path} with its saved settings; {changed[0]} cannot change "
            "(start a new run to change it)."
        )
    typed_cache = "cache" in given or "cache" in _set_values(args.set, saved)
    if requested.cache is not None and not typed_cache and not _inside(requested.cache, run_dir.path):
        # The decoded-image cache is written to: a run's file (perhaps a stranger's) does not choose where.
        raise ValueError(
            f"{run_dir.config} names the cache {requested.cache}, outside the run, where resuming would write "
            f"decoded images; aeloops writes nowhere a run's file names. To use it, say so: add --cache "
            f"{shlex.quote(requested.cache)}"
        )
    return dataclasses.replace(requested, run_dir=str(run_dir.path), resume=True), run_dir


def _inside(path: str, directory: pathlib.Path) -> bool:
    """Whether ``path`` lies inside ``directory`` (links resolved)."""
    resolved, home = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([resolved, home]) == home


def version_note(path: str | os.PathLike) -> str | None:
    """Returns a note when the run that wrote config file ``path`` used other software versions than these."""
    try:
        recorded = json.loads(pathlib.Path(path).read_text(encoding="utf-8")).get(config_lib.VERSIONS_KEY)
    except (OSError, ValueError, AttributeError):
        return None  # TOML, or not a run's record: nothing to compare.
    if not isinstance(recorded, dict):
        return None
    current = config_lib.software_versions()
    differences = [
        f"{name} {recorded[name]} (now {current[name]})"
        for name in current
        if name in recorded and recorded[name] != current[name]
    ]
    if not differences:
        return None
    return f"Note: {path} was written with {', '.join(differences)}; results may differ slightly."


def _set_values(overrides: Sequence[str], base: config_lib.TrainConfig) -> dict[str, Any]:
    applied = config_lib.apply_overrides(base, overrides)
    return {
        field.name: getattr(applied, field.name)
        for field in dataclasses.fields(applied)
        if getattr(applied, field.name) != getattr(base, field.name)
    }


def _list_models() -> None:
    from aeloops.models import registry  # Deferred: imports TensorFlow.

    width = max(len(name) for name in registry.names())
    for name in registry.names():
        spec = registry.get(name)
        # Counted for MNIST's 28x28 grey digits; every model is built for the data it is given.
        print(f"{name:<{width}} {spec.build().count_params():>9,} params  {spec.description}; takes {spec.takes}")
        # An option without a default (None) is chosen by the model for the images it is given.
        options = ", ".join(
            option if value is None else f"{option}={_toml(value)}" for option, value in spec.options.items()
        )
        print(f"{'':<{width}} {'':>16}  options (--set model.<option>=...): {options or 'none'}")


def _toml(value: object) -> str:
    """Writes a default as --set takes it: lists and booleans in TOML, strings bare."""
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(_toml(item) for item in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


class _SignalCatcher:
    """Turns the first SIGINT or SIGTERM into a stop request; a second one stops at once.

    Stopping at once corrupts nothing: checkpoints, history.json and
    model.keras are each written to a temporary name and then renamed.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_number: int | None = None
        # Called before a second signal ends the process (to flush the filtered stderr).
        self.before_exit: Callable[[], None] | None = None

    def install(self) -> None:
        self.previous = {number: signal.signal(number, self._handle) for number in (signal.SIGINT, signal.SIGTERM)}

    def uninstall(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: Any) -> None:
        if self.event.is_set():
            if self.before_exit is not None:
                self.before_exit()
            print("aeloops.train: stopped at once; the checkpoints saved so far are intact.", file=sys.stderr)
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
            return
        self.signal_number = number
        self.event.set()
        again = "Ctrl-C" if number == signal.SIGINT else "the signal"
        print(f"Stopping after the current compiled call, with a checkpoint ({again} again stops at once).", flush=True)


def _one_line_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> str:
    """Formats a warning as one line a user reads, without the source line Python adds."""
    return f"aeloops.train: warning: {' '.join(str(message).split())}\n"


def _fail(message: str) -> int:
    print(f"aeloops.train: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None, *, callbacks: Sequence[Any] = ()) -> int:
    """Runs the CLI and returns its exit status.

    ``callbacks`` (aeloops or Keras callbacks) join the run's own, after them:
    a program that drives runs (``aeloops.sweeps``) watches each epoch so.
    """
    launched = time.perf_counter()
    args = build_parser().parse_args(argv)
    catcher = _SignalCatcher()
    catcher.install()
    # TensorFlow's start-up notices are not the user's business (see aeloops.runs.stderr_filter).
    stderr_filter = StderrFilter()
    if not args.show_tf_logs:
        stderr_filter.start()
        catcher.before_exit = stderr_filter.stop
    format_warning = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        return _main(args, catcher, launched, callbacks)
    finally:  # main() may run inside a larger program: leave it as found.
        warnings.formatwarning = format_warning
        stderr_filter.stop()
        catcher.uninstall()


def _main(args: argparse.Namespace, catcher: _SignalCatcher, launched: float, callbacks: Sequence[Any] = ()) -> int:
    try:
        if args.list_models:
            _list_models()
            return 0
        config, run_dir = resolve_config(args)
        recorded = run_dir.config if config.resume else args.config
        note = version_note(recorded) if recorded else None
        if note:
            print(note)
        config_lib.check_names(config)  # Before TensorFlow loads: a typo fails at once.
        if args.mlflow is not None and importlib.util.find_spec("mlflow") is None:
            raise ValueError("--mlflow needs MLflow, which is not installed: pip install 'aeloops[mlflow]'.")
        chief = config.strategy != "multiworker" or is_chief_task()
        if not config.resume and chief:
            run_dir.check_new()  # Fail before importing TensorFlow; created once all else checks out.
        # One process writes a run directory at a time; the others are refused before TensorFlow loads.
        with run_dir.lock() if chief else contextlib.nullcontext():
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            compile_cache.enable()  # Before TensorFlow compiles: XLA reads its flags once.
            from aeloops.runs import experiment  # Deferred: imports TensorFlow.

            verbose = 2 if config.quiet or not sys.stdout.isatty() else 1
            result = experiment.run(
                config, run_dir, verbose=verbose, stop_event=catcher.event, launched=launched, mlflow=args.mlflow,
                callbacks=callbacks,
            )
    except (ValueError, TypeError) as error:
        return _fail(" ".join(str(error).split()))
    except WriteError as error:  # Disk full, permissions: what failed and where, and what to do.
        print(f"aeloops.train: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_INTERNAL
    except FloatingPointError as error:  # A loss turned NaN or Inf: the run failed, not the user.
        print(f"aeloops.train: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception:  # noqa: BLE001 - an internal failure: show everything, exit 1.
        traceback.print_exc()
        return EXIT_INTERNAL
    if result.stopped:
        # A worker stopped because another worker was signalled exits as if preempted.
        return 128 + (catcher.signal_number or signal.SIGTERM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
