"""A checkpoint directory's files, read without the model: what is there, what loads, what is damaged.

A resume must tell a damaged checkpoint from one that does not fit the
model before it advises anything, and must never advise removing a
checkpoint that loads. These functions look at the files alone:

>>> numbers("runs/x/checkpoints")                 # doctest: +SKIP
[0, 19, 38]
>>> damage("runs/x/checkpoints/ckpt-38")          # None: every tensor reads  # doctest: +SKIP
>>> repair_state_file("runs/x/checkpoints")       # the 'checkpoint' file, rebuilt if needed  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import shutil
from collections.abc import Iterator

import tensorflow as tf

from aeloops.files import replacing
from aeloops.runs.directory import CHECKPOINT_PREFIX, keep_aside

__all__ = [
    "RECORD_KEY",
    "check_state_file",
    "damage",
    "first_line",
    "numbers",
    "quiet_tensorflow_logs",
    "read_record",
    "repair_state_file",
]

PREFIX = CHECKPOINT_PREFIX
STATE_FILE = "checkpoint"
# Where a checkpoint keeps its run record (aeloops.runs.checkpoints.Checkpointer).
RECORD_KEY = "run_record/.ATTRIBUTES/VARIABLE_VALUE"
_INDEX = re.compile(rf"^{PREFIX}-(\d+)\.index$")


def _names(directory: str | os.PathLike) -> list[str]:
    """The names in ``directory``; none when it cannot be listed (missing, say)."""
    try:
        return os.listdir(directory)
    except OSError:
        return []


def numbers(directory: str | os.PathLike) -> list[int]:
    """Returns the numbers of the checkpoints whose index file is in ``directory``, oldest first."""
    return sorted(int(match.group(1)) for match in map(_INDEX.match, _names(directory)) if match)


_DATA = re.compile(rf"^{PREFIX}-(\d+)\.data-\d+-of-\d+$")
# What TensorFlow writes a sharded save into before merging it: left behind when the save is killed.
_TEMPORARY = re.compile(rf"^{PREFIX}-\d+_temp$")


def remove_temporary(directory: str | os.PathLike) -> list[str]:
    """Removes the folders of saves that were killed before they merged (``ckpt-0_temp/``); returns their names."""
    removed = []
    for name in filter(_TEMPORARY.match, _names(directory)):
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return removed


def orphans(directory: str | os.PathLike) -> list[int]:
    """Returns the numbers of checkpoints whose data files are in ``directory`` without their index, oldest first.

    Such a checkpoint lost its index (the advice for a damaged checkpoint
    moves both aside): it is damaged, not gone.
    """
    indexed = set(numbers(directory))
    return sorted({int(match.group(1)) for match in map(_DATA.match, _names(directory)) if match} - indexed)


def damage(prefix: str) -> str | None:
    """Returns what makes checkpoint ``prefix`` unreadable, or None when every tensor in it reads back."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as error:  # noqa: BLE001 - a damaged file raises whatever its reader trips on.
        return first_line(error)
    return None


def read_record(prefix: str) -> dict | None:
    """Returns the run record saved in checkpoint ``prefix``, or None when it has none.

    Raises:
      ValueError: when the checkpoint cannot be read at all.
    """
    try:
        reader = tf.train.load_checkpoint(prefix)
        if not reader.has_tensor(RECORD_KEY):
            return None
        text = reader.get_tensor(RECORD_KEY)
    # A truncated data file makes TensorFlow's reader raise IndexError ("Read less bytes than requested").
    except (tf.errors.OpError, OSError, IndexError) as error:
        raise ValueError(first_line(error)) from None
    text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        raise ValueError("its run record is not valid JSON") from None


def check_state_file(directory: str | os.PathLike) -> None:
    """Refuses a ``checkpoint`` state file that lists anything but checkpoints of ``directory`` itself.

    ``tf.train.CheckpointManager`` adopts every path the list names, wherever
    it points, and deletes the oldest when it prunes; a restore reads the
    newest. A run directory may come from someone else, so its list is read
    first: every entry must be a ``ckpt-N`` of ``directory`` (relative entries
    are read from ``directory``, as TensorFlow reads them, links resolved). An unreadable list
    passes here: ``repair_state_file`` rebuilds it from the files on disk.

    Raises:
      ValueError: naming the list, the entry, and how to go on safely.
    """
    state_path = os.path.join(directory, STATE_FILE)
    if not os.path.isfile(state_path):
        return
    try:
        with quiet_tensorflow_logs():
            state = tf.train.get_checkpoint_state(os.fspath(directory))
    except (tf.errors.OpError, ValueError, UnicodeDecodeError):
        return
    if state is None:
        return
    home = os.path.realpath(directory)
    for entry in [state.model_checkpoint_path, *state.all_model_checkpoint_paths]:
        path = os.path.realpath(entry)  # TensorFlow has put a relative entry under ``directory`` already.
        if os.path.dirname(path) != home or not re.fullmatch(rf"{PREFIX}-\d+", os.path.basename(path)):
            aside = f"{state_path}.untrusted"
            raise ValueError(
                f"The checkpoint list {state_path} names {entry!r}, which is not a checkpoint of {directory} "
                f"({PREFIX}-N there); aeloops reads and deletes nothing a list names elsewhere, and nothing was "
                "changed. To go on with the checkpoints that are in the directory, move the list aside (it is "
                f"rebuilt from them): mv {shlex.quote(state_path)} {shlex.quote(aside)}"
            )


def repair_state_file(directory: str | os.PathLike) -> str | None:
    """Rebuilds ``directory``'s ``checkpoint`` state file from the checkpoints on disk, if it needs it.

    The state file lists the checkpoints ``tf.train.CheckpointManager``
    knows of. When it is missing, unreadable, or names no checkpoint that
    exists, while checkpoint files are present, a new one lists them all
    (oldest first); an unreadable one is kept as ``checkpoint.damaged``.
    Returns a sentence saying what was done, or None if nothing was.
    """
    found = numbers(directory)
    if not found:
        return None
    state_path = os.path.join(directory, STATE_FILE)
    problem = _state_problem(directory, state_path)
    if problem is None:
        return None
    kept = ""
    if os.path.exists(state_path):
        kept = f" (the old one is kept as {os.path.basename(keep_aside(state_path))})"
    # The CheckpointState text format tf.train.CheckpointManager writes, paths relative to the directory.
    # The manager takes only checkpoints newer than last_preserved_timestamp as its own (to prune them).
    names = [f"{PREFIX}-{number}" for number in found]
    times = [os.path.getmtime(os.path.join(directory, f"{name}.index")) for name in names]
    lines = [
        f'model_checkpoint_path: "{names[-1]}"',
        *(f'all_model_checkpoint_paths: "{name}"' for name in names),
        *(f"all_model_checkpoint_timestamps: {time!r}" for time in times),
        f"last_preserved_timestamp: {min(times) - 1.0!r}",
    ]
    with replacing(state_path) as partial:
        partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f"The checkpoint list {state_path} {problem}; rebuilt it from the {len(found)} checkpoint(s) on disk{kept}."


def _state_problem(directory: str | os.PathLike, state_path: str) -> str | None:
    """Returns what is wrong with the state file, or None if it names an existing checkpoint."""
    if not os.path.exists(state_path):
        return "was missing"
    try:
        with quiet_tensorflow_logs():  # It logs a parse error as two warnings; the caller says it in one line.
            state = tf.train.get_checkpoint_state(os.fspath(directory))
    except (tf.errors.OpError, ValueError, UnicodeDecodeError) as error:
        return f"was unreadable ({first_line(error)})"
    if state is None or not state.model_checkpoint_path:
        return "was unreadable"
    listed = [*state.all_model_checkpoint_paths, state.model_checkpoint_path]
    # Listed paths are read relative to the directory, as the manager does.
    if not any(os.path.exists(os.path.join(directory, f"{os.path.basename(path)}.index")) for path in listed):
        return "named no checkpoint on disk"
    return None


@contextlib.contextmanager
def quiet_tensorflow_logs() -> Iterator[None]:
    """Hides TensorFlow's Python warnings for a moment, where aeloops reports the problem itself."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def first_line(error: BaseException) -> str:
    """Returns the first line of ``error``'s message (at most 300 characters), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
