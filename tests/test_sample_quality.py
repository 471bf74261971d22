"""FID, KID and precision/recall from features: against their definitions, computed the slow way."""

import numpy as np
import pytest
import tensorflow as tf

from aeloops.evaluation.sample_quality import (
    _unbiased_mmd2,
    frechet_distance,
    gaussian_frechet_distance,
    kernel_distance,
    precision_recall,
)


def test_the_frechet_distance_of_gaussians_is_its_closed_form_and_ignores_a_common_rotation():
    rng = np.random.default_rng(0)
    mean_a, mean_b = rng.normal(size=4), rng.normal(size=4)
    var_a, var_b = rng.uniform(0.5, 2.0, size=4), rng.uniform(0.5, 2.0, size=4)
    # Diagonal covariances: |mean_a - mean_b|^2 + sum (sqrt(var_a) - sqrt(var_b))^2.
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    found = gaussian_frechet_distance(mean_a, np.diag(var_a), mean_b, np.diag(var_b))
    assert found == pytest.approx(expected, rel=1e-9)
    rotation, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    cov_a, cov_b = rotation @ np.diag(var_a) @ rotation.T, rotation @ np.diag(var_b) @ rotation.T
    rotated = gaussian_frechet_distance(rotation @ mean_a, cov_a, rotation @ mean_b, cov_b)
    assert rotated == pytest.approx(expected, rel=1e-6)


def test_fid_of_samples_nears_the_closed_form_and_is_zero_for_one_set():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, size=(40000, 3))
    b = rng.normal(1.0, 2.0, size=(40000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, b) == pytest.approx(3 * 1.0 + 3 * (2.0 - 1.0) ** 2, rel=0.02)


def test_kid_is_the_unbiased_mmd_and_tells_equal_from_shifted_sets():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 5))

    def kernel(u, v):
        return (u @ v / 5 + 1.0) ** 3

    n = len(x)
    brute = (
        sum(kernel(x[i], x[j]) + kernel(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        - 2 * sum(kernel(x[i], y[j]) for i in range(n) for j in range(n)) / n**2
    )
    assert _unbiased_mmd2(x, y) == pytest.approx(brute, rel=1e-9)
    same = kernel_distance(rng.normal(size=(800, 5)), rng.normal(size=(800, 5)), subsets=20, subset_size=400)
    shifted = kernel_distance(rng.normal(size=(800, 5)), rng.normal(0.5, 1.0, size=(800, 5)), subsets=20,
                              subset_size=400)  # fmt: skip
    assert abs(same[0]) < 0.02 < shifted[0]


def test_precision_and_recall_count_points_inside_the_other_set_s_neighbourhoods():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(400, 2))
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)
    # Samples from one corner of the real data: all of them realistic, little of the data covered.
    corner = real[(real[:, 0] > 0.5) & (real[:, 1] > 0.5)]
    precision, recall = precision_recall(real, corner)
    assert precision == 1.0 and recall < 0.5
    # The share, computed point by point.
    k, support, points = 3, real[:50], rng.normal(size=(30, 2))
    radii = [sorted(np.linalg.norm(support - s, axis=1))[k] for s in support]
    inside = [any(np.linalg.norm(p - s) <= r for s, r in zip(support, radii)) for p in points]
    assert precision_recall(support, points, k=k)[0] == pytest.approx(np.mean(inside))


def test_a_keras_model_s_features_measure_samples_and_the_extractor_is_named(tmp_path):
    import keras

    from aeloops.data import load_sample, to_model_inputs
    from aeloops.evaluation.sample_quality import keras_extractor, sample_quality

    keras.utils.set_random_seed(0)
    inputs = keras.Input((784,))
    hidden = keras.layers.Dense(16, activation="relu", name="features")(inputs)
    classifier = keras.Model(inputs, keras.layers.Dense(10, name="classes")(hidden))
    classifier.save(tmp_path / "classifier.keras")
    extractor = keras_extractor(tmp_path / "classifier.keras")
    assert extractor.name == f"{tmp_path / 'classifier.keras'}:penultimate"
    images = to_model_inputs(load_sample().test_images[:600], (784,))
    kernel, bias = classifier.get_layer("features").get_weights()
    np.testing.assert_allclose(extractor.features(images), np.maximum(images @ kernel + bias, 0), atol=1e-5)
    real, fake = images[:300], images[300:]
    noise = np.random.default_rng(0).uniform(size=fake.shape).astype(np.float32)
    same, held_out, random = (sample_quality(real, other, extractor) for other in (real, fake, noise))
    assert same["fid"] == pytest.approx(0.0, abs=1e-6) and (same["precision"], same["recall"]) == (1.0, 1.0)
    assert held_out["fid"] < random["fid"] and held_out["kid"] < random["kid"]
    assert random["precision"] < held_out["precision"] and same["extractor"] == extractor.name


def test_the_default_extractor_is_trained_once_per_dataset_and_tells_test_from_noise(mnist, tmp_path):
    from aeloops.data import to_model_inputs
    from aeloops.evaluation.classifier import classifier_extractor, dataset_classifier
    from aeloops.evaluation.sample_quality import frechet_distance

    train = to_model_inputs(mnist.train_images[:3000], (28, 28, 1))
    test = to_model_inputs(mnist.test_images[:1000], (28, 28, 1))
    lines = []
    first = dataset_classifier(train, mnist.train_labels[:3000], test, mnist.test_labels[:1000],
                               directory=tmp_path, log=lines.append)  # fmt: skip
    assert len(lines) == 1 and "Training the default extractor" in lines[0]
    assert first.accuracy > 0.9 and first.path.parent == tmp_path
    again = dataset_classifier(train, mnist.train_labels[:3000], directory=tmp_path, log=lines.append)
    assert len(lines) == 1 and again.path == first.path and again.accuracy == first.accuracy  # Kept, not retrained.
    extractor = classifier_extractor(again)
    assert extractor.name == f"{first.path.name}:features"
    np.testing.assert_allclose(extractor.features(test[:64]), classifier_extractor(first).features(test[:64]),
                               atol=1e-5)  # fmt: skip
    # Other labels are another dataset: another classifier.
    other = dataset_classifier(train, (mnist.train_labels[:3000] + 1) % 10, directory=tmp_path, log=lines.append)
    assert other.path != first.path and len(lines) == 2
    # Held-out digits lie near the training digits in its features; noise lies far from them.
    noise = np.random.default_rng(0).random(test.shape, dtype=np.float32)
    features = extractor.features
    assert frechet_distance(features(train[:1000]), features(test)) * 20 < frechet_distance(
        features(train[:1000]), features(noise)
    )
    with pytest.raises(ValueError, match="give --extractor FILE.keras"):
        dataset_classifier(train, np.zeros(len(train), int), directory=tmp_path)


def test_inception_features_come_from_the_weights_file_on_resized_grey_images(tmp_path):
    import keras

    from aeloops.evaluation.sample_quality import inception_extractor

    keras.utils.set_random_seed(0)
    network = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                             input_shape=(299, 299, 3))  # fmt: skip
    weights = tmp_path / "inception.weights.h5"
    network.save_weights(weights)
    extractor = inception_extractor(weights, (28, 28, 1))
    assert extractor.name == "inception_v3:inception.weights.h5:pool"
    images = np.random.default_rng(1).random((4, 784), dtype=np.float32)  # A dense model's layout.
    found = extractor.features(images)
    # Keras's own preprocessing of 0-255 pixels, on the images resized and repeated to three channels.
    resized = tf.image.grayscale_to_rgb(tf.image.resize(images.reshape(4, 28, 28, 1), (299, 299)))
    expected = network(keras.applications.inception_v3.preprocess_input(resized.numpy() * 255.0))
    assert found.shape == (4, 2048)
    np.testing.assert_allclose(found, np.asarray(expected), rtol=1e-4, atol=1e-5)
