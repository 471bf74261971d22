"""--mlflow: a CLI run's settings, history and outputs in MLflow, read back through MLflow's own client."""

import json
import pathlib
import sys

import pytest

from aeloops import train

mlflow = pytest.importorskip("mlflow")

ARGUMENTS = ["--dataset", "mnist-sample", "--batch-size", "256", "--mode", "graph", "--quiet"]


def flattened(settings, prefix=""):
    """config.json's values as MLflow params: tables by dotted keys, anything but a string as JSON."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return flat


def recorded(client, run_id, history):
    """Each history value's MLflow metric history, as {name: [(step, value), ...]}."""
    return {
        name: sorted((entry.step, entry.value) for entry in client.get_metric_history(run_id, name))
        for name in history
        if name != "epoch"
    }


def expected(history):
    return {
        name: list(zip(history["epoch"], values)) for name, values in history.items() if name != "epoch"
    }


def test_a_run_and_its_resume_are_one_mlflow_run_equal_to_config_and_history(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train.main([*ARGUMENTS, "--epochs", "1", "--run-dir", str(run_dir), "--mlflow"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # No MLflow or Alembic chatter.
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert f"  MLflow: mlflow ui --backend-store-uri {uri}  (run " in out
    run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    settings = json.loads((run_dir / "config.json").read_text())
    assert train.main([*ARGUMENTS, "--epochs", "2", "--run-dir", str(run_dir), "--resume", "--mlflow"]) == 0
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("aeloops").experiment_id])
    assert [run.info.run_id for run in runs] == [run_id] and runs[0].info.status == "FINISHED"
    assert runs[0].info.run_name == "run"
    assert runs[0].data.params == flattened(settings)
    # What the resume changed (--epochs 2) is a tag: MLflow writes a param once.
    resumed = {key: value for key, value in runs[0].data.tags.items() if key.startswith("resumed.")}
    assert resumed == {"resumed.epochs": "2"} and json.loads((run_dir / "config.json").read_text())["epochs"] == 2
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == [1, 2] and recorded(client, run_id, history) == expected(history)
    artifacts = {entry.path for entry in client.list_artifacts(run_id)} | {
        entry.path for entry in client.list_artifacts(run_id, "run")
    }
    assert {"reconstructions.png", "model.keras", "run/config.json", "run/history.json"} <= artifacts
    copy = client.download_artifacts(run_id, "run/history.json", str(tmp_path))
    assert json.loads(pathlib.Path(copy).read_text()) == history


def test_a_tracking_server_that_is_down_is_one_warning_and_the_run_is_whole(tmp_path, capsys):
    run_dir = tmp_path / "run"
    # Port 9 (discard) on the loopback: nothing listens, the connection is refused at once.
    assert train.main([*ARGUMENTS, "--epochs", "2", "--run-dir", str(run_dir), "--mlflow", "http://127.0.0.1:9"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"aeloops.train: warning: MLflow tracking at http://127.0.0.1:9 failed (Connection refused); training goes "
        f"on without it, and {run_dir} holds everything."
    ]
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1, 2]
    assert (run_dir / "model.keras").is_file() and not (run_dir / "mlflow.json").exists()


def test_mlflow_missing_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # As if not installed: find_spec raises, import fails.
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None if name == "mlflow" else True)
    assert train.main([*ARGUMENTS, "--run-dir", str(tmp_path / "run"), "--mlflow"]) == 2
    assert capsys.readouterr().err == (
        "aeloops.train: error: --mlflow needs MLflow, which is not installed: pip install 'aeloops[mlflow]'.\n"
    )
    assert not (tmp_path / "run").exists()
