"""The run directory: where a run leaves everything needed to inspect, repeat and resume it.

No TensorFlow here: the CLI checks the directory before training starts.

Layout::

    config.json          the resolved TrainConfig; ``--config`` it to repeat the run
    history.json         Keras-shaped history plus wall time and samples/s per epoch
    checkpoints/         tf.train.CheckpointManager checkpoints, for --resume
    tensorboard/         event files: ``tensorboard --logdir <run>/tensorboard``
    reconstructions.png  test inputs above their reconstructions
    model.keras          the trained model, for keras.saving.load_model
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
from typing import Any

__all__ = ["RunDirectory", "default_run_dir", "is_chief_task", "write_json"]


def is_chief_task() -> bool:
    """Returns whether this process writes the run directory under ``TF_CONFIG``.

    The chief does; so does worker 0 of a cluster without a chief (as
    ``MultiWorkerMirroredStrategy`` decides). Without ``TF_CONFIG``, this
    process is the only one.
    """
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError:
        raise ValueError("TF_CONFIG is not valid JSON; see the README's 'Scaling out' section.") from None
    task = tf_config.get("task") or {}
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    has_chief = bool((tf_config.get("cluster") or {}).get("chief"))
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and not has_chief


def worker_scratch_dir(run_dir: pathlib.Path) -> pathlib.Path:
    """Returns where a non-chief worker writes its own checkpoints: beside the run, not in it."""
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {}
    return run_dir.with_name(f"{run_dir.name}.{task.get('type', 'worker')}-{task.get('index', 0)}")


def default_run_dir(model: str, now: datetime.datetime | None = None) -> str:
    """Returns ``runs/<model>-<YYYYmmdd-HHMMSS>``."""
    now = now or datetime.datetime.now()
    return os.path.join("runs", f"{model}-{now:%Y%m%d-%H%M%S}")


def write_json(path: pathlib.Path, data: Any) -> None:
    """Writes ``data`` as JSON through a temporary file, so a crash never leaves half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(partial, path)


class RunDirectory:
    """Paths of one run and the checks that keep earlier runs safe."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path)
        self.config = self.path / "config.json"
        self.history = self.path / "history.json"
        self.checkpoints = self.path / "checkpoints"
        self.tensorboard = self.path / "tensorboard"
        self.reconstructions = self.path / "reconstructions.png"
        self.model = self.path / "model.keras"

    def check_new(self) -> None:
        """Refuses a directory that already holds files: nothing saved is overwritten."""
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise ValueError(
                f"Run directory {self.path} already exists; pass --resume to continue it or choose another --run-dir."
            )

    def create(self, config: dict[str, Any]) -> None:
        """Creates a new run directory holding ``config.json``."""
        self.check_new()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            write_json(self.config, config)
        except OSError as error:
            raise ValueError(f"Cannot write to run directory {self.path}: {error.strerror}.") from None

    def check_resumable(self) -> None:
        """Checks that this directory holds a run that ``--resume`` can continue."""
        if not self.config.is_file():
            raise ValueError(f"Cannot resume {self.path}: it holds no config.json; give --run-dir of an earlier run.")
        if not (self.checkpoints / "checkpoint").is_file():
            raise ValueError(
                f"Cannot resume {self.path}: it stopped before training began and has no checkpoint; "
                "remove it or choose another --run-dir to start again."
            )
        if not os.access(self.path, os.W_OK):
            raise ValueError(f"Cannot resume {self.path}: the directory is not writable.")

    def read_history(self) -> dict[str, list[float]]:
        """Returns the saved history, or an empty one."""
        if not self.history.is_file():
            return {}
        try:
            history = json.loads(self.history.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"Cannot read {self.history}: {error}.") from None
        if not isinstance(history, dict):
            raise ValueError(f"{self.history} does not hold a history table.")
        return history
