"""What the commands that read a finished run share (evaluate, export, sample): opening it, and one-line errors.

A run is opened before TensorFlow loads: its checkpoint folder is found and
checked (no links, a checkpoint to read), its config read (a module a
received run names is refused unless trusted), and TensorFlow's start-up
notices silenced.

>>> source = open_run(RunDirectory("runs/vae"), best=False, action="evaluate", trust_code=False)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from aeloops.files import check_no_links
from aeloops.runs import config as config_lib
from aeloops.runs.directory import CHECKPOINT_PREFIX, RunDirectory

if TYPE_CHECKING:
    from aeloops.runs.config import TrainConfig
    from aeloops.training.trainer import Trainer

__all__ = ["BEST", "EXIT_USAGE", "check_counts", "checked_source", "open_run", "restored", "usage_error"]

EXIT_USAGE = 2
# The folder of a run's best checkpoints, inside its checkpoints folder.
BEST = "best"


def checked_source(run_dir: RunDirectory, best: bool, action: str = "export") -> pathlib.Path:
    """Returns the checkpoint directory to ``action`` (export, evaluate), refusing a run that has none.

    Needs no TensorFlow.
    """
    if not run_dir.config.is_file():
        raise ValueError(f"{run_dir.path} holds no config.json; give the directory of a training run.")
    check_no_links(run_dir.path)
    source = run_dir.checkpoints / BEST if best else run_dir.checkpoints
    if not any(source.glob(f"{CHECKPOINT_PREFIX}-*.index")):
        if best:
            raise ValueError(
                f"{run_dir.path} has no best checkpoint ({source}); runs keep one when they monitor a value "
                f"(validation data, or --monitor). {action.capitalize()} the newest checkpoint: drop --best."
            )
        raise ValueError(f"{run_dir.path} has no checkpoint to {action}; train it first.")
    return source


def open_run(run_dir: RunDirectory, best: bool, action: str, trust_code: bool) -> TrainConfig:
    """Checks a run before TensorFlow loads and returns its config; raises ValueError for what cannot be done."""
    checked_source(run_dir, best, action)
    config = config_lib.load_run_config(run_dir.config, trust_code=trust_code)  # Refused before TensorFlow loads.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return config


@contextlib.contextmanager
def restored(run_dir: RunDirectory, best: bool, action: str, trust_code: bool) -> Iterator[tuple[TrainConfig, Trainer]]:
    """Yields the run's config and its trainer as its newest (or best) checkpoint left it, under the run's precision."""
    source = checked_source(run_dir, best, action)
    config = config_lib.load_run_config(run_dir.config, trust_code=trust_code)
    from aeloops.runs import experiment  # Deferred: imports TensorFlow.
    from aeloops.runs.checkpoints import Checkpointer

    with experiment.precision(config):
        trainer = experiment.build_trainer(config)
        Checkpointer(trainer, source, max_to_keep=1).restore()
        yield config, trainer


def check_counts(args: Any, names: Sequence[str], least: int = 1) -> None:
    """Refuses any of ``names`` (parsed arguments) below ``least``, naming its flag, what it must be and what it got."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < least:
            kind = "a non-negative" if least == 0 else "a positive"
            raise ValueError(f"--{name.replace('_', '-')} must be {kind} integer, got {value}.")


def usage_error(program: str, error: Exception) -> int:
    """Prints ``error`` as the one line a user's mistake gets, and returns the exit status for it (2)."""
    print(f"{program}: error: {' '.join(str(error).split())}", file=sys.stderr)
    return EXIT_USAGE
