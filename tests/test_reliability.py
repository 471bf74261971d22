"""Killed, corrupted and diverging runs: nothing saved is lost, and a resumed run repeats exactly."""

import json
import os
import shutil
import signal
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from aeloops import evaluate as evaluate_cli
from aeloops import export as export_cli
from aeloops import train as train_cli
from aeloops.models import load_model
from aeloops.training.callbacks import TIMINGS
from tests import warm_python
from tests.conftest import REPO, SHARED_MNIST

pytestmark = pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="needs ../shared/data/mnist")

# 8,192 images (a .npy of real MNIST) at batch 256: 32 steps an epoch, 3 epochs,
# 5 steps per compiled call; deterministic ops so a resumed run can be compared bit for bit.
STEPS_PER_EPOCH, EPOCHS = 32, 3
ENVIRONMENT = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def images_file(tmp_path_factory, mnist):
    path = tmp_path_factory.mktemp("data") / "images.npz"
    np.savez(path, x_train=mnist.train_images[:8192], x_test=mnist.test_images[:512])
    return path


def arguments(images_file, run_dir, mode):
    return [
        "--dataset", str(images_file), "--epochs", str(EPOCHS), "--batch-size", "256", "--steps-per-loop", "5",
        "--mode", mode, "--deterministic", "--summary-every", "5", "--run-dir", str(run_dir), "--quiet",
    ]  # fmt: skip


def run(command):
    result = subprocess.run(command, cwd=REPO, env=ENVIRONMENT, capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout, result.stderr


def train(capsys, *args):
    """Runs the CLI in this process (a kill is the only reason for another); returns its status, stdout, stderr."""
    capsys.readouterr()
    code = train_cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def final_weights(run_dir):
    return [variable.numpy() for variable in load_model(run_dir / "model.keras").weights]


# What a run's history holds that depends on the clock, not on what was computed.


def recorded_history(run_dir):
    history = json.loads((run_dir / "history.json").read_text())
    return {name: values for name, values in history.items() if name not in TIMINGS}


@pytest.fixture(scope="module")
def reference(images_file, tmp_path_factory):
    """Uninterrupted runs, per mode: each one's directory, final weights and history."""
    results = {}
    for mode in ("graph", "xla"):
        run_dir = tmp_path_factory.mktemp("reference") / mode
        assert train_cli.main(arguments(images_file, run_dir, mode)) == 0  # In this process: no kill to survive.
        results[mode] = run_dir, final_weights(run_dir), recorded_history(run_dir)
    return results


# Each run is stopped again and again, every resume starting from what the last stop left, then
# left to finish: every stop must leave a state that resumes exactly, or the end differs.
STOPS = {
    # (A run stopped before its first epoch's checkpoint resumes from step 0: test_resume_safety.py.)
    "graph": [
        ("step", 45),  # Mid-epoch.
        ("validation", 40),  # During the second epoch's validation.
        ("mid_save", 64),  # While a checkpoint is being written.
        # SIGTERM, as a preemption notice: mid-epoch it stops after that compiled call (steps 42-47) and saves the
        # epoch's partial sums.
        ("term-step", 45),
        ("int2-step", 45),  # Ctrl-C twice: the second stops at once, whatever was being written.
    ],
    # SIGTERM during validation stops when that epoch is whole. (A kill mid-save is the graph chain's: checkpoints
    # are written outside the compiled loop, the same in either mode.)
    "xla": [("term-validation", 40)],
}


@pytest.mark.parametrize("mode", STOPS)
def test_killed_or_stopped_again_and_again_then_resumed_ends_bit_identical(
    images_file, reference, tmp_path, mode, capsys
):
    run_dir = tmp_path / "run"
    resume = ["--resume", "--run-dir", str(run_dir), "--quiet"]
    latest = None
    for point, step in STOPS[mode]:
        helper = warm_python.command(["-m", "tests.kill_helper", point, str(step), "--"])
        code, stdout, stderr = run([*helper, *(resume if latest else arguments(images_file, run_dir, mode))])
        if latest:
            assert f"at step {latest.rsplit('-', 1)[1]}" in stdout, (point, stdout)
        latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
        if point.startswith("term-"):
            assert code == 128 + signal.SIGTERM, stderr
            # Stopped promptly: within the compiled call it was in, or at the end of the epoch it validated.
            assert latest.endswith("ckpt-47" if point == "term-step" else f"ckpt-{2 * STEPS_PER_EPOCH}"), stdout
        elif point.startswith("int2-"):
            assert code == -signal.SIGINT, stderr
            assert stderr.strip().splitlines()[-1] == (
                "aeloops.train: stopped at once; the checkpoints saved so far are intact."
            )
        else:
            assert code == -signal.SIGKILL, (point, stderr)
        assert not (run_dir / "model.keras").exists()
        assert latest is not None  # A killed run is always resumable, even from step 0.
    capsys.readouterr()
    assert train_cli.main(resume) == 0  # The last resume, in this process: it only has to finish.
    assert f"at step {latest.rsplit('-', 1)[1]}" in capsys.readouterr().out
    _, weights, history = reference[mode]
    # The record is as exact as the weights: every row, a resumed epoch's included.
    assert recorded_history(run_dir) == history
    for ours, theirs in zip(final_weights(run_dir), weights):
        np.testing.assert_array_equal(ours, theirs)


def checkpoint_files(run_dir):
    return {path.name: path.read_bytes() for path in (run_dir / "checkpoints").glob("ckpt-*")}


@pytest.mark.parametrize("kept", ["half", "ten bytes"])
def test_damaged_checkpoint_advice_followed_literally_keeps_every_loadable_checkpoint(
    reference, tmp_path, capsys, kept
):
    """Cut in its middle (the weights unreadable) or after ten bytes (the run record too)."""
    # A name a shell would split, expand and unquote: the advice must be safe to paste all the same.
    run_dir = tmp_path / "my runs" / "it's $HOME é"
    (tmp_path / "my").mkdir()  # What an unquoted 'mv my runs/...' would have moved.
    shutil.copytree(reference["graph"][0], run_dir)  # A finished run (the graph-mode reference, copied).
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    data_file = f"{latest}.data-00000-of-00001"
    with open(data_file, "r+b") as stream:
        stream.truncate(os.path.getsize(data_file) // 2 if kept == "half" else 10)
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    assert (run_dir / ".lock").read_text() == ""  # Released: no process named.
    intact = {
        name: content
        for name, content in checkpoint_files(run_dir).items()
        if not name.startswith(os.path.basename(latest))
    }
    capsys.readouterr()
    assert train_cli.main(["--resume", "--run-dir", str(run_dir), "--epochs", "4", "--quiet"]) == 2
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"aeloops.train: error: Checkpoint {latest} is damaged"), stderr
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before
    if kept == "ten bytes":  # Evaluate and export read the same checkpoint and give the same line.
        for command in (evaluate_cli, export_cli):
            assert command.main([str(run_dir)]) == 2
            assert "is damaged (Read less bytes than requested); ckpt-" in capsys.readouterr().err
    # The advice, followed literally, moves only the damaged files.
    command = lines[0].split("(nothing else changes): ", 1)[1]
    subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True)
    assert (tmp_path / "my").is_dir()
    assert {name: content for name, content in checkpoint_files(run_dir).items()} == intact
    assert (run_dir / "checkpoints" / "damaged" / os.path.basename(data_file)).is_file()
    assert train_cli.main(["--resume", "--run-dir", str(run_dir), "--epochs", "4", "--quiet"]) == 0
    stdout = capsys.readouterr().out
    assert f"Resuming {run_dir} at step {(EPOCHS - 1) * STEPS_PER_EPOCH} (epoch {EPOCHS})" in stdout
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1, 2, 3, 4]


def test_corrupt_data_files_exit_2(tmp_path, capsys):
    data_dir = tmp_path / "mnist"
    data_dir.mkdir()
    for name in os.listdir(SHARED_MNIST):
        content = (SHARED_MNIST / name).read_bytes()
        # The training images are cut off: a truncated download.
        (data_dir / name).write_bytes(content[: len(content) // 3] if name.startswith("train-images") else content)
    code, _, stderr = train(capsys, "--data-dir", str(data_dir), "--run-dir", str(tmp_path / "run"))
    assert code == 2
    assert "train-images-idx3-ubyte.gz" in stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated zip")
    code, _, stderr = train(capsys, "--dataset", str(tmp_path / "broken.npz"), "--run-dir", str(tmp_path / "run"))
    assert code == 2 and "broken.npz" in stderr.strip().splitlines()[-1]


def test_diverging_run_stops_with_exit_1_or_skips(images_file, tmp_path, capsys):
    diverging = ["--model", "rowwise", "--optimizer", "sgd", "--learning-rate", "1e9", "--epochs", "2"]
    common = ["--dataset", str(images_file), "--batch-size", "256", "--steps-per-loop", "1", "--quiet"]
    code, _, stderr = train(capsys, *diverging, *common, "--run-dir", str(tmp_path / "stop"))
    assert code == 1
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("aeloops.train: The loss term 'mse' became NaN or Inf at step ")
    assert "Traceback" not in stderr
    # The step-0 checkpoint stays the latest good one.
    assert tf.train.latest_checkpoint(str(tmp_path / "stop" / "checkpoints")).endswith("ckpt-0")
    code, _, stderr = train(capsys, *diverging, *common, "--on-nonfinite", "skip", "--run-dir", str(tmp_path / "skip"))
    assert code == 0, stderr
    history = json.loads((tmp_path / "skip" / "history.json").read_text())
    assert len(history["skipped_steps"]) == 2 and history["skipped_steps"][1] > 0
