"""What the library makes of the data and objectives it is given: understood, or refused with the fix."""

import json
import traceback

import keras
import numpy as np
import pytest
import tensorflow as tf

from aeloops import train
from aeloops.data import to_model_inputs
from aeloops.models import registry
from aeloops.objectives.objective import LossTerm, Objective, StepError
from aeloops.training.trainer import Trainer


def dense_trainer():
    keras.utils.set_random_seed(0)
    return Trainer(registry.get("dense").build(), mode="graph", steps_per_loop=4)


@pytest.fixture(scope="module")
def images(small_images):
    return to_model_inputs(small_images[:512], (784,))


def test_every_fit_on_a_trainer_runs_all_of_its_steps(images):
    trainer = dense_trainer()
    trainer.fit(images[:256], epochs=1, batch_size=32, verbose=0)  # 8 steps
    history = trainer.fit(images, epochs=1, batch_size=32, verbose=0)  # 16 more, from the epoch's start
    assert int(trainer.step.numpy()) == 8 + 16
    assert int(trainer.optimizer.iterations.numpy()) == 24 and len(history["loss"]) == 1


def test_a_keras_style_pair_of_the_same_images_is_read_as_the_images(images):
    trainer = dense_trainer()
    assert trainer.evaluate((images, images)) == trainer.evaluate(images)
    assert trainer.evaluate([images, images.copy()]) == trainer.evaluate(images)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (lambda x: (x, 1 - x), ValueError, "tuple of 2 arrays, which aeloops does not stack or pair up"),
        (lambda x: [x, x, x], ValueError, "list of 3 arrays"),
        (lambda x: 7, TypeError, "must be a NumPy array, a dict of arrays .* got int"),
        (lambda x: (row for row in x), TypeError, "got generator"),
        (lambda x: np.array(["a"] * 10), TypeError, "numeric array of examples"),
        (lambda x: (x * 255).astype(np.uint8), ValueError, r"ranges over \[0, 255\].*cross-entropy.*to_model_inputs"),
        (lambda x: tf.data.Dataset.from_tensor_slices((x, x)).batch(32), ValueError, "dataset.map"),
        (lambda x: tf.data.Dataset.from_tensor_slices(x), ValueError, r"single examples .* dataset.batch\(64"),
    ],
    ids=["pair", "list", "int", "generator", "strings", "uint8", "tuple-dataset", "unbatched-dataset"],
)
def test_data_aeloops_cannot_read_is_refused_with_the_fix(images, data, error, message):
    trainer = dense_trainer()
    with pytest.raises(error, match=message):
        trainer.fit(data(images), batch_size=32, verbose=0)
    with pytest.raises(error, match=message):
        trainer.evaluate(data(images))
    assert int(trainer.step.numpy()) == 0


def test_a_term_reading_a_missing_output_is_refused_when_the_trainer_is_built():
    model = registry.get("dense").build()
    objective = Objective([LossTerm("bce", output="logit", loss="bce_logits")])
    with pytest.raises(ValueError, match=r"reads output 'logit', but the model returns \['code', "):
        Trainer(model, objective)


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_a_mistake_found_while_tracing_is_raised_as_written_not_inside_a_trace(images, mode):
    model = registry.get("dense").build()
    scalar_loss = LossTerm("bad", output="logits", loss=lambda target, output: tf.reduce_mean(output))
    trainer = Trainer(model, Objective([scalar_loss]), mode=mode)
    with pytest.raises(StepError) as raised:
        trainer.fit(images, batch_size=32, verbose=0)
    assert str(raised.value) == (
        "LossTerm 'bad': its loss returned a scalar; it must return one value per example (shape (batch, ...)), "
        "leaving the batch average to the objective."
    )
    assert "site-packages/tensorflow" not in "".join(traceback.format_tb(raised.value.__traceback__))
    with pytest.raises(StepError, match="^LossTerm 'bad': its loss returned a scalar"):
        trainer.evaluate(images)


def test_no_validation_means_none_whatever_the_file_holds(tmp_path, small_images, small_test_images, capsys):
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=small_images[:512], x_test=small_test_images[:100])
    common = ["--dataset", str(path), "--epochs", "1", "--quiet"]
    assert train.main([*common, "--run-dir", str(tmp_path / "with")]) == 0
    assert train.main([*common, "--no-validation", "--run-dir", str(tmp_path / "without")]) == 0
    assert "val_loss" in json.loads((tmp_path / "with" / "history.json").read_text())
    assert not any(key.startswith("val_") for key in json.loads((tmp_path / "without" / "history.json").read_text()))
