"""The public train step: overrides, several optimizers, Keras optimizer options, and what checkpoints hold."""

import gc
import warnings
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.func_graph import FuncGraph

from aeloops.data import to_model_inputs
from aeloops.models import DenseAutoencoder, registry
from aeloops.objectives.objective import LossTerm, Objective, StepError
from aeloops.objectives.schedules import linear_warmup
from aeloops.runs.checkpoints import Checkpointer
from aeloops.tensorboard.summaries import SummaryWriter
from aeloops.training.callbacks import TIMINGS, Callback
from aeloops.training.trainer import Trainer


def dense(seed=0):
    keras.utils.set_random_seed(seed)
    return registry.get("dense").build()


@pytest.fixture(scope="module")
def images(small_images):
    return to_model_inputs(small_images[:512], (784,))


class CodeEnergyTrainer(Trainer):
    """Adds a logged value of its own and an L2 penalty on the code that the objective does not know."""

    calls = 0

    def train_step(self, batch):
        CodeEnergyTrainer.calls += 1  # Counted at trace time (once per trace) or per step in eager mode.
        with tf.GradientTape() as tape:
            terms = self.compute_terms(batch, training=True)
            energy = tf.nn.compute_average_loss(tf.reduce_sum(tf.square(self.model.encode(batch["input"])), axis=1))
            loss = terms["loss"] + 1e-3 * energy
        self.optimize(loss, tape)
        return {**terms, "loss": loss, "code_energy": energy}

    def test_step(self, batch):
        terms = super().test_step(batch)
        energy = tf.reduce_sum(tf.square(self.model.encode(batch["input"])), axis=1)
        return {**terms, "code_energy": tf.nn.compute_average_loss(energy, sample_weight=batch["sample_weight"])}


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_an_overridden_train_step_is_what_trains_and_what_is_logged(images, mode):
    CodeEnergyTrainer.calls = 0
    trainer = CodeEnergyTrainer(dense(), mode=mode, steps_per_loop=3)
    history = trainer.fit(images, epochs=2, batch_size=64, validation_data=images[:100], verbose=0)
    # Compiled, the step is traced once, though each loop calls it twice (its first step, then its body).
    assert CodeEnergyTrainer.calls == (16 if mode == "eager" else 1)
    assert len(history["code_energy"]) == 2 and len(history["val_code_energy"]) == 2
    # The logged loss is the override's, penalty included: it exceeds the plain BCE.
    assert all(loss > bce for loss, bce in zip(history["loss"], history["bce"]))
    codes = trainer.model.encode(images[:100]).numpy()
    np.testing.assert_allclose(history["val_code_energy"][-1], np.mean(np.sum(codes**2, axis=1)), rtol=1e-4)
    assert int(trainer.step.numpy()) == 16


def test_the_override_changes_the_weights_it_should(images):
    plain = Trainer(dense(), mode="graph", steps_per_loop=4)
    plain.fit(images, epochs=1, batch_size=64, verbose=0)
    penalized = CodeEnergyTrainer(dense(), mode="graph", steps_per_loop=4)
    penalized.fit(images, epochs=1, batch_size=64, verbose=0)
    assert not np.allclose(plain.model.weights[0].numpy(), penalized.model.weights[0].numpy())


def test_one_optimizer_per_part_matches_one_optimizer_for_all(images):
    """Adam updates each variable on its own, so one Adam per part must take exactly the same steps."""
    single = Trainer(dense(), optimizer=keras.optimizers.Adam(1e-3), mode="graph", steps_per_loop=4)
    single.fit(images, epochs=2, batch_size=64, verbose=0)
    parts = Trainer(
        dense(), optimizer={"encoder": keras.optimizers.Adam(1e-3), "decoder": "adam"}, mode="graph", steps_per_loop=4
    )
    parts.fit(images, epochs=2, batch_size=64, verbose=0)
    for ours, theirs in zip(parts.model.weights, single.model.weights):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-7)
    assert [int(opt.iterations.numpy()) for opt in parts.optimizers.values()] == [16, 16]
    assert set(parts.learning_rates()) == {"learning_rate/encoder", "learning_rate/decoder"}


def test_parts_with_their_own_learning_rates_move_their_own_variables(images):
    model = dense()
    before = [variable.numpy().copy() for variable in model.trainable_variables]
    trainer = Trainer(model, optimizer={"encoder": "adam", "decoder": keras.optimizers.SGD(0.0)}, mode="graph")
    trainer.fit(images, epochs=1, batch_size=64, verbose=0)
    encoder_ids = {id(variable) for variable in model.encoder.trainable_variables}
    for variable, old in zip(model.trainable_variables, before):
        moved = not np.array_equal(variable.numpy(), old)
        assert moved == (id(variable) in encoder_ids), variable.path


@pytest.mark.parametrize(
    ("optimizer", "message"),
    [
        ({"encoder": "adam"}, "No optimizer part covers"),
        ({"encoder": "adam", "decoder": "adam", "encoder.hidden_layers.0": "adam"}, "belongs to two optimizer parts"),
        ({"encoder": "adam", "nothing": "adam"}, "names no layer"),
    ],
)
def test_parts_must_cover_the_model_once(optimizer, message):
    with pytest.raises(ValueError, match=message):
        Trainer(dense(), optimizer=optimizer)


def test_global_clipnorm_is_applied_and_both_norms_are_logged(images):
    model = dense()
    before = [variable.numpy().copy() for variable in model.trainable_variables]
    trainer = Trainer(model, optimizer=keras.optimizers.SGD(1.0, global_clipnorm=0.001), mode="xla")
    history = trainer.fit(images[:64], epochs=1, batch_size=64, shuffle=False, verbose=0)
    moved = np.sqrt(sum(np.sum((v.numpy() - old) ** 2) for v, old in zip(model.trainable_variables, before)))
    # One SGD step at learning rate 1 moves the weights by the clipped gradient.
    np.testing.assert_allclose(moved, 0.001, rtol=1e-3)
    np.testing.assert_allclose(history["clipped_gradient_norm"][0], 0.001, rtol=1e-4)
    assert history["gradient_norm"][0] > 0.01  # Measured before clipping: 0.015 here.


class Recorder(Callback):
    def __init__(self):
        self.logs = []

    def on_loop_end(self, trainer, logs):
        self.logs.append(dict(logs))


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_scheduled_weights_are_averaged_with_their_terms(images, mode):
    """Within a compiled call the logged loss is the weighted sum of the logged terms."""
    keras.utils.set_random_seed(0)
    model = registry.get("sparse").build()
    objective = Objective([
        LossTerm("bce", output="logits", loss="bce_logits"),
        LossTerm("sparsity", output="code", loss="l1", target=None, weight=linear_warmup(0.05, steps=20)),
    ])  # fmt: skip
    recorder = Recorder()
    Trainer(model, objective, mode=mode, steps_per_loop=5).fit(images, batch_size=64, callbacks=[recorder], verbose=0)
    for logs in recorder.logs:
        assert 0 < logs["weight/sparsity"] <= 0.05
        weighted = logs["bce"] + logs["weight/sparsity"] * logs["sparsity"]
        np.testing.assert_allclose(logs["loss"], weighted, rtol=1e-5)


def test_ema_weights_serve_evaluation_and_prediction_and_training_keeps_its_own(images):
    model = dense()
    optimizer = keras.optimizers.Adam(1e-3, use_ema=True, ema_momentum=0.9)
    trainer = Trainer(model, optimizer=optimizer, mode="graph", steps_per_loop=4)
    trainer.fit(images, epochs=2, batch_size=64, verbose=0)
    # fit leaves the averages in the model, as Keras's does; the raw weights wait in the average's slots.
    assert trainer.averages_in_use
    held = [variable.numpy().copy() for variable in model.trainable_variables]
    parked = [average.numpy().copy() for average in optimizer._model_variables_moving_average]
    evaluated = trainer.evaluate(images[:100])
    predicted = trainer.predict(images[:10])["reconstruction"]
    for variable, value in zip(model.trainable_variables, held):  # Evaluation changed nothing.
        np.testing.assert_array_equal(variable.numpy(), value)
    np.testing.assert_allclose(predicted, model.reconstruct(images[:10]).numpy(), rtol=1e-5, atol=1e-6)
    assert evaluated["loss"] == pytest.approx(Trainer(model, mode="graph").evaluate(images[:100])["loss"], rel=1e-5)
    with trainer.raw_weights():  # What training and checkpoints use: swapped in exactly.
        for variable, value in zip(model.trainable_variables, parked):
            np.testing.assert_array_equal(variable.numpy(), value)
    for variable, value in zip(model.trainable_variables, held):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert not np.allclose(held[0], parked[0])


def test_gradient_accumulation_applies_every_second_step(images):
    model = dense()
    before = model.trainable_variables[0].numpy().copy()
    trainer = Trainer(model, optimizer=keras.optimizers.SGD(0.5, gradient_accumulation_steps=2), mode="graph")
    trainer.fit(images[:64], epochs=1, batch_size=64, verbose=0)
    np.testing.assert_array_equal(model.trainable_variables[0].numpy(), before)
    trainer.fit(images[:64], epochs=2, initial_epoch=1, batch_size=64, verbose=0)
    assert not np.array_equal(model.trainable_variables[0].numpy(), before)


class TwoOptimizerTrainer(Trainer):
    """A second optimizer and a random generator held by a subclass: both must be checkpointed."""

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        with self.strategy.scope():
            self.decoder_optimizer = keras.optimizers.Adam(5e-4)
            self.decoder_optimizer.build(model.decoder.trainable_variables)
            self.noise = tf.random.Generator.from_seed(7)

    def train_step(self, batch):
        noisy = {**batch, "input": batch["input"] + 0.1 * self.noise.normal(tf.shape(batch["input"]))}
        with tf.GradientTape(persistent=True) as tape:
            terms = self.compute_terms(noisy, training=True)
        self.optimize(terms["loss"], tape, self.model.encoder.trainable_variables, self.optimizer, name="encoder")
        decoder = self.model.decoder.trainable_variables
        self.optimize(terms["loss"], tape, decoder, self.decoder_optimizer, name="decoder")
        return terms


def trainer_state(trainer):
    return [variable.numpy() for variable in (*trainer.model.weights, *trainer.decoder_optimizer.variables)] + [
        trainer.noise.state.numpy()
    ]


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_everything_a_subclass_holds_resumes_exactly(tmp_path, images, mode):
    uninterrupted = TwoOptimizerTrainer(dense(), mode=mode, steps_per_loop=3)
    whole = uninterrupted.fit(images, epochs=2, batch_size=64, verbose=0)
    first = TwoOptimizerTrainer(dense(), mode=mode, steps_per_loop=3)
    first.fit(images, epochs=1, batch_size=64, callbacks=[Checkpointer(first, tmp_path)], verbose=0)
    resumed = TwoOptimizerTrainer(dense(seed=5), mode=mode, steps_per_loop=3)
    resumed.noise.reset_from_seed(99)
    assert Checkpointer(resumed, tmp_path).restore()
    assert int(resumed.decoder_optimizer.iterations.numpy()) == 8
    rest = resumed.fit(images, epochs=2, initial_epoch=1, batch_size=64, verbose=0)
    for ours, theirs in zip(trainer_state(resumed), trainer_state(uninterrupted)):
        np.testing.assert_array_equal(ours, theirs)
    assert rest["encoder_gradient_norm"] == whole["encoder_gradient_norm"][1:]
    assert rest["decoder_gradient_norm"] == whole["decoder_gradient_norm"][1:]


def test_state_a_checkpoint_would_drop_is_refused(tmp_path):
    class Unbuilt(Trainer):
        def __init__(self, model):
            super().__init__(model)
            self.critic_optimizer = keras.optimizers.Adam()
            self.rng = np.random.default_rng(0)

    with pytest.raises(ValueError, match=r"trainer.critic_optimizer .* build it in __init__") as error:
        Checkpointer(Unbuilt(dense()), tmp_path)
    assert "trainer.rng is a Generator" in str(error.value)


def test_skip_policy_needs_updates_through_optimize(images):
    class Bypass(Trainer):
        def train_step(self, batch):
            with tf.GradientTape() as tape:
                terms = self.compute_terms(batch, training=True)
            gradients = tape.gradient(terms["loss"], self.model.trainable_variables)
            self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
            return terms

    with pytest.raises(ValueError, match="self.optimize"):
        Bypass(dense(), mode="graph", on_nonfinite="skip").fit(images, batch_size=64, verbose=0)


def test_keras_training_entry_points_name_the_trainer(images):
    model = dense()
    for call in (lambda: model.compile(optimizer="adam"), lambda: model.fit(images)):
        with pytest.raises(TypeError, match=r"aeloops.Trainer"):
            call()

    class KerasStyle(DenseAutoencoder):
        def train_step(self, data):
            return {}

    with pytest.raises(ValueError, match="overrides Keras's train_step.*Trainer subclass"):
        Trainer(KerasStyle(input_shape=(784,)))


def test_a_step_must_return_scalars_under_fresh_names(images):
    class Bad(Trainer):
        def train_step(self, batch):
            terms = super().train_step(batch)
            return {**terms, "gradient_norm": terms["loss"]}

    with pytest.raises(ValueError, match="'gradient_norm', a name the library logs itself"):
        Bad(dense(), mode="graph").fit(images, batch_size=64, verbose=0)


def test_an_overridden_step_under_mixed_float16_scales_its_losses(images):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = dense()
        trainer = TwoOptimizerTrainer(model, optimizer="adam", mode="graph", steps_per_loop=4)
        trainer.decoder_optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(5e-4))
        trainer.decoder_optimizer.build(model.decoder.trainable_variables)
        history = trainer.fit(images, epochs=2, batch_size=64, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert history["bce"][1] < history["bce"][0] < 0.7
    assert "loss_scale_skipped_steps" in history
    # Gradient norms are reported unscaled: the loss scale (32768 at first) is divided out.
    assert 1e-3 < history["encoder_gradient_norm"][0] < 10


def test_an_optimizer_that_does_not_scale_losses_is_refused_under_mixed_float16_with_the_fix(images):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with pytest.raises(ValueError, match=r"optimizer= is a Adam .*LossScaleOptimizer\(optimizer\)"):
            Trainer(dense(), optimizer=keras.optimizers.Adam())
        trainer = TwoOptimizerTrainer(dense(), optimizer="adam", mode="graph", steps_per_loop=4)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    # The subclass built a plain Adam for the decoder: refused before any update, naming it.
    with pytest.raises(ValueError, match=r"trainer.decoder_optimizer is a Adam that does not scale losses"):
        trainer.fit(images, epochs=1, batch_size=64, verbose=0)
    assert int(trainer.step.numpy()) == 0


class GradientValues(Trainer):
    """optimize() as its two public halves, gradient values in between."""

    def train_step(self, batch):
        with tf.GradientTape() as tape:
            terms = self.compute_terms(batch, training=True)
        gradients = self.gradients(terms["loss"], tape)
        assert len(gradients) == len(self.model.trainable_variables)
        self.apply_gradients(gradients, loss=terms["loss"])
        return terms


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_gradients_then_apply_gradients_train_as_optimize_does_with_an_optimizer_per_part(images, mode):
    def run(trainer_class):
        optimizers = {"decoder": keras.optimizers.SGD(0.1, clipnorm=0.01), "encoder": "adam"}
        trainer = trainer_class(dense(), optimizer=optimizers, mode=mode, steps_per_loop=4)
        return trainer, trainer.fit(images, epochs=1, batch_size=64, verbose=0)

    (plain, expected), (halves, history) = run(Trainer), run(GradientValues)
    untimed = [{k: v for k, v in h.items() if k not in TIMINGS} for h in (history, expected)]
    assert untimed[0] == untimed[1]
    assert history["clipped_gradient_norm"][0] < history["gradient_norm"][0]
    for ours, theirs in zip(halves.model.weights, plain.model.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    # The values are the tape's gradient, in the order of model.trainable_variables.
    batch = {"input": tf.constant(images[:64])}
    with tf.GradientTape(persistent=True) as tape:
        loss = halves.compute_terms(batch, training=True)["loss"]
    variables = halves.model.trainable_variables
    for value, variable, expected_value in zip(halves.gradients(loss, tape), variables, tape.gradient(loss, variables)):
        assert value.shape == variable.shape
        np.testing.assert_array_equal(value.numpy(), expected_value.numpy())
    # In the caller's order, whatever order the parts' optimizers hold them in.
    backwards = variables[::-1]
    for value, expected_value in zip(halves.gradients(loss, tape, backwards), tape.gradient(loss, backwards)):
        np.testing.assert_array_equal(value.numpy(), expected_value.numpy())
    with pytest.raises(ValueError, match="is not a trainable variable of the model.*pass optimizer="):
        halves.gradients(loss, tape, [tf.Variable(1.0)])


class CodeMeans(Trainer):
    """compute_terms with a vector: each code unit's mean over the batch, as each replica's share."""

    matrix = False

    def compute_terms(self, batch, training):
        terms = super().compute_terms(batch, training)
        codes = self.model.encode(batch["input"], training=training)
        global_batch = tf.cast(tf.shape(codes)[0] * self.strategy.num_replicas_in_sync, tf.float32)
        terms["code_mean"] = codes / global_batch if self.matrix else tf.reduce_sum(codes, axis=0) / global_batch
        return terms


def test_a_vector_a_step_returns_is_logged_one_value_a_component_and_a_matrix_is_refused_naming_its_method(images):
    keras.utils.set_random_seed(0)
    trainer = CodeMeans(DenseAutoencoder(input_shape=(784,), encoder_units=(32,)), mode="graph", steps_per_loop=4)
    validation = images[:256]  # Four whole batches of 64: no padding enters the means.
    history = trainer.fit(images, epochs=1, batch_size=64, validation_data=validation, verbose=0)
    expected = trainer.model.encode(validation).numpy().mean(axis=0)
    names = [f"code_mean/{index:02d}" for index in range(len(expected))]  # Zero-padded: they sort in order.
    assert len(names) == 32 and [name for name in history if name.startswith("code_mean/")] == names
    np.testing.assert_allclose([history[f"val_{name}"][0] for name in names], expected, rtol=1e-4, atol=1e-6)
    CodeMeans.matrix = True
    try:
        advice = r"^compute_terms \(called by train_step\) returned 'code_mean' with shape \(64, 8\); return scalars"
        with pytest.raises(StepError, match=advice):
            CodeMeans(dense(), mode="graph").fit(images, epochs=1, batch_size=64, verbose=0)
    finally:
        CodeMeans.matrix = False


def test_building_many_trainers_in_one_process_draws_no_retracing_warning(images):
    import logging

    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("tensorflow")
    logger.addHandler(handler)
    try:
        for _ in range(7):  # TensorFlow warns from the sixth trace of one code object.
            trainer = Trainer(dense(), mode="graph")
            trainer.fit(images[:128], epochs=1, batch_size=64, verbose=0)
            trainer.predict(images[:8])
    finally:
        logger.removeHandler(handler)
    assert not [message for message in messages if "retracing" in message]
    assert trainer.trace_counts == {"train": 1, "eval": 0, "predict": 1}


def live_graphs():
    """The traced graphs alive (not TensorFlow's one default graph, made once a process when first asked for)."""
    gc.collect()
    return sum(isinstance(item, FuncGraph) for item in gc.get_objects())


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_a_trainer_let_go_frees_its_traced_graphs_with_its_model(images, tmp_path, mode):
    # TensorFlow's gradient registry keeps every graph-mode tf.custom_gradient, which Keras's optimizers call on each
    # update: a sweep building trainer after trainer in one process would keep all of them.
    before, models = live_graphs(), []
    for run in range(2):
        trainer = Trainer(dense(), mode=mode)
        # With TensorBoard's summaries, whose graph of the step is, in eager mode, a trace of its own.
        writer = SummaryWriter(trainer, tmp_path / str(run), every_steps=1000, examples=images[:4])
        trainer.fit(images[:128], epochs=1, batch_size=64, callbacks=[writer], verbose=0)
        trainer.predict(images[:8])
        models.append(weakref.ref(trainer.model))
    del trainer, writer
    assert live_graphs() == before
    assert [model() for model in models] == [None, None]


class NanOnEvenSteps(Trainer):
    """A custom update that turns NaN every other step: the skip policy must leave the weights be on those."""

    def train_step(self, batch):
        with tf.GradientTape() as tape:
            terms = self.compute_terms(batch, training=True)
            poisoned = tf.where(self.step % 2 == 0, np.float32(np.nan), 0.0)
            loss = terms["loss"] + poisoned
        self.optimize(loss, tape)
        return {**terms, "loss": loss}


@pytest.mark.parametrize("mode", ["eager", "xla"])
def test_skip_policy_holds_for_an_overridden_step(images, mode):
    trainer = NanOnEvenSteps(dense(), mode=mode, steps_per_loop=4, on_nonfinite="skip")
    history = trainer.fit(images, epochs=1, batch_size=64, verbose=0)
    assert history["skipped_steps"] == [4.0]
    assert int(trainer.optimizer.iterations.numpy()) == 4 and int(trainer.step.numpy()) == 8
    assert np.isfinite(history["loss"][0]) and np.isfinite(history["gradient_norm"][0])
    assert int(trainer.first_nonfinite_step.numpy()) == 0


def test_stop_policy_names_the_step_for_an_overridden_step(images):
    with pytest.raises(FloatingPointError, match="step 0"):
        NanOnEvenSteps(dense(), mode="graph", steps_per_loop=4).fit(images, epochs=1, batch_size=64, verbose=0)


class FakeTrainer:
    """What ModeProbe reads and changes of a trainer."""

    def __init__(self, requested_mode, choice=0):
        self.requested_mode = requested_mode
        self.mode = "xla" if requested_mode == "xla" else "graph"
        self.mode_choice = tf.Variable(choice, dtype=tf.int64)
        self.auto_candidates = ("graph", "xla")
        self.mode_report = None

    def use_mode(self, mode):
        self.mode = mode

    def settle_mode(self, mode, report):
        self.mode, self.mode_report = mode, report
        self.mode_choice.assign({"xla": 1, "graph": 2}[mode])


# Each mode's first call runs 1 step (mostly tracing, and XLA's compiling); then a fifth of a call (10 steps) for
# the rate, and a whole call (50) when the fifth lasted under 0.2 s. XLA (for a program of unknown convolutions)
# warms up on 10 steps before the rate's call. A long run unless said otherwise; "xla-recompiles" recompiles.
@pytest.mark.parametrize(
    ("times", "steps", "remaining", "chosen", "changes"),
    [
        ({"graph": [2.0, 0.5], "xla": [5.0, 0.25, 0.2]}, {"graph": [1, 10], "xla": [1, 10, 10]}, 100_000, "xla",
         [False, True, False, False, False]),
        ({"graph": [1.0, 0.3], "xla": [6.0, 0.35, 0.33]}, {"graph": [1, 10], "xla": [1, 10, 10]}, 100_000, "graph",
         [False, True, False, False, True]),
        ({"graph": [1.0, 0.3], "xla": [8.0, 7.5, 7.4]}, {"graph": [1, 10], "xla": [1, 10, 10]}, 100_000, "graph",
         [False, True, False, False, True]),
        # Fast steps: 10 graph steps (and then 10 XLA steps) too short to time, whole calls time the rates.
        ({"graph": [1.0, 0.02, 0.1], "xla": [4.0, 0.01, 0.012, 0.05]}, {"graph": [1, 10, 50], "xla": [1, 10, 10, 50]},
         100_000, "xla", [False, False, True, False, False, False, False]),
        ({"graph": [1.0, 0.3]}, {"graph": [1, 10]}, 100, "graph", [False, False]),  # Too short to repay XLA.
    ],
    ids=["xla-faster", "graph-faster", "xla-recompiles", "fast-steps", "short-run"],
)  # fmt: skip
def test_auto_mode_times_each_mode_on_a_step_then_a_fifth_of_a_call_and_keeps_the_faster(
    times, steps, remaining, chosen, changes
):
    from aeloops.training.mode_probe import ModeProbe

    trainer = FakeTrainer("auto")
    probe = ModeProbe(trainer, remaining_steps=remaining)
    seen, counts = [], {"graph": [], "xla": []}
    for mode in ("graph", "xla"):
        for seconds in times.get(mode, []):
            assert trainer.mode == mode
            count = probe.steps_for_call(50)
            counts[mode].append(count)
            seen.append(probe.record(count, seconds))
    assert counts == {"graph": steps["graph"], "xla": steps.get("xla", [])}
    assert seen == changes and trainer.mode == chosen
    assert probe.steps_for_call(50) == 50  # Decided: whole calls again.
    assert probe.record(50, 9.0) is False and trainer.mode == chosen  # Decided once.
    assert int(trainer.mode_choice.numpy()) == {"xla": 1, "graph": 2}[chosen]
    report = trainer.mode_report
    assert report["mode"] == chosen and report["seconds"] == {mode: values for mode, values in times.items()}
    assert report["steps"] == {mode: values for mode, values in counts.items() if values}
    assert report["steps_per_call"] == 50
    # The slower mode's calls beyond what the chosen one would have taken for the same steps.
    rate = times[chosen][-1] / counts[chosen][-1]
    other = "xla" if chosen == "graph" else "graph"
    expected = sum(times.get(other, [])) - sum(counts[other]) * rate
    assert report["measuring_cost_seconds"] == pytest.approx(max(expected, 0.0), abs=1e-3)


def test_auto_mode_times_short_epochs_on_the_calls_they_allow():
    """Epochs of 3 steps cut every call short: the rate is taken from the fourth call, whatever its length."""
    from aeloops.training.mode_probe import ModeProbe

    trainer = FakeTrainer("auto")
    probe = ModeProbe(trainer, remaining_steps=30)
    counts, done = [], 0
    for seconds in (1.0, 0.04, 0.06, 0.06):  # 20 ms a step: every call under the 0.2 s it takes to time one.
        counts.append(min(probe.steps_for_call(50), 3 - done))  # As the outer loop asks, within an epoch.
        assert probe.record(counts[-1], seconds) is False  # Graph mode kept: no change.
        done = (done + counts[-1]) % 3
    assert counts == [1, 2, 3, 3] and trainer.mode_report["steps"] == {"graph": [1, 2, 3, 3]}
    # Decided on the fourth call: the 21 steps left (0.42 s at its 20 ms) against 0.98 s of tracing.
    assert trainer.mode_report["mode"] == "graph" and trainer.mode_report["rest_over_tracing"] == 0.4


def test_auto_mode_on_a_real_trainer_compiles_each_mode_once_and_a_resume_keeps_the_choice(
    images, tmp_path, monkeypatch
):
    from aeloops.training import mode_probe

    monkeypatch.setattr(mode_probe, "TRY_XLA_AFTER", 0.0)  # Any run is long enough to try XLA.
    monkeypatch.setattr(mode_probe, "TRY_XLA_AFTER_WITHOUT_CONVOLUTIONS", 0.0)
    trainer = Trainer(dense(), mode="auto", steps_per_loop=2)
    checkpointer = Checkpointer(trainer, tmp_path)
    trainer.fit(images, epochs=2, batch_size=64, verbose=0, callbacks=[checkpointer])  # 8 calls of 2 steps.
    report = trainer.mode_report
    assert trainer.mode == report["mode"] and set(report["seconds"]) == {"graph", "xla"}
    assert trainer.trace_counts["train"] == 2  # Once per mode, however often it switched.
    resumed = Trainer(dense(1), mode="auto", steps_per_loop=2)
    assert Checkpointer(resumed, tmp_path).restore()
    resumed.fit(images, epochs=3, initial_epoch=2, batch_size=64, verbose=0)
    assert resumed.mode == trainer.mode and resumed.mode_report is None  # Taken up, not measured again.
    assert resumed.trace_counts["train"] == 1


@pytest.mark.parametrize(("program", "tried"), [("convolutions", False), ("dense", True), (None, False)])
def test_auto_tries_xla_sooner_for_a_program_without_convolutions(program, tried, monkeypatch):
    from aeloops.training import mode_probe

    monkeypatch.setattr(mode_probe, "has_convolutions", lambda graph: graph == "convolutions")
    trainer = FakeTrainer("auto")
    trainer.traced_graph = lambda: program  # None: not traced (unknown), treated as convolutional.
    # Graph mode traces for 0.8 s and runs 4 ms a step: the rest (2,439 steps, 9.756 s) is 12.2 times the tracing.
    probe = mode_probe.ModeProbe(trainer, remaining_steps=2_500)
    # 10 steps last 40 ms, too short to time: a whole call times them.
    calls = [(1, 0.804, False), (10, 0.04, False), (50, 0.2, tried)]
    for steps, seconds, changed in calls:
        assert probe.steps_for_call(50) == steps and probe.record(steps, seconds) is changed
    assert trainer.mode == ("xla" if tried else "graph")
    if tried:  # XLA's rate is timed on calls as long as graph mode's (a fifth was too short to time).
        assert probe.steps_for_call(50) == 1 and not probe.record(1, 2.0)
        assert probe.steps_for_call(50) == 50
    else:
        reason = trainer.mode_report["reason"]
        assert "under 15 times graph mode's tracing, 0.8 s, for a program with convolutions" in reason
        assert trainer.mode_report["rest_over_tracing"] == 12.2 and trainer.mode_report["convolutions"]


def test_the_probe_finds_the_convolutions_of_a_traced_training_loop(images):
    from aeloops.training.mode_probe import has_convolutions

    found = {}
    for name in ("dense", "conv"):
        model = registry.get(name).build()
        trainer = Trainer(model, mode="graph", steps_per_loop=2)
        assert trainer.traced_graph() is None
        inputs = images[:128].reshape((-1, *model.example_shape))
        trainer.fit(inputs, epochs=1, batch_size=64, verbose=0)
        found[name] = has_convolutions(trainer.traced_graph())
    assert found == {"dense": False, "conv": True}


def test_a_resumed_auto_run_takes_up_its_choice_and_explicit_xla_only_warns():
    from aeloops.training.mode_probe import ModeProbe, XlaRecompileWarning

    resumed = FakeTrainer("auto", choice=1)
    probe = ModeProbe(resumed, remaining_steps=10_000)
    assert resumed.mode == "xla" and not probe.record(50, 1.0) and resumed.mode == "xla"
    explicit = FakeTrainer("xla")
    probe = ModeProbe(explicit, remaining_steps=10_000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [probe.record(50, seconds) for seconds in (8.0, 7.5)] == [False, False]
    assert explicit.mode == "xla"
    assert [warning.category for warning in caught] == [XlaRecompileWarning]


def test_a_checkpoint_missing_something_the_trainer_holds_is_refused(tmp_path):
    """Restoring a plain trainer's checkpoint into one with a second optimizer would leave that optimizer fresh."""
    Checkpointer(Trainer(dense()), tmp_path).save()
    with pytest.raises(ValueError, match=r"ckpt-0 is intact but does not fit this trainer \(\d+ of the trainer's obj"):
        Checkpointer(TwoOptimizerTrainer(dense()), tmp_path).restore()


class EveryOtherStepTrainer(Trainer):
    """Updates on even steps only: the condition is a tensor, so it goes to optimize() as when=."""

    def train_step(self, batch):
        with tf.GradientTape() as tape:
            terms = self.compute_terms(batch, training=True)
        self.optimize(terms["loss"], tape, when=self.step % 2 == 0)
        return terms


class IfOnTensorTrainer(Trainer):
    """The same written with a Python if on a tensor (a tf.cond once AutoGraph converts it)."""

    def train_step(self, batch):
        with tf.GradientTape() as tape:
            terms = self.compute_terms(batch, training=True)
        if self.step % 2 == 0:
            self.optimize(terms["loss"], tape)
        return terms


def capped_error(target, prediction):
    """A user loss with a tensor-dependent Python ``if``: zero once the batch's mean error is below 1."""
    error = tf.abs(target - prediction)
    if tf.reduce_mean(error) < 1.0:
        error = error * 0.0
    return error


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_an_update_applied_when_a_tensor_says_so(images, mode):
    trainer = EveryOtherStepTrainer(dense(), mode=mode, steps_per_loop=4)
    before = [variable.numpy() for variable in trainer.model.trainable_variables]
    history = trainer.fit(images, epochs=1, batch_size=64, verbose=0)
    assert int(trainer.step.numpy()) == 8
    assert int(trainer.optimizer.iterations.numpy()) == 4  # Steps 0, 2, 4 and 6.
    assert history["gradient_norm"][0] > 0  # Logged every step, applied or not.
    assert any(not np.array_equal(old, new.numpy()) for old, new in zip(before, trainer.model.trainable_variables))


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_optimize_inside_an_if_on_a_tensor_is_refused_with_the_fix(images, mode):
    trainer = IfOnTensorTrainer(dense(), mode=mode, steps_per_loop=4)
    advice = r"pass the condition instead: self\.optimize\(loss, tape, \.\.\., when=condition\)"
    with pytest.raises(StepError, match=advice):
        trainer.fit(images, epochs=1, batch_size=64, verbose=0)
    assert int(trainer.step.numpy()) == 0
    # Following the advice is EveryOtherStepTrainer, which trains (above).


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_user_losses_keep_python_control_flow_on_tensors(images, mode):
    # The library's own helpers skip AutoGraph (to trace faster); the losses a user writes do not.
    objective = Objective([LossTerm("capped", output="logits", loss=capped_error)])
    trainer = Trainer(dense(), objective, mode=mode, steps_per_loop=4)
    history = trainer.fit(images, epochs=1, batch_size=64, verbose=0)
    assert history["capped"] == [0.0]  # Logits lie within 1 of the pixels at first: the if took its branch.
