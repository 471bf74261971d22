"""How aeloops writes a file: through a fresh temporary file beside it and one rename, never through a link.

Every file aeloops writes (a run's JSON, its pictures, checkpoints' state,
the Projector's metadata, an export) goes through ``replacing``, so a crash
leaves the old file or the new one, never half of one, and a link planted in
a run (which may point anywhere) is refused rather than followed. Imports
nothing of aeloops: every part of the package may use it.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shlex
import tempfile
from collections.abc import Iterator

__all__ = ["WriteError", "check_no_links", "refuse_link", "replacing"]


class WriteError(RuntimeError):
    """A file could not be written (disk full, permissions); the message names it, the cause and what to do."""


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
    or an error leaves ``path`` as it was and removes the temporary file.
    """
    path = pathlib.Path(path)
    refuse_link(path)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(descriptor)
    partial = pathlib.Path(name)
    try:
        yield partial
        refuse_link(path)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
