"""Samplers after training: the prior, and a Gaussian mixture fitted to the training codes (any autoencoder)."""

import keras
import numpy as np
import pytest

import aeloops
from aeloops import sample as sample_cli
from aeloops import train
from aeloops.evaluation.samplers import sample
from aeloops.models import registry


@pytest.fixture(scope="module")
def trained_dense():
    images = aeloops.to_model_inputs(aeloops.load_sample().train_images[:2048], (784,))
    keras.utils.set_random_seed(0)
    model = aeloops.DenseAutoencoder(input_shape=(784,))
    aeloops.Trainer(model, mode="graph", steps_per_loop=16).fit(images, epochs=3, batch_size=64, verbose=0)
    return model, np.asarray(model.encode(images))


def test_a_mixture_fitted_to_a_deterministic_model_s_codes_draws_codes_like_them(trained_dense):
    model, codes = trained_dense
    drawn = sample(model, 4000, sampler="gmm", codes=codes, seed=0)
    assert drawn.codes.shape == (4000, 8) and drawn.images.shape == (4000, 784)
    scale = codes.std(axis=0).max()
    np.testing.assert_allclose(drawn.codes.mean(axis=0), codes.mean(axis=0), atol=0.05 * scale)
    np.testing.assert_allclose(np.cov(drawn.codes.T), np.cov(codes.T), atol=0.1 * scale**2)
    np.testing.assert_allclose(drawn.images, np.asarray(model.decode(drawn.codes)), atol=1e-6)
    again = sample(model, 4000, sampler="gmm", codes=codes, seed=0)
    np.testing.assert_array_equal(again.images, drawn.images)  # The seed decides every draw.
    assert not np.array_equal(sample(model, 16, sampler="gmm", codes=codes, seed=1).codes, drawn.codes[:16])


def test_the_prior_is_the_generative_model_s_own_and_refused_where_there_is_none(trained_dense):
    vae = registry.get("vae").build()
    drawn = sample(vae, 6, sampler="prior", seed=3)
    np.testing.assert_array_equal(drawn.images, vae.sample(6, seed=3))
    with pytest.raises(ValueError, match=r"has no prior to draw from .* sampler='gmm' \(--sampler gmm\)"):
        sample(trained_dense[0], 4, sampler="prior")
    for sampler in ("gmm", "prior"):  # Its codes are indices: only its learned prior draws them, once trained.
        with pytest.raises(ValueError, match=r"learned prior over code indices: train it \(python -m aeloops.prior"):
            sample(registry.get("vqvae").build(), 4, sampler=sampler, codes=np.zeros((20, 7, 7, 16)))
    with pytest.raises(ValueError, match="pass codes="):
        sample(trained_dense[0], 4, sampler="gmm")


def test_the_sample_command_writes_images_its_codes_decode_to_and_its_refusal_says_what_works(tmp_path, capsys):
    run_dir = tmp_path / "dense"
    common = ["--dataset", "mnist-sample", "--epochs", "1", "--mode", "graph", "--no-validation", "--quiet"]
    assert train.main([*common, "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    assert sample_cli.main([str(run_dir), "--count", "8"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("aeloops.sample: error: DenseAutoencoder has no prior") and "--sampler gmm" in error
    assert sample_cli.main([str(run_dir), "--sampler", "gmm", "--count", "24"]) == 0
    png, npz = (line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines())
    assert png == str(run_dir / "samples" / "gmm-step78-seed0.png")
    with np.load(npz) as saved:
        images, codes = saved["images"], saved["codes"]
    model = keras.saving.load_model(run_dir / "model.keras")
    np.testing.assert_allclose(images, np.asarray(model.decode(codes)), atol=1e-6)
    assert images.shape == (24, 784) and images.min() >= 0 and images.max() <= 1
    picture = keras.utils.load_img(png)
    assert picture.size[0] > picture.size[1]  # Three rows of eight.


def test_evaluate_measures_drawn_samples_on_the_extractor_it_is_given(tmp_path, capsys):
    import json

    from aeloops import evaluate
    from aeloops.data import load_sample, to_model_inputs
    from aeloops.evaluation.sample_quality import keras_extractor, sample_quality
    from aeloops.runs import experiment
    from aeloops.runs.checkpoints import Checkpointer
    from aeloops.runs.config import load_run_config
    from aeloops.runs.sampling import draw

    run_dir = tmp_path / "dense"
    assert train.main(["--dataset", "mnist-sample", "--epochs", "1", "--mode", "graph", "--quiet",
                       "--run-dir", str(run_dir)]) == 0  # fmt: skip
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    keras.Model(inputs, keras.layers.Dense(10)(hidden)).save(tmp_path / "classifier.keras")
    capsys.readouterr()
    extractor = str(tmp_path / "classifier.keras")
    assert evaluate.main([str(run_dir), "--nll-samples", "0", "--examples", "300", "--extractor", extractor,
                          "--sampler", "gmm"]) == 0  # fmt: skip
    measured = json.loads(capsys.readouterr().out)["sample_quality"]
    assert measured["sampler"] == "gmm" and measured["generated"] == measured["real"] == 300
    assert measured["extractor"] == f"{extractor}:penultimate"
    # The same figures from the run's own pieces: its images flattened, laid out in the extractor's shape.
    config = load_run_config(run_dir / "config.json")
    trainer = experiment.build_trainer(config)
    Checkpointer(trainer, run_dir / "checkpoints").restore()
    real = to_model_inputs(load_sample().test_images[:300], (784,))
    expected = sample_quality(real, draw(trainer, config, "gmm", 300).images, keras_extractor(extractor))
    for key in ("fid", "kid", "precision", "recall"):
        assert measured[key] == pytest.approx(expected[key], rel=1e-6), key
    assert evaluate.main([str(run_dir), "--sampler", "gmm"]) == 2
    assert "measure samples; add --fid, --kid or --prd" in capsys.readouterr().err
    assert evaluate.main([str(run_dir), "--fid", "--extractor", extractor, "--inception-weights", extractor]) == 2
    assert "--extractor and --inception-weights each name the features; give one." in capsys.readouterr().err
    # Without --extractor: the classifier of the run's dataset, trained once, measures only what is asked.
    for _ in range(2):
        assert (
            evaluate.main([str(run_dir), "--nll-samples", "0", "--examples", "300", "--fid", "--sampler", "gmm"]) == 0
        )
        output = capsys.readouterr()
        default = json.loads(output.out)["sample_quality"]
        assert set(default) == {"fid", "extractor", "extractor_accuracy", "real", "generated", "sampler"}
    assert output.err == ""  # The second time, nothing to train.
    from aeloops.evaluation.classifier import classifier_extractor, dataset_classifier

    sample = load_sample()
    classifier = dataset_classifier(to_model_inputs(sample.train_images, (28, 28, 1)), sample.train_labels)
    assert default["extractor"] == f"{classifier.path.name}:features" and default["extractor_accuracy"] > 0.9
    fid = sample_quality(real, draw(trainer, config, "gmm", 300).images, classifier_extractor(classifier),
                         metrics=("fid",))["fid"]  # fmt: skip
    assert default["fid"] == pytest.approx(fid, rel=1e-6)
