"""Keras callbacks in Trainer.fit: Keras's own, Optuna's and MLflow's, each judged by its effect."""

import csv
import math

import keras
import numpy as np
import pytest

from aeloops.data import to_model_inputs
from aeloops.models import registry
from aeloops.runs.checkpoints import Checkpointer
from aeloops.training.callbacks import TIMINGS, Callback
from aeloops.training.trainer import Trainer
from tests.test_loop import nonfinite_setup

BATCH = 64


@pytest.fixture(scope="module")
def images(small_images):
    return to_model_inputs(small_images[:256], (784,))  # 4 steps an epoch: calls of 3 and 1 steps


@pytest.fixture(scope="module")
def validation(small_test_images):
    return to_model_inputs(small_test_images[:128], (784,))


def trainer(mode="graph", **options):
    keras.utils.set_random_seed(0)
    return Trainer(registry.get("dense").build(), mode=mode, steps_per_loop=3, **options)


def weights(trained):
    return [variable.numpy() for variable in trained.model.weights]


def test_csv_logger_writes_the_history_row_for_row(images, validation, tmp_path):
    path = tmp_path / "log.csv"
    history = trainer().fit(
        images, epochs=3, batch_size=BATCH, validation_data=validation, callbacks=[keras.callbacks.CSVLogger(path)],
        verbose=0,
    )  # fmt: skip
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    assert set(rows[0]) == {"epoch", *history} and {"loss", "bce", "val_loss", "learning_rate"} <= set(history)
    for name, values in history.items():
        assert [float(row[name]) for row in rows] == values, name


def test_early_stopping_stops_at_the_epoch_keras_would_and_restores_the_best_weights(images, validation):
    seen = []
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, min_delta=0.05, restore_best_weights=True)
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(weights(fitted)))
    fitted = trainer()
    history = fitted.fit(
        images, epochs=10, batch_size=BATCH, validation_data=validation, callbacks=[stopper, record], verbose=0
    )
    losses = history["val_loss"]
    # Keras's rule: stop once val_loss has not fallen by min_delta below the best for `patience` epochs.
    best, best_epoch, wait, expected = math.inf, None, 0, len(losses)
    for epoch, value in enumerate(losses):
        best, best_epoch, wait = (value, epoch, 0) if value < best - 0.05 else (best, best_epoch, wait + 1)
        if wait >= 1:
            expected = epoch + 1
            break
    assert 1 < len(losses) == expected < 10 and fitted.completed_epochs == expected
    assert stopper.stopped_epoch == expected - 1 and stopper.best_epoch == best_epoch
    for ours, kept in zip(weights(fitted), seen[best_epoch]):
        np.testing.assert_array_equal(ours, kept)


@pytest.mark.parametrize("mode", ["eager", "graph", "xla", "auto"])
def test_a_learning_rate_set_by_a_callback_is_the_one_the_compiled_step_uses_and_logs(images, mode):
    # A rate of 0 in epoch 2 (index 1): Adam then leaves every weight where it was.
    rates = {0: 1e-3, 1: 0.0, 2: 2e-3}
    seen = []
    fitted = trainer(mode)
    callbacks = [
        keras.callbacks.LearningRateScheduler(lambda epoch, rate: rates[epoch]),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(weights(fitted))),
    ]
    history = fitted.fit(images, epochs=3, batch_size=BATCH, callbacks=callbacks, verbose=0)
    assert history["learning_rate"] == [np.float32(rate).item() for rate in rates.values()]
    for before, after in zip(seen[0], seen[1]):
        np.testing.assert_array_equal(before, after)
    assert any(not np.array_equal(before, after) for before, after in zip(seen[1], seen[2]))


def test_reduce_lr_on_plateau_lowers_the_rate_the_history_logs(images, validation):
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0, min_delta=10.0)
    history = trainer().fit(
        images, epochs=4, batch_size=BATCH, validation_data=validation, callbacks=[plateau], verbose=0
    )
    # min_delta 10 makes every epoch after the first a plateau: the rate halves after each of them.
    assert history["learning_rate"] == [np.float32(1e-3 * 0.5**n).item() for n in (0, 0, 1, 2)]


def test_batch_hooks_come_at_each_compiled_call_with_the_epochs_running_means(images, validation):
    calls = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: calls.append(("epoch_begin", epoch)),
        on_train_batch_begin=lambda batch, logs: calls.append(("batch_begin", batch)),
        on_train_batch_end=lambda batch, logs: calls.append(("batch_end", batch, logs["loss"])),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch, logs["loss"])),
        on_train_begin=lambda logs: calls.append(("train_begin",)),
        on_train_end=lambda logs: calls.append(("train_end", logs["loss"])),
    )

    class Params(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            calls.append(("params", self.params, type(self.model.optimizer).__name__, self.model.name))

        def on_test_begin(self, logs=None):
            calls.append(("test_begin",))

        def on_test_end(self, logs=None):
            calls.append(("test_end", sorted(logs)))

    fitted = trainer()
    history = fitted.fit(
        images, epochs=2, batch_size=BATCH, validation_data=validation, callbacks=[Params(), record], verbose=0
    )
    names = [call[0] for call in calls]
    epoch = ["epoch_begin", "batch_begin", "batch_end", "batch_begin", "batch_end", "test_begin", "test_end",
             "epoch_end"]  # fmt: skip
    assert names == ["params", "train_begin", *epoch, *epoch, "train_end"]
    assert calls[0][1:] == ({"epochs": 2, "steps": 4, "verbose": 0}, "Adam", fitted.model.name)
    assert [call[1] for call in calls if call[0] in ("batch_begin", "batch_end")][:4] == [0, 2, 3, 3]
    assert calls[8] == ("test_end", sorted(name[4:] for name in history if name.startswith("val_")))
    # The last batch's running mean is the epoch's mean; train_end gets the last epoch's row.
    ends = [call for call in calls if call[0] == "batch_end"]
    assert [ends[1][2], ends[3][2]] == history["loss"]
    assert calls[-1] == ("train_end", history["loss"][-1])


def test_terminate_on_nan_stops_after_the_call_whose_loss_is_nan(small_images):
    fitted, images, _ = nonfinite_setup(small_images, "skip", "graph")
    bright = images[images.mean(axis=1) > 0.15][:64]  # Every batch explodes: every step is skipped.
    history = fitted.fit(
        bright, epochs=3, batch_size=8, shuffle=False, callbacks=[keras.callbacks.TerminateOnNaN()], verbose=0
    )
    assert history == {} and fitted.completed_epochs == 0
    assert int(fitted.step.numpy()) == 3  # One compiled call of steps_per_loop=3, of the 24 asked for.


def test_a_keras_scheduled_run_stopped_mid_epoch_resumes_bit_for_bit(images, validation, tmp_path):
    def callbacks(stop_at=None):
        listed = [keras.callbacks.LearningRateScheduler(lambda epoch, rate: 1e-3 / (1 + epoch))]
        if stop_at is not None:  # A batch hook stopping the run, as TerminateOnNaN does: mid-epoch 3.
            stop = keras.callbacks.LambdaCallback(
                on_train_batch_end=lambda batch, logs: setattr(stop.model, "stop_training", True)
                if int(stop.model.optimizer.iterations.numpy()) >= stop_at else None
            )  # fmt: skip
            listed.append(stop)
        return listed

    whole = trainer()
    expected = whole.fit(images, epochs=4, batch_size=BATCH, validation_data=validation, callbacks=callbacks(),
                         verbose=0)  # fmt: skip
    first = trainer()
    saver = Checkpointer(first, tmp_path)
    first.fit(images, epochs=4, batch_size=BATCH, validation_data=validation, callbacks=[*callbacks(11), saver],
              verbose=0)  # fmt: skip
    assert first.completed_epochs == 2 and first.epoch_progress.steps == 3
    again = trainer()
    assert Checkpointer(again, tmp_path).restore()
    rest = again.fit(images, epochs=4, batch_size=BATCH, validation_data=validation, callbacks=callbacks(),
                     verbose=0)  # fmt: skip
    # The finished fit's history is the uninterrupted one's, every row, the scheduled rates included.
    assert set(rest) == set(expected)
    for name, values in rest.items():
        if name not in TIMINGS:
            assert values == expected[name], name
    assert rest["learning_rate"] == [np.float32(1e-3 / (1 + epoch)).item() for epoch in range(4)]
    for ours, theirs in zip(weights(again), weights(whole)):
        np.testing.assert_array_equal(ours, theirs)


def test_a_learning_rate_a_callback_set_is_saved_in_the_checkpoint(images, tmp_path):
    fitted = trainer()
    lower = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(lower.model.optimizer,
                                                                                    "learning_rate", 3e-5))  # fmt: skip
    fitted.fit(images, epochs=1, batch_size=BATCH, callbacks=[lower, Checkpointer(fitted, tmp_path)], verbose=0)
    again = trainer()
    assert again.learning_rates() == {"learning_rate": np.float32(1e-3).item()}
    Checkpointer(again, tmp_path).restore()
    assert again.learning_rates() == {"learning_rate": np.float32(3e-5).item()}


@pytest.mark.parametrize(
    ("callback", "advice"),
    [(lambda path: keras.callbacks.BackupAndRestore(str(path)), "use aeloops.Checkpointer"),
     (lambda path: keras.callbacks.TensorBoard(str(path)), "use aeloops.SummaryWriter(trainer, log_dir)"),
     (lambda path: keras.callbacks.ProgbarLogger(), "use fit's own progress bar"),
     (lambda path: keras.callbacks.SwapEMAWeights(), "use Trainer(..., use_ema=True)")],
)  # fmt: skip
def test_a_keras_callback_that_cannot_work_here_is_refused_naming_what_does(images, tmp_path, callback, advice):
    fitted = trainer()
    with pytest.raises(ValueError, match="cannot work in aeloops' loop") as raised:
        fitted.fit(images, epochs=1, batch_size=BATCH, callbacks=[callback(tmp_path)], verbose=0)
    assert advice in str(raised.value) and "\n" not in str(raised.value)
    assert int(fitted.step.numpy()) == 0


def test_what_is_no_callback_is_refused_before_training(images):
    fitted = trainer()
    with pytest.raises(TypeError, match="neither an aeloops.Callback nor a keras.callbacks.Callback"):
        fitted.fit(images, epochs=1, batch_size=BATCH, callbacks=[print], verbose=0)
    assert int(fitted.step.numpy()) == 0


def test_aeloops_and_keras_callbacks_run_side_by_side_keras_first(images):
    order = []

    class Ours(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            order.append(("aeloops", epoch))

    theirs = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: order.append(("keras", epoch)))
    trainer().fit(images, epochs=2, batch_size=BATCH, callbacks=[Ours(), theirs], verbose=0)
    assert order == [("keras", 0), ("aeloops", 0), ("keras", 1), ("aeloops", 1)]


def test_optuna_records_every_epoch_through_its_keras_callback_and_prunes(images, validation):
    optuna = pytest.importorskip("optuna")
    from optuna_integration import TFKerasPruningCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    histories = []

    def objective(trial):
        fitted = trainer(learning_rate=trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True))
        callback = TFKerasPruningCallback(trial, "val_loss")
        histories.append(None)  # Replaced when fit returns; a pruned trial's fit raises instead.
        histories[-1] = fitted.fit(images, epochs=3, batch_size=BATCH, validation_data=validation,
                                   callbacks=[callback], verbose=0)  # fmt: skip
        return histories[-1]["val_loss"][-1]

    kept = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=10.0))
    kept.optimize(objective, n_trials=1)
    assert kept.trials[0].state == optuna.trial.TrialState.COMPLETE
    assert kept.trials[0].intermediate_values == dict(enumerate(histories[0]["val_loss"]))
    # A val_loss above 0.3 after the first epoch (about 0.6 here) prunes the trial there.
    pruned = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.3))
    pruned.optimize(objective, n_trials=1)
    assert pruned.trials[0].state == optuna.trial.TrialState.PRUNED and histories[1] is None
    assert list(pruned.trials[0].intermediate_values) == [0]


def test_mlflow_records_what_the_history_holds(images, validation, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)  # MLflow's default experiment keeps its artifacts in ./mlruns.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    fitted = trainer()
    with mlflow.start_run() as run:
        history = fitted.fit(images, epochs=2, batch_size=BATCH, validation_data=validation,
                                callbacks=[mlflow.keras.MlflowCallback()], verbose=0)  # fmt: skip
    client = mlflow.MlflowClient()
    for name in ("loss", "val_loss", "learning_rate", "bce"):
        recorded = client.get_metric_history(run.info.run_id, name)
        assert [entry.value for entry in sorted(recorded, key=lambda entry: entry.step)] == history[name], name
    params = client.get_run(run.info.run_id).data.params
    assert params["optimizer_name"] == fitted.optimizer.name
    assert float(params["optimizer_learning_rate"]) == np.float32(1e-3)
