"""Disentanglement scores on codes whose answer is known, and the data with known factors they read."""

import numpy as np
import pytest

from aeloops.data.factors import DSprites, FactorData, Shapes, sample
from aeloops.evaluation import disentanglement

SIZES = (3, 6, 10)


def factors(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, size, count) for size in SIZES], axis=1)


def standardized(values: np.ndarray) -> np.ndarray:
    return (values - values.mean(axis=0)) / values.std(axis=0)


@pytest.fixture(scope="module")
def known():
    """Training and test factors, and three codes of them: the factors, noise, and the factors turned 45 degrees."""
    train, test = factors(1500, 0), factors(500, 1)
    rng = np.random.default_rng(2)
    turn = np.array([[np.cos(np.pi / 4), -np.sin(np.pi / 4), 0], [np.sin(np.pi / 4), np.cos(np.pi / 4), 0], [0, 0, 1]])
    codes = {
        "factors": (standardized(train.astype(float)), standardized(test.astype(float))),
        "noise": (rng.standard_normal((1500, 3)), rng.standard_normal((500, 3))),
        "turned": (standardized(train.astype(float)) @ turn.T, standardized(test.astype(float)) @ turn.T),
    }
    return train, test, codes


def test_mig_is_one_for_the_factors_zero_for_noise_and_falls_when_they_are_turned(known):
    train, _, codes = known
    scores = {name: disentanglement.mig(pair[0], train) for name, pair in codes.items()}
    assert scores["factors"] > 0.95
    assert scores["noise"] < 0.03
    # Turning mixes the first two factors into both dimensions: their gaps close, the third keeps its own.
    assert scores["turned"] < 0.5


def test_mig_is_the_gap_over_the_entropy_computed_the_slow_way():
    rng = np.random.default_rng(3)
    factor = rng.integers(0, 4, 2000)
    codes = np.stack([factor + 0.1 * rng.standard_normal(2000), rng.standard_normal(2000)], axis=1)
    binned = disentanglement.discretize(codes, 20)

    def information(x, y):  # Plug-in mutual information from the joint histogram, in nats.
        joint = np.zeros((x.max() + 1, y.max() + 1))
        np.add.at(joint, (x, y), 1)
        joint /= joint.sum()
        outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
        present = joint > 0
        return float(np.sum(joint[present] * np.log(joint[present] / outer[present])))

    first, second = information(binned[:, 0], factor), information(binned[:, 1], factor)
    expected = (max(first, second) - min(first, second)) / information(factor, factor)
    assert disentanglement.mig(codes, factor[:, None], 20) == pytest.approx(expected, abs=1e-9)


def test_dci_scores_the_factors_high_noise_low_and_turned_factors_as_entangled(known):
    train, test, codes = known
    scores = {name: disentanglement.dci(pair[0], train, pair[1], test) for name, pair in codes.items()}
    assert scores["factors"]["disentanglement"] > 0.9 and scores["factors"]["completeness"] > 0.9
    assert scores["factors"]["informativeness"] > 0.95
    assert scores["noise"]["disentanglement"] < 0.3 and scores["noise"]["completeness"] < 0.3
    assert scores["noise"]["informativeness"] < 0.4  # About chance: 1/3, 1/6 and 1/10.
    # Turned, the code still tells every factor, but two dimensions share two factors.
    assert scores["turned"]["informativeness"] > 0.9
    assert scores["turned"]["disentanglement"] < scores["factors"]["disentanglement"] - 0.2


def test_dci_of_an_importance_matrix_by_hand():
    # One dimension per factor: both 1. Every dimension explaining every factor alike: both 0.
    assert disentanglement._disentanglement(np.eye(3)) == pytest.approx(1.0)
    assert disentanglement._completeness(np.eye(3)) == pytest.approx(1.0)
    assert disentanglement._disentanglement(np.ones((3, 3))) == pytest.approx(0.0)
    assert disentanglement._completeness(np.ones((3, 3))) == pytest.approx(0.0)
    # Two dimensions for one factor: each is disentangled, the factor is not complete (entropy 1 bit of 2 codes).
    half = np.array([[0.5, 0.0], [0.5, 0.0]])
    assert disentanglement._disentanglement(half) == pytest.approx(1.0)
    assert disentanglement._completeness(half[:, :1]) == pytest.approx(0.0)


def test_sap_is_one_for_the_factors_as_ordinal_and_near_zero_for_noise(known):
    train, test, codes = known

    def score(name, continuous):
        return disentanglement.sap(codes[name][0], train, codes[name][1], test, continuous=continuous)

    # Each dimension correlates with its own factor alone: the gap is the whole correlation.
    assert score("factors", True) > 0.99
    assert score("noise", True) < 0.01
    # Turned 45 degrees, two dimensions correlate alike with each of two factors: no gap for them.
    assert score("turned", True) == pytest.approx(1 / 3, abs=0.06)  # Up to the sample correlations.
    # As classes (disentanglement_lib's default), one threshold per axis bounds the accuracy well below 1.
    assert 0.2 < score("factors", False) < 0.6
    assert score("noise", False) < 0.05
    assert score("turned", False) < score("factors", False) / 2


class FactorsAsPixels(FactorData):
    """Images that are their factors' values: the code of an ideal encoder is the image itself."""

    factor_names = ("a", "b", "c")
    factor_sizes = SIZES

    def images(self, factors):
        return np.asarray(factors, np.float32)[:, :, None, None]


def test_factor_vae_score_is_one_for_an_ideal_code_and_chance_for_noise():
    data = FactorsAsPixels()
    ideal = disentanglement.factor_vae_score(
        lambda images: images.reshape(len(images), -1), data, train_votes=300, test_votes=300
    )
    assert ideal == 1.0
    rng = np.random.default_rng(0)
    noise = disentanglement.factor_vae_score(
        lambda images: rng.standard_normal((len(images), 3)), data, train_votes=300, test_votes=300
    )
    assert noise < 0.5  # Chance is 1/3.


def test_metrics_refuse_codes_they_cannot_score():
    with pytest.raises(ValueError, match="NaN or Inf"):
        disentanglement.mig(np.full((10, 2), np.nan), np.zeros((10, 1), int))
    with pytest.raises(ValueError, match="codes' n = 10"):
        disentanglement.mig(np.zeros((10, 2)), np.zeros((9, 1), int))


def test_shapes_are_a_pure_function_of_their_factors_and_each_factor_changes_the_picture():
    shapes = Shapes()
    images, drawn = sample(shapes, 16, seed=4)
    again, redrawn = sample(shapes, 16, seed=4)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(drawn, redrawn)
    assert images.shape == (16, 64, 64, 1) and set(np.unique(images)) <= {0.0, 1.0}
    base = np.array([[2, 5, 3, 16, 16]])
    picture = shapes.images(base)
    for index, size in enumerate(shapes.factor_sizes):
        other = base.copy()
        other[0, index] = (base[0, index] + 1) % size
        assert np.any(shapes.images(other) != picture), shapes.factor_names[index]
    # Scale grows the shape; x moves its centre to the right.
    bigger = base.copy()
    bigger[0, 1] = 0
    assert shapes.images(bigger).sum() < picture.sum()
    right = base.copy()
    right[0, 3] = 31
    columns = np.arange(64)
    centre = lambda image: (image[0, :, :, 0].sum(0) * columns).sum() / image.sum()  # noqa: E731
    assert centre(shapes.images(right)) > centre(picture) + 10
    with pytest.raises(ValueError, match="lie in"):
        shapes.images(np.array([[3, 0, 0, 0, 0]]))


def test_dsprites_reads_each_factor_vector_at_its_place_in_the_file(tmp_path):
    class Small(DSprites):
        factor_sizes = (2, 3, 2, 2, 2)

    count = int(np.prod(Small.factor_sizes))
    imgs = np.zeros((count, 64, 64), np.uint8)
    imgs[:, 0, 0] = np.arange(count)  # Each image says its own index.
    path = tmp_path / "dsprites.npz"
    np.savez(path, imgs=imgs)
    data = Small(path)
    chosen = data.sample_factors(20, np.random.default_rng(0))
    found = data.images(chosen)[:, 0, 0, 0]
    np.testing.assert_array_equal(found, np.ravel_multi_index(chosen.T, Small.factor_sizes))
    np.savez(path, other=imgs)
    with pytest.raises(ValueError, match="no 'imgs' array"):
        Small(path)


def test_evaluate_scores_a_shapes_run_as_the_library_scores_its_model(tmp_path, monkeypatch, capsys):
    import json

    import keras

    from aeloops import evaluate, train
    from aeloops.data import factors, to_model_inputs

    monkeypatch.setattr(factors, "SHAPES_TRAIN", 256)
    monkeypatch.setattr(factors, "SHAPES_TEST", 64)
    run_dir = tmp_path / "run"
    arguments = ["--model", "betatcvae", "--dataset", "shapes", "--epochs", "1", "--batch-size", "64"]
    assert train.main([*arguments, "--mode", "graph", "--set", "model.dataset_size=256", "--run-dir", str(run_dir),
                       "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    chosen = ["--factor-examples", "120", "--factor-votes", "20", "--nll-samples", "0"]
    assert evaluate.main([str(run_dir), "--disentanglement", *chosen]) == 0
    found = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["disentanglement"]
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)

    def encode(images):
        return keras.ops.convert_to_numpy(model.encode(to_model_inputs(images, model.example_shape)))

    expected = disentanglement.scores(encode, Shapes(), examples=120, votes=20, seed=0)
    assert found["factors"] == "shapes" and found["examples"] == 120 and found["factor_vae_votes"] == 20
    for name in ("mig", "sap", "sap_continuous", "factor_vae_score"):
        assert found[name] == pytest.approx(expected[name], abs=1e-6), name
    assert found["dci"] == pytest.approx(expected["dci"], abs=1e-6)


def test_evaluate_refuses_disentanglement_of_a_run_without_known_factors(capsys):
    import pathlib

    from aeloops import evaluate

    old_run = pathlib.Path(__file__).parent / "fixtures" / "run-1c4794f"  # mnist-sample: no factors.
    assert evaluate.main([str(old_run), "--disentanglement"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "mnist-sample has none" in error and "--dataset shapes" in error
    assert evaluate.main([str(old_run), "--factors", "dsprites.npz"]) == 2
    assert "add --disentanglement" in capsys.readouterr().err
