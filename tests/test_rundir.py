import json

import pytest

from aeloops.rundir import RunDirectory, default_run_dir, is_chief_task, worker_scratch_dir


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
    with pytest.raises(ValueError, match="has no checkpoint"):
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
