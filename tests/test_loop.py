import keras
import numpy as np
import pytest
import tensorflow as tf

from aeloops.data import to_model_inputs
from aeloops.models import DenseAutoencoder, registry
from aeloops.objectives.objective import LossTerm, Objective
from aeloops.training import outer_loop, progress
from aeloops.training.callbacks import Callback
from aeloops.training.trainer import NonFiniteLossError, Trainer

# Loss after two epochs over 2,048 MNIST images at batch 64 with Adam; each
# model starts near 0.69 (BCE), 0.11 (row-wise MSE) or 0.83 (two heads).
# Measured (seed 0): conv 0.294, deep 0.270, dense 0.286, rowwise 0.046,
# sparse 0.299, twohead 0.773.
LOSS_BOUNDS = {"conv": 0.34, "deep": 0.32, "dense": 0.33, "rowwise": 0.06, "sparse": 0.34, "twohead": 0.79}


def build(name, seed=0):
    keras.utils.set_random_seed(seed)
    spec = registry.get(name)
    model = spec.build()
    return model, spec.objective(model)


@pytest.mark.parametrize("name", sorted(LOSS_BOUNDS))
def test_seed_model_learns_mnist(name, small_images):
    model, objective = build(name)
    images = to_model_inputs(small_images, model.example_shape)
    trainer = Trainer(model, objective, "adam", mode="graph", steps_per_loop=8)
    before = trainer.evaluate(images)["loss"]
    history = trainer.fit(images, epochs=2, batch_size=64, verbose=0)
    assert history["loss"][-1] < LOSS_BOUNDS[name] < before
    assert history["loss"][1] < history["loss"][0]
    assert int(trainer.step.numpy()) == 2 * (2048 // 64)


def test_history_is_keras_shaped_with_every_term(small_images, small_test_images):
    model, objective = build("sparse")
    trainer = Trainer(model, objective, mode="graph", steps_per_loop=4)
    history = trainer.fit(
        to_model_inputs(small_images, (784,)),
        epochs=2,
        batch_size=128,
        validation_data=to_model_inputs(small_test_images, (784,)),
        verbose=0,
    )
    for key in ("loss", "bce", "sparsity", "val_loss", "val_bce", "val_sparsity"):
        assert len(history[key]) == 2 and all(np.isfinite(history[key]))
    for prefix in ("", "val_"):
        weighted = np.array(history[f"{prefix}bce"]) + 1e-4 * np.array(history[f"{prefix}sparsity"])
        np.testing.assert_allclose(history[f"{prefix}loss"], weighted, rtol=1e-5)


def test_two_heads_report_each_loss_and_their_sum(small_images):
    model, objective = build("twohead")
    history = Trainer(model, objective).fit(to_model_inputs(small_images, (28, 28)), batch_size=64, verbose=0)
    total = history["head_1_bce"][0] + history["head_2_squared_error"][0]
    assert history["loss"][0] == pytest.approx(total, rel=1e-5)


def run_dense(mode, images, steps_per_loop=1, epochs=2, **fit_kwargs):
    model, objective = build("dense")
    trainer = Trainer(model, objective, "adam", mode=mode, steps_per_loop=steps_per_loop)
    history = trainer.fit(images, epochs=epochs, batch_size=128, verbose=0, **fit_kwargs)
    return trainer, history


def test_modes_follow_the_same_trajectory(small_images):
    images = to_model_inputs(small_images[:1024], (784,))
    results = {mode: run_dense(mode, images, steps_per_loop=3) for mode in ("eager", "graph", "xla")}
    reference = results["eager"][1]["loss"]
    for mode in ("graph", "xla"):
        np.testing.assert_allclose(results[mode][1]["loss"], reference, rtol=1e-4)
        for ours, theirs in zip(results[mode][0].model.weights, results["eager"][0].model.weights):
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-4)


def test_steps_per_loop_does_not_change_the_result(small_images):
    images = to_model_inputs(small_images[:1024], (784,))
    one, history_one = run_dense("graph", images, steps_per_loop=1)
    many, history_many = run_dense("graph", images, steps_per_loop=5)  # 8 steps: 5 + 3.
    # The same steps in other calls: the same weights, and the same logged means to the last bit (steps are
    # summed in float64), as auto's short timed calls and a mid-epoch resume need.
    assert history_many["loss"] == history_one["loss"]
    for left, right in zip(one.model.weights, many.model.weights):
        np.testing.assert_array_equal(left.numpy(), right.numpy())


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_compiled_loops_never_retrace(small_images, small_test_images, mode):
    images = to_model_inputs(small_images[:1024], (784,))
    validation = to_model_inputs(small_test_images, (784,))
    # 8 steps an epoch at steps_per_loop 3: calls of 3, 3 and 2 steps.
    trainer, _ = run_dense(mode, images, steps_per_loop=3, epochs=3, validation_data=validation)
    trainer.fit(images, epochs=4, initial_epoch=3, batch_size=128, verbose=0, validation_data=validation)
    assert trainer.trace_counts == {"train": 1, "eval": 1, "predict": 0}


def test_shuffle_order_is_seeded_by_epoch(small_images):
    images = to_model_inputs(small_images[:1024], (784,))
    first, _ = run_dense("graph", images)
    second, _ = run_dense("graph", images)
    unshuffled, _ = run_dense("graph", images, shuffle=False)
    np.testing.assert_array_equal(first.model.weights[0].numpy(), second.model.weights[0].numpy())
    assert not np.allclose(first.model.weights[0].numpy(), unshuffled.model.weights[0].numpy())


def test_dataset_input_matches_resident_arrays(small_images):
    images = to_model_inputs(small_images[:1024], (784,))
    resident, resident_history = run_dense("graph", images, shuffle=False)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(128, drop_remainder=True)
    streamed, streamed_history = run_dense("graph", dataset, steps_per_loop=3)
    np.testing.assert_allclose(streamed_history["loss"], resident_history["loss"], rtol=1e-5)
    np.testing.assert_allclose(streamed.model.weights[0].numpy(), resident.model.weights[0].numpy(), atol=1e-6)


def test_evaluate_covers_every_example_and_matches_numpy(small_test_images):
    model, objective = build("dense")
    images = to_model_inputs(small_test_images, (784,))  # 500 examples, batch 128: 116 padding.
    result = Trainer(model, objective).evaluate(images, batch_size=128)
    logits = model(images)["logits"].numpy().astype(np.float64)
    probabilities = 1 / (1 + np.exp(-logits))
    expected = -(images * np.log(probabilities) + (1 - images) * np.log(1 - probabilities)).mean()
    assert result["bce"] == pytest.approx(expected, rel=1e-5)
    assert result["loss"] == pytest.approx(expected, rel=1e-5)


def test_predict_equals_calling_the_model(small_test_images):
    model, objective = build("conv")
    images = to_model_inputs(small_test_images[:70], (28, 28, 1))
    predicted = Trainer(model, objective, mode="xla").predict(images, batch_size=32)
    assert predicted["reconstruction"].shape == (70, 28, 28, 1)
    np.testing.assert_allclose(predicted["code"], model.encode(images), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_predict_runs_many_batches_per_call_and_trims_the_padding(small_test_images, mode):
    model, objective = build("dense")
    images = to_model_inputs(small_test_images[:453], (784,))
    trainer = Trainer(model, objective, mode=mode, steps_per_loop=3)
    # 453 examples in batches of 20: 23 batches, in calls of 3 batches, the last call mostly padding.
    predicted = trainer.predict(images, batch_size=20)
    expected = model(images, training=False)
    for name in ("code", "logits"):
        assert predicted[name].shape == (453, *expected[name].shape[1:])
        np.testing.assert_allclose(predicted[name], expected[name], rtol=1e-5, atol=1e-6)
    trainer.predict(images[:100], batch_size=20)  # Calls of the same shape: no new trace.
    if mode != "eager":
        assert trainer.trace_counts["predict"] == 1
    small = trainer.predict(images[:30], batch_size=20)  # Two batches, fewer than a call holds: another shape,
    np.testing.assert_allclose(small["code"], expected["code"][:30], rtol=1e-5, atol=1e-6)
    other = trainer.predict(images[:7], batch_size=7)  # and another batch size,
    np.testing.assert_allclose(other["code"], expected["code"][:7], rtol=1e-5, atol=1e-6)
    if mode != "eager":
        assert trainer.trace_counts["predict"] == 1  # with the same trace.


def test_keras_activity_regularizer_is_never_dropped(small_images):
    keras.utils.set_random_seed(0)
    model = DenseAutoencoder((784,), (32,), ())
    # A regularizer hidden in a Keras layer must still reach the objective.
    model.encoder.hidden_layers[0].activity_regularizer = keras.regularizers.l1(1e-3)
    trainer = Trainer(model, Objective([LossTerm("bce", "logits", "bce_logits")]))
    history = trainer.fit(to_model_inputs(small_images[:512], (784,)), batch_size=128, verbose=0)
    assert history["layer_losses"][0] > 0
    assert history["loss"][0] == pytest.approx(history["bce"][0] + history["layer_losses"][0], rel=1e-5)


def test_callbacks_see_loops_and_epochs(small_images):
    events = []

    class Recorder(Callback):
        def on_train_begin(self, trainer):
            events.append("begin")

        def on_loop_end(self, trainer, logs):
            events.append(("loop", int(trainer.step.numpy())))

        def on_epoch_end(self, trainer, epoch, logs):
            events.append(("epoch", epoch, round(logs["loss"], 6)))

        def on_train_end(self, trainer, history):
            events.append("end")

    images = to_model_inputs(small_images[:512], (784,))
    _, history = run_dense("graph", images, steps_per_loop=3, callbacks=[Recorder()])
    loops = [event[1] for event in events if event[0] == "loop"]
    assert loops == [3, 4, 7, 8]  # Two epochs of 4 steps, in calls of 3 and 1.
    assert events[0] == "begin" and events[-1] == "end"
    assert [event[2] for event in events if event[0] == "epoch"] == [round(v, 6) for v in history["loss"]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "jit"}, "mode must be one of"),
        ({"steps_per_loop": 0}, "steps_per_loop must be a positive int"),
        ({"optimizer": "lbfgs"}, "Unknown optimizer"),
    ],
)
def test_bad_trainer_arguments(kwargs, message):
    model, objective = build("dense")
    with pytest.raises(ValueError, match=message):
        Trainer(model, objective, **kwargs)


def test_bad_fit_arguments(small_images):
    model, objective = build("dense")
    trainer = Trainer(model, objective)
    images = to_model_inputs(small_images[:100], (784,))
    with pytest.raises(ValueError, match="larger than the 100 training examples"):
        trainer.fit(images, batch_size=256, verbose=0)
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        trainer.fit(images, epochs=0, verbose=0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        trainer.fit(np.full((64, 784), np.nan, np.float32), batch_size=32, verbose=0)
    with pytest.raises(ValueError, match="without an 'input' entry"):
        trainer.fit({"clean": images}, batch_size=32, verbose=0)


def test_auto_mode_starts_in_graph_mode():
    """How auto then measures each mode and keeps the faster is test_train_step's (test_auto_mode_times_...)."""
    conv, _ = build("conv")
    assert Trainer(conv, mode="auto").mode == "graph"
    assert Trainer(conv, mode="xla").mode == "xla"


def exploding(target, prediction):
    """Inf for examples brighter than 0.15 on average, 0 otherwise: a term that blows up on some batches."""
    return tf.where(tf.reduce_mean(target, axis=1) > 0.15, np.inf, 0.0) + 0.0 * tf.reduce_mean(prediction, axis=1)


def nonfinite_setup(small_images, policy, mode):
    images = to_model_inputs(small_images[:256], (784,))
    keras.utils.set_random_seed(0)
    model = registry.get("dense").build()
    objective = Objective([LossTerm("bce", "logits", "bce_logits"), LossTerm("boom", "reconstruction", exploding)])
    trainer = Trainer(model, objective, mode=mode, steps_per_loop=3, on_nonfinite=policy)
    bad_batches = [index for index in range(32) if (images[index * 8 : index * 8 + 8].mean(axis=1) > 0.15).any()]
    return trainer, images, bad_batches


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_nonfinite_steps_are_skipped_and_counted(small_images, mode):
    trainer, images, bad_batches = nonfinite_setup(small_images, "skip", mode)
    assert 0 < len(bad_batches) < 32
    history = trainer.fit(images, epochs=2, batch_size=8, shuffle=False, verbose=0)
    assert history["skipped_steps"] == [len(bad_batches)] * 2
    assert all(np.isfinite(history["loss"])) and history["boom"] == [0.0, 0.0]
    assert all(np.isfinite(variable.numpy()).all() for variable in trainer.model.weights)
    assert int(trainer.optimizer.iterations.numpy()) == 2 * (32 - len(bad_batches))


def test_an_epoch_whose_every_step_is_skipped_records_no_mean_rather_than_zero(small_images):
    trainer, images, _ = nonfinite_setup(small_images, "skip", "graph")
    bright = images[images.mean(axis=1) > 0.15][:64]  # Every batch explodes.
    history = trainer.fit(bright, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert history["skipped_steps"] == [8.0]
    assert np.isnan(history["loss"][0]) and np.isnan(history["bce"][0]) and np.isnan(history["gradient_norm"][0])


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_nonfinite_loss_stops_training_naming_term_and_step(small_images, mode):
    trainer, images, bad_batches = nonfinite_setup(small_images, "stop", mode)
    with pytest.raises(NonFiniteLossError, match=rf"loss term 'boom' became NaN or Inf at step {bad_batches[0]};"):
        trainer.fit(images, epochs=2, batch_size=8, shuffle=False, verbose=0)


def test_loss_scale_skips_are_counted_under_mixed_float16(small_images):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, objective = build("dense")
        trainer = Trainer(model, objective, mode="graph", steps_per_loop=4)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    # A scale of 2^40 overflows float16's gradients: the scaler skips and halves it until they are finite.
    trainer.optimizer.build(trainer.model.trainable_variables)
    trainer.optimizer.dynamic_scale.assign(2.0**40)
    history = trainer.fit(to_model_inputs(small_images, (784,)), epochs=2, batch_size=64, verbose=0)
    skipped = history["loss_scale_skipped_steps"]
    assert len(skipped) == 2 and 10 <= skipped[0] < 32, skipped
    assert float(trainer.optimizer.dynamic_scale.numpy()) < 2.0**40 / 2**9
    # Every step either updated the weights or was skipped by the loss scaler.
    assert int(trainer.optimizer.iterations.numpy()) + sum(skipped) == int(trainer.step.numpy()) == 64
    assert history["loss"][1] < history["loss"][0]


def test_one_line_an_epoch_says_which_epoch_it_is(small_images, capsys):
    keras.utils.set_random_seed(0)
    trainer = Trainer(registry.get("dense").build(), mode="graph", steps_per_loop=4)
    history = trainer.fit(to_model_inputs(small_images[:512], (784,)), epochs=2, batch_size=64, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    starts = [line.split(" - bce: ")[0].split(" - ")[:2] for line in lines]
    assert starts == [["Epoch 1/2", "8/8"], ["Epoch 2/2", "8/8"]]
    assert f"loss: {history['loss'][1]:.4f}" in lines[1]


def test_a_slow_epoch_on_a_pipe_says_how_far_it_is_between_its_lines(small_images, capsys, monkeypatch):
    # Every compiled call of a slow epoch, as if each took longer than the interval (30 s on a real pipe).
    monkeypatch.setattr(progress.ProgressBar, "PIPE_INTERVAL", 0.0)
    keras.utils.set_random_seed(0)
    trainer = Trainer(registry.get("dense").build(), mode="graph", steps_per_loop=4)
    history = trainer.fit(to_model_inputs(small_images[:512], (784,)), epochs=2, batch_size=64, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    starts = [line.split(" - bce: ")[0].split(" - ")[:2] for line in lines]
    assert starts == [["Epoch 1/2", "4/8"], ["Epoch 1/2", "8/8"], ["Epoch 2/2", "4/8"], ["Epoch 2/2", "8/8"]]
    assert f"loss: {history['loss'][1]:.4f}" in lines[3] and "samples_per_second" in lines[0]


def test_a_dataset_that_reshuffles_each_epoch_is_warned_of_and_a_fixed_order_is_not(small_images, recwarn):
    images = to_model_inputs(small_images[:256], (784,))
    trainer = Trainer(registry.get("dense").build(), mode="graph")
    fixed = tf.data.Dataset.from_tensor_slices(images).shuffle(256, seed=1, reshuffle_each_iteration=False).batch(64)
    trainer.fit(fixed, epochs=1, verbose=0)
    assert not [warning for warning in recwarn if "reshuffle" in str(warning.message)]
    with pytest.warns(UserWarning, match=r"draws a new order each epoch .* a run resumed from a checkpoint sees"):
        trainer.fit(tf.data.Dataset.from_tensor_slices(images).shuffle(256, seed=1).batch(64), epochs=1, verbose=0)


def test_slow_steps_run_fewer_per_call_so_a_stop_waits_at_most_about_a_call(small_images, monkeypatch):
    """Calls shrink to fit CALL_SECONDS (here any step is too slow: one step a call), and nothing else changes."""
    images = to_model_inputs(small_images[:1024], (784,))
    runs = {}
    for cap in (None, 1e-9):
        if cap is not None:
            monkeypatch.setattr(outer_loop, "CALL_SECONDS", cap)
        keras.utils.set_random_seed(0)
        trainer = Trainer(DenseAutoencoder(input_shape=(784,)), mode="graph", steps_per_loop=8)
        ends = []
        hook = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs, ends=ends: ends.append(batch))
        history = trainer.fit(images, epochs=2, batch_size=64, callbacks=[hook], verbose=0)
        runs[cap] = (ends, history["loss"], [weight.numpy() for weight in trainer.model.weights])
    # The last step (in the epoch) of each call: each epoch's first call is planned, timed, then one step a call;
    # but the run's very first call traced the loop, and its time (the tracing's) does not cut the next call.
    assert runs[None][0] == [7, 15] * 2 and runs[1e-9][0] == [7, 15, 7, *range(8, 16)]
    assert runs[1e-9][1] == runs[None][1]
    for capped, planned in zip(runs[1e-9][2], runs[None][2]):
        np.testing.assert_array_equal(capped, planned)
