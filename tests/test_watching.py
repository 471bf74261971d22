"""Early stopping, the best checkpoint and learning-rate schedules: decisions, their survival of a kill, bad input."""

import json
import math
import os
import signal
import subprocess

import keras
import numpy as np
import pytest

from aeloops import train
from aeloops.models import registry
from aeloops.runs.early_stopping import EarlyStopping, Watch
from aeloops.runs.lr_schedules import ReduceOnPlateau, schedule
from aeloops.training.callbacks import TIMINGS
from aeloops.training.trainer import Trainer
from tests import warm_python
from tests.conftest import REPO

ENVIRONMENT = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def test_watch_counts_only_improvements_larger_than_min_delta():
    watch = Watch("val_loss", min_delta=0.01)
    assert watch.improves(0.5, None)
    assert watch.improves(0.489, best=0.5) and not watch.improves(0.491, best=0.5)
    assert not watch.improves(math.nan, best=None)  # NaN is never a best value.
    assert Watch("accuracy", mode="max").improves(0.9, best=0.8)
    with pytest.raises(ValueError, match="Cannot monitor 'val_bce': the epoch logged bce, loss; choose"):
        Watch("val_bce").value({"bce": 0.1, "loss": 0.1, "epoch_seconds": 1.0})
    for arguments, message in [
        (("",), "monitor must name"),
        (("loss", -1.0), "min_delta"),
        (("loss", 0, "up"), "mode"),
    ]:
        with pytest.raises(ValueError, match=message):
            Watch(*arguments)


def test_early_stopping_waits_patience_epochs_and_keeps_the_best_checkpoint(tmp_path):
    trainer = Trainer(registry.get("dense").build(), mode="graph")
    stopper = EarlyStopping(trainer, tmp_path / "best", monitor="val_loss", patience=2, min_delta=0.01)
    for epoch, value in enumerate([0.50, 0.40, 0.395, 0.30, 0.299, 0.298]):
        trainer.step.assign(10 * (epoch + 1))
        stopper.on_epoch_end(trainer, epoch, {"val_loss": value})
        if trainer.stop_training:
            break
    assert stopper.state == {"best": 0.30, "best_epoch": 4, "best_step": 40, "wait": 2, "stopped": 6}
    assert stopper.best.latest.endswith("ckpt-40")
    trainer.step.assign(0)
    assert stopper.restore_best() and int(trainer.step.numpy()) == 40
    assert (
        stopper.describe() == "Best val_loss 0.3 at epoch 4; stopped early at epoch 6 (2 epochs without improvement)."
    )
    with pytest.raises(ValueError, match="patience must be a positive integer"):
        EarlyStopping(trainer, tmp_path / "other", patience=-1)


def test_plateau_lowers_every_rate_after_patience_epochs_never_below_the_floor():
    optimizers = [keras.optimizers.Adam(0.1), keras.optimizers.SGD(0.04)]
    plateau = ReduceOnPlateau(optimizers, monitor="loss", factor=0.5, patience=2, minimum=0.03)
    for epoch, value in enumerate([1.0, 1.0, 1.0, 0.5, 0.6, 0.7]):
        plateau.on_epoch_end(None, epoch, {"loss": value})
    assert plateau.state["reductions"] == [3, 6]
    assert [round(float(optimizer.learning_rate), 6) for optimizer in optimizers] == [0.03, 0.03]


def test_schedules_follow_their_formulas_and_refuse_rates_that_would_not_fall_or_go_negative():
    cosine = schedule("cosine", 0.01, warmup_steps=10, decay_steps=100, minimum=0.001)
    assert float(cosine(5)) == pytest.approx(0.005)  # Half way up the warm-up.
    assert float(cosine(60)) == pytest.approx(0.001 + 0.009 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert float(cosine(500)) == pytest.approx(0.001)
    step = schedule("step", 0.01, decay_steps=10, factor=0.1, minimum=1e-4)
    assert [float(step(value)) for value in (9, 10, 25, 1000)] == pytest.approx([0.01, 0.001, 1e-4, 1e-4])
    assert schedule("plateau", 0.01) == 0.01
    for kind, options, message in [
        ("cosine", {"decay_steps": 10, "minimum": 0.02}, r"min_learning_rate must lie in \[0, 0.01\)"),
        ("cosine", {"decay_steps": 0}, "needs decay_steps >= 1"),
        ("step", {"decay_steps": 10, "factor": 1.5}, "lr_factor must lie between 0 and 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            schedule(kind, 0.01, **options)


@pytest.fixture(scope="module")
def images_file(tmp_path_factory, mnist):
    path = tmp_path_factory.mktemp("data") / "images.npz"
    np.savez(path, x_train=mnist.train_images[:1024], x_test=mnist.test_images[:256])
    return path


def watched_arguments(images_file, run_dir):
    """A run whose plateau lowers the rate after epoch 9 and whose early stopping ends it at epoch 10."""
    return [
        "--dataset", str(images_file), "--batch-size", "128", "--epochs", "12", "--steps-per-loop", "4",
        "--mode", "graph", "--deterministic", "--quiet", "--lr-schedule", "plateau", "--lr-patience", "1",
        "--early-stopping-patience", "2", "--min-delta", "0.004", "--restore-best", "--run-dir", str(run_dir),
    ]  # fmt: skip


def subprocess_run(*arguments):
    command = warm_python.command(list(arguments))
    return subprocess.run(command, cwd=REPO, env=ENVIRONMENT, capture_output=True, text=True, timeout=600)


def outcome(run_dir):
    history = json.loads((run_dir / "history.json").read_text())
    timings = TIMINGS
    weights = [variable.numpy() for variable in keras.saving.load_model(run_dir / "model.keras").weights]
    record = {name: values for name, values in history.items() if name not in timings}
    return record, json.loads((run_dir / "best.json").read_text()), weights


def test_a_run_killed_and_resumed_stops_early_and_lowers_the_rate_as_one_left_alone(images_file, tmp_path, capsys):
    # In this process but the killed run (a kill ends its process): the CLI's main, as a user's shell runs it.
    left_alone, killed = tmp_path / "left_alone", tmp_path / "killed"
    assert train.main(watched_arguments(images_file, left_alone)) == 0
    stdout = capsys.readouterr().out
    assert "Best val_loss" in stdout and "stopped early at epoch 10" in stdout
    history, best, weights = outcome(left_alone)
    assert history["epoch"][-1] == 10 and best["stopped_early_at_epoch"] == 10 and best["model.keras"] == "best"
    assert history["learning_rate"][-1] == pytest.approx(history["learning_rate"][0] / 2)
    # Killed mid-epoch 10, after the reduction and one epoch without improvement.
    result = subprocess_run("-m", "tests.kill_helper", "step", "76", "--", *watched_arguments(images_file, killed))
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert train.main(["--resume", "--run-dir", str(killed), "--quiet"]) == 0
    ours_history, ours_best, ours_weights = outcome(killed)
    assert ours_history == history and ours_best == best
    for ours, theirs in zip(ours_weights, weights):
        np.testing.assert_array_equal(ours, theirs)
    # Resumed once more, a finished early-stopped run trains no further.
    assert train.main(["--resume", "--run-dir", str(killed), "--quiet", "--epochs", "20"]) == 0
    assert json.loads((killed / "history.json").read_text())["epoch"][-1] == 10


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--monitor", "val_bcee"], "--monitor 'val_bcee' is not a value this run logs; choose one of loss, bce"),
        (["--monitor", "val_bce", "--no-validation"], "(validation is off)"),
        (["--early-stopping-patience", "-2"], "early_stopping_patience must be an integer >= 1, got -2"),
        (["--lr-factor", "1.5"], "lr_factor must be between 0 and 1"),
        (["--lr-schedule", "step"], "lr_schedule 'step' needs decay_steps"),
        (["--warmup-steps", "100"], "warmup_steps is for lr_schedule 'cosine'; lr_schedule is 'constant'"),
        (["--lr-schedule", "cosine", "--min-learning-rate", "0.01"], r"min_learning_rate must lie in [0, 0.001)"),
        (["--min-learning-rate", "nan"], "min_learning_rate must be >= 0, got nan"),
    ],
)
def test_bad_watching_settings_exit_2_in_one_line_and_write_nothing(images_file, tmp_path, capsys, arguments, message):
    run_dir = tmp_path / "run"
    code = train.main(["--dataset", str(images_file), "--epochs", "1", "--run-dir", str(run_dir), *arguments])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], lines
    assert not run_dir.exists()


def test_a_cosine_run_logs_the_rate_it_used_each_epoch(images_file, tmp_path):
    run_dir = tmp_path / "run"
    arguments = ["--dataset", str(images_file), "--batch-size", "128", "--epochs", "4", "--mode", "graph", "--quiet"]
    schedule_flags = ["--lr-schedule", "cosine", "--warmup-steps", "8", "--min-learning-rate", "1e-5"]
    assert train.main([*arguments, *schedule_flags, "--run-dir", str(run_dir)]) == 0
    # 8 steps an epoch: warm-up ends with epoch 1, then a cosine over the other 24 steps, recorded in config.json.
    assert json.loads((run_dir / "config.json").read_text())["decay_steps"] == 24
    expected = [1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * (step - 8) / 24)) for step in (8, 16, 24, 32)]
    history = json.loads((run_dir / "history.json").read_text())
    assert history["learning_rate"] == pytest.approx(expected, rel=1e-5)
