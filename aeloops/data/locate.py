"""What kind of data a ``--dataset`` names, told from the path alone (no TensorFlow, nothing decoded).

>>> source_kind("mnist"), source_kind("images.npz"), source_kind("shards/train-*.tfrecord")
('mnist', 'arrays', 'tfrecord')
"""

from __future__ import annotations

import glob
import os
import pathlib

__all__ = [
    "ASPECT_RATIOS",
    "COLOR_MODES",
    "IMAGE_EXTENSIONS",
    "INTERPOLATIONS",
    "NAMED_DATASETS",
    "check_source",
    "source_kind",
    "tfrecord_files",
]

# Datasets named rather than given by path; binarized_mnist is Larochelle and Murray's fixed binarization,
# shapes dSprites' factors drawn procedurally (aeloops.data.factors).
NAMED_DATASETS = ("mnist", "fashion_mnist", "mnist-sample", "binarized_mnist", "shapes")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Keras's names (image_dataset_from_directory), and the channels each gives.
COLOR_MODES = {"grayscale": 1, "rgb": 3}
# tf.image.resize's methods.
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")
# How --image-size meets another aspect ratio (Keras's loaders: crop_to_aspect_ratio, pad_to_aspect_ratio).
ASPECT_RATIOS = ("stretch", "crop", "pad")
_TFRECORD_MARKERS = (".tfrecord", ".tfrec")


def _is_pattern(path: str) -> bool:
    return glob.has_magic(path)


def source_kind(path: str) -> str:
    """Returns ``path``'s kind: a named dataset, ``"arrays"``, ``"folder"``, ``"tfrecord"``, or ``"unknown"``."""
    if path in NAMED_DATASETS:
        return path
    if path.endswith((".npy", ".npz")):
        return "arrays"
    name = os.path.basename(path)
    if _is_pattern(path) or any(marker in name for marker in _TFRECORD_MARKERS):
        return "tfrecord"
    if os.path.isdir(path):
        # A folder with shards at its top reads as TFRecords, whatever sits beside them (a TensorFlow
        # Datasets folder's dataset_info.json, a test/ folder of other shards); any other as image files.
        return "tfrecord" if _folder_shards(path) else "folder"
    return "unknown"


def _is_shard(name: str) -> bool:
    return any(marker in name for marker in _TFRECORD_MARKERS)


def _folder_shards(path: str) -> list[str]:
    """The shard files at the top of folder ``path`` (names holding .tfrecord or .tfrec), sorted."""
    return sorted(str(entry) for entry in pathlib.Path(path).iterdir() if entry.is_file() and _is_shard(entry.name))


def tfrecord_files(path: str) -> list[str]:
    """Returns the shards ``path`` names (a file, a glob, or the shards at the top of a folder), sorted."""
    if os.path.isdir(path):
        return _folder_shards(path)
    return sorted(glob.glob(path)) if _is_pattern(path) else ([path] if os.path.isfile(path) else [])


def check_source(path: str, flag: str = "--dataset") -> None:
    """Refuses a data path that names nothing, with what it may name; reads no file's content."""
    kind = source_kind(path)
    if kind in NAMED_DATASETS:
        return
    if kind == "tfrecord":
        if not tfrecord_files(path):
            raise ValueError(f"{flag} {path} matches no file; give TFRecord shards (a file, a glob or their folder).")
        return
    if kind == "folder":
        return
    if kind == "arrays":
        if not os.path.isfile(path):
            raise ValueError(f"{flag} {path} does not exist; give the path of a .npy or .npz file of images.")
        return
    raise ValueError(
        f"{flag} {path}: no such file or folder; give {', '.join(NAMED_DATASETS)}, a .npy/.npz file, "
        "a folder of images, or TFRecord shards (a .tfrecord file, a glob or their folder)."
    )
