import errno
import json
import os
import pathlib

import pytest

from aeloops.runs.directory import (
    RunDirectory,
    RunWriteError,
    default_run_dir,
    is_chief_task,
    keep_aside,
    worker_scratch_dir,
    write_json,
)


def test_create_writes_config_and_refuses_to_reuse_a_directory(tmp_path):
    run_dir = RunDirectory(tmp_path / "runs" / "x")
    run_dir.create({"model": "dense"})
    assert json.loads(run_dir.config.read_text()) == {"model": "dense"}
    with pytest.raises(ValueError, match="already exists; pass --resume"):
        RunDirectory(tmp_path / "runs" / "x").create({"model": "deep"})
    assert json.loads(run_dir.config.read_text()) == {"model": "dense"}
    RunDirectory(tmp_path / "empty").check_new()  # An absent directory is fine.


def test_resumability_checks(tmp_path):
    run_dir = RunDirectory(tmp_path)
    with pytest.raises(ValueError, match="holds no config.json"):
        run_dir.check_resumable()
    run_dir.config.write_text("{}")
    run_dir.check_resumable()  # No checkpoint yet: a resume starts it again from step 0 (test_resume_safety).
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "checkpoint").symlink_to(tmp_path.parent)
    with pytest.raises(ValueError, match="checkpoints/checkpoint is a symbolic link"):
        run_dir.check_resumable()
    assert run_dir.read_history() == {}
    run_dir.history.write_text("{not json")
    with pytest.raises(ValueError, match="Cannot read"):
        run_dir.read_history()


def test_default_name_and_chief_election(monkeypatch, tmp_path):
    assert default_run_dir("conv").startswith("runs/conv-")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert is_chief_task()
    cluster = {"worker": ["a:1", "b:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert not is_chief_task()
    assert worker_scratch_dir(tmp_path / "run") == tmp_path / "run.worker-1"
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert is_chief_task()
    with_chief = {**cluster, "chief": ["c:3"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}}))
    assert not is_chief_task()
    monkeypatch.setenv("TF_CONFIG", "{broken")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        is_chief_task()


def test_write_json_fails_in_one_line_and_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "history.json"
    write_json(path, {"epoch": [1]})

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pathlib.Path, "write_text", no_space)
    with pytest.raises(RunWriteError, match="Cannot write .*history.json: No space left on device"):
        write_json(path, {"epoch": [1, 2]})
    assert json.loads(path.read_text()) == {"epoch": [1]}
    assert sorted(tmp_path.iterdir()) == [path]


def test_keep_aside_never_overwrites(tmp_path):
    for content in ("first", "second"):
        (tmp_path / "checkpoint").write_text(content)
        keep_aside(tmp_path / "checkpoint")
    assert (tmp_path / "checkpoint.damaged").read_text() == "first"
    assert (tmp_path / "checkpoint.damaged-2").read_text() == "second"


def test_non_utf8_run_directory_is_refused_before_anything_is_written(tmp_path):
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/run-\xff")
    with pytest.raises(ValueError, match="is not valid UTF-8"):
        RunDirectory(name).check_new()
    assert list(tmp_path.iterdir()) == []


def test_json_files_are_strict_json_with_null_for_nan_and_infinities(tmp_path):
    write_json(tmp_path / "history.json", {"loss": [1.5, float("nan")], "gradient_norm": [float("inf")]})
    text = (tmp_path / "history.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"loss": [1.5, None], "gradient_norm": [None]}
