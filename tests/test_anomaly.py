import numpy as np
import pytest

from aeloops.data import to_model_inputs
from aeloops.evaluation.anomaly import anomaly_scores, pick_threshold
from aeloops.models import registry
from aeloops.training.trainer import Trainer


def test_scores_flag_noise_images_not_digits(small_images, small_test_images):
    model = registry.get("dense").build()
    trainer = Trainer(model, registry.get("dense").objective(model), mode="graph", steps_per_loop=8)
    train = to_model_inputs(small_images, (784,))
    trainer.fit(train, epochs=3, batch_size=64, verbose=0)
    digits = to_model_inputs(small_test_images, (784,))
    noise = np.random.default_rng(0).uniform(size=(100, 784)).astype(np.float32)
    threshold = pick_threshold(anomaly_scores(trainer, train), k=3.0)
    digit_scores, noise_scores = anomaly_scores(trainer, digits), anomaly_scores(trainer, noise)
    assert digit_scores.shape == (500,)
    assert (noise_scores > threshold).mean() == 1.0
    assert (digit_scores > threshold).mean() < 0.05
    # The score is the reconstruction term itself: its mean is the evaluated BCE.
    assert digit_scores.mean() == pytest.approx(trainer.evaluate(digits)["bce"], rel=1e-4)


def test_regularizers_do_not_count_and_thresholds():
    model = registry.get("sparse").build()
    trainer = Trainer(model, registry.get("sparse").objective(model), mode="graph")
    images = np.random.default_rng(1).uniform(size=(10, 784)).astype(np.float32)
    result = trainer.evaluate(images)
    assert anomaly_scores(trainer, images).mean() == pytest.approx(result["bce"], rel=1e-4)
    scores = np.arange(101, dtype=np.float64)
    assert pick_threshold(scores, "quantile", quantile=0.9) == pytest.approx(90.0)
    assert pick_threshold(scores, k=1.0) == pytest.approx(50 + scores.std())
    with pytest.raises(ValueError, match="non-empty 1-D"):
        pick_threshold(np.array([np.nan]))
    with pytest.raises(ValueError, match="method must be"):
        pick_threshold(scores, "median")
