import keras
import numpy as np
import pytest
import tensorflow as tf

from aeloops.models import (
    Autoencoder,
    ConvAutoencoder,
    Decoder,
    DenseAutoencoder,
    DenseDecoder,
    DenseEncoder,
    Encoder,
    registry,
)

# (name, input shape, parameters, output names, code shape): the seed's table.
SEED_MODELS = [
    ("rowwise", (28, 28), 8420, {"code", "hidden_1", "hidden_2", "reconstruction"}, (28, 8)),
    ("dense", (784,), 105944, {"code", "hidden_1", "hidden_2", "logits", "reconstruction"}, (8,)),
    ("sparse", (784,), 50992, {"code", "logits", "reconstruction"}, (32,)),
    ("deep", (784,), 222384, {"code", "hidden_1", "hidden_2", "logits", "reconstruction"}, (32,)),
    ("conv", (28, 28, 1), 4385, {"code", "hidden_1", "hidden_2", "logits", "reconstruction"}, (4, 4, 8)),
    ("twohead", (28, 28), 284, {"code", "code_1", "code_2", "head_1", "head_2", "reconstruction"}, (28, 4)),
]
# Beyond the seed: the Keras blog's other models and TensorFlow's tutorial model.
MORE_MODELS = [
    ("denoising", (28, 28, 1), 28353, {"code", "hidden_1", "logits", "reconstruction"}, (7, 7, 32)),
    ("vae", (784,), 404244, {"code", "hidden_1", "kl", "log_variance", "logits", "mean", "reconstruction"}, (2,)),
    # Burda et al.'s (and pythae's) one-stochastic-layer IWAE for MNIST.
    (
        "iwae",
        (784,),
        425284,
        {"code", "hidden_1", "hidden_2", "kl", "log_variance", "logits", "mean", "negative_bound", "reconstruction"},
        (50,),
    ),
    ("wae", (784,), 635192, {"code", "hidden_1", "logits", "mmd", "reconstruction"}, (8,)),
    ("aae", (784,), 3588792, {"code", "hidden_1", "hidden_2", "logits", "reconstruction"}, (8,)),
    (
        "vqvae",
        (28, 28, 1),
        25297,
        {"code", "codebook", "commitment", "encoded", "indices", "logits", "perplexity", "reconstruction"},
        (7, 7, 16),
    ),  # fmt: skip
    (
        "betatcvae",
        (784,),
        640804,
        {
            "code",
            "dimension_kl",
            "hidden_1",
            "kl",
            "log_variance",
            "logits",
            "mean",
            "mutual_information",
            "reconstruction",
            "total_correlation",
        },
        (10,),
    ),  # fmt: skip
    ("seq2seq", (28, 28), 58652, {"code", "logits", "reconstruction"}, (64,)),
    ("convtranspose", (28, 28, 1), 3217, {"code", "logits", "reconstruction"}, (7, 7, 8)),
]
SEED_MODELS = SEED_MODELS + MORE_MODELS
IDS = [spec[0] for spec in SEED_MODELS]


@pytest.mark.parametrize(("name", "shape", "parameters", "outputs", "code_shape"), SEED_MODELS, ids=IDS)
def test_seed_model_architecture(name, shape, parameters, outputs, code_shape):
    model = registry.get(name).build()
    assert model.count_params() == parameters
    images = np.random.default_rng(0).uniform(size=(3, *shape)).astype(np.float32)
    result = model(images)
    assert set(result) == outputs
    assert result["reconstruction"].shape == (3, *shape)
    assert result["code"].shape == (3, *code_shape)
    np.testing.assert_allclose(model.reconstruct(images), result["reconstruction"], rtol=1e-6)
    if "logits" in result:
        np.testing.assert_allclose(result["reconstruction"], tf.sigmoid(result["logits"]), rtol=1e-6)
        assert float(tf.reduce_min(result["reconstruction"])) >= 0.0
        assert float(tf.reduce_max(result["reconstruction"])) <= 1.0


@pytest.mark.parametrize(("name", "shape", "parameters", "outputs", "code_shape"), SEED_MODELS, ids=IDS)
def test_encoder_and_decoder_work_alone(name, shape, parameters, outputs, code_shape):
    model = registry.get(name).build()
    images = np.random.default_rng(1).uniform(size=(2, *shape)).astype(np.float32)
    code = model.encode(images)
    assert code.shape == (2, *code_shape)
    np.testing.assert_allclose(model.decode(code), model.reconstruct(images), rtol=1e-4, atol=1e-5)
    # A code that never came from the encoder decodes too.
    invented = np.random.default_rng(2).normal(size=(5, *code_shape)).astype(np.float32)
    assert model.decoder.decode(invented).shape == (5, *shape)
    assert model.encoder.encode(images).shape == code.shape


@pytest.mark.parametrize(("name", "shape", "parameters", "outputs", "code_shape"), SEED_MODELS, ids=IDS)
def test_save_and_load_round_trip(tmp_path, name, shape, parameters, outputs, code_shape):
    model = registry.get(name).build()
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.count_params() == parameters
    images = np.random.default_rng(3).uniform(size=(4, *shape)).astype(np.float32)
    expected, actual = model(images), loaded(images)
    assert set(actual) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key])


def test_registry_objectives_match_the_seed():
    sparse = registry.get("sparse")
    terms = {term.name: term for term in sparse.objective(sparse.build()).terms}
    assert terms["sparsity"].weight == pytest.approx(1e-4) and terms["sparsity"].output == "code"
    assert registry.get("rowwise").objective(registry.get("rowwise").build()).names == ("mse",)
    two = registry.get("twohead")
    assert two.objective(two.build()).names == ("head_1_bce", "head_2_squared_error")
    with pytest.raises(ValueError, match="Unknown model 'nope'"):
        registry.get("nope")


@keras.saving.register_keras_serializable(package="aeloops_tests")
class TinyEncoder(Encoder):
    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.layer = keras.layers.Dense(units, activation="tanh")

    def call(self, inputs, training=None):
        return self.layer(inputs)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_user_encoder_with_library_decoder_round_trips(tmp_path):
    model = Autoencoder(TinyEncoder(3), DenseDecoder((5,), 6), input_shape=(6,))
    assert model.count_params() == (6 * 3 + 3) + (3 * 5 + 5) + (5 * 6 + 6)
    assert model.default_objective().names == ("bce",)
    model.save(tmp_path / "custom.keras")
    loaded = keras.saving.load_model(tmp_path / "custom.keras")
    images = np.random.default_rng(4).uniform(size=(2, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded.reconstruct(images), model.reconstruct(images))


@pytest.mark.parametrize("name", registry.names())
def test_a_registered_model_s_options_are_what_it_is_built_with_and_a_width_changes_it(name):
    spec = registry.get(name)
    built = spec.build((8, 8, 1))
    config = built.get_config()
    # The options are the very arguments the registry builds with (lists as get_config keeps them); one
    # left to None the model chooses for the images.
    as_built = {
        option: list(value) if isinstance(value, tuple) else value
        for option, value in spec.options.items()
        if value is not None
    }
    assert {option: config[option] for option in as_built} == as_built
    assert "seed" not in spec.options and spec.options, name
    widths = {option: value for option, value in spec.options.items() if option.endswith(("units", "filters"))}
    if widths:
        option, value = next(iter(widths.items()))
        wider = [width + 1 for width in value] if isinstance(value, (tuple, list)) else value + 1
        assert spec.build((8, 8, 1), **{option: wider}).count_params() > built.count_params(), option


def test_constructor_arguments_are_validated():
    with pytest.raises(ValueError, match="units must be a sequence of positive ints"):
        DenseEncoder(units=(64, 0))
    with pytest.raises(ValueError, match="output_activation"):
        DenseAutoencoder(output_activation="softmax")
    with pytest.raises(ValueError, match="input_shape"):
        DenseAutoencoder(input_shape=())
    with pytest.raises(ValueError, match="produces"):
        ConvAutoencoder(input_shape=(32, 32, 1), decoder_paddings=("same", "valid", "valid"))
    with pytest.raises(ValueError, match="height, width, channels"):
        ConvAutoencoder(input_shape=(784,))
    with pytest.raises(TypeError, match="aeloops Encoder"):
        Autoencoder(keras.layers.Dense(3), DenseDecoder())
    with pytest.raises(TypeError, match="aeloops Decoder"):
        Autoencoder(DenseEncoder(), keras.layers.Dense(3))
    assert issubclass(DenseDecoder, Decoder)


def test_vae_samples_in_training_and_states_its_kl():
    model = registry.get("vae").build()
    images = np.random.default_rng(5).uniform(size=(4, 784)).astype(np.float32)
    evaluation = model(images, training=False)
    np.testing.assert_array_equal(evaluation["code"], evaluation["mean"])
    training = model(images, training=True)
    assert not np.allclose(training["code"], training["mean"])
    mean, log_variance = evaluation["mean"].numpy(), evaluation["log_variance"].numpy()
    expected = 0.5 * (np.exp(log_variance) + mean**2 - 1 - log_variance)
    np.testing.assert_allclose(evaluation["kl"], expected, rtol=1e-5, atol=1e-7)
    assert model.sample(6, seed=0).shape == (6, 784)
    np.testing.assert_array_equal(model.sample(2, seed=1), model.sample(2, seed=1))
    # Its loss is the negative ELBO in nats per image, with unit weights: BCE summed over the pixels plus the KL.
    objective = registry.get("vae").objective(model)
    assert objective.names == ("bce", "kl") and [term.weight for term in objective.terms] == [1.0, 1.0]
    logits = evaluation["logits"].numpy().astype(np.float64)
    bce = np.maximum(logits, 0) - logits * images + np.log1p(np.exp(-np.abs(logits)))
    negative_elbo = np.mean(bce.sum(axis=1) + expected.sum(axis=1))
    values = objective(evaluation, {"input": images})
    assert float(values["loss"]) == pytest.approx(negative_elbo, rel=1e-5)
    assert float(values["bce"]) == pytest.approx(np.mean(bce.sum(axis=1)), rel=1e-5) and float(values["bce"]) > 100


def test_denoising_corrupts_only_in_training():
    model = registry.get("denoising").build()
    images = np.full((2, 28, 28, 1), 0.5, np.float32)
    corrupted = model.encoder.corruption(images, training=True).numpy()
    assert corrupted.min() >= 0.0 and corrupted.max() <= 1.0 and corrupted.std() > 0.2
    np.testing.assert_array_equal(model.encoder.corruption(images, training=False), images)
    assert any(variable.name == "seed_generator_state" for variable in model.variables)
