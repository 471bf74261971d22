"""What a CLI run's checkpoints record of it, and the checks ``--resume`` makes against that record.

Every checkpoint of ``python -m aeloops.train`` carries the settings it was
trained with, a fingerprint of its data and the history up to its step. A
resume refuses config.json or data that no longer match (a resumed run
would silently train something else), and takes the history from the
checkpoint, so history.json always matches the weights.

>>> fingerprint(np.zeros((2, 3), np.float32))["shape"]
[2, 3]
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from aeloops.runs.checkpoints import Checkpointer
from aeloops.runs.config import RESUMABLE_CHANGES, VERSIONS_KEY
from aeloops.runs.directory import RunDirectory, keep_aside, strict_json, write_json

__all__ = ["check_against", "fingerprint", "restore", "settings"]

# Settings a resume may change, beyond how a run is watched: the data's path
# (its content is fingerprinted) and the mode (it changes speed, not the math).
_UNCHECKED = RESUMABLE_CHANGES | {"run_dir", "dataset", "data_dir", "mode", VERSIONS_KEY}


def fingerprint(images: np.ndarray | None) -> dict[str, Any] | None:
    """Returns the shape, dtype and SHA-256 of ``images``' bytes (about 0.2 s for MNIST's 60,000)."""
    if images is None:
        return None
    contiguous = np.ascontiguousarray(images)
    return {
        "shape": list(contiguous.shape),
        "dtype": str(contiguous.dtype),
        "sha256": hashlib.sha256(memoryview(contiguous).cast("B")).hexdigest(),
    }


def settings(saved_config: Mapping[str, Any]) -> dict[str, Any]:
    """Returns the settings of config.json that decide what a run computes."""
    return {name: value for name, value in saved_config.items() if name not in _UNCHECKED}


def check_against(record: Mapping[str, Any], current: Mapping[str, Any], checkpoint: str, config_path: str) -> None:
    """Refuses a resume whose settings or data differ from what ``checkpoint`` was trained with.

    ``record`` and ``current`` hold ``settings``, ``data`` and
    ``dataset`` entries: the checkpoint's and the run's now.

    Raises:
      ValueError: naming the first difference and how to resume anyway.
    """
    saved, now = record.get("settings") or {}, current["settings"]
    for name in sorted(set(saved) | set(now)):
        if saved.get(name) != now.get(name):
            raise ValueError(
                f"{config_path} says {name} = {_shown(now.get(name))}, but {checkpoint} was trained with "
                f"{name} = {_shown(saved.get(name))}; set it back to resume, or start a new run "
                f"(--config {config_path} --run-dir <new>) to train with the new value."
            )
    for split in ("train", "validation"):
        before, after = (record.get("data") or {}).get(split), current["data"].get(split)
        if before == after:
            continue
        what = "training" if split == "train" else "validation"
        if before is None or after is None:
            change = "was absent then" if before is None else "is absent now"
        elif before["shape"] != after["shape"] or before["dtype"] != after["dtype"]:
            then, now_ = (f"{tuple(side['shape'])} ({side['dtype']})" for side in (before, after))
            change = f"had shape {then}, now {now_}"
        else:
            change = "has the same shape but other values"
        raise ValueError(
            f"The {what} data of {current['dataset']} changed since {checkpoint} was saved: it {change}. "
            "Put the original data back to resume, or start a new run on the new data."
        )


def _shown(value: Any) -> str:
    return "None (the default)" if value is None else repr(value)


def restore(
    checkpointer: Checkpointer,
    record: dict,
    history: dict[str, list[float]],
    run_dir: RunDirectory,
    chief: bool,
    log: Callable[[str], None],
) -> None:
    """Restores the newest checkpoint after checking it against the run now, ``history`` (tracked) with it.

    The checkpoint's history is the record: history.json, if missing,
    damaged or ahead of the checkpoint (a kill between the two writes),
    is rewritten from it; a damaged one is kept as history.json.damaged.
    """
    if checkpointer.repair:
        log(checkpointer.repair)
    latest = checkpointer.latest_to_restore
    if latest is None:
        raise ValueError(f"Cannot resume {run_dir.path}: it has no checkpoint yet.")
    saved = (checkpointer.read_latest_record() or {}).get("metadata")
    if saved:
        check_against(saved, record, os.path.basename(latest), str(run_dir.config))
    checkpointer.restore()  # Refills the tracked history in place.
    if not saved or "history" not in saved:  # A checkpoint without a record: history.json is all there is.
        history.update(run_dir.read_history())
        return
    if not chief:
        return
    if not run_dir.history.exists():
        log(f"history.json was missing; rebuilt it from {os.path.basename(latest)}.")
        write_json(run_dir.history, history)
        return
    try:
        written = run_dir.read_history()
    except ValueError as error:
        kept = keep_aside(run_dir.history)
        log(f"{error} Kept it as {kept.name} and rebuilt history.json from {os.path.basename(latest)}.")
        written = None
    record_now = json.loads(json.dumps(strict_json(history)))
    if written is not None and written != record_now and not _ahead(written, record_now):
        # Not a kill between the two writes: someone edited it. Keep their version, as a damaged one is kept.
        kept = keep_aside(run_dir.history)
        log(f"{run_dir.history} differs from the record in {os.path.basename(latest)}; kept it as {kept.name} "
            "and rewrote history.json from the checkpoint.")  # fmt: skip
    if written != record_now:
        write_json(run_dir.history, history)


def _ahead(written: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether ``written`` is ``record`` plus later rows: history.json written, then the process killed."""
    return set(written) == set(record) and all(
        isinstance(written[name], list) and written[name][: len(values)] == values for name, values in record.items()
    )
