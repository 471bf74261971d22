"""The persistent XLA cache: where it lives, when it is used, how it is pruned, and a CLI run reading it."""

import json
import os
import subprocess
import sys

import pytest

from aeloops.runs.stderr_filter import is_startup_chatter
from aeloops.training import compile_cache
from tests.conftest import REPO


@pytest.fixture
def environment(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TF_XLA_FLAGS", "")  # Restored (to unset) after the test, whatever enable() wrote.
    monkeypatch.delenv(compile_cache.DISABLE_VARIABLE, raising=False)
    return tmp_path


def test_the_cache_lives_in_the_user_cache_directory_named_by_tensorflow_and_cpu(environment, monkeypatch):
    import tensorflow as tf

    directory = compile_cache.cache_directory()
    assert directory.parent == environment / "cache" / "aeloops" / "xla"
    assert directory.name == f"tf-{tf.__version__}-{compile_cache.machine_key()}"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(environment / "home"))
    assert compile_cache.cache_directory().parent == environment / "home" / ".cache" / "aeloops" / "xla"


def test_enable_points_xla_at_the_directory_unless_told_otherwise(environment, monkeypatch):
    directory = compile_cache.enable()
    assert directory == compile_cache.cache_directory() and directory.is_dir()
    assert os.environ["TF_XLA_FLAGS"] == f"--tf_xla_persistent_cache_directory={directory}"
    assert list(directory.iterdir()) == []  # The write probe leaves nothing.
    # The user's own cache directory wins; so does turning the cache off.
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_persistent_cache_directory=/elsewhere")
    assert compile_cache.enable(environment / "other") is None
    assert os.environ["TF_XLA_FLAGS"] == "--tf_xla_persistent_cache_directory=/elsewhere"
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_enable_lazy_compilation=false")
    monkeypatch.setenv(compile_cache.DISABLE_VARIABLE, "1")
    assert compile_cache.enable(environment / "other") is None
    assert not (environment / "other").exists()


def test_an_unwritable_cache_is_not_used(environment):
    blocked = environment / "a-file"
    blocked.write_text("not a directory")
    assert compile_cache.enable(blocked / "xla") is None
    assert os.environ["TF_XLA_FLAGS"] == ""


def test_prune_removes_the_oldest_files_and_stale_temporaries_only(tmp_path):
    for age, name in enumerate(["new.pb", "middle.pb", "old.pb"]):
        path = tmp_path / name
        path.write_bytes(b"x" * 100)
        os.utime(path, (1_000_000 - age, 1_000_000 - age))
    stale, fresh = tmp_path / "entry.pb.123.tmp", tmp_path / "entry.pb.456.tmp"
    stale.write_bytes(b"x" * 10)
    os.utime(stale, (0, 0))
    fresh.write_bytes(b"x" * 10)
    assert compile_cache.prune(tmp_path, limit_bytes=150) == 210
    assert sorted(path.name for path in tmp_path.iterdir()) == ["entry.pb.456.tmp", "new.pb"]


def test_xla_s_cache_notes_are_filtered_and_a_real_cpu_mismatch_is_not():
    prefix = "E0000 00:00:1795930866.746260   22703 "
    parse_note = "text_format.cc:378] Error parsing text-format tensorflow.XlaSerializedCacheEntry: 2:1: Expected"
    assert is_startup_chatter(prefix + parse_note)
    note = "cpu_aot_loader.cc:220] Loading XLA:CPU AOT result. Target machine feature +{} is not  supported on the host"
    assert is_startup_chatter(prefix + note.format("prefer-no-scatter"))
    assert not is_startup_chatter(prefix + note.format("avx512f"))
    assert not is_startup_chatter(prefix + "text_format.cc:378] Error parsing text-format tensorflow.GraphDef: 1:1")


def test_a_second_xla_run_reads_the_cache_quietly_and_trains_the_same(tmp_path):
    environment = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    for name in ("TF_CPP_MIN_LOG_LEVEL", "TF_XLA_FLAGS"):  # As a user has it: nothing set.
        environment.pop(name, None)
    results = []
    for name in ("first", "second"):
        command = [sys.executable, "-m", "aeloops.train", "--dataset", "mnist-sample", "--mode", "xla",
                   "--epochs", "1", "--quiet", "--run-dir", str(tmp_path / name)]  # fmt: skip
        result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert "(the first training step ended at " in result.stdout
        results.append(result)
        if name == "first":
            cached = sorted((tmp_path / "cache" / "aeloops" / "xla").glob("*/*.pb"))
            assert cached, "the first run wrote no executable to the cache"
            sizes = {path: path.stat().st_mtime_ns for path in cached}
    # The second run compiled nothing new: it read every executable the first one wrote.
    assert {path: path.stat().st_mtime_ns for path in sizes} == sizes
    assert sorted((tmp_path / "cache" / "aeloops" / "xla").glob("*/*.pb")) == cached
    histories = [json.loads((tmp_path / name / "history.json").read_text()) for name in ("first", "second")]
    assert histories[0]["val_loss"] == histories[1]["val_loss"]


XLA_FIT = """
import numpy as np, aeloops
images = np.random.default_rng(0).random((640, 784), dtype=np.float32)
trainer = aeloops.Trainer(aeloops.DenseAutoencoder(), mode="xla", steps_per_loop=4)
trainer.fit(images, epochs=1, batch_size=64, verbose=0)  # Calls of 4, 4 and 2 steps.
"""


def test_xla_compiles_a_training_loop_once_whatever_its_step_count(tmp_path):
    # XLA's persistent cache holds one file per compilation: a count of the compilations.
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TF_XLA_FLAGS": f"{compile_cache._FLAG}={tmp_path}"}
    command = [sys.executable, "-c", XLA_FIT]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(list(tmp_path.glob("*.pb"))) == 1
