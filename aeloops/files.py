"""How aeloops writes a file: through a fresh temporary file beside it and one rename, never through a link.

Every file aeloops writes (a run's JSON, its pictures, checkpoints' state,
the Projector's metadata, an export) goes through ``replacing``, so a crash
leaves the old file or the new one, never half of one, and a link planted in
a run (which may point anywhere) is refused rather than followed. Imports
nothing of aeloops: every part of the package may use it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pathlib
import shlex
import shutil
import tempfile
from collections.abc import Iterator

__all__ = [
    "WriteError",
    "cache_root",
    "check_no_links",
    "refuse_link",
    "remove_leftovers",
    "replacing",
    "replacing_directory",
]


class WriteError(RuntimeError):
    """A file could not be written (disk full, permissions); the message names it, the cause and what to do."""


def cache_root() -> pathlib.Path:
    """Returns aeloops' folder in the user's cache: ``$XDG_CACHE_HOME/aeloops``, by default ``~/.cache/aeloops``."""
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")) / "aeloops"


def refuse_link(path: str | os.PathLike) -> None:
    """Raises ``ValueError`` if ``path`` is a symbolic link: a write through it could land outside the run."""
    if os.path.islink(path):
        raise ValueError(
            f"{os.fsdecode(path)} is a symbolic link, and aeloops never writes through one (it may point outside "
            f"the run); remove it (rm -- {shlex.quote(os.fsdecode(path))}) or use another directory."
        )


def check_no_links(directory: str | os.PathLike) -> None:
    """Refuses a run directory holding a symbolic link anywhere inside it (it is not followed to look)."""
    for root, directories, files in os.walk(directory):  # os.walk follows no link by default.
        for name in [*directories, *files]:
            refuse_link(os.path.join(root, name))


@contextlib.contextmanager
def replacing(path: str | os.PathLike, suffix: str = ".partial") -> Iterator[pathlib.Path]:
    """Yields a new temporary file beside ``path`` to write; on success it replaces ``path`` in one rename.

    The temporary file is created with ``O_EXCL`` under a fresh name, so no
    planted link is followed, and ``path`` itself may not be a link. A crash
    or an error leaves ``path`` as it was and removes the temporary file; one
    a killed process left is removed by the next write of ``path``.
    """
    path = pathlib.Path(path)
    refuse_link(path)
    remove_leftovers(path, suffix)
    descriptor, name = tempfile.mkstemp(prefix=_prefix(path), suffix=suffix, dir=path.parent)
    os.close(descriptor)
    partial = pathlib.Path(name)
    try:
        yield partial
        refuse_link(path)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


@contextlib.contextmanager
def replacing_directory(path: str | os.PathLike, suffix: str = ".partial") -> Iterator[pathlib.Path]:
    """Yields a new temporary directory beside ``path`` to fill; on success it becomes ``path`` in one rename.

    A failure removes the temporary directory, and one a killed process
    left is removed by the next write of ``path``: nothing half-written
    stays behind.
    """
    path = pathlib.Path(path)
    refuse_link(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path, suffix)
    partial = pathlib.Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=suffix, dir=path.parent))
    try:
        yield partial
        os.replace(partial, path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _prefix(path: pathlib.Path) -> str:
    """The temporary name's start: hidden, the target's name, and the writing process (``.model.keras.4242-``)."""
    return f".{path.name}.{os.getpid()}-"


def remove_leftovers(path: str | os.PathLike, suffix: str = ".partial") -> list[pathlib.Path]:
    """Removes the temporary files and directories of writes of ``path`` whose process is gone; returns them.

    Only names ``replacing`` makes qualify, and only when the process
    named in them no longer runs on this machine: a write in progress is
    left alone. A link among them is removed, never followed.
    """
    path = pathlib.Path(path)
    removed = []
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*{glob.escape(suffix)}"):
        pid_text = leftover.name[len(path.name) + 2 :].split("-", 1)[0]
        if not pid_text.isdigit() or _running(int(pid_text)):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                leftover.unlink()
        removed.append(leftover)
    return removed


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (as far as a signal 0 can tell)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # Another user's process: it runs.
        return True
    return True
