"""A run directory written by an earlier aeloops still resumes, evaluates and exports, exactly.

``fixtures/run-1c4794f`` was written by commit 1c4794f (before the Trainer
was split into its step, its compiled functions, its weight averages and the
outer loop's state): ``python -m aeloops.train --model conv --dataset
mnist-sample --epochs 1 --batch-size 64 --use-ema --mode graph --seed 3``,
with its TensorBoard folder and first checkpoint left out. Its checkpoint
holds the optimizer's moving averages, so a change in what a checkpoint
holds or in how the averages are swapped shows here.
"""

import contextlib
import io
import json
import pathlib
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from aeloops import evaluate, export, train

OLD_RUN = pathlib.Path(__file__).parent / "fixtures" / "run-1c4794f"
SETTINGS = ["--model", "conv", "--dataset", "mnist-sample", "--batch-size", "64", "--use-ema", "--mode", "graph"]


@pytest.fixture
def old_run(tmp_path: pathlib.Path) -> pathlib.Path:
    copy = tmp_path / "old-run"
    shutil.copytree(OLD_RUN, copy)
    return copy


def _quiet(main, arguments: list[str]) -> str:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert main(arguments) == 0
    return output.getvalue()


def _history(run_dir: pathlib.Path) -> dict[str, list[float]]:
    return json.loads((run_dir / "history.json").read_text())


def test_an_old_run_resumes_to_the_run_left_alone(old_run, tmp_path):
    _quiet(train.main, ["--run-dir", str(old_run), "--resume", "--epochs", "2", "--quiet"])
    fresh = tmp_path / "fresh"
    _quiet(train.main, [*SETTINGS, "--seed", "3", "--epochs", "2", "--run-dir", str(fresh), "--quiet"])
    resumed, uninterrupted = _history(old_run), _history(fresh)
    assert resumed["epoch"] == [1, 2]
    for name in ("loss", "bce", "gradient_norm", "val_loss"):
        assert resumed[name] == uninterrupted[name], name


def test_an_old_run_evaluates_to_its_recorded_validation_loss(old_run):
    result = json.loads(_quiet(evaluate.main, [str(old_run), "--nll-samples", "0"]).strip().splitlines()[-1])
    assert result["step"] == 78 and result["examples"] == 1000
    # The moving averages come back from the checkpoint: the raw weights would give another loss.
    assert result["terms"]["loss"] == pytest.approx(_history(old_run)["val_loss"][0], abs=1e-6)


def test_an_old_run_exports_the_model_it_saved(old_run, tmp_path):
    out = tmp_path / "export"
    _quiet(export.main, [str(old_run), "--out", str(out)])
    served = tf.saved_model.load(str(out))
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    saved = keras.saving.load_model(old_run / "model.keras", compile=False, safe_mode=True)
    expected = keras.ops.convert_to_numpy(saved(images)["reconstruction"])
    served_output = served.signatures["reconstruct"](tf.constant(images))["reconstruction"].numpy()
    assert np.ptp(expected) > 0.1  # A model that reconstructs, not a constant that any two files share.
    np.testing.assert_allclose(served_output, expected, atol=1e-6)
