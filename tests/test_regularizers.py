import keras
import numpy as np

from aeloops.objectives import regularizers

ACTIVATION = np.random.default_rng(1).normal(size=(8, 4, 3)).astype(np.float32)


def test_l1_and_l2_sum_over_units_per_example():
    np.testing.assert_allclose(
        regularizers.l1_activity(ACTIVATION), np.abs(ACTIVATION).reshape(8, -1).sum(axis=1), rtol=1e-6
    )
    np.testing.assert_allclose(
        regularizers.l2_activity(ACTIVATION), (ACTIVATION**2).reshape(8, -1).sum(axis=1), rtol=1e-6
    )


def test_batch_mean_of_l1_equals_keras_activity_regularizer():
    # Keras 3.14+ divides the activity penalty by the batch size; the mean of
    # aeloops' per-example values times the weight must be the same number.
    layer = keras.layers.Activation("linear", activity_regularizer=keras.regularizers.l1(1e-4))
    layer(ACTIVATION)
    (keras_penalty,) = layer.losses
    ours = 1e-4 * np.mean(regularizers.l1_activity(ACTIVATION))
    np.testing.assert_allclose(float(keras_penalty), ours, rtol=1e-5)
