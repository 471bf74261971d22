import numpy as np
import pytest
import tensorflow as tf

from aeloops.objectives import losses

RNG = np.random.default_rng(0)
TARGET = RNG.uniform(size=(4, 6, 5)).astype(np.float32)
PREDICTION = RNG.uniform(0.01, 0.99, size=(4, 6, 5)).astype(np.float32)


def test_mean_squared_error_matches_numpy():
    expected = ((TARGET - PREDICTION) ** 2).reshape(4, -1).mean(axis=1)
    np.testing.assert_allclose(losses.mean_squared_error(TARGET, PREDICTION), expected, rtol=1e-6)


def test_mean_absolute_error_matches_numpy():
    expected = np.abs(TARGET - PREDICTION).reshape(4, -1).mean(axis=1)
    np.testing.assert_allclose(losses.mean_absolute_error(TARGET, PREDICTION), expected, rtol=1e-6)


def test_binary_crossentropy_matches_numpy_and_keras():
    expected = -(TARGET * np.log(PREDICTION) + (1 - TARGET) * np.log(1 - PREDICTION))
    expected = expected.reshape(4, -1).mean(axis=1)
    np.testing.assert_allclose(losses.binary_crossentropy(TARGET, PREDICTION), expected, rtol=1e-5)
    keras_value = tf.keras.losses.BinaryCrossentropy()(TARGET, PREDICTION)
    np.testing.assert_allclose(np.mean(losses.binary_crossentropy(TARGET, PREDICTION)), keras_value, rtol=1e-5)


def test_crossentropy_from_logits_equals_crossentropy_of_sigmoid():
    logits = RNG.normal(size=(4, 6, 5)).astype(np.float32)
    np.testing.assert_allclose(
        losses.binary_crossentropy_from_logits(TARGET, logits),
        losses.binary_crossentropy(TARGET, tf.sigmoid(logits)),
        rtol=1e-5,
    )


def test_crossentropy_from_logits_is_finite_for_extreme_logits():
    logits = np.array([[1e4, -1e4]], np.float32)
    value = losses.binary_crossentropy_from_logits(np.array([[0.0, 1.0]], np.float32), logits)
    np.testing.assert_allclose(value, [1e4], rtol=1e-6)


def test_get_by_name_and_callable():
    assert losses.get("bce") is losses.binary_crossentropy
    assert losses.get("mse") is losses.mean_squared_error

    def custom(target, prediction):
        return target - prediction

    assert losses.get(custom) is custom
    with pytest.raises(ValueError, match="Unknown loss 'huber'"):
        losses.get("huber")
