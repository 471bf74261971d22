"""Binary MNIST: threshold and fixed binarization of arrays, dynamic binarization in the train step, the CLI's."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from aeloops import train
from aeloops.data import binarize, to_model_inputs
from aeloops.models import registry
from aeloops.runs.checkpoints import Checkpointer
from aeloops.training.trainer import Trainer


@pytest.fixture(scope="module")
def images(small_images):
    return to_model_inputs(small_images[:512], (784,))


def test_threshold_and_fixed_binarization(images):
    np.testing.assert_array_equal(binarize(images, "threshold"), (images > 0.5).astype(np.float32))
    fixed = binarize(images, "fixed", seed=7)
    assert fixed.dtype == np.float32 and set(np.unique(fixed)) == {0.0, 1.0}
    np.testing.assert_array_equal(binarize(images, "fixed", seed=7), fixed)  # Seeded.
    assert not np.array_equal(binarize(images, "fixed", seed=8), fixed)
    # Each pixel is 1 with its intensity as the probability: the means agree.
    assert fixed.mean() == pytest.approx(images.mean(), abs=0.005)
    assert np.all(fixed[images == 0.0] == 0.0) and np.all(fixed[images == 1.0] == 1.0)
    with pytest.raises(ValueError, match="'threshold' or 'fixed'"):
        binarize(images, "dynamic")


class InputWatcher(Trainer):
    """Logs what the step sees of its inputs: their mean and how far they are from binary."""

    def train_step(self, batch):
        terms = super().train_step(batch)
        inputs = batch["input"]
        return {**terms, "input_mean": tf.reduce_mean(inputs), "grey": tf.reduce_mean(inputs * (1.0 - inputs))}


def build(dynamic, seed=0):
    keras.utils.set_random_seed(seed)
    model = registry.get("dense").build()
    return InputWatcher(model, mode="graph", steps_per_loop=4, dynamic_binarization=dynamic)


def test_dynamic_binarization_draws_anew_every_step_and_resumes_exactly(images, tmp_path):
    grey = build(False).fit(images, epochs=1, batch_size=64, verbose=0)
    assert grey["grey"][0] > 0.01
    trainer = build(True)
    history = trainer.fit(images, epochs=2, batch_size=64, verbose=0)
    assert history["grey"] == [0.0, 0.0]  # Binary inputs.
    assert history["input_mean"][0] == pytest.approx(grey["input_mean"][0], abs=0.01)
    # Stopped after one epoch and resumed, the draws (and so the weights) are the same.
    first = build(True)
    first.fit(images, epochs=1, batch_size=64, verbose=0)
    Checkpointer(first, tmp_path).save()
    resumed = build(True, seed=1)
    assert Checkpointer(resumed, tmp_path).restore()
    resumed.fit(images, epochs=2, initial_epoch=1, batch_size=64, verbose=0)
    for expected, actual in zip(trainer.model.weights, resumed.model.weights):
        np.testing.assert_array_equal(expected.numpy(), actual.numpy())


def test_the_cli_binarizes_records_it_and_refuses_an_unknown_method(tmp_path, capsys):
    arguments = ["--dataset", "mnist-sample", "--model", "vae", "--epochs", "1", "--binarize", "dynamic", "--quiet"]
    assert train.main([*arguments, "--run-dir", str(tmp_path / "run")]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["binarize"] == "dynamic"
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert 60 < history["val_loss"][0] < 250  # Nats per binary image, after one epoch on 5,000 images.
    capsys.readouterr()
    arguments[arguments.index("dynamic")] = "otsu"
    assert train.main([*arguments, "--run-dir", str(tmp_path / "other")]) == 2
    assert capsys.readouterr().err.strip() == (
        "aeloops.train: error: command line: binarize must be one of none, threshold, fixed, dynamic; got 'otsu'."
    )
    assert not (tmp_path / "other").exists()
