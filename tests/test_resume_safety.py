"""A careless or unlucky user's run directory: edited, damaged, shared or unwritable, and nothing is lost.

Each test starts from a copy of one short finished run and calls the CLI
in-process (``train.main``), except where a second process is the point.
"""

import errno
import json
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from aeloops import files as files_module
from aeloops import train
from aeloops.runs import prepare
from aeloops.runs.directory import RunDirectory
from tests.conftest import REPO

EPOCHS, BATCH = 2, 128


@pytest.fixture(scope="module")
def images_file(tmp_path_factory, mnist):
    path = tmp_path_factory.mktemp("data") / "images.npz"
    np.savez(path, x_train=mnist.train_images[:1024], x_test=mnist.test_images[:256])
    return path


@pytest.fixture(scope="module")
def finished(images_file, tmp_path_factory):
    """A finished 2-epoch run: checkpoints 0, 8 and 16 (8 steps an epoch)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    arguments = ["--dataset", str(images_file), "--epochs", str(EPOCHS), "--batch-size", str(BATCH)]
    assert train.main([*arguments, "--mode", "graph", "--quiet", "--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.fixture
def run_dir(finished, tmp_path):
    """A copy of the finished run, to abuse."""
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def files(run_dir):
    return {path.relative_to(run_dir): path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}


def resume(run_dir, capsys, *arguments):
    """Resumes ``run_dir`` to 3 epochs; returns the exit status, stdout and stderr."""
    code = train.main(["--resume", "--run-dir", str(run_dir), "--epochs", "3", "--quiet", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def edit_config(run_dir, **changes):
    config = json.loads((run_dir / "config.json").read_text())
    config.update(changes)
    (run_dir / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "deep"}, "config.json says model = 'deep', but ckpt-16 was trained with model = 'dense'"),
        ({"precision": "mixed_float16"}, "precision = 'mixed_float16'"),
        ({"batch_size": 64}, "batch_size = 64, but ckpt-16 was trained with batch_size = 128"),
        ({"learning_rate": 0.01}, "learning_rate = 0.01, but ckpt-16 was trained with learning_rate = None"),
        ({"optimizer": "sgd"}, "optimizer = 'sgd', but ckpt-16 was trained with optimizer = 'adam'"),
    ],
    ids=["model", "precision", "batch_size", "learning_rate", "optimizer"],
)
def test_an_edited_config_is_refused_in_one_line_and_the_advice_resumes(run_dir, capsys, change, message):
    original = (run_dir / "config.json").read_text()
    edit_config(run_dir, **change)
    before = files(run_dir)
    code, _, stderr = resume(run_dir, capsys)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], stderr
    assert "set it back to resume" in lines[0]
    assert files(run_dir) == before  # Nothing deleted, nothing advised to delete.
    (run_dir / "config.json").write_text(original)  # The advice, followed.
    code, stdout, stderr = resume(run_dir, capsys)
    assert code == 0, stderr
    assert "at step 16 (epoch 3)" in stdout


def test_changed_data_is_refused(run_dir, images_file, capsys, tmp_path):
    with np.load(images_file) as archive:
        original = dict(archive)
    moved = tmp_path / "images.npz"
    np.savez(moved, x_train=original["x_train"][:512], x_test=original["x_test"])
    edit_config(run_dir, dataset=str(moved))
    code, _, stderr = resume(run_dir, capsys)
    assert code == 2
    assert "The training data of" in stderr and "had shape (1024, 784) (float32), now (512, 784) (float32)" in stderr
    changed = original["x_test"].copy()
    changed[0, 0, 0] = 255 - changed[0, 0, 0]
    np.savez(moved, x_train=original["x_train"], x_test=changed)
    code, _, stderr = resume(run_dir, capsys)
    assert code == 2 and "The validation data of" in stderr and "has the same shape but other values" in stderr
    np.savez(moved, **original)  # The same data at another path resumes.
    code, _, stderr = resume(run_dir, capsys)
    assert code == 0, stderr


@pytest.mark.parametrize("state", ["missing", "garbage", "empty"])
def test_a_lost_or_damaged_checkpoint_list_is_rebuilt_from_the_files(run_dir, capsys, state):
    state_file = run_dir / "checkpoints" / "checkpoint"
    if state == "missing":
        state_file.unlink()
    else:
        state_file.write_text("garbage\n" if state == "garbage" else "")
    code, stdout, stderr = resume(run_dir, capsys)
    assert code == 0, stderr
    assert "rebuilt it from the 3 checkpoint(s) on disk" in stdout
    assert "at step 16 (epoch 3)" in stdout
    assert "WARNING" not in stderr
    if state != "missing":  # What was there is kept.
        assert (run_dir / "checkpoints" / "checkpoint.damaged").read_text() == (
            "garbage\n" if state == "garbage" else ""
        )
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1, 2, 3]


def test_a_missing_or_damaged_history_is_rebuilt_from_the_checkpoint(run_dir, finished, capsys):
    written = json.loads((finished / "history.json").read_text())
    (run_dir / "history.json").unlink()
    code, stdout, stderr = resume(run_dir, capsys)
    assert code == 0, stderr
    assert "history.json was missing; rebuilt it from ckpt-16" in stdout
    history = json.loads((run_dir / "history.json").read_text())
    assert {name: values[:EPOCHS] for name, values in history.items()} == written
    assert history["epoch"] == [1, 2, 3]
    (run_dir / "history.json").write_text("{truncated")
    code, stdout, stderr = (
        train.main(["--resume", "--run-dir", str(run_dir), "--epochs", "4", "--quiet"]),
        *capsys.readouterr(),
    )
    assert code == 0, stderr
    assert "Kept it as history.json.damaged" in stdout
    assert (run_dir / "history.json.damaged").read_text() == "{truncated"
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1, 2, 3, 4]
    # A hand-edited history is not the record either, but it is someone's work: kept, not silently replaced.
    edited = json.loads((run_dir / "history.json").read_text())
    edited["note"] = ["my annotation"]
    (run_dir / "history.json").write_text(json.dumps(edited))
    code, stdout, stderr = (
        train.main(["--resume", "--run-dir", str(run_dir), "--epochs", "5", "--quiet"]),
        *capsys.readouterr(),
    )
    assert code == 0, stderr
    assert "differs from the record in ckpt-32; kept it as history.json.damaged-2" in stdout
    assert json.loads((run_dir / "history.json.damaged-2").read_text())["note"] == ["my annotation"]
    assert "note" not in json.loads((run_dir / "history.json").read_text())


def test_a_newest_checkpoint_without_its_index_is_diagnosed_not_silently_rewound(run_dir, capsys, tmp_path):
    (run_dir / "checkpoints" / "ckpt-16.index").unlink()
    before = files(run_dir)
    code, _, stderr = resume(run_dir, capsys)
    assert code == 2
    line = stderr.strip()
    assert "ckpt-16 is damaged (its .index file is missing);" in line and "ckpt-8 is intact" in line, line
    assert files(run_dir) == before  # The orphaned data is still there, untouched.
    # The advice, followed literally, moves the orphan aside; the run then resumes from ckpt-8.
    subprocess.run(["bash", "-c", line.split("(nothing else changes): ", 1)[1]], cwd=tmp_path, check=True)
    assert (run_dir / "checkpoints" / "damaged" / "ckpt-16.data-00000-of-00001").is_file()
    code, stdout, stderr = resume(run_dir, capsys)
    assert code == 0, stderr
    assert "at step 8 (epoch 2)" in stdout


def test_a_run_killed_while_writing_its_first_checkpoint_resumes_from_step_0(run_dir, finished, capsys):
    # What kill -9 during the step-0 save leaves: the config, the lock, and a checkpoint's temporary files.
    for path in run_dir.iterdir():
        if path.name not in ("config.json", ".lock"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    (run_dir / "checkpoints" / "ckpt-0_temp").mkdir(parents=True)
    (run_dir / "checkpoints" / "ckpt-0_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 64)
    code, stdout, stderr = resume(run_dir, capsys)
    assert code == 0, stderr
    assert "stopped before its first checkpoint; starting it again from step 0" in stdout
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3]
    # The same first two epochs as the run left alone: a fresh start, with its saved settings.
    assert history["loss"][:EPOCHS] == json.loads((finished / "history.json").read_text())["loss"]


def test_a_run_directory_in_use_is_refused_and_a_dead_holder_is_taken_over(run_dir, capsys):
    hold = f"import sys\nfrom aeloops.runs.directory import RunDirectory\nwith RunDirectory({str(run_dir)!r}).lock():\n"
    hold += "    print('held', flush=True)\n    sys.stdin.read()"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        before = files(run_dir)
        code, _, stderr = resume(run_dir, capsys)
        assert code == 2
        assert f"Run directory {run_dir} is in use by process {holder.pid} on " in stderr, stderr
        assert files(run_dir) == before
    finally:
        holder.kill()  # As a crash would: the lock is never released by its owner.
        holder.wait()
    code, stdout, stderr = resume(run_dir, capsys)
    assert code == 0, stderr
    assert (run_dir / ".lock").read_text() == ""


def test_a_new_run_is_refused_a_directory_another_run_holds(tmp_path, images_file, capsys):
    run_dir = RunDirectory(tmp_path / "new")
    with run_dir.lock():
        code = train.main(["--dataset", str(images_file), "--run-dir", str(run_dir.path), "--epochs", "1"])
        assert code == 2
        assert f"is in use by process {os.getpid()}" in capsys.readouterr().err
    assert not run_dir.path.exists()  # The lock made it; nothing was written; it is gone again.


def test_a_failed_checkpoint_save_ends_in_one_line_and_the_previous_checkpoint_resumes(run_dir, capsys):
    """A real write fault: a file size limit (as a full disk) that the checkpoint's data file exceeds."""

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # Writes past the limit then fail with EFBIG.
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "aeloops.train", "--resume", "--run-dir", str(run_dir), "--epochs", "3", "--quiet"]
    result = subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300, preexec_fn=limit_file_size
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    # The first save of the epoch is the best checkpoint's (in checkpoints/best), then the rolling one.
    assert lines[0].startswith(f"aeloops.train: Cannot save a checkpoint in {run_dir / 'checkpoints'}"), lines[0]
    assert ": File too large. ckpt-16 and those before it are intact; free space or fix the permissions" in lines[0]
    assert train.main(command[3:]) == 0  # Without the limit, in this process.
    assert "at step 16 (epoch 3)" in capsys.readouterr().out
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1, 2, 3]


def dead_pid():
    """A process number no process has now."""
    return next(pid for pid in range(4_000_000, 4_100_000) if not files_module._running(pid))


def test_leftovers_of_killed_writes_are_removed_by_the_next_run_and_writes_in_progress_are_not(run_dir, capsys):
    dead, alive = dead_pid(), os.getpid()
    planted = {
        run_dir / f".history.json.{dead}-k2j4.partial": "file",  # A JSON write killed before its rename.
        run_dir / f".reconstructions.png.{dead}-a8d1.partial": "file",
        run_dir / "checkpoints" / "ckpt-99_temp": "dir",  # TensorFlow's save, killed before it merged.
        run_dir / "checkpoints" / "best" / "ckpt-98_temp": "dir",
    }
    in_progress = run_dir / f".history.json.{alive}-zz11.partial"  # Another live process's write: kept.
    for path, kind in planted.items():
        if kind == "dir":
            path.mkdir()
            (path / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"half")
        else:
            path.write_bytes(b"half")
    in_progress.write_bytes(b"being written")
    code, _, stderr = resume(run_dir, capsys)
    assert code == 0, stderr
    assert [path for path in planted if path.exists()] == []
    assert in_progress.read_bytes() == b"being written"


def test_a_failed_history_write_ends_in_one_line_and_keeps_the_old_file(run_dir, capsys, monkeypatch):
    before = (run_dir / "history.json").read_text()

    write_text = pathlib.Path.write_text

    def no_space_for_history(self, *args, **kwargs):
        if self.name.startswith(".history.json.") and self.name.endswith(".partial"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", no_space_for_history)
    code, _, stderr = resume(run_dir, capsys)
    assert code == 1
    assert stderr.strip() == f"aeloops.train: Cannot write {run_dir / 'history.json'}: No space left on device."
    assert (run_dir / "history.json").read_text() == before
    assert not list(run_dir.glob(".history.json.*"))  # The temporary file is gone too.


def test_an_unwritable_checkpoints_directory_is_refused_before_training(run_dir, capsys, monkeypatch):
    # Root passes every permission check, so the refusal is simulated where the check makes its test file.
    make_temporary = tempfile.TemporaryFile

    def refuse_checkpoints(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's own name.
        if dir is not None and pathlib.Path(dir).name == "checkpoints":
            raise PermissionError(errno.EROFS, os.strerror(errno.EROFS))
        return make_temporary(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse_checkpoints)
    before = files(run_dir)
    code, _, stderr = resume(run_dir, capsys)
    assert code == 2
    assert f"{run_dir / 'checkpoints'} is not writable (Read-only file system)" in stderr, stderr
    assert files(run_dir) == before


def test_a_stop_requested_during_start_up_writes_nothing(tmp_path, images_file, capsys, monkeypatch):
    # A signal that arrives while TensorFlow loads and the model is built.
    original_read = prepare.read_images

    def read_then_signal(*args, **kwargs):
        images = original_read(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return images

    monkeypatch.setattr(prepare, "read_images", read_then_signal)
    code = train.main(["--dataset", str(images_file), "--run-dir", str(tmp_path / "run"), "--epochs", "1"])
    assert code == 143
    assert "Stopped before training began; nothing was written." in capsys.readouterr().out
    assert not (tmp_path / "run").exists()
