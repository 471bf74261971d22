"""The run directory: where a run leaves everything needed to inspect, repeat and resume it.

No TensorFlow here: the CLI checks the directory before training starts.

Layout::

    config.json          the resolved TrainConfig; ``--config`` it to repeat the run
    history.json         Keras-shaped history plus wall time and samples/s per epoch
    checkpoints/         tf.train.CheckpointManager checkpoints, for --resume; best/ the best one
    tensorboard/         event files: ``tensorboard --logdir <run>/tensorboard``
    reconstructions.png  test inputs above their reconstructions
    model.keras          the trained model, for keras.saving.load_model
    best.json            the monitored value's best epoch, and whether model.keras is the best or the last
    .lock                held by the process writing the run (see RunDirectory.lock)
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import pathlib
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

from aeloops.files import WriteError, check_no_links, refuse_link, replacing

try:
    import fcntl
except ImportError:  # Not POSIX: run directories are not locked.
    fcntl = None

__all__ = [
    "CHECKPOINT_PREFIX",
    "RunDirectory",
    "RunWriteError",
    "default_run_dir",
    "is_chief_task",
    "keep_aside",
    "read_tf_config",
    "strict_json",
    "task_address",
    "write_json",
    "writing",
]

LOCK_FILE = ".lock"
# What a run's checkpoints are named: ckpt-<step>.index and its data files, in checkpoints/.
CHECKPOINT_PREFIX = "ckpt"


def read_tf_config() -> dict[str, Any]:
    """Returns ``TF_CONFIG`` checked: a cluster of roles listing "host:port" addresses, and this task in it.

    ``{}`` without one. Whatever TensorFlow would trip over later (a task that
    is a list, an index that is not a number or not in the cluster) is one
    line naming TF_CONFIG and what to write instead.
    """
    text = os.environ.get("TF_CONFIG") or "{}"
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("TF_CONFIG is not valid JSON; see docs/scaling.md.") from None
    example = 'e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}'
    if not isinstance(tf_config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, {example}; got {text[:80]}.")
    cluster, task = tf_config.get("cluster") or {}, tf_config.get("task") or {}
    if not isinstance(cluster, dict) or not all(
        isinstance(addresses, list) and all(isinstance(address, str) for address in addresses)
        for addresses in cluster.values()
    ):
        raise ValueError(f'TF_CONFIG\'s "cluster" must map each role to a list of "host:port" strings, {example}.')
    if not isinstance(task, dict):
        raise ValueError(f'TF_CONFIG\'s "task" must be an object naming this process\'s role and index, {example}.')
    if task:
        role, index = task.get("type"), task.get("index", 0)
        if role not in cluster:
            raise ValueError(f'TF_CONFIG\'s task type {role!r} is not a role of its cluster ({", ".join(cluster)}).')
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[role]):
            raise ValueError(
                f'TF_CONFIG\'s task index must be a number from 0 to {len(cluster[role]) - 1} (this process\'s place '
                f'among the {len(cluster[role])} "{role}" addresses), got {index!r}.'
            )
    return tf_config


def task_address() -> str | None:
    """Returns this task's "host:port" in ``TF_CONFIG``'s cluster, or None without a task."""
    tf_config = read_tf_config()
    task = tf_config.get("task") or {}
    return tf_config["cluster"][task["type"]][task.get("index", 0)] if task else None


def is_chief_task() -> bool:
    """Returns whether this process writes the run directory under ``TF_CONFIG``.

    The chief does; so does worker 0 of a cluster without a chief (as
    ``MultiWorkerMirroredStrategy`` decides). Without ``TF_CONFIG``, this
    process is the only one.
    """
    tf_config = read_tf_config()
    task = tf_config.get("task") or {}
    if not task:
        return True
    if task["type"] == "chief":
        return True
    has_chief = bool(tf_config["cluster"].get("chief"))
    return task["type"] == "worker" and task.get("index", 0) == 0 and not has_chief


def worker_scratch_dir(run_dir: pathlib.Path) -> pathlib.Path:
    """Returns where a non-chief worker writes its own checkpoints: beside the run, not in it."""
    task = read_tf_config().get("task") or {}
    return run_dir.with_name(f"{run_dir.name}.{task.get('type', 'worker')}-{task.get('index', 0)}")


def default_run_dir(model: str, now: datetime.datetime | None = None) -> str:
    """Returns ``runs/<model>-<YYYYmmdd-HHMMSS>``."""
    now = now or datetime.datetime.now()
    return os.path.join("runs", f"{model}-{now:%Y%m%d-%H%M%S}")


class RunWriteError(WriteError):
    """A file of the run could not be written (disk full, permissions); the message names it and the cause."""


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turns an ``OSError`` raised while writing ``path`` into a ``RunWriteError`` naming the path and the cause."""
    try:
        yield
    except OSError as error:
        cause = error.strerror or str(error) or type(error).__name__
        raise RunWriteError(f"Cannot write {os.fsdecode(path)}: {cause}.") from None


def keep_aside(path: str | os.PathLike) -> pathlib.Path:
    """Renames a damaged file to ``<name>.damaged`` (``.damaged-2``, ... if taken) and returns the new path."""
    path = pathlib.Path(path)
    candidate, number = path.with_name(f"{path.name}.damaged"), 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}.damaged-{number}")
    os.replace(path, candidate)
    return candidate


def write_json(path: pathlib.Path, data: Any) -> None:
    """Writes ``data`` as strict JSON through a temporary file, so a crash never leaves half a file.

    Raises:
      RunWriteError: when the file cannot be written; ``path`` is left as it was.
      ValueError: when ``path`` is a symbolic link.
    """
    with writing(path), replacing(path) as partial:
        partial.write_text(json.dumps(strict_json(data), indent=2, sort_keys=True, allow_nan=False) + "\n",
                           encoding="utf-8")  # fmt: skip


def strict_json(data: Any) -> Any:
    """Returns ``data`` with NaN and infinities as None (null): strict JSON, which every parser reads."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {key: strict_json(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json(value) for value in data]
    return data


def _unwritable(directory: pathlib.Path) -> str | None:
    """Returns why a file cannot be created in ``directory`` (if it exists), or None.

    It tries, rather than asking ``os.access``: root passes every access
    check, yet a read-only or full file system still refuses the write.
    """
    if not directory.is_dir():
        return None
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        return error.strerror or type(error).__name__
    return None


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
        self.best = self.path / "best.json"

    def check_new(self) -> None:
        """Refuses a directory that already holds files: nothing saved is overwritten."""
        try:
            os.fsencode(self.path).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                f"Run directory {os.fsdecode(self.path)!r} is not valid UTF-8, which TensorBoard and "
                "TensorFlow's file functions need; choose another --run-dir."
            ) from None
        if self.path.exists() and (not self.path.is_dir() or self._holds_files()):
            raise ValueError(
                f"Run directory {self.path} already exists; pass --resume to continue it or choose another --run-dir."
            )

    def _holds_files(self) -> bool:
        # All a run leaves in a directory it gave up is its lock, as a plain file; anything else is someone's.
        return any(
            entry.name != LOCK_FILE or not entry.is_file(follow_symlinks=False) for entry in os.scandir(self.path)
        )

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Holds the run directory for this process, creating it if needed; refuses one another process holds.

        The lock is an ``flock`` on ``.lock``, which the operating system
        releases when its process ends, however it ends: a lock left by a
        killed run is simply taken over. A directory this call created and
        the run left empty is removed again.

        Raises:
          ValueError: naming the process that holds the directory.
        """
        created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            refuse_link(self.path / LOCK_FILE)
            # O_NOFOLLOW: a link planted in the instant since the check is refused, not followed.
            descriptor = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            handle = open(descriptor, "r+", encoding="utf-8")  # noqa: SIM115 - held until the end.
        except OSError as error:
            raise ValueError(f"Cannot write to run directory {self.path}: {error.strerror}.") from None
        held = False
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise ValueError(
                        f"Run directory {self.path} is in use by {holder}; wait for that run to end, or stop it "
                        "(it saves a checkpoint) and then --resume."
                    ) from None
            held = True
            handle.seek(0)
            handle.truncate()
            started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            handle.write(f"process {os.getpid()} on {socket.gethostname()} (since {started})\n")
            handle.flush()
            yield
        finally:
            # Emptied, not removed: another process may have it open, and must lock this same file.
            if held:
                with contextlib.suppress(OSError):
                    handle.truncate(0)
            handle.close()
            if created and self.path.is_dir() and not self._holds_files():
                (self.path / LOCK_FILE).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    self.path.rmdir()

    def create(self, config: dict[str, Any]) -> None:
        """Creates a new run directory holding ``config.json``."""
        self.check_new()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            write_json(self.config, config)
        except OSError as error:
            raise ValueError(f"Cannot write to run directory {self.path}: {error.strerror}.") from None

    def check_resumable(self) -> None:
        """Checks that this directory holds a run that ``--resume`` can continue.

        A run stopped before its first checkpoint was complete has nothing
        to lose: ``--resume`` starts it again from step 0 with its settings.
        """
        if not self.config.is_file():
            raise ValueError(f"Cannot resume {self.path}: it holds no config.json; give --run-dir of an earlier run.")
        check_no_links(self.path)
        for directory in (self.path, self.checkpoints, self.tensorboard):
            problem = _unwritable(directory)
            if problem:
                raise ValueError(f"Cannot resume {self.path}: {directory} is not writable ({problem}); fix that first.")

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
