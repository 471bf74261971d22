"""Images in their own shape from a folder of image files, TFRecord shards or NumPy arrays.

Every source comes out as float32 in [0, 1], shaped (n, height, width,
channels): resized to ``image_size`` when given (with ``interpolation``), and
converted to ``color_mode`` (``"grayscale"`` or ``"rgb"``) when given.

>>> data = load_images("photos/", image_size=(64, 64), color_mode="rgb", validation_split=0.1)  # doctest: +SKIP
>>> data.train.shape, data.class_names                                                       # doctest: +SKIP
((9000, 64, 64, 3), ('cats', 'dogs'))
>>> dataset = image_dataset("shards/train-*.tfrecord", image_size=(32, 32))  # streamed, unbatched  # doctest: +SKIP

A folder is read as ``keras.utils.image_dataset_from_directory`` reads one:
PNG, JPEG, BMP and GIF files (a GIF's first frame) at any depth, in sorted
order; when every image lies in a subfolder, the first level of subfolders
are classes, labelled 0, 1, ... in sorted order. A TFRecord file holds
``tf.train.Example`` records with the encoded image under ``image`` and,
optionally, an int64 ``label``, as TensorFlow Datasets writes them.
Listing a source and checking it before decoding is
``aeloops.data.image_files.scan``.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from aeloops.data.arrays import image_shape, load_array_file, to_model_inputs
from aeloops.data.image_files import IMAGE_FEATURE, LABEL_FEATURE, ImageFiles, check_options, scan
from aeloops.data.locate import (
    COLOR_MODES,
    source_kind,
)
from aeloops.memory import fits

__all__ = [
    "ImageData",
    "ImageFiles",
    "color_mode_of",
    "convert",
    "decode_failure",
    "image_dataset",
    "load_images",
    "read_source",
    "scan",
    "split_indices",
]

# Images decoded per tf.data batch when a source is read into memory.
_READ_BATCH = 256


class ImageData(NamedTuple):
    """Training and validation images, float32 (n, height, width, channels) in [0, 1], and their labels."""

    train: np.ndarray
    validation: np.ndarray | None
    train_labels: np.ndarray | None
    validation_labels: np.ndarray | None
    class_names: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Returns one image's (height, width, channels)."""
        return tuple(int(dim) for dim in self.train.shape[1:])


def _decoder(files: ImageFiles):
    """Returns a function from encoded bytes to a float32 (height, width, channels) image in [0, 1]."""
    height, width, channels = files.shape

    def decode(contents: tf.Tensor) -> tf.Tensor:
        # Decoded with its own channels, then converted: decode_image cannot turn RGBA into grey.
        image = tf.io.decode_image(contents, expand_animations=False, dtype=tf.uint8)
        # Divided as to_model_inputs divides arrays, so a folder and an array of the same images agree to the bit.
        image = convert_channels(tf.cast(image, tf.float32) / 255.0, channels)
        if files.resize:
            image = resize(image, (height, width), files.interpolation, files.aspect_ratio)
        # Every image must decode to the shape the scan found; a differing one fails here, not in a batch.
        return tf.ensure_shape(image, files.shape)

    return decode


def resize(images: tf.Tensor, size: Sequence[int], interpolation: str, aspect_ratio: str = "stretch") -> tf.Tensor:
    """Resizes an image (or a batch) to ``size``; another aspect ratio is stretched, centre-cropped or padded.

    ``"crop"`` and ``"pad"`` keep the picture's proportions, as Keras's
    loaders' ``crop_to_aspect_ratio`` and ``pad_to_aspect_ratio`` do: the
    largest centred region of the target's proportions is resized, or the
    whole image is resized into it and the rest is black.
    """
    height, width = (int(side) for side in size)
    if aspect_ratio == "pad":
        resized = tf.image.resize_with_pad(images, height, width, method=interpolation)
    else:
        if aspect_ratio == "crop":
            shape = tf.shape(images)
            own_height, own_width = shape[-3], shape[-2]
            # The largest centred region whose height / width is the target's.
            crop_height = tf.minimum(own_height, own_width * height // width)
            crop_width = tf.minimum(own_width, own_height * width // height)
            top, left = (own_height - crop_height) // 2, (own_width - crop_width) // 2
            images = images[..., top : top + crop_height, left : left + crop_width, :]
        resized = tf.image.resize(images, (height, width), method=interpolation)
    return tf.clip_by_value(resized, 0.0, 1.0)  # Cubic and Lanczos kernels overshoot.


def convert_channels(images: tf.Tensor, channels: int) -> tf.Tensor:
    """Returns float images with ``channels`` (1 or 3): grey repeated, colour weighted to grey, alpha dropped.

    Works when the images' own channel count is known only when they run
    (a decoded file's): 1 or 2 (grey, with alpha) or 3 or 4 (colour, with alpha).
    """
    grey = tf.shape(images)[-1] < 3
    if channels == 3:
        return tf.cond(grey, lambda: tf.image.grayscale_to_rgb(images[..., :1]), lambda: images[..., :3])
    return tf.cond(grey, lambda: images[..., :1], lambda: tf.image.rgb_to_grayscale(images[..., :3]))


def image_dataset(
    source: str | ImageFiles,
    *,
    image_size: Sequence[int] | None = None,
    color_mode: str | None = None,
    interpolation: str = "bilinear",
    indices: Sequence[int] | None = None,
    labels: bool = False,
) -> tf.data.Dataset:
    """Returns a folder's or TFRecord shards' images as an unbatched ``tf.data.Dataset``, decoded in parallel.

    Elements are float32 images (or ``{"input": image, "label": label}``
    with ``labels=True``), in the source's order; ``indices`` keeps those
    examples only (a folder's files; for shards, record numbers). Batch,
    shuffle, cache and prefetch it as usual; nothing is held in memory.
    """
    files = source if isinstance(source, ImageFiles) else scan(source, image_size, color_mode, interpolation)
    decode = _decoder(files)
    if files.kind == "folder":
        paths = np.array(files.paths)
        label_values = files.labels if files.labels is not None else np.full(files.count, -1, np.int64)
        if indices is not None:
            paths, label_values = paths[np.asarray(indices)], label_values[np.asarray(indices)]
        dataset = tf.data.Dataset.from_tensor_slices((paths, label_values))
        dataset = dataset.map(lambda path, label: (decode(tf.io.read_file(path)), label), tf.data.AUTOTUNE)
    else:
        # One shard after another, in order: the same examples in the same order as a folder or arrays would give.
        records = tf.data.TFRecordDataset(list(files.paths))
        if indices is not None:
            keep = tf.constant(np.isin(np.arange(files.count), np.asarray(indices)))
            records = records.enumerate().filter(lambda number, record: keep[number]).map(lambda _, record: record)
        spec = {IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)}
        if files.has_labels:
            spec[LABEL_FEATURE] = tf.io.FixedLenFeature([], tf.int64, default_value=-1)

        def parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            parsed = tf.io.parse_single_example(record, spec)
            return decode(parsed[IMAGE_FEATURE]), parsed.get(LABEL_FEATURE, tf.constant(-1, tf.int64))

        dataset = records.map(parse, tf.data.AUTOTUNE)
    if labels:
        return dataset.map(lambda image, label: {"input": image, "label": label})
    return dataset.map(lambda image, label: image)


def _read_all(files: ImageFiles) -> tuple[np.ndarray, np.ndarray | None]:
    """Decodes every image of ``files`` into one array (and its labels), naming a file that fails."""
    needed = files.count * math.prod(files.shape) * np.dtype(np.float32).itemsize
    fits(
        needed,
        f"The {files.count:,} images of {files.source} at {files.shape[0]}x{files.shape[1]}x{files.shape[2]} (float32)",
        "stream them from disk each epoch instead (--stream, with --cache DIR to decode them once), or lower "
        "--image-size",
    )
    images = np.empty((files.count, *files.shape), np.float32)
    labels = np.empty(files.count, np.int64)
    position = 0
    try:
        for batch in image_dataset(files, labels=True).batch(_READ_BATCH).prefetch(2):
            size = len(batch["label"])
            images[position : position + size] = batch["input"].numpy()
            labels[position : position + size] = batch["label"].numpy()
            position += size
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(decode_failure(files, position, error)) from None
    if position != files.count:
        raise ValueError(f"{files.source} changed while it was read: {files.count} images listed, {position} read.")
    has_labels = files.labels is not None or files.has_labels
    return images, labels if has_labels else None


def decode_failure(files: ImageFiles, position: int, error: tf.errors.InvalidArgumentError) -> str:
    """Says which image failed to decode, or to match the others' size, and what to do."""
    size_hint = "give --image-size HEIGHT WIDTH to resize them all, or remove it"
    if files.kind == "folder":  # Decoded one by one, eagerly, to name the file at fault.
        decode = _decoder(files)
        for path in files.paths[position : position + _READ_BATCH]:
            try:
                decode(tf.io.read_file(path))
            except tf.errors.InvalidArgumentError as failure:
                if _is_size_error(failure):
                    return f"{path} has another size than the other images of {files.source}; {size_hint}."
                return f"{path} cannot be decoded as an image; remove or replace it (aeloops skips no image silently)."
        where = files.source
    else:
        found = _failing_record(files, position)
        where = f"record {position} or after of {files.source}"
        if found is not None:
            shard, number, error = found
            where = f"record {number} (from 0) of {shard}"
    if _is_size_error(error):
        return f"An image in {where} has another size than the first; {size_hint}."
    return f"The image in {where} cannot be decoded ({_first_sentence(error)}); remove or replace it."


def _failing_record(files: ImageFiles, position: int) -> tuple[str, int, tf.errors.InvalidArgumentError] | None:
    """Decodes the shards' records from ``position`` one by one; returns the first that fails: shard, number, error."""
    spec = {IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)}
    decode, seen = _decoder(files), 0
    for shard in files.paths:
        for number, record in enumerate(tf.data.TFRecordDataset(shard)):
            seen += 1
            if seen <= position:
                continue
            try:
                decode(tf.io.parse_single_example(record, spec)[IMAGE_FEATURE])
            except tf.errors.InvalidArgumentError as error:
                return shard, number, error
    return None


def _first_sentence(error: tf.errors.InvalidArgumentError) -> str:
    """TensorFlow's message without its op names and internals: its first line, whole words only."""
    text = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", error.message).strip().splitlines()[0].strip()
    return text if len(text) <= 200 else text[:200].rsplit(" ", 1)[0] + " ..."


def _is_size_error(error: tf.errors.InvalidArgumentError) -> bool:
    # tf.ensure_shape's message, when an image decodes to another size than the scan found.
    return "shape" in error.message.lower() or "incompatible" in error.message.lower()


def convert(
    images: np.ndarray,
    image_size: Sequence[int] | None = None,
    color_mode: str | None = None,
    interpolation: str = "bilinear",
    name: str = "images",
    *,
    aspect_ratio: str = "stretch",
) -> np.ndarray:
    """Returns an array of images as float32 (n, height, width, channels) in [0, 1], resized and converted.

    Accepts (n, d), (n, height, width) and (n, height, width, channels)
    arrays, uint8 (divided by 255) or float in [0, 1] (see ``image_shape``).
    """
    check_options(image_size, color_mode, interpolation, aspect_ratio)
    images = to_model_inputs(images, image_shape(images), name)
    channels = images.shape[-1]
    if channels not in (1, 2, 3, 4):
        raise ValueError(
            f"{name} have {channels} channels per pixel; aeloops trains on grey (1) or colour (3) images, "
            "and drops an alpha channel (2 or 4)."
        )
    target = COLOR_MODES[color_mode] if color_mode else (1 if channels in (1, 2) else 3)
    if image_size is not None and tuple(image_size) == images.shape[1:3]:
        image_size = None  # Already that size: not resampled, so the values stay exactly as they are.
    if channels == target and image_size is None:
        return images
    converted = np.empty((len(images), *(image_size or images.shape[1:3]), target), np.float32)
    for start in range(0, len(images), 4096):  # In slices: a large set is not copied into TensorFlow at once.
        chunk = convert_channels(tf.constant(images[start : start + 4096]), target)
        if image_size is not None:
            chunk = resize(chunk, image_size, interpolation, aspect_ratio)
        converted[start : start + 4096] = chunk.numpy()
    return converted


def split_indices(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns sorted training and validation indices: a seeded ``fraction`` of ``count`` held out."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_split must lie strictly between 0 and 1; got {fraction}.")
    held = int(round(count * fraction))
    if held < 1 or held >= count:
        raise ValueError(
            f"validation_split {fraction} of {count} images leaves {held} for validation and {count - held} for "
            "training; each needs at least one."
        )
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[held:]), np.sort(order[:held])


def read_source(
    path: str | ImageFiles,
    image_size: Sequence[int] | None,
    color_mode: str | None,
    interpolation: str,
    *,
    aspect_ratio: str = "stretch",
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None, tuple[str, ...]]:
    """Returns a path's training images, its own validation images (an .npz's x_test), their labels, classes.

    A folder or shards already scanned (``ImageFiles``) are read without scanning them again.
    """
    if isinstance(path, ImageFiles):
        images, labels = _read_all(path)
        return images, None, labels, None, path.class_names
    if source_kind(path) == "arrays":
        validation = validation_labels = train_labels = None
        if path.endswith(".npz"):
            names = _archive_names(path)
            validation = load_array_file(path, "x_test") if "x_test" in names else None
            train_labels = load_array_file(path, "y_train") if "y_train" in names else None
            validation_labels = load_array_file(path, "y_test") if "y_test" in names else None
        train = convert(load_array_file(path), image_size, color_mode, interpolation, path, aspect_ratio=aspect_ratio)
        if validation is not None:
            size, mode = image_size or train.shape[1:3], color_mode or color_mode_of(train)
            validation = convert(validation, size, mode, interpolation, f"{path}'s x_test", aspect_ratio=aspect_ratio)
        return train, validation, train_labels, validation_labels, ()
    files = scan(path, image_size, color_mode, interpolation, aspect_ratio=aspect_ratio)
    images, labels = _read_all(files)
    return images, None, labels, None, files.class_names


def _archive_names(path: str) -> list[str]:
    """Returns the arrays an ``.npz`` file holds, or refuses a file that is not one."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return list(archive.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"Cannot read {path}: it is truncated or not a NumPy file ({error}).") from None


def color_mode_of(images: np.ndarray) -> str:
    """Returns the ``color_mode`` of (n, height, width, channels) images: ``"grayscale"`` or ``"rgb"``."""
    return "grayscale" if images.shape[-1] == 1 else "rgb"


def load_images(
    path: str | ImageFiles,
    *,
    image_size: Sequence[int] | None = None,
    color_mode: str | None = None,
    interpolation: str = "bilinear",
    aspect_ratio: str = "stretch",
    validation_split: float | None = None,
    validation_data: str | None = None,
    seed: int = 0,
) -> ImageData:
    """Reads a folder of images, TFRecord shards (or their ``scan``) or a ``.npy``/``.npz`` file into memory.

    Validation images come from ``validation_data`` (another source, read
    to the training images' size and colours), else from a seeded
    ``validation_split`` of the training images, else from an ``.npz``'s
    ``x_test``; otherwise there are none. Labels come from class folders, a
    record's ``label`` or an ``.npz``'s ``y_train`` / ``y_test``.
    """
    train, validation, train_labels, validation_labels, classes = read_source(
        path, image_size, color_mode, interpolation, aspect_ratio=aspect_ratio
    )
    if validation_data is not None:
        validation, _, validation_labels, _, _ = read_source(
            validation_data, train.shape[1:3], color_mode or color_mode_of(train), interpolation,
            aspect_ratio=aspect_ratio,
        )  # fmt: skip
    elif validation_split is not None:
        kept, held = split_indices(len(train), validation_split, seed)
        validation, train = train[held], train[kept]
        if train_labels is not None:
            validation_labels, train_labels = train_labels[held], train_labels[kept]
    return ImageData(train, validation, train_labels, validation_labels, classes)
