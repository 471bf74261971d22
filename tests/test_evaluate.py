"""python -m aeloops.evaluate: a run's NLL printed and written, earlier evaluations kept, mistakes refused."""

import json
import shutil

import keras
import numpy as np
import pytest

from aeloops import evaluate
from aeloops import train as train_cli
from aeloops.data import load_sample, to_model_inputs
from aeloops.runs.config import load_run_config
from aeloops.runs.datasets import binarize_validation


def train(run_dir, model, *extra):
    arguments = ["--dataset", "mnist-sample", "--model", model, "--epochs", "1", "--quiet", "--run-dir", str(run_dir)]
    assert train_cli.main([*arguments, *extra]) == 0
    return run_dir


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory):
    return train(tmp_path_factory.mktemp("runs") / "vae", "vae", "--binarize", "fixed")


@pytest.fixture
def vae_run(trained_vae, tmp_path):
    """A copy of the trained run for each test: evaluations write into it, and no test sees another's."""
    return shutil.copytree(trained_vae, tmp_path / "vae")


def run(capsys, *arguments):
    status = evaluate.main([str(argument) for argument in arguments])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_prints_one_json_object_and_writes_it(vae_run, capsys):
    status, out, err = run(capsys, vae_run, "--nll-samples", "1", "--examples", "200")
    assert status == 0 and err == ""
    printed = json.loads(out)
    assert printed == json.loads((vae_run / "evaluation.json").read_text())
    assert printed["nll"] == pytest.approx(printed["negative_elbo"], rel=1e-6)  # One sample: the bound is the ELBO.
    settings = (printed["samples"], printed["examples"], printed["checkpoint"], printed["binarize"])
    assert settings == (1, 200, "newest", "fixed")
    assert printed["step"] == 78 and printed["data"] == "validation"
    # Nats per binary image of a VAE after one epoch on 5,000 images; the ELBO of its own validation loss.
    history = json.loads((vae_run / "history.json").read_text())
    assert 80 < printed["nll"] < 250 and 80 < history["val_loss"][0] < 250


def test_an_earlier_different_evaluation_is_kept(vae_run, capsys):
    run(capsys, vae_run, "--nll-samples", "1", "--examples", "100")
    first = (vae_run / "evaluation.json").read_text()
    assert run(capsys, vae_run, "--nll-samples", "1", "--examples", "100")[0] == 0  # The same again: nothing kept.
    assert not list(vae_run.glob("evaluation.*.json"))
    status, out, _ = run(capsys, vae_run, "--nll-samples", "20", "--examples", "100")
    assert status == 0
    assert [path.name for path in vae_run.glob("evaluation.*.json")] == ["evaluation.1.json"]
    assert (vae_run / "evaluation.1.json").read_text() == first
    assert json.loads(out)["nll"] < json.loads(first)["nll"]  # More samples: a tighter bound.


def test_xla_gives_the_bound_within_its_monte_carlo_error(vae_run, capsys):
    graph = json.loads(run(capsys, vae_run, "--nll-samples", "200", "--examples", "100")[1])
    status, out, err = run(capsys, vae_run, "--nll-samples", "200", "--examples", "100", "--xla")
    xla = json.loads(out)
    assert status == 0 and err == "" and xla["xla"] is True and graph["xla"] is False
    # Other samples from the same seed (XLA's generator): not the same figure, but far within its error.
    assert xla["nll"] != graph["nll"] and abs(xla["nll"] - graph["nll"]) < 0.1 * graph["nll_standard_error"]


def test_data_from_a_file_is_binarized_as_the_run_was(vae_run, capsys, tmp_path, small_test_images):
    path = tmp_path / "images.npz"
    np.savez(path, x_test=small_test_images[:50])
    status, out, _ = run(capsys, vae_run, "--nll-samples", "5", "--data", path)
    assert status == 0
    printed = json.loads(out)
    assert printed["examples"] == 50 and printed["data"] == str(path)
    # The same images binarized beforehand as the run binarizes (one fixed draw) give the very same figures;
    # grey pixels under a Bernoulli likelihood would give others.
    config = load_run_config(vae_run / "config.json")
    binary = binarize_validation(to_model_inputs(small_test_images[:50], (784,)), config)
    assert set(np.unique(binary)) == {0.0, 1.0}
    np.savez(tmp_path / "binary.npz", x_test=binary)
    again = json.loads(run(capsys, vae_run, "--nll-samples", "5", "--data", tmp_path / "binary.npz")[1])
    assert again["nll"] == printed["nll"] and again["negative_elbo"] == printed["negative_elbo"]


def test_mistakes_are_refused_in_one_line(vae_run, tmp_path, capsys):
    dense = train(tmp_path / "dense", "dense")
    capsys.readouterr()
    cases = [
        ((vae_run, "--nll-samples", "-1"), "--nll-samples must be a non-negative integer, got -1."),
        ((tmp_path / "nothing", "--nll-samples", "5"), "holds no config.json; give the directory of a training run."),
        ((vae_run, "--nll-samples", "5", "--data", tmp_path / "missing.npy"), "missing.npy does not exist."),
        ((dense, "--nll-samples", "5"), "needs an encoder of a Gaussian posterior"),
    ]
    for arguments, message in cases:
        status, out, err = run(capsys, *arguments)
        assert status == 2 and out == "" and len(err.splitlines()) == 1 and message in err, err
    assert not (dense / "evaluation.json").exists()


@pytest.mark.parametrize("model", ["dense", "conv"])
def test_every_model_gets_its_held_out_terms_and_reconstruction_error_without_flags(model, tmp_path, capsys):
    run_dir = train(tmp_path / model, model, "--batch-size", "256")
    capsys.readouterr()
    status, out, err = run(capsys, run_dir)
    assert status == 0 and err == ""
    printed = json.loads(out)
    # The terms validation computed at the run's last epoch, from the same checkpoint on the same images.
    history = json.loads((run_dir / "history.json").read_text())
    for name, value in printed["terms"].items():
        assert value == pytest.approx(history[f"val_{name}"][-1], rel=1e-5), name
    assert set(printed["terms"]) == {"loss", "bce"} and "nll" not in printed
    # The squared error per pixel, as the saved model reconstructs the sample's 1,000 test images.
    saved = keras.saving.load_model(run_dir / "model.keras")
    images = to_model_inputs(load_sample().test_images, saved.example_shape)
    expected = np.mean(np.square(np.asarray(saved.reconstruct(images), np.float64) - images))
    assert printed["examples"] == 1000 and printed["mean_squared_error"] == pytest.approx(expected, rel=1e-5)


def test_a_vae_gets_its_likelihood_with_the_default_samples_and_can_skip_it(vae_run, capsys):
    printed = json.loads(run(capsys, vae_run, "--examples", "20")[1])
    assert printed["samples"] == evaluate.DEFAULT_SAMPLES and printed["nll"] <= printed["negative_elbo"] + 1e-3
    assert {"kl", "bce", "loss"} <= set(printed["terms"])
    # The negative ELBO is the objective's own loss in nats: one estimate from samples, one from the terms.
    assert printed["negative_elbo"] == pytest.approx(printed["terms"]["loss"], rel=0.05)
    skipped = json.loads(run(capsys, vae_run, "--examples", "20", "--nll-samples", "0")[1])
    assert "nll" not in skipped and skipped["terms"] == printed["terms"]

