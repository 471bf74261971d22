"""XLA's persistent compilation cache, shared by every run on a machine.

An XLA-compiled training loop is compiled once per machine rather than once
per run: XLA writes each executable it compiles to a file named by a hash of
its HLO program and reads it back when a later process compiles the same
program (``--tf_xla_persistent_cache_directory``). The cache lives in

    $XDG_CACHE_HOME/aeloops/xla/tf-<TensorFlow version>-<CPU key>/

(``~/.cache`` when ``XDG_CACHE_HOME`` is unset). The version and the CPU's
feature flags name the directory because XLA's own key checks neither: an
executable built for another TensorFlow or another CPU (a home directory
shared between machines) is never loaded. A changed model, batch size, mode
or ``steps_per_loop`` is a different program, so a different file. The cache
is pruned to ``LIMIT_BYTES`` (oldest files first) when enabled; deleting the
directory is always safe.

Graph mode has nothing to cache across processes: TensorFlow traces Python
code in every process. Only the XLA compilation is saved.

>>> directory = enable()        # before the first XLA compilation  # doctest: +SKIP
>>> directory.name              # doctest: +SKIP
'tf-2.21.0-6f1c0a2e9b3d'
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import tempfile
import time
from pathlib import Path

from aeloops.files import cache_root

__all__ = ["DISABLE_VARIABLE", "LIMIT_BYTES", "cache_directory", "enable", "machine_key", "prune"]

# Set to 1 to compile without the persistent cache.
DISABLE_VARIABLE = "AELOOPS_NO_COMPILE_CACHE"
# The cache's size cap. One loop of a seed model takes 0.5 to 3 MB.
LIMIT_BYTES = 512 * 1024 * 1024
_FLAG = "--tf_xla_persistent_cache_directory"
# A temporary file XLA left behind (a process killed while writing) is removed after this long.
_STALE_SECONDS = 24 * 3600


def machine_key() -> str:
    """Returns a short hash of this machine's architecture, CPU model and CPU feature flags."""
    described = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                name = line.partition(":")[0].strip()
                if name in ("model name", "flags", "Features", "CPU part"):
                    described.append(line.strip())
                elif not line.strip() and len(described) > 2:
                    break  # The first processor's block describes them all.
    except OSError:
        pass  # Not Linux: the architecture and processor name are what there is.
    return hashlib.sha256("\n".join(described).encode()).hexdigest()[:12]


def cache_directory() -> Path:
    """Returns this machine's and this TensorFlow's cache directory (not created)."""
    try:
        version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return cache_root() / "xla" / f"tf-{version}-{machine_key()}"


def enable(directory: str | os.PathLike | None = None) -> Path | None:
    """Points XLA's persistent cache at ``directory`` (default ``cache_directory()``); returns it.

    Call it before TensorFlow compiles anything with XLA: XLA reads its flags
    once. Returns None, changing nothing, when ``AELOOPS_NO_COMPILE_CACHE=1``,
    when ``TF_XLA_FLAGS`` already names a cache directory (the user's wins),
    or when the directory cannot be written (XLA would then fail the
    compilation rather than skip the cache).
    """
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if os.environ.get(DISABLE_VARIABLE) == "1" or _FLAG in flags:
        return None
    path = Path(directory) if directory is not None else cache_directory()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass  # A real write: os.access says yes to root whatever the file system says.
    except OSError:
        return None
    prune(path)
    os.environ["TF_XLA_FLAGS"] = f"{flags} {_FLAG}={path}".strip()
    return path


def prune(directory: str | os.PathLike, limit_bytes: int = LIMIT_BYTES) -> int:
    """Removes the oldest cache files until ``directory`` holds at most ``limit_bytes``; returns bytes freed.

    Temporary files older than a day (left by a process killed while
    writing) go first. Files another process removes meanwhile are skipped.
    """
    entries = []
    freed = 0
    now = time.time()
    for path in Path(directory).iterdir():
        try:
            status = path.stat()
        except OSError:
            continue
        if path.name.endswith(".tmp") and now - status.st_mtime > _STALE_SECONDS:
            freed += _remove(path, status.st_size)
        elif path.is_file() and path.suffix == ".pb":
            entries.append((status.st_mtime, status.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= limit_bytes:
            break
        removed = _remove(path, size)
        freed += removed
        total -= size
    return freed


def _remove(path: Path, size: int) -> int:
    try:
        path.unlink()
    except OSError:
        return 0
    return size
