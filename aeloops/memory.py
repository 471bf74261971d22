"""How much memory this machine has free: checked before aeloops allocates much, so a run too large is one line.

The kernel kills a process that outgrows memory without a word, often
after hours (a folder of 1000x1000 images decoded into memory, a model whose
optimizer state does not fit). Imports nothing of aeloops: data loading and
the run both use it.

>>> fits(10, "ten bytes", "fewer")   # nothing to refuse
"""

from __future__ import annotations

import os

__all__ = ["available_bytes", "fits", "gigabytes"]


def available_bytes() -> int | None:
    """Returns the memory the kernel says is available to new allocations (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gigabytes(size: float) -> str:
    """``12.3 GB``: a size for a message."""
    return f"{size / 1e9:.3g} GB"


def fits(needed: int, what: str, advice: str) -> None:
    """Raises ``ValueError`` saying what needs ``needed`` bytes and what to do, when more than is available."""
    available = available_bytes()
    if available is not None and needed > available:
        raise ValueError(
            f"{what} need about {gigabytes(needed)} of memory, and this machine has {gigabytes(available)} available; "
            f"{advice}."
        )
