"""A VQ-VAE's learned prior: a PixelCNN that sees only earlier positions, learns what it is shown, and generates."""

import json

import keras
import numpy as np
import pytest

from aeloops import evaluate, prior, sample, train
from aeloops.data import load_sample, to_model_inputs
from aeloops.evaluation.sample_quality import frechet_distance, keras_extractor
from aeloops.files import cache_root
from aeloops.models.pixelcnn import PixelCNN, prior_objective
from aeloops.training.trainer import Trainer


def test_each_position_s_logits_see_only_the_positions_before_it():
    model = PixelCNN(grid=(4, 5), entries=6, filters=16, blocks=2)
    for layer in model.trainable_variables:  # Large weights, so any leak shows.
        layer.assign(np.random.default_rng(0).normal(size=layer.shape).astype(np.float32))
    grid = np.random.default_rng(1).integers(0, 6, (1, 4, 5)).astype(np.float32)
    before = model(grid)["logits"].numpy()[0]
    later_changed = 0
    for position in range(20):
        changed = grid.copy()
        changed[0, position // 5, position % 5] = (changed[0, position // 5, position % 5] + 1) % 6
        moved = np.abs(model(changed)["logits"].numpy()[0] - before).max(axis=-1).ravel() > 1e-6
        assert not moved[: position + 1].any(), f"position {position} leaks into itself or earlier ones"
        later_changed += int(moved[position + 1 :].any())
    assert later_changed == 19  # Every position but the last informs a later one.


def test_the_prior_learns_grids_that_repeat_their_first_index():
    # Each grid holds one index everywhere, drawn from four: ln 4 nats a grid, all of it at the first position.
    values = np.random.default_rng(2).integers(0, 4, 1024)
    grids = np.repeat(values[:, None, None], 9, axis=1).reshape(1024, 3, 3).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = PixelCNN(grid=(3, 3), entries=4, filters=32, blocks=2)
    trainer = Trainer(model, prior_objective(), optimizer="adam", learning_rate=3e-3, mode="graph", steps_per_loop=16)
    history = trainer.fit(grids, epochs=15, batch_size=64, verbose=0)
    assert history["nll"][-1] < np.log(4) + 0.15  # From 9 ln 4 = 12.5 nats at the start.
    drawn = model.sample(200, seed=0)
    # Nearly every drawn grid repeats its first index (each later one has a probability near, not at, 1).
    assert np.mean(np.all(drawn == drawn[:, :1, :1], axis=(1, 2))) >= 0.95
    assert set(np.unique(drawn[:, 0, 0])) == {0, 1, 2, 3}
    np.testing.assert_array_equal(model.sample(200, seed=0), drawn)


@pytest.fixture(scope="module")
def vqvae_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("vq") / "run"
    assert train.main(["--model", "vqvae", "--dataset", "mnist-sample", "--epochs", "2", "--mode", "graph",
                       "--quiet", "--run-dir", str(run_dir)]) == 0  # fmt: skip
    return run_dir


def test_a_vqvae_run_trains_its_prior_resumes_it_and_generates_better_than_random_codes(vqvae_run, capsys):
    assert sample.main([str(vqvae_run), "--count", "8"]) == 2
    assert f"train it first: python -m aeloops.prior {vqvae_run}" in capsys.readouterr().err
    assert prior.main([str(vqvae_run), "--epochs", "2"]) == 0
    folder = vqvae_run / "prior"
    assert len(json.loads((folder / "history.json").read_text())["loss"]) == 2
    assert prior.main([str(vqvae_run), "--epochs", "1"]) == 2
    assert "already holds a prior; add --resume" in capsys.readouterr().err
    assert prior.main([str(vqvae_run), "--epochs", "2", "--resume"]) == 2
    assert "has trained 2 epochs, and --epochs counts them all; pass --epochs 3" in capsys.readouterr().err
    assert prior.main([str(vqvae_run), "--epochs", "3", "--resume"]) == 0
    history = json.loads((folder / "history.json").read_text())
    assert len(history["loss"]) == 3 and history["loss"][2] < history["loss"][0]
    # Drawn from the prior, decoded from the entries the drawn indices name.
    capsys.readouterr()
    assert sample.main([str(vqvae_run), "--count", "16", "--seed", "1"]) == 0
    with np.load(next((vqvae_run / "samples").glob("prior-*.npz"))) as saved:
        images, indices = saved["images"], saved["codes"]
    model = keras.saving.load_model(vqvae_run / "model.keras")
    assert indices.shape == (16, 7, 7) and indices.dtype.kind == "i"
    entries = np.asarray(model.encoder.quantizer.codebook)[indices]
    np.testing.assert_allclose(images, np.asarray(model.decode(entries)), atol=1e-6)
    # Better than codes drawn uniformly, on the default extractor.
    assert evaluate.main([str(vqvae_run), "--nll-samples", "0", "--examples", "500", "--fid"]) == 0
    measured = json.loads(capsys.readouterr().out.splitlines()[-1])["sample_quality"]
    assert measured["sampler"] == "prior"
    # Measured on the classifier evaluate used (trained on the run's images, kept in the cache), as it names it.
    name, layer = measured["extractor"].rsplit(":", 1)
    extractor = keras_extractor(cache_root() / "classifiers" / name, layer)
    data = load_sample()
    uniform = np.random.default_rng(0).integers(0, 64, (500, 7, 7))
    random_images = np.asarray(model.decode(np.asarray(model.encoder.quantizer.codebook)[uniform]))
    real = to_model_inputs(data.test_images[:500], (28, 28, 1))
    assert measured["fid"] < frechet_distance(extractor.features(real), extractor.features(random_images))


def test_a_prior_is_for_a_vqvae(tmp_path, capsys):
    old_run = __import__("pathlib").Path(__file__).parent / "fixtures" / "run-1c4794f"
    assert prior.main([str(old_run)]) == 2
    assert "conv has a continuous code" in capsys.readouterr().err
    assert not (old_run / "prior").exists()
