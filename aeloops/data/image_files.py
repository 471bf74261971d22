"""Encoded images on disk, listed and measured before any is decoded: a folder's files or TFRecord shards.

``scan`` finds what a source holds and the shape its images decode to,
refusing in one line what cannot be read (an unreadable file, mixed sizes
without ``image_size``, a name TensorFlow cannot open, a decompression
bomb); ``aeloops.data.images`` decodes what it lists.

>>> files = scan("photos/", image_size=(64, 64))                 # doctest: +SKIP
>>> files.count, files.shape, files.class_names                  # doctest: +SKIP
(10000, (64, 64, 3), ('cats', 'dogs'))
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from aeloops.data.locate import (
    ASPECT_RATIOS,
    COLOR_MODES,
    IMAGE_EXTENSIONS,
    INTERPOLATIONS,
    source_kind,
    tfrecord_files,
)

__all__ = ["IMAGE_FEATURE", "LABEL_FEATURE", "ImageFiles", "check_options", "scan"]

# The features of a TFRecord's tf.train.Example: the encoded image, and optionally its int64 label.
IMAGE_FEATURE, LABEL_FEATURE = "image", "label"


@dataclasses.dataclass(frozen=True)
class ImageFiles:
    """Encoded images on disk (a folder's files or TFRecord shards) and the shape decoding them gives."""

    source: str
    kind: str  # "folder" or "tfrecord"
    paths: tuple[str, ...]  # The image files, or the shards.
    count: int
    shape: tuple[int, int, int]  # (height, width, channels) after decoding, resizing and colour conversion.
    resize: bool  # Whether decoded images are resized to ``shape``'s height and width.
    interpolation: str
    labels: np.ndarray | None = None  # A folder's class of each file.
    class_names: tuple[str, ...] = ()
    has_labels: bool = False  # A TFRecord's records hold a label.
    # How resizing meets another aspect ratio: "stretch" it, "crop" the centre to it, or "pad" to it with black.
    aspect_ratio: str = "stretch"


def check_options(
    image_size: Sequence[int] | None, color_mode: str | None, interpolation: str, aspect_ratio: str = "stretch"
) -> None:
    """Refuses an image size, colour mode, interpolation or aspect-ratio rule that is not one of the choices."""
    if image_size is not None and (len(image_size) != 2 or any(int(side) < 1 for side in image_size)):
        raise ValueError(f"image_size must be (height, width), two positive integers; got {image_size!r}.")
    if color_mode is not None and color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be one of {', '.join(COLOR_MODES)}; got {color_mode!r}.")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}.")
    if aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}; got {aspect_ratio!r}.")


def scan(
    path: str,
    image_size: Sequence[int] | None = None,
    color_mode: str | None = None,
    interpolation: str = "bilinear",
    *,
    aspect_ratio: str = "stretch",
) -> ImageFiles:
    """Lists a folder's images or a glob's TFRecord shards, and finds the shape they decode to.

    A folder's images are checked from their headers alone: an unreadable
    file, or sizes that differ without ``image_size``, are refused naming
    the files. TFRecord shards are counted and their first record decoded.

    Raises:
      ValueError: with what was wrong and how to fix it.
    """
    check_options(image_size, color_mode, interpolation, aspect_ratio)
    kind = source_kind(path)
    if kind == "folder":
        return dataclasses.replace(_scan_folder(path, image_size, color_mode, interpolation), aspect_ratio=aspect_ratio)
    if kind == "tfrecord":
        files = _scan_tfrecords(path, image_size, color_mode, interpolation)
        return dataclasses.replace(files, aspect_ratio=aspect_ratio)
    raise ValueError(f"{path} is neither a folder of images nor TFRecord shards.")


def _scan_folder(path: str, image_size: Sequence[int] | None, color_mode: str | None, interpolation: str) -> ImageFiles:
    from PIL import Image, UnidentifiedImageError  # Deferred: only folders need it.

    root = pathlib.Path(path)
    files = []
    # Links to folders are followed, as Keras's loaders follow them; a folder reached twice (a link
    # to an ancestor, say) is read once.
    seen = {os.path.realpath(root)}
    for directory, subdirectories, names in os.walk(root, followlinks=True):
        subdirectories.sort()  # os.walk descends in this list's order: sorted, so the order is the same everywhere.
        for subdirectory in list(subdirectories):
            real = os.path.realpath(os.path.join(directory, subdirectory))
            if real in seen:
                subdirectories.remove(subdirectory)
            seen.add(real)
        files += [pathlib.Path(directory, name) for name in sorted(names) if name.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise ValueError(
            f"{path} holds no images ({', '.join(extension[1:].upper() for extension in IMAGE_EXTENSIONS)} files, "
            "in it or in its subfolders)."
        )
    for file in files:  # TensorFlow takes file names as UTF-8 strings; another encoding cannot be opened.
        try:
            os.fspath(file).encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fspath(file).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise ValueError(
                f"{shown} has a name that is not UTF-8, which TensorFlow cannot open; rename it in UTF-8 "
                "(convmv -f latin1 -t utf8 --notest, say) or remove it (aeloops skips no image silently)."
            ) from None
    sizes, colour = {}, False
    for file in files:
        try:
            with Image.open(file) as image:  # Reads the header only.
                sizes.setdefault(image.size, file)
                colour = colour or image.mode not in ("1", "L", "LA", "I", "I;16", "F")
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise ValueError(
                f"{file} is not a readable image ({error}); remove or replace it (aeloops skips no image silently)."
            ) from None
        except Image.DecompressionBombError as error:  # Decoding it would take more memory than is sensible.
            pixels = re.search(r"\((\d+) pixels\)", str(error))
            size = f"{int(pixels[1]):,} pixels" if pixels else "too many pixels"
            raise ValueError(
                f"{file} has {size}, over the {2 * Image.MAX_IMAGE_PIXELS:,} Pillow decodes safely (a decompression "
                "bomb, or a huge image); resize it or remove it (aeloops skips no image silently)."
            ) from None
    if image_size is None and len(sizes) > 1:
        (first_size, first), (second_size, second) = list(sizes.items())[:2]
        raise ValueError(
            f"{path} holds images of different sizes ({first}: {first_size[0]}x{first_size[1]}, {second}: "
            f"{second_size[0]}x{second_size[1]}, width x height); give --image-size HEIGHT WIDTH to resize them all."
        )
    width, height = next(iter(sizes))
    channels = COLOR_MODES[color_mode or ("rgb" if colour else "grayscale")]
    relative = [file.relative_to(root) for file in files]
    # Classes as Keras infers them: the first level of subfolders, when every image lies in one.
    labels, class_names = None, ()
    if all(len(part.parts) > 1 for part in relative):
        class_names = tuple(sorted({part.parts[0] for part in relative}))
        index = {name: number for number, name in enumerate(class_names)}
        labels = np.array([index[part.parts[0]] for part in relative], np.int64)
    return ImageFiles(
        path, "folder", tuple(str(file) for file in files), len(files),
        (*(image_size or (height, width)), channels), image_size is not None, interpolation, labels, class_names,
    )  # fmt: skip


def _scan_tfrecords(
    path: str, image_size: Sequence[int] | None, color_mode: str | None, interpolation: str
) -> ImageFiles:
    shards = tfrecord_files(path)
    if not shards:
        raise ValueError(f"{path} matches no file; give TFRecord shards (a file, a glob or their folder).")
    try:
        records = tf.data.TFRecordDataset(shards)
        first = next(iter(records.take(1)), None)
        count = int(records.reduce(np.int64(0), lambda total, _: total + 1))
    except tf.errors.OpError as error:
        raise ValueError(f"Cannot read the TFRecord shards {path}: {error.message}") from None
    if first is None:
        raise ValueError(f"The TFRecord shards {path} hold no records.")
    try:
        example = tf.train.Example.FromString(first.numpy())
    except Exception:  # noqa: BLE001 - protobuf's DecodeError; any failure means the same.
        raise ValueError(f"{shards[0]}: its records are not tf.train.Example protos.") from None
    features = example.features.feature
    if IMAGE_FEATURE not in features or not features[IMAGE_FEATURE].bytes_list.value:
        raise ValueError(
            f"{shards[0]}: its records hold no {IMAGE_FEATURE!r} feature of encoded image bytes (they hold "
            f"{sorted(features)}); write each image's PNG or JPEG bytes under {IMAGE_FEATURE!r} and, optionally, "
            f"an int64 {LABEL_FEATURE!r}."
        )
    has_labels = LABEL_FEATURE in features and bool(features[LABEL_FEATURE].int64_list.value)
    try:
        decoded = tf.io.decode_image(features[IMAGE_FEATURE].bytes_list.value[0], expand_animations=False)
    except tf.errors.OpError as error:
        raise ValueError(f"{shards[0]}: the first record's image cannot be decoded ({error.message}).") from None
    height, width, found = (int(dim) for dim in decoded.shape)
    channels = COLOR_MODES[color_mode] if color_mode else (1 if found in (1, 2) else 3)
    return ImageFiles(
        path, "tfrecord", tuple(shards), count, (*(image_size or (height, width)), channels), image_size is not None,
        interpolation, has_labels=has_labels,
    )  # fmt: skip
