"""The VAE family beyond the seed: IWAE's K-sample bound in training and evaluation."""

import keras
import numpy as np
import pytest

from aeloops import likelihood
from aeloops.data import binarize, to_model_inputs
from aeloops.loop import Trainer
from aeloops.models import ImportanceWeightedAutoencoder, registry


@pytest.fixture(scope="module")
def binary_images(small_images):
    return binarize(to_model_inputs(small_images[:512], (784,)), "fixed", seed=0)


def test_iwae_bound_tightens_with_k_and_matches_the_likelihood_module(binary_images):
    keras.utils.set_random_seed(0)
    model = ImportanceWeightedAutoencoder(samples=1)
    images = binary_images[:100]
    one = model(images, training=False)["negative_bound"].numpy()
    np.testing.assert_array_equal(model(images, training=False)["negative_bound"], one)  # Fixed draws.
    assert not np.array_equal(model(images, training=True)["negative_bound"], one)  # Fresh ones in training.
    model.samples = 500
    many = model(images, training=False)["negative_bound"].numpy()
    assert many.mean() < one.mean() - 1.0
    # The same bound as aeloops.likelihood computes with other draws: within a nat on average.
    reference = likelihood.negative_log_likelihood(model, images, samples=500)["nll"]
    assert many.mean() == pytest.approx(reference, abs=1.0)


def test_iwae_trains_on_its_bound_and_logs_the_one_sample_pieces(binary_images):
    keras.utils.set_random_seed(0)
    spec = registry.get("iwae")
    model = spec.build()
    objective = spec.objective(model)
    assert [(term.name, term.weight) for term in objective.terms] == [("iwae", 1.0), ("bce", 0.0), ("kl", 0.0)]
    trainer = Trainer(model, objective, mode="graph", steps_per_loop=4)
    history = trainer.fit(binary_images, epochs=2, batch_size=32, validation_data=binary_images[:64], verbose=0)
    assert history["loss"] == history["iwae"]  # The pieces weigh nothing.
    assert history["iwae"][1] < history["iwae"][0] and history["val_iwae"][1] < history["val_iwae"][0]
    # The K-sample bound is tighter than the one-sample ELBO it is logged beside.
    assert history["val_iwae"][-1] < history["val_bce"][-1] + history["val_kl"][-1]
