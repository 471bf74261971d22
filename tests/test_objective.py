import keras
import numpy as np
import pytest
import tensorflow as tf

from aeloops.objectives.objective import LossTerm, Objective

RNG = np.random.default_rng(2)
IMAGES = RNG.uniform(size=(6, 10)).astype(np.float32)
LOGITS = RNG.normal(size=(6, 10)).astype(np.float32)
CODE = RNG.normal(size=(6, 3)).astype(np.float32)
OUTPUTS = {"logits": LOGITS, "reconstruction": tf.sigmoid(LOGITS), "code": CODE}
BATCH = {"input": IMAGES}


def numpy_bce_from_logits(target, logits):
    probabilities = 1 / (1 + np.exp(-logits))
    return -(target * np.log(probabilities) + (1 - target) * np.log(1 - probabilities)).mean(axis=1)


def sparse_objective(weight=1e-2):
    return Objective(
        [
            LossTerm("bce", output="logits", loss="bce_logits"),
            LossTerm("sparsity", output="code", loss="l1", target=None, weight=weight),
        ]
    )


def test_terms_and_weighted_total_match_numpy():
    values = sparse_objective()(OUTPUTS, BATCH)
    bce = numpy_bce_from_logits(IMAGES, LOGITS).mean()
    sparsity = np.abs(CODE).sum(axis=1).mean()
    assert set(values) == {"bce", "sparsity", "loss"}
    np.testing.assert_allclose(values["bce"], bce, rtol=1e-5)
    np.testing.assert_allclose(values["sparsity"], sparsity, rtol=1e-5)
    np.testing.assert_allclose(values["loss"], bce + 1e-2 * sparsity, rtol=1e-5)


def test_user_written_loss_on_named_output():
    def squared_error(target, prediction):
        return (target - prediction) ** 2

    objective = Objective([LossTerm("custom", output="reconstruction", loss=squared_error, weight=2.0)])
    values = objective(OUTPUTS, BATCH)
    expected = ((IMAGES - tf.sigmoid(LOGITS).numpy()) ** 2).mean()
    np.testing.assert_allclose(values["custom"], expected, rtol=1e-5)
    np.testing.assert_allclose(values["loss"], 2 * expected, rtol=1e-5)


def test_weight_can_be_a_schedule_of_the_step():
    objective = sparse_objective(weight=lambda step: tf.cast(step, tf.float32) / 10.0)
    at_zero = objective(OUTPUTS, BATCH, step=0)
    at_five = objective(OUTPUTS, BATCH, step=5)
    np.testing.assert_allclose(at_zero["loss"], at_zero["bce"], rtol=1e-6)
    np.testing.assert_allclose(at_five["loss"], at_five["bce"] + 0.5 * at_five["sparsity"], rtol=1e-5)


def test_sample_weight_masks_padding():
    weights = np.array([1, 1, 1, 1, 0, 0], np.float32)
    values = sparse_objective()(OUTPUTS, BATCH, sample_weight=weights)
    # Averaged over the global batch of 6, padding contributing zero.
    expected = numpy_bce_from_logits(IMAGES, LOGITS)[:4].sum() / 6
    np.testing.assert_allclose(values["bce"], expected, rtol=1e-5)


def test_keras_layer_losses_become_a_term_of_their_own():
    layer = keras.layers.Dense(3, activity_regularizer=keras.regularizers.l2(0.1))
    code = layer(IMAGES)
    values = sparse_objective()({**OUTPUTS, "code": code}, BATCH, layer_losses=layer.losses)
    assert "layer_losses" in values
    penalty = 0.1 * np.sum(code.numpy() ** 2) / len(IMAGES)
    np.testing.assert_allclose(values["layer_losses"], penalty, rtol=1e-5)
    np.testing.assert_allclose(
        values["loss"], values["bce"] + 1e-2 * values["sparsity"] + values["layer_losses"], rtol=1e-5
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": "loss", "output": "logits", "loss": "mse"}, ValueError, "reserved"),
        ({"name": "x", "output": "", "loss": "mse"}, ValueError, "output must name"),
        ({"name": "x", "output": "code", "loss": "huber"}, ValueError, "Unknown loss"),
        ({"name": "x", "output": "code", "loss": "mse", "target": None}, ValueError, "no target"),
        ({"name": "x", "output": "code", "loss": 3}, TypeError, "name or a callable"),
        ({"name": "x", "output": "code", "loss": "mse", "weight": -1.0}, ValueError, ">= 0"),
        ({"name": "x", "output": "code", "loss": "mse", "weight": "big"}, TypeError, "weight"),
        ({"name": "x", "output": "code", "loss": "mse", "reduction": "max"}, ValueError, r"\('mean', 'sum'\)"),
    ],
)
def test_bad_terms_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        LossTerm(**kwargs)


def test_objective_validation_and_clear_errors_at_call():
    with pytest.raises(ValueError, match="at least one"):
        Objective([])
    with pytest.raises(ValueError, match="unique"):
        Objective([LossTerm("a", "logits", "mse"), LossTerm("a", "code", "l1", target=None)])
    with pytest.raises(ValueError, match="reads output 'head_3'"):
        Objective([LossTerm("a", "head_3", "mse")])(OUTPUTS, BATCH)
    with pytest.raises(ValueError, match="batch entry 'clean'"):
        Objective([LossTerm("a", "logits", "mse", target="clean")])(OUTPUTS, BATCH)


def test_a_loss_that_averages_the_batch_itself_is_refused():
    objective = Objective([LossTerm("scalar", "logits", lambda target, prediction: tf.reduce_mean(prediction))])
    with pytest.raises(ValueError, match="returned a scalar; it must return one value per example"):
        objective(OUTPUTS, BATCH)


@pytest.mark.parametrize("loss", ["bce", "mse", "mae"])
def test_a_sum_reduced_term_is_the_per_pixel_mean_times_the_pixels(loss):
    rng = np.random.default_rng(3)
    images = rng.uniform(size=(6, 28, 28, 1)).astype(np.float32)
    outputs = {"reconstruction": rng.uniform(0.05, 0.95, size=(6, 28, 28, 1)).astype(np.float32)}
    mean = LossTerm("r", output="reconstruction", loss=loss)
    summed = LossTerm("r", output="reconstruction", loss=loss, reduction="sum")
    per_pixel = mean.per_example(outputs, {"input": images}).numpy()
    per_image = summed.per_example(outputs, {"input": images}).numpy()
    np.testing.assert_allclose(per_image, 784 * per_pixel, rtol=1e-5)
    # A user's loss is reduced the same way; one that returns one value per example is used as it is.
    squared = LossTerm("r", output="reconstruction", loss=lambda t, p: (t - p) ** 2, reduction="sum")
    np.testing.assert_allclose(squared.per_example(outputs, {"input": images}), np.sum(
        (images - outputs["reconstruction"]) ** 2, axis=(1, 2, 3)), rtol=1e-5)  # fmt: skip
    own = LossTerm("r", output="reconstruction", loss=lambda t, p: tf.reduce_max(tf.abs(t - p), axis=[1, 2, 3]),
                   reduction="sum")  # fmt: skip
    np.testing.assert_allclose(own.per_example(outputs, {"input": images}), np.max(
        np.abs(images - outputs["reconstruction"]), axis=(1, 2, 3)), rtol=1e-6)  # fmt: skip
