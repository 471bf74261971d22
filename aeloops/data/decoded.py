"""Decoded images kept on local disk: a folder or TFRecord shards decoded once, then read by row every epoch.

On two cores, decoding a folder of PNGs each epoch costs about as much as
training on them (benchmarks/RESULTS.md). A stream given a cache directory
decodes its files once into one ``.npy`` there, and from then on reads each
batch's rows with ``os.pread``. Rows are stored as decoding gives them
(uint8 when every value is an exact ``k / 255``, else float32), so training
from the cache gives the very numbers decoding gives. The cache is named by
a fingerprint of the files and the decoding options, so a second run or a
resume on the same files reuses it, and changed files get a new one. Its
SHA-256, taken as it is written, is checked whenever it is reused: a cache
whose bytes changed since (a disk fault, an edit that kept its size and
time) is decoded again, never trained on. Checking reads the whole file once
per run, at about 1 GB/s here (``benchmarks/RESULTS.md``).

>>> cached = decoded_images(scan("photos/"), "/scratch/aeloops-cache")  # doctest: +SKIP
>>> ImageStream(scan("photos/"), 128, (64, 64, 3), cache="/scratch/aeloops-cache")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import os
import pathlib
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow as tf

from aeloops.data.arrays import npy_header
from aeloops.data.image_files import ImageFiles
from aeloops.data.images import decode_failure, image_dataset
from aeloops.data.npy_rows import RowReader
from aeloops.files import WriteError, replacing

__all__ = ["CacheWriteError", "DecodedImages", "cache_name", "decoded_images", "file_digest"]

# Images decoded per tf.data batch while the cache is written.
_WRITE_BATCH = 256
# Bytes hashed at a time when a cache is checked.
_CHUNK = 1 << 24


class CacheWriteError(WriteError):
    """The cache directory cannot take the decoded images (full, read-only); the message says which and what to do."""


@dataclasses.dataclass(frozen=True)
class DecodedImages:
    """A ``.npy`` of every image of a source, decoded, in the source's order."""

    path: str
    shard_counts: tuple[int, ...]  # Records in each TFRecord shard, in the source's order; () for a folder.

    def reader(self) -> RowReader:
        """Returns a reader of the cache's rows by index."""
        return RowReader(self.path)


def cache_name(files: ImageFiles) -> str:
    """Returns the cache's file stem for ``files``: a hash of their names, sizes, times and decoding options."""
    digest = hashlib.sha256()
    options = [files.kind, files.count, list(files.shape), files.resize, files.interpolation]
    if files.aspect_ratio != "stretch":  # Named so only when it differs: older caches keep their names.
        options.append(files.aspect_ratio)
    digest.update(json.dumps(options).encode())
    for path in files.paths:
        status = os.stat(path)
        digest.update(f"{os.path.abspath(path)}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return f"decoded-{digest.hexdigest()[:24]}"


def decoded_images(
    files: ImageFiles, directory: str | os.PathLike, log: Callable[[str], None] | None = None
) -> DecodedImages:
    """Returns the cache of ``files`` in ``directory``, decoding them into it first when it is not there.

    The ``.npy`` and its description are each written through a temporary
    file and one rename, so an interrupted write leaves no cache that looks
    whole; the description, written last, is what marks it done.
    """
    directory = pathlib.Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"--cache {directory} is a file; give a directory for the decoded images.")
    with _cache_writes(directory):
        directory.mkdir(parents=True, exist_ok=True)
    stem = cache_name(files)
    array_path, description_path = directory / f"{stem}.npy", directory / f"{stem}.json"
    found, problem = _existing(files, array_path, description_path)
    if found is not None:
        return found
    if log is not None:
        why = f"{array_path} {problem}; decoding" if problem else "Decoding"
        log(f"{why} {files.count:,} images of {files.source} once into {array_path}; later epochs and runs "
            "read them from there.")  # fmt: skip
    shard_counts = _shard_counts(files)
    with _cache_writes(directory):
        try:  # Resized values are no longer multiples of 1/255; converted ones are found out while writing.
            digest = _write(files, array_path, np.float32 if files.resize else np.uint8)
        except _NotExactError:
            digest = _write(files, array_path, np.float32)
        description = {"source": files.source, "count": files.count, "shape": list(files.shape),
                       "shard_counts": list(shard_counts), "sha256": digest}  # fmt: skip
        with replacing(description_path) as partial:
            partial.write_text(json.dumps(description, indent=2) + "\n")
    return DecodedImages(str(array_path), shard_counts)


@contextlib.contextmanager
def _cache_writes(directory: pathlib.Path) -> Iterator[None]:
    """Turns an OSError while writing the cache into one ``CacheWriteError`` line saying what to do."""
    try:
        yield
    except CacheWriteError:
        raise
    except OSError as error:
        cause = os.strerror(error.errno) if error.errno else str(error)
        advice = "free space there" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
        raise CacheWriteError(
            f"Cannot write the decoded images in --cache {directory}: {cause}. Nothing of the run was changed; "
            f"{advice}, give another --cache DIR, or leave --cache out to decode the images every epoch.",
        ) from None


def file_digest(path: str | os.PathLike) -> str:
    """Returns the SHA-256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _existing(
    files: ImageFiles, array_path: pathlib.Path, description_path: pathlib.Path
) -> tuple[DecodedImages | None, str | None]:
    """Returns the cache already written for ``files`` (or None), and why a cache that is there cannot be used."""
    if not (array_path.is_file() and description_path.is_file()):
        return None, None  # None yet, or a write that did not finish: its description comes last.
    try:
        description = json.loads(description_path.read_text())
        shape, _, _ = npy_header(array_path)  # The header only: no descriptor left open.
    except (OSError, ValueError):
        return None, "cannot be read"
    if description.get("count") != files.count or list(shape) != [files.count, *files.shape]:
        return None, "does not hold these images"
    if description.get("sha256") != file_digest(array_path):
        return None, "does not match what was decoded into it (changed since, or written without a checksum)"
    return DecodedImages(str(array_path), tuple(description.get("shard_counts", ()))), None


def _shard_counts(files: ImageFiles) -> tuple[int, ...]:
    if files.kind != "tfrecord":
        return ()
    return tuple(int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda total, _: total + 1))
                 for path in files.paths)  # fmt: skip


class _NotExactError(Exception):
    """Decoded values that uint8 cannot hold exactly (resized or colour-converted ones)."""


def _write(files: ImageFiles, path: pathlib.Path, dtype: type) -> str:
    """Writes every decoded image of ``files`` as ``dtype``; returns the file's SHA-256.

    Raises ``_NotExactError`` if uint8 would round the images.
    """
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": (files.count, *files.shape)}  # fmt: skip
    written = 0
    with replacing(path) as partial, open(partial, "wb") as file:
        stream = _Hashing(file)
        np.lib.format.write_array_header_2_0(stream, header)
        try:
            for batch in image_dataset(files).batch(_WRITE_BATCH).prefetch(2):
                images = batch.numpy()
                if dtype == np.uint8:
                    levels = np.round(images * 255).astype(np.uint8)
                    # Read back as the stream reads it: exact only if that gives these very floats.
                    if not np.array_equal(levels.astype(np.float32) / np.float32(255), images):
                        raise _NotExactError
                    images = levels
                stream.write(np.ascontiguousarray(images, dtype).tobytes())
                written += len(images)
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(decode_failure(files, written, error)) from None
        if written != files.count:
            raise ValueError(f"{files.source} changed while it was decoded: {files.count} images listed, "
                             f"{written} read.")  # fmt: skip
    return stream.digest.hexdigest()


class _Hashing(io.RawIOBase):
    """A file being written that hashes what goes through it."""

    def __init__(self, file: io.BufferedWriter) -> None:
        self.file = file
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.file.write(data)
