"""python -m aeloops.sweep: trials as run directories on an Optuna study, resumed after a kill, checked up front."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from aeloops import sweep, train
from aeloops.training.callbacks import TIMINGS
from tests import warm_python
from tests.conftest import REPO
from tests.test_summaries import session_groups, tensorboard_server

optuna = pytest.importorskip("optuna")

BASE = """
[base]
model = "dense"
dataset = "mnist-sample"
batch_size = 256
mode = "graph"
steps_per_loop = 5
epochs = 1
"""


def write_sweep(directory, text, name="sweep"):
    path = directory / f"{name}.toml"
    path.write_text(f'directory = "{directory / "runs"}"\n{text}\n{BASE}', encoding="utf-8")
    return path


def load(path):
    runs = path.parent / "runs"
    study = optuna.load_study(study_name=path.stem, storage=f"sqlite:///{runs}/study.db")
    return runs, study


def history(run_dir):
    return json.loads((run_dir / "history.json").read_text())


def test_a_grid_leaves_a_run_per_point_a_complete_study_and_an_hparams_row_each(tmp_path, capsys):
    path = write_sweep(tmp_path, 'sampler = "grid"\n[space]\nlearning_rate = [0.001, 0.003, 0.01]\n', "grid")
    assert sweep.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert sweep.main([str(path)]) == 0  # The same command again: nothing is left to run; the same summary.
    assert "started" not in capsys.readouterr().out
    runs, study = load(path)
    trials = study.get_trials()
    assert [trial.state.name for trial in trials] == ["COMPLETE"] * 3
    rates = set()
    for trial in trials:
        run_dir = runs / f"trial-{trial.number:04d}"
        config = json.loads((run_dir / "config.json").read_text())
        assert config["learning_rate"] == trial.params["learning_rate"]
        assert trial.value == history(run_dir)["val_loss"][-1]
        rates.add(config["learning_rate"])
    assert rates == {0.001, 0.003, 0.01}
    summary = json.loads((runs / "summary.json").read_text())
    best = min(trials, key=lambda trial: trial.value)
    assert summary["best"]["number"] == best.number and summary["best"]["value"] == best.value
    assert f"| {best.number} | complete (best) | {best.value:.6g} | learning_rate=" in out
    assert f"tensorboard --logdir {runs}" in out
    with tensorboard_server(runs) as get:
        groups = {group["name"]: group for group in session_groups(get)}
    assert set(groups) == {f"trial-{number:04d}" for number in range(3)}
    for trial in trials:
        group = groups[f"trial-{trial.number:04d}"]
        assert group["hparams"]["learning_rate"] == pytest.approx(trial.params["learning_rate"])
        assert group["sessions"][0]["status"] == "STATUS_SUCCESS"


BAD = {
    "an unknown setting": ("[space]\nlerning_rate = [0.001]\n",
                           "'lerning_rate' = 0.001: unknown setting 'lerning_rate'; did you mean 'learning_rate'?"),
    "an empty range": ("[space]\nlearning_rate = []\n", "'learning_rate' is an empty list; give at least one value."),
    "a low above a high": ("[space]\nlearning_rate = {low = 0.01, high = 0.001}\n",
                           "space.'learning_rate' has low = 0.01 not below high = 0.001; the range is empty."),
    "a value of the wrong type": ("[space]\nlearning_rate = ['fast']\n",
                                  "'learning_rate' = 'fast': learning_rate must be a positive number, got 'fast'"),
    "a sweep setting misspelt": ("trails = 3\n[space]\nlearning_rate = [0.001]\n",
                                 "'trails' is not a sweep setting (did you mean 'trials'?). Run settings go in [base]"),
    "a range in a grid": ("sampler = 'grid'\n[space]\nlearning_rate = {low = 0.001, high = 0.01}\n",
                          "space.'learning_rate' is a range, but a grid takes lists of values only."),
    "a code model": ("[space]\n'model' = ['os:getcwd']\n",
                     "names the model 'os:getcwd', which would import and run Python module 'os'"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_a_bad_sweep_file_is_one_line_and_nothing_is_written(case, tmp_path, capsys):
    text, message = BAD[case]
    if case == "a code model":  # The base names it: a file's model:attribute needs --trust-code.
        path = tmp_path / "sweep.toml"
        path.write_text(f'directory = "{tmp_path / "runs"}"\n[space]\nlearning_rate = [0.001]\n[base]\n'
                        'model = "os:getcwd"\n')  # fmt: skip
    else:
        path = write_sweep(tmp_path, text)
    assert sweep.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"aeloops.sweep: error: {path}") and message in err, err
    assert not (tmp_path / "runs").exists()


def test_a_sweep_killed_during_its_second_trial_resumes_it_exactly_and_ends_with_the_trials_asked(tmp_path):
    path = write_sweep(tmp_path, 'sampler = "grid"\n[space]\nlearning_rate = [0.002, 0.004]\n', "killed")
    path.write_text(path.read_text().replace("epochs = 1", "epochs = 4"))
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(warm_python.command(["-m", "aeloops.sweep", str(path)]), cwd=tmp_path, env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    second = tmp_path / "runs" / "trial-0001" / "checkpoints"
    deadline = time.monotonic() + 300
    while not any(second.glob("ckpt-[1-9]*.index")):  # The second trial has saved its first epoch.
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 143, err
    assert "Trial 1 stopped; run the same command to resume it and go on." in out
    runs, study = load(path)
    assert [trial.state.name for trial in study.get_trials()] == ["COMPLETE", "RUNNING"]
    assert sweep.main([str(path)]) == 0
    runs, study = load(path)
    trials = study.get_trials()
    assert [trial.state.name for trial in trials] == ["COMPLETE", "COMPLETE"]
    assert sorted(path.name for path in runs.glob("trial-*")) == ["trial-0000", "trial-0001"]
    # The resumed trial's run is the run it would have been: the same settings, trained at once.
    rate = trials[1].params["learning_rate"]
    reference = tmp_path / "reference"
    assert train.main(["--config", str(runs / "base.json"), "--set", f"learning_rate={rate}", "--run-dir",
                       str(reference), "--quiet"]) == 0  # fmt: skip
    resumed, whole = history(runs / "trial-0001"), history(reference)
    for name, values in whole.items():
        if name not in TIMINGS:
            assert resumed[name] == values, name
    assert trials[1].value == whole["val_loss"][-1]


@contextlib.contextmanager
def storage_for(kind, tmp_path):
    """Yields the --storage argument of a study kind: None (the SQLite default) or a PostgreSQL server's URL."""
    if kind == "sqlite":
        yield None
        return
    pgserver = pytest.importorskip("pgserver", reason="pgserver (a PostgreSQL server in a wheel) is not installed")
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed")
    try:
        server = pgserver.get_server(tmp_path / "postgres", cleanup_mode="stop")
    except Exception as error:  # noqa: BLE001 - whatever keeps PostgreSQL from starting here.
        pytest.skip(f"PostgreSQL could not start here: {error}")
    try:
        # SQLAlchemy 2.1 reads postgresql:// as psycopg 3's; the wheel at hand is psycopg2's.
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg2://")
    finally:
        server.cleanup()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_workers_share_one_study_and_run_each_trial_once(tmp_path, kind):
    path = write_sweep(tmp_path, 'sampler = "random"\ntrials = 4\n[space]\nlearning_rate = {low = 0.001, high = 0.01, '
                                 'log = true}\n', "pair")  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    with storage_for(kind, tmp_path) as storage:
        arguments = [] if storage is None else ["--storage", storage]
        result = subprocess.run([sys.executable, "-m", "aeloops.sweep", str(path), "--workers", "2", *arguments],
                                cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        runs = path.parent / "runs"
        study = optuna.load_study(study_name="pair", storage=storage or f"sqlite:///{runs}/study.db")
        trials = study.get_trials()
    assert [trial.state.name for trial in trials] == ["COMPLETE"] * 4
    # Each trial started once, by one of the two worker processes, into its own run.
    started = [line for line in result.stdout.splitlines() if " started (" in line]
    assert sorted(line.split()[1] for line in started) == ["0", "1", "2", "3"]
    workers = {trial.user_attrs["worker"] for trial in trials}
    assert 1 <= len(workers) <= 2 and str(os.getpid()) not in {worker.split(":")[1] for worker in workers}
    assert sorted(path.name for path in runs.glob("trial-*")) == [f"trial-{number:04d}" for number in range(4)]
    assert len({trial.params["learning_rate"] for trial in trials}) == 4
    assert not (runs / "study.db").exists() or storage is None  # Given a storage, no SQLite file of its own.


def test_pruning_stops_a_hopeless_trial_after_its_first_epoch(tmp_path):
    # A learning rate of 1e-9 leaves val_loss where it began; the median of the two trials before it falls.
    text = ('sampler = "grid"\nseed = {seed}\npruning = {{startup_trials = 2, warmup_epochs = 0}}\n'
            "[space]\nlearning_rate = [0.01, 0.011, 1e-9]\n")  # fmt: skip
    seed = next(seed for seed in range(20) if _grid_order(seed)[-1] == 1e-9)
    path = write_sweep(tmp_path, text.format(seed=seed), "pruned")
    path.write_text(path.read_text().replace("epochs = 1", "epochs = 3"))
    assert sweep.main([str(path)]) == 0
    runs, study = load(path)
    states = {trial.params["learning_rate"]: trial.state.name for trial in study.get_trials()}
    assert states == {0.01: "COMPLETE", 0.011: "COMPLETE", 1e-9: "PRUNED"}
    [hopeless] = [trial for trial in study.get_trials() if trial.state.name == "PRUNED"]
    assert list(hopeless.intermediate_values) == [1]
    assert history(runs / f"trial-{hopeless.number:04d}")["epoch"] == [1]  # It trained one epoch of three.


def _grid_order(seed):
    """The order Optuna's grid sampler visits the points in, for a seed (to put the hopeless point last)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid = optuna.samplers.GridSampler({"learning_rate": [0.01, 0.011, 1e-9]}, seed=seed)
    study = optuna.create_study(sampler=grid)
    return [study.ask().suggest_categorical("learning_rate", [0.01, 0.011, 1e-9]) for _ in range(3)]


def test_a_storage_that_cannot_be_reached_is_one_line_without_its_password_and_nothing_is_written(tmp_path, capsys):
    pytest.importorskip("psycopg2")
    path = write_sweep(tmp_path, "[space]\nlearning_rate = [0.001]\n")
    # Port 9 on the loopback: nothing listens there, the connection is refused at once.
    storage = "postgresql+psycopg2://sweeper:s3cret@127.0.0.1:9/sweeps"
    assert sweep.main([str(path), "--storage", storage]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aeloops.sweep: error: Cannot open the study's storage "
                          "postgresql+psycopg2://sweeper:***@127.0.0.1:9/sweeps: ")  # fmt: skip
    assert err.count("\n") == 1 and "s3cret" not in err and "Check --storage." in err
    assert not (tmp_path / "runs").exists()
