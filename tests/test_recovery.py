"""Recovery from divergence: --on-nonfinite rollback puts back the last good state, lowers the rate and goes on."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import aeloops
from aeloops import train
from aeloops.training.callbacks import TIMINGS, Callback
from aeloops.training.recovery import ScaledSchedule, state_variables
from tests.test_checkpoints import StopAt

# A VAE whose warm-up takes plain SGD past what it can bear: its loss turns NaN at step 140 of 234.
DIVERGING = ("--dataset", "mnist-sample", "--model", "vae", "--optimizer", "sgd", "--learning-rate", "0.3",
             "--lr-schedule", "cosine", "--warmup-steps", "300", "--epochs", "3", "--steps-per-loop", "5",
             "--mode", "graph", "--no-validation", "--quiet")  # fmt: skip
ROLLBACK = ("--on-nonfinite", "rollback", "--rollback-lr-factor", "0.5")


def checkpoint_values(run_dir):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run_dir / "checkpoints")))
    # All but the object graph, the run record (its timings) and how many saves the run made.
    skipped = ("_CHECKPOINTABLE", "run_record", "save_counter")
    names = [name for name in reader.get_variable_to_shape_map() if not name.startswith(skipped)]
    return {name: reader.get_tensor(name) for name in names}


def history_values(run_dir):
    history = json.loads((run_dir / "history.json").read_text())
    return {name: values for name, values in history.items() if name not in TIMINGS}


@pytest.fixture(scope="module")
def recovered(tmp_path_factory):
    """The diverging run with rollback, left alone, and what it printed."""
    run_dir = tmp_path_factory.mktemp("recovered") / "run"
    capture = pytest.MonkeyPatch()
    lines = []
    capture.setattr("sys.stdout.write", lambda text: lines.append(text) or len(text))
    try:
        code = train.main([*DIVERGING, *ROLLBACK, "--run-dir", str(run_dir)])
    finally:
        capture.undo()
    assert code == 0, "".join(lines)
    return run_dir, "".join(lines)


def test_a_diverging_run_stops_without_rollback(tmp_path, capsys):
    assert train.main([*DIVERGING, "--run-dir", str(tmp_path / "run")]) == 1
    error = capsys.readouterr().err
    assert "became NaN or Inf at step 140" in error
    assert "--on-nonfinite rollback" in error


def test_a_diverging_run_finishes_with_rollback_and_says_each_recovery(recovered):
    run_dir, output = recovered
    history = history_values(run_dir)
    assert history["recoveries"] == [0.0, 3.0, 0.0]
    assert history["rolled_back_steps"] == [0.0, 15.0, 0.0]
    assert all(np.isfinite(history["loss"]))
    # Each recovery one line: what went wrong, where it went back to, and the rate halved.
    recoveries = [line for line in output.splitlines() if line.startswith("Recovery ")]
    assert len(recoveries) == 3, output
    assert recoveries[0].startswith("Recovery 1 of 3: the loss terms 'bce' and 'kl' became NaN or Inf at step 140; "
                                    "rolled back to step 138 and skipped the batches of steps 138-142; "
                                    "learning_rate 0.138 -> 0.069")  # fmt: skip
    # The rate stays halved three times: the schedule's value times 1/8 from then on. The schedule
    # counts the optimizer's updates, and the 15 steps rolled back made none: still in its warm-up.
    assert history["learning_rate"][2] == pytest.approx(0.3 * (234 - 15) / 300 / 8, rel=1e-5)
    # TensorBoard: the epoch's count, and a scalar at the recovery's own step.
    accumulator = EventAccumulator(str(run_dir / "tensorboard" / "train"), size_guidance={"tensors": 0}).Reload()
    events = accumulator.Tensors("epoch_recoveries")
    epochs = {event.step: float(tf.make_ndarray(event.tensor_proto)) for event in events}
    assert epochs == {1: 0.0, 2: 3.0, 3: 0.0}


def test_a_recovered_run_killed_and_resumed_ends_as_the_run_left_alone(recovered, tmp_path, capsys):
    run_dir, _ = recovered
    stopped = tmp_path / "stopped"
    # Stopped after its second recovery, mid-epoch: the third is still to come.
    code = train.main([*DIVERGING, *ROLLBACK, "--run-dir", str(stopped)], callbacks=[StopAt(144)])
    assert code == 143
    assert "Stopped at step 148" in capsys.readouterr().out
    assert train.main(["--resume", "--run-dir", str(stopped), "--quiet"]) == 0
    assert "Recovery 3 of 3" in capsys.readouterr().out
    assert history_values(stopped) == history_values(run_dir)
    ours, theirs = checkpoint_values(stopped), checkpoint_values(run_dir)
    assert sorted(ours) == sorted(theirs)
    assert any("recovery" in name for name in ours)
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


class Blow(Callback):
    """Sets the learning rate out of all reason after the call that reaches ``step``, once."""

    def __init__(self, step, rate=1e6):
        self.step, self.rate, self.done = step, rate, False

    def on_loop_end(self, trainer, logs):
        if not self.done and int(trainer.step.numpy()) >= self.step:
            trainer.optimizer.learning_rate.assign(self.rate)
            self.done = True


class Record(Callback):
    """Keeps every state variable's value after each compiled call, by the step it reached."""

    def __init__(self):
        self.states = {}
        self.calls = []

    def on_train_begin(self, trainer):
        self.states[int(trainer.step.numpy())] = [np.array(v) for v in state_variables(trainer)]

    def on_loop_end(self, trainer, logs):
        self.states[int(trainer.step.numpy())] = [np.array(v) for v in state_variables(trainer)]
        self.calls.append((int(trainer.step.numpy()), dict(logs)))


@pytest.fixture(scope="module")
def images():
    return aeloops.to_model_inputs(aeloops.load_sample().train_images[:512], (784,))


def trainer_for(recovery, optimizer="sgd", learning_rate=0.5, mode="graph"):
    keras.utils.set_random_seed(0)
    model = aeloops.DenseAutoencoder(input_shape=(784,))
    return aeloops.Trainer(model, optimizer=optimizer, learning_rate=learning_rate, mode=mode, steps_per_loop=4,
                           on_nonfinite="rollback", recovery=recovery)  # fmt: skip


@pytest.fixture
def precision(request):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize(
    ("mode", "precision"),
    [("graph", "float32"), ("xla", "float32"), ("eager", "float32"), ("graph", "mixed_float16")],
    indirect=["precision"],
)
def test_a_spike_rolls_back_to_the_state_before_its_call_and_lowers_the_rate(images, capsys, mode, precision):
    trainer = trainer_for(aeloops.Recovery(learning_rate_factor=0.01, spike_factor=3.0, spike_window=3), mode=mode)
    record = Record()
    history = trainer.fit(images, epochs=2, batch_size=32, callbacks=[Blow(20), record], verbose=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Recovery")]
    # In float16 the blown-up step overflows to Inf before it can spike.
    cause = "the loss term 'bce' became NaN or Inf at step 2" if precision == "mixed_float16" else "the loss spiked to "
    assert lines[0].startswith(f"Recovery 1 of 3: {cause}")
    assert "rolled back to step 20 and skipped the batches of steps 20-23; learning_rate 1e+06 -> 1e+04." in lines[0]
    # After the rolled-back call the state is the one before it, but for the step (past the skipped
    # batches), the count and the rate (and the scale schedules would follow): every weight and
    # optimizer slot as it was at step 20.
    names = [getattr(v, "path", v.name) for v in state_variables(trainer)]
    before, after = record.states[20], record.states[24]
    differing = {name for name, old, new in zip(names, before, after) if not np.array_equal(old, new)}
    rate = {name for name in differing if name.endswith("learning_rate")}
    # Under mixed precision the loss scale may grow on any good step; it is the kept state's too.
    loss_scale = {name for name in differing if "scale" in name and name != "rate_scale:0"}
    assert len(rate) == 1 and differing - loss_scale - rate == {"step:0", "recoveries:0", "rate_scale:0"}
    assert not loss_scale or precision == "mixed_float16"
    assert int(trainer.recovery_state.recoveries.numpy()) == len(lines) == sum(history["recoveries"])
    assert sum(history["rolled_back_steps"]) == 4 * len(lines)
    # A rolled-back call reports its counts alone; the epoch's mean is over the calls that stood.
    second = [logs for step, logs in record.calls if 16 < step <= 32]
    counts_only = [logs for logs in second if "loss" not in logs]
    assert counts_only == [{"recoveries": 1.0, "rolled_back_steps": 4.0}] * len(lines)
    assert history["loss"][1] == pytest.approx(np.mean([logs["loss"] for logs in second if "loss" in logs]), rel=1e-12)
    assert all(np.isfinite(history["loss"]))


def test_after_the_last_recovery_the_run_stops_with_the_last_good_state(images):
    trainer = trainer_for(aeloops.Recovery(max_recoveries=1, spike_factor=3.0, spike_window=3))
    record = Record()
    with pytest.raises(aeloops.DivergedError, match=r"^After 1 recoveries, the most allowed .*the state of step 16 in"):
        trainer.fit(images, epochs=2, batch_size=32, callbacks=[Blow(12), record], verbose=0)
    for kept, now in zip(record.states[16], state_variables(trainer)):
        np.testing.assert_array_equal(kept, np.array(now))


def test_a_scheduled_rate_is_lowered_through_its_scale(images):
    rate = keras.optimizers.schedules.ExponentialDecay(0.5, decay_steps=1000, decay_rate=0.5)
    keras.utils.set_random_seed(0)
    recovery = aeloops.Recovery(learning_rate_factor=0.005, spike_factor=3.0, spike_window=3)
    trainer = aeloops.Trainer(aeloops.DenseAutoencoder(input_shape=(784,)), optimizer=keras.optimizers.SGD(rate),
                              mode="graph", steps_per_loop=4, on_nonfinite="rollback", recovery=recovery)  # fmt: skip
    assert isinstance(trainer.optimizer._learning_rate, ScaledSchedule)

    class BlowScale(Callback):
        def on_loop_end(self, trainer, logs):
            if int(trainer.step.numpy()) == 12:
                trainer.recovery_state.rate_scale.assign(400.0)

    history = trainer.fit(images, epochs=2, batch_size=32, callbacks=[BlowScale()], verbose=0)
    assert history["recoveries"] == [1.0, 0.0]
    assert float(trainer.recovery_state.rate_scale.numpy()) == pytest.approx(2.0)
    assert history["learning_rate"][1] == pytest.approx(float(rate(trainer.optimizer.iterations)) * 2.0, rel=1e-5)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_recoveries": 0}, "max_recoveries must be a positive int"),
        ({"learning_rate_factor": 1.5}, r"learning_rate_factor must lie in \(0, 1\]"),
        ({"spike_factor": 1.0}, "spike_factor must be a number above 1"),
        ({"spike_window": 0}, "spike_window must be a positive int"),
    ],
)
def test_a_recovery_out_of_range_is_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        aeloops.Recovery(**arguments)


def test_a_recovery_without_rollback_is_refused_and_its_advice_works(tmp_path, capsys):
    model = aeloops.DenseAutoencoder(input_shape=(784,))
    with pytest.raises(ValueError, match="only with on_nonfinite='rollback'"):
        aeloops.Trainer(model, recovery=aeloops.Recovery())
    run = ["--dataset", "mnist-sample", "--epochs", "1", "--max-recoveries", "2", "--run-dir", str(tmp_path / "r")]
    assert train.main(run) == 2
    error = capsys.readouterr().err
    assert "max_recoveries sets how a run recovers by rolling back, but on_nonfinite is 'stop'" in error
    assert "(--on-nonfinite rollback)" in error
    assert train.main([*run, "--on-nonfinite", "rollback", "--no-validation", "--quiet"]) == 0


def test_recovery_lines_go_below_an_open_progress_bar_without_blank_lines(capsys):
    from aeloops.training.progress import ProgressBar

    bar = ProgressBar(10, verbose=1, unit_name="step", label="Epoch 1/1")
    bar.interval = 0.0  # Every update draws.
    bar.update(3, [("loss", 1.0)])
    bar.write_line("Recovery 1 of 3: ...")
    bar.write_line("Recovery 2 of 3: ...")
    bar.update(10, [("loss", 1.0)])
    text = capsys.readouterr().out
    # The bar's open line is ended once; two recoveries in a row are two lines, with none empty between.
    assert "\nRecovery 1 of 3: ...\nRecovery 2 of 3: ...\n" in text
    assert "\n\n" not in text
