"""The VAE family beyond the seed: IWAE's K-sample bound in training and evaluation."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from aeloops.data import binarize, to_model_inputs
from aeloops.evaluation import likelihood
from aeloops.models import ImportanceWeightedAutoencoder, quantized, registry, total_correlation, wasserstein
from aeloops.training.trainer import Trainer


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
    # The same bound as aeloops.evaluation.likelihood computes with other draws: within a nat on average.
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


def test_wae_mmd_per_example_shares_average_to_the_unbiased_estimate():
    rng = np.random.default_rng(0)
    codes, prior = rng.normal(size=(12, 3)).astype(np.float32), rng.normal(size=(12, 3)).astype(np.float32)
    shares = wasserstein.imq_mmd_per_example(codes, prior).numpy()

    def kernel(left, right):
        distances = np.sum((left[:, None] - right[None]) ** 2, axis=-1)
        return sum(6.0 * scale / (6.0 * scale + distances) for scale in (0.1, 0.2, 0.5, 1, 2, 5, 10))

    off = 1 - np.eye(12)
    expected = (np.sum(kernel(codes, codes) * off) + np.sum(kernel(prior, prior) * off)) / (12 * 11) - 2 * np.mean(
        kernel(codes, prior)
    )
    assert shares.shape == (12,) and shares.mean() == pytest.approx(expected, rel=1e-5)
    # Codes from the prior itself are near 0 on average; shifted ones are far.
    near = np.mean([wasserstein.imq_mmd_per_example(rng.normal(size=(64, 3)).astype(np.float32),
                                                    rng.normal(size=(64, 3)).astype(np.float32)).numpy().mean()
                    for _ in range(20)])  # fmt: skip
    far = wasserstein.imq_mmd_per_example((rng.normal(size=(64, 3)) + 2).astype(np.float32), prior[:1].repeat(64, 0))
    assert abs(near) < 0.01 and far.numpy().mean() > 0.2


def test_wae_pulls_its_codes_toward_the_prior(binary_images):
    codes, histories = {}, {}
    for weight in (0.0, 10.0):
        keras.utils.set_random_seed(0)
        model = registry.get("wae").build()
        trainer = Trainer(model, wasserstein.wae_objective(model, weight=weight), mode="graph", steps_per_loop=4)
        histories[weight] = trainer.fit(binary_images, epochs=6, batch_size=64, validation_data=binary_images[:128],
                                        verbose=0)  # fmt: skip
        codes[weight] = model.encode(binary_images[:256]).numpy()
    # Measured: the codes' largest mean 0.65 and spread 2.1-3.7 with the penalty; far off without it.
    assert np.abs(codes[10.0].mean(axis=0)).max() < 1.5 < np.abs(codes[0.0].mean(axis=0)).max()
    assert histories[10.0]["val_mmd"][-1] < 0.5 * histories[0.0]["val_mmd"][-1]
    assert histories[10.0]["val_squared_error"][-1] < 70  # Still reconstructs (summed over 784 pixels).
    assert model.sample(4, seed=1).shape == (4, 784)


def test_beta_tc_terms_follow_minibatch_weighted_sampling_and_sum_to_the_kl_estimate():
    rng = np.random.default_rng(1)
    code, mean = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    log_variance = rng.normal(scale=0.3, size=(6, 3))
    tensors = (tf.constant(array, tf.float32) for array in (code, mean, log_variance))
    terms = total_correlation.minibatch_weighted_terms(*tensors, dataset_size=1000)
    terms = {name: value.numpy() for name, value in terms.items()}
    # NumPy, term by term from the paper's estimator: log q(z_i) = logsumexp_j log q(z_i | x_j) - log(N B).
    squared = (code[:, None] - mean[None]) ** 2 / np.exp(log_variance)[None]
    density = -0.5 * (np.log(2 * np.pi) + log_variance[None] + squared)
    log_nm = np.log(1000 * 6)
    log_q_z = np.logaddexp.reduce(density.sum(axis=2), axis=1) - log_nm
    log_product = np.sum(np.logaddexp.reduce(density, axis=1) - log_nm, axis=1)
    log_q_z_given_x = np.array([density[i, i].sum() for i in range(6)])
    log_prior = np.sum(-0.5 * code**2 - 0.5 * np.log(2 * np.pi), axis=1)
    np.testing.assert_allclose(terms["mutual_information"], log_q_z_given_x - log_q_z, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(terms["total_correlation"], log_q_z - log_product, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(terms["dimension_kl"], log_product - log_prior, rtol=1e-4, atol=1e-4)
    total = terms["mutual_information"] + terms["total_correlation"] + terms["dimension_kl"]
    np.testing.assert_allclose(total, log_q_z_given_x - log_prior, rtol=1e-4, atol=1e-4)


def test_beta_tc_vae_weights_only_the_total_correlation(binary_images):
    keras.utils.set_random_seed(0)
    spec = registry.get("betatcvae")
    model = spec.build()
    objective = spec.objective(model)
    weights = {term.name: term.weight for term in objective.terms}
    assert weights == {"bce": 1.0, "mutual_information": 1.0, "total_correlation": 6.0, "dimension_kl": 1.0,
                       "kl": 0.0}  # fmt: skip
    trainer = Trainer(model, objective, mode="graph", steps_per_loop=4)
    history = trainer.fit(binary_images, epochs=2, batch_size=64, verbose=0)
    parts = (history[name] for name in ("bce", "mutual_information", "total_correlation", "dimension_kl"))
    expected = [bce + mi + 6 * tc + kl for bce, mi, tc, kl in zip(*parts)]
    np.testing.assert_allclose(history["loss"], expected, rtol=1e-5)
    assert history["loss"][1] < history["loss"][0]


def test_vector_quantizer_snaps_to_the_nearest_entry_and_passes_gradients_straight_through():
    quantizer = quantized.VectorQuantizer(entries=5, seed=0)
    vectors = tf.constant(np.random.default_rng(2).normal(size=(3, 2, 2, 4)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(vectors)
        outputs = quantizer(vectors)
        total = tf.reduce_sum(outputs["quantized"] * 3.0)
    codebook = quantizer.codebook.numpy()
    distances = np.sum((vectors.numpy()[..., None, :] - codebook) ** 2, axis=-1)
    np.testing.assert_array_equal(outputs["indices"], distances.argmin(axis=-1))
    np.testing.assert_allclose(outputs["quantized"], codebook[distances.argmin(axis=-1)], atol=1e-6)
    np.testing.assert_allclose(tape.gradient(total, vectors), np.full(vectors.shape, 3.0))  # Straight through.
    np.testing.assert_allclose(outputs["commitment"], distances.min(axis=-1).sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(outputs["codebook"], outputs["commitment"], rtol=1e-6)  # Same value, other gradient.
    usage = np.bincount(distances.argmin(axis=-1).ravel(), minlength=5) / 12
    used = usage[usage > 0]
    assert float(outputs["perplexity"][0]) == pytest.approx(np.exp(-np.sum(used * np.log(used))), rel=1e-5)


def test_vqvae_trains_its_codebook_and_logs_the_perplexity(small_images):
    images = to_model_inputs(small_images[:1024], (28, 28, 1))
    keras.utils.set_random_seed(0)
    spec = registry.get("vqvae")
    model = spec.build()
    objective = spec.objective(model)
    weights = {term.name: term.weight for term in objective.terms}
    assert weights == {"bce": 1.0, "codebook": 1.0, "commitment": 0.25, "perplexity": 0.0}
    before = model.encoder.quantizer.codebook.numpy().copy()
    history = Trainer(model, objective, mode="graph", steps_per_loop=8).fit(images, epochs=2, batch_size=64, verbose=0)
    assert history["bce"][1] < history["bce"][0]
    assert not np.allclose(model.encoder.quantizer.codebook.numpy(), before)  # The codebook term moved it.
    assert all(1.0 <= value <= 64.0 for value in history["perplexity"])
    codes = model.encode(images[:8]).numpy().reshape(-1, 16)
    entries = model.encoder.quantizer.codebook.numpy()
    assert np.min(np.abs(codes[:, None, :] - entries[None]).sum(axis=-1), axis=1).max() < 1e-5  # Codes are entries.


def test_the_registered_aae_trains_with_its_discriminator_and_resumes_exactly(binary_images, tmp_path):
    from aeloops.runs import experiment
    from aeloops.runs.checkpoints import Checkpointer
    from aeloops.runs.config import TrainConfig
    from aeloops.training.adversarial import AdversarialTrainer

    images = binary_images[:256]

    def build():
        keras.utils.set_random_seed(0)
        return experiment.build_trainer(TrainConfig(model="aae", mode="graph", steps_per_loop=4))

    uninterrupted = build()
    assert isinstance(uninterrupted, AdversarialTrainer)  # The CLI's aae trains with its own step.
    history = uninterrupted.fit(images, epochs=2, batch_size=32, verbose=0)
    for name in ("discriminator", "generator", "discriminator_gradient_norm", "generator_gradient_norm", "bce"):
        assert len(history[name]) == 2 and np.isfinite(history[name]).all()
    assert history["bce"][1] < history["bce"][0]
    first = build()
    first.fit(images, epochs=1, batch_size=32, verbose=0)
    Checkpointer(first, tmp_path).save()
    resumed = build()
    assert Checkpointer(resumed, tmp_path).restore()
    resumed.fit(images, epochs=2, initial_epoch=1, batch_size=32, verbose=0)
    for ours, theirs in zip(resumed.discriminator.weights + resumed.model.weights,
                            uninterrupted.discriminator.weights + uninterrupted.model.weights):  # fmt: skip
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_the_aae_step_computes_both_adversaries_losses_as_defined_and_updates_what_each_owns(binary_images):
    from aeloops.training.adversarial import AdversarialTrainer

    images = binary_images[:64]

    def trainer(rate, adversarial_rate):
        keras.utils.set_random_seed(0)
        return AdversarialTrainer(registry.get("aae").build(), optimizer=keras.optimizers.SGD(rate),
                                  adversarial_learning_rate=adversarial_rate, mode="eager")  # fmt: skip

    def softplus(x):
        return np.logaddexp(0.0, x)

    frozen = trainer(0.0, 0.0)  # Nothing moves: the logged losses are those of the weights as they are.
    prior = tf.random.Generator.from_state(frozen.prior.state.numpy(), alg=frozen.prior.algorithm)  # A copy.
    codes = frozen.model.encode(images, training=True)
    real = frozen.discriminator(prior.normal(tf.shape(codes))).numpy()
    fake = frozen.discriminator(codes).numpy()
    history = frozen.fit(images, epochs=1, batch_size=64, shuffle=False, verbose=0)
    # Prior draws are real (label 1), codes fake (label 0); the generator wants its codes called real.
    np.testing.assert_allclose(history["discriminator"][0], np.mean(softplus(-real) + softplus(fake)), rtol=1e-5)
    np.testing.assert_allclose(history["generator"][0], np.mean(softplus(-fake)), rtol=1e-5)

    def moved(trained, before):
        return [not np.array_equal(a.numpy(), b) for a, b in zip(trained, before)]

    for rate, adversarial_rate in ((0.0, 1e-2), (1e-2, 0.0)):
        step = trainer(rate, adversarial_rate)
        parts = {"encoder": step.model.encoder.weights, "decoder": step.model.decoder.weights,
                 "discriminator": step.discriminator.weights}  # fmt: skip
        before = {name: [v.numpy().copy() for v in weights] for name, weights in parts.items()}
        step.fit(images, epochs=1, batch_size=64, shuffle=False, verbose=0)
        changed = {name: any(moved(parts[name], before[name])) for name in parts}
        if rate == 0.0:  # Only the adversaries: the discriminator, and the encoder as the generator.
            assert changed == {"encoder": True, "decoder": False, "discriminator": True}
        else:  # Only the reconstruction: encoder and decoder.
            assert changed == {"encoder": True, "decoder": True, "discriminator": False}


@pytest.mark.parametrize("name", ["vae", "iwae", "betatcvae", "convvae"])
def test_a_log_variance_bound_keeps_an_exploding_encoder_finite_and_is_saved(name, tmp_path):
    """A log-variance of 100 (as weights blown up by a large step give) overflows exp to Inf; bounded, it cannot."""
    spec = registry.get(name)
    shape = (28, 28, 1) if name != "convvae" else (32, 32, 3)
    images = np.random.default_rng(0).uniform(size=(4, *shape)).astype(np.float32)
    outputs = {}
    for bound in (None, 5.0):
        keras.utils.set_random_seed(0)
        model = spec.build(shape, log_variance_bound=bound)
        layer = model.encoder.log_variance_layer
        layer.bias.assign(np.full(layer.bias.shape, 100.0, np.float32))
        inputs = to_model_inputs(images, model.example_shape)
        outputs[bound] = model(inputs, training=True)
    assert not np.all(np.isfinite(outputs[None]["kl"]))
    log_variance = outputs[5.0]["log_variance"].numpy()
    assert np.all(log_variance <= 5.0) and np.all(log_variance > 4.99)  # 5 tanh(20): at the bound, not past it.
    assert np.all(np.isfinite(outputs[5.0]["kl"])) and np.all(np.isfinite(outputs[5.0]["code"]))
    # Near zero the bound changes nothing; and model.keras keeps it.
    assert float(5.0 * np.tanh(0.3 / 5.0)) == pytest.approx(0.3, abs=1e-3)
    model.save(tmp_path / "model.keras")
    again = keras.saving.load_model(tmp_path / "model.keras")
    assert again.encoder.log_variance_bound == 5.0
    np.testing.assert_array_equal(again(inputs)["log_variance"], model(inputs)["log_variance"])


def test_a_log_variance_bound_that_bounds_nothing_is_refused():
    with pytest.raises(ValueError, match=r"log_variance_bound must be a positive number \(e.g. 10\), got -1"):
        registry.get("vae").build((28, 28, 1), log_variance_bound=-1)


def collapsed_vqvae(reseed_after):
    """A VQ-VAE whose codebook has collapsed: every entry but the first far from any code."""
    keras.utils.set_random_seed(0)
    model = registry.get("vqvae").build((28, 28, 1), reseed_after=reseed_after)
    quantizer = model.encoder.quantizer
    far = np.full(quantizer.codebook.shape, 100.0, np.float32)
    far[0] = 0.0
    quantizer.codebook.assign(far)
    return model


def test_vqvae_reseeds_entries_unused_for_n_steps_from_encoder_outputs(small_images):
    images = to_model_inputs(small_images[:512], (28, 28, 1))
    used = {}
    for reseed_after in (None, 3):
        model = collapsed_vqvae(reseed_after)
        assert np.count_nonzero(model.codebook_usage(images)) == 1
        trainer = Trainer(model, mode="graph", steps_per_loop=4)
        trainer.fit(images, epochs=1, batch_size=64, verbose=0)
        used[reseed_after] = np.count_nonzero(model.codebook_usage(images))
        if reseed_after:  # Re-seeded entries lie among the codes, not at 100; none has waited past 3 steps.
            assert np.abs(model.encoder.quantizer.codebook.numpy()).max() < 100.0
            assert model.encoder.quantizer.steps_unused.numpy().max() < reseed_after
    assert used[None] == 1  # Collapsed for good: no gradient reaches an entry no code chooses.
    assert used[3] > 16


def test_a_reseeding_vqvae_resumes_exactly_and_tensorboard_shows_its_codebook_usage(small_images, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from aeloops.runs.checkpoints import Checkpointer
    from aeloops.tensorboard.summaries import SummaryWriter

    images = to_model_inputs(small_images[:512], (28, 28, 1))
    alone = Trainer(collapsed_vqvae(2), mode="graph", steps_per_loop=4)
    alone.fit(images, epochs=2, batch_size=64, verbose=0)
    first = Trainer(collapsed_vqvae(2), mode="graph", steps_per_loop=4)
    first.fit(images, epochs=1, batch_size=64, callbacks=[Checkpointer(first, tmp_path / "ckpt")], verbose=0)
    resumed = Trainer(collapsed_vqvae(2), mode="graph", steps_per_loop=4)
    assert Checkpointer(resumed, tmp_path / "ckpt").restore()
    writer = SummaryWriter(resumed, tmp_path / "tb", histogram_examples=images[:200])
    resumed.fit(images, epochs=2, batch_size=64, callbacks=[writer], verbose=0)
    for ours, theirs in zip(resumed.model.weights, alone.model.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
    counts = resumed.model.codebook_usage(images[:200])
    share = counts / counts.sum()
    accumulator = EventAccumulator(str(tmp_path / "tb" / "validation"), size_guidance={"tensors": 0}).Reload()
    shown = {tag: float(tf.make_ndarray(accumulator.Tensors(tag)[-1].tensor_proto)) for tag in
             ("codebook/entries_used", "codebook/perplexity")}  # fmt: skip
    assert shown["codebook/entries_used"] == np.count_nonzero(counts) > 1
    assert shown["codebook/perplexity"] == pytest.approx(np.exp(-np.sum(share * np.log(share + 1e-10))), rel=1e-6)


def test_a_collapsed_code_is_said_and_the_advice_followed_literally_keeps_it(tmp_path, capsys):
    import shlex

    from aeloops import train
    from aeloops.runs.outputs import COLLAPSED_KL, collapsed_code

    # The line's two advices: a Gaussian decoder's likelihood, else a KL warm-up; no line for a code in use.
    vae = registry.get("vae").build()
    assert collapsed_code(vae, {"kl": [9.0, 2.0], "val_kl": [8.0, 3e-5]}).count("--set objective.kl.") == 2
    assert collapsed_code(vae, {"kl": [9.0, 0.5]}) is None and collapsed_code(vae, {"loss": [1.0]}) is None
    # convvae's Gaussian pixels on MNIST: the scale shrinks onto the black background and the KL goes to 0.
    arguments = ["--model", "convvae", "--dataset", "mnist-sample", "--epochs", "2", "--mode", "graph", "--quiet"]
    assert train.main([*arguments, "--run-dir", str(tmp_path / "gaussian")]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("The code collapsed")]
    advice = shlex.split(line.rsplit("train it with ", 1)[1].rstrip("."))
    assert advice == ["--set", "model.likelihood=bernoulli"]
    assert train.main([*arguments, *advice, "--run-dir", str(tmp_path / "followed")]) == 0
    history = json.loads((tmp_path / "followed" / "history.json").read_text())
    assert "The code collapsed" not in capsys.readouterr().out
    assert history["val_kl"][-1] > 100 * COLLAPSED_KL
