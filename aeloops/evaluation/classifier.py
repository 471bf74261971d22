"""The default feature extractor for sample quality: a small classifier trained on the dataset's own labels.

FID and its kin need features in which a picture's content shows. For
MNIST, InceptionV3's ImageNet features are a poor fit, and papers on small
datasets train a classifier of their own; ``dataset_classifier`` does the
same for any labelled dataset (MNIST, a folder of class subfolders, the
shapes): a small convolutional network trained with Keras's ``fit`` on the
training images and labels, its 128-unit penultimate layer the features.

It is trained once per dataset and kept in the user's cache
(``$XDG_CACHE_HOME/aeloops/classifiers``, by default ``~/.cache``), named by
the SHA-256 of the images, labels and recipe, so every run on the same data
is measured by the same extractor; its held-out accuracy is kept beside it.

>>> classifier = dataset_classifier(train_images, train_labels, test_images, test_labels)  # doctest: +SKIP
>>> extractor = classifier_extractor(classifier)                                           # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Callable
from typing import NamedTuple

import keras
import numpy as np

from aeloops.evaluation.sample_quality import Extractor, keras_extractor
from aeloops.files import cache_root, replacing

__all__ = ["RECIPE", "Classifier", "classifier_extractor", "dataset_classifier"]

# What the classifier is and how it is trained: part of its name, so a change trains a new one.
RECIPE = "conv32-conv64-dense128, adam 1e-3, 5 epochs of batches of 128, seed 0"
EPOCHS, BATCH_SIZE = 5, 128


class Classifier(NamedTuple):
    """A trained classifier, where it is kept, and its accuracy on the held-out images."""

    model: keras.Model
    path: pathlib.Path
    accuracy: float | None


def build(shape: tuple[int, ...], classes: int) -> keras.Model:
    """Returns the untrained classifier: two convolutions with pooling, then 128 features, then the classes."""
    inputs = keras.Input(shape)
    hidden = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(inputs)
    hidden = keras.layers.MaxPooling2D()(hidden)
    hidden = keras.layers.Conv2D(64, 3, activation="relu", padding="same")(hidden)
    hidden = keras.layers.MaxPooling2D()(hidden)
    features = keras.layers.Dense(128, activation="relu", name="features")(keras.layers.Flatten()(hidden))
    outputs = keras.layers.Dense(classes, activation="softmax", name="classes")(features)
    return keras.Model(inputs, outputs, name="dataset_classifier")


def dataset_classifier(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    *,
    directory: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> Classifier:
    """Returns the classifier of these images and labels: the one kept in ``directory`` (the cache), else a new one.

    Images are float32 ``(n, height, width, channels)`` in [0, 1], labels
    integers from 0. A new classifier is trained with ``EPOCHS`` epochs and
    saved with its held-out accuracy (on the test images, if given).
    """
    train_images = np.asarray(train_images, np.float32)
    train_labels = np.asarray(train_labels)
    if train_images.ndim != 4:
        raise ValueError(f"The classifier takes images (n, height, width, channels); got {train_images.shape}.")
    if train_labels.shape != (len(train_images),) or len(np.unique(train_labels)) < 2:
        raise ValueError("The default extractor is trained on the dataset's labels, and these images have none "
                         "(or a single class); give --extractor FILE.keras.")  # fmt: skip
    directory = pathlib.Path(directory) if directory is not None else cache_root() / "classifiers"
    digest = hashlib.sha256(RECIPE.encode())
    for array in (train_images, train_labels.astype(np.int64)):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    path = directory / f"classifier-{digest.hexdigest()[:16]}.keras"
    record = path.with_suffix(".json")
    if path.is_file() and record.is_file():
        accuracy = json.loads(record.read_text(encoding="utf-8")).get("accuracy")
        return Classifier(keras.saving.load_model(path, compile=False, safe_mode=True), path, accuracy)
    classes = int(train_labels.max()) + 1
    log(f"Training the default extractor, a classifier of {classes} classes on {len(train_images):,} images "
        f"({EPOCHS} epochs); kept in {directory} for later runs on the same data.")  # fmt: skip
    keras.utils.set_random_seed(0)
    model = build(train_images.shape[1:], classes)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_images, train_labels, batch_size=BATCH_SIZE, epochs=EPOCHS, verbose=0)
    accuracy = None
    if test_images is not None and test_labels is not None:
        predicted = np.argmax(model.predict(np.asarray(test_images, np.float32), batch_size=512, verbose=0), axis=1)
        accuracy = float(np.mean(predicted == np.asarray(test_labels)))
    directory.mkdir(parents=True, exist_ok=True)
    with replacing(path, suffix=".partial.keras") as partial:
        model.save(partial)
    with replacing(record) as partial:
        partial.write_text(json.dumps({"recipe": RECIPE, "images": len(train_images), "classes": classes,
                                       "accuracy": accuracy}, indent=2), encoding="utf-8")  # fmt: skip
    return Classifier(model, path, accuracy)


def classifier_extractor(classifier: Classifier) -> Extractor:
    """Returns the extractor of the classifier's 128 features, named for the file that holds it."""
    extractor = keras_extractor(classifier.model, layer="features")
    return extractor._replace(name=f"{classifier.path.name}:features")
