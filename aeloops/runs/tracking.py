"""MLflow tracking of a CLI run (``--mlflow [URI]``): its settings, every epoch's values, its pictures and model.

The run directory stays the record; MLflow gets a copy as the run goes:

- params: config.json's values, nested tables flattened with dots
  (``objective.sparsity.weight``), non-strings as JSON (MLflow writes a
  param once: a value a resume changes, such as ``epochs``, is the tag
  ``resumed.<key>``);
- metrics: each epoch's history row, at step = the epoch's number in
  history.json (from 1);
- artifacts, once the run has written them: its pictures, ``model.keras``,
  ``config.json`` and ``history.json``.

With no URI the store is MLflow's embedded SQLite database beside the runs
(``<runs>/mlflow.db``, artifacts in ``<runs>/mlartifacts``): nothing to
start, and ``mlflow ui --backend-store-uri sqlite:///<runs>/mlflow.db``
shows it. A resumed run goes on in the MLflow run it began (its id is kept
in the run directory's ``mlflow.json``, used only against the same store),
logging the epochs MLflow lacks. MLflow failing (a server down, a full disk)
is one warning line: the run goes on without it, and nothing in the run
directory depends on it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from aeloops.runs.checkpoint_files import first_line
from aeloops.runs.choices import MLFLOW_DEFAULT
from aeloops.runs.directory import RunDirectory, write_json
from aeloops.training.callbacks import Callback

if TYPE_CHECKING:
    from aeloops.training.trainer import Trainer

__all__ = ["MlflowTracking", "default_uri", "flat_params"]

STATE_FILE = "mlflow.json"
# A server that is down must cost seconds, not MLflow's default minutes of retries (users may set their own).
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


def default_uri(run_dir: RunDirectory) -> tuple[str, str]:
    """Returns the embedded store beside the runs: its SQLite URI and its artifact folder."""
    runs = os.path.abspath(run_dir.path.parent)
    return f"sqlite:///{runs}/mlflow.db", os.path.join(runs, "mlartifacts")


def flat_params(settings: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Returns ``settings`` as MLflow params: nested tables flattened with dots, non-strings as JSON."""
    params = {}
    for name, value in settings.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            params.update(flat_params(value, f"{key}."))
        else:
            params[key] = value if isinstance(value, str) else json.dumps(value)
    return params


@contextlib.contextmanager
def _quiet_loggers() -> Iterator[None]:
    """Hides MLflow's and Alembic's INFO lines ("Creating initial MLflow database tables...") and urllib3's retries."""
    quieter = {"mlflow": logging.WARNING, "alembic": logging.WARNING, "urllib3": logging.ERROR}
    loggers = [logging.getLogger(name) for name in quieter]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(quieter[logger.name])
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _cause(error: BaseException) -> str:
    """What a failed MLflow call says of its cause: the system's words ("Connection refused") where it gives them."""
    system = re.search(r"\[Errno -?\d+\] ([^\"'()]+)", str(error))
    return system[1].strip() if system else first_line(error)


class MlflowTracking(Callback):
    """Copies a CLI run to MLflow as it trains; any MLflow failure is one warning, and tracking stops there."""

    def __init__(
        self,
        uri: str,
        run_dir: RunDirectory,
        settings: Mapping[str, Any],
        history: Mapping[str, list[float]],
        warn: Callable[[str], None],
    ) -> None:
        """Checks MLflow is installed; ``uri`` is a tracking URI or ``MLFLOW_DEFAULT``.

        Raises:
          ValueError: when MLflow is not installed, saying how to install it.
        """
        try:
            for name, value in _HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
            import mlflow  # noqa: F401 - checked now, before training; used below.
        except ImportError:
            raise ValueError(
                "--mlflow needs MLflow, which is not installed: pip install 'aeloops[mlflow]'."
            ) from None
        self.run_dir = run_dir
        self.settings = settings
        self.history = history
        self.warn = warn
        self.artifact_location = None
        if uri == MLFLOW_DEFAULT:
            uri, self.artifact_location = default_uri(run_dir)
        self.uri = uri
        self.client: Any = None
        self.run_id: str | None = None

    def _safely(self, action: Callable[[], None]) -> None:
        """Runs an MLflow call; a failure is warned about once and ends tracking, never the run."""
        if self.uri is None:
            return
        try:
            with _quiet_loggers():
                action()
        except Exception as error:  # noqa: BLE001 - whatever MLflow or its server raise, the run goes on.
            self.warn(
                f"MLflow tracking at {self.uri} failed ({_cause(error)}); training goes on without it, and "
                f"{self.run_dir.path} holds everything."
            )
            self.uri = None

    def on_train_begin(self, trainer: Trainer) -> None:
        self._safely(self._start)

    def _start(self) -> None:
        import mlflow

        self.client = mlflow.MlflowClient(tracking_uri=self.uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "aeloops")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(name, artifact_location=self.artifact_location)
        )
        self.run_id = self._earlier_run()
        if self.run_id is None:
            run = self.client.create_run(experiment_id, run_name=self.run_dir.path.name)
            self.run_id = run.info.run_id
            write_json(self.run_dir.path / STATE_FILE, {"tracking_uri": self.uri, "run_id": self.run_id})
            params = flat_params(self.settings)
            names = sorted(params)
            for start in range(0, len(names), 100):  # MLflow takes at most 100 params a batch.
                batch = [mlflow.entities.Param(key, params[key]) for key in names[start : start + 100]]
                self.client.log_batch(self.run_id, params=batch)
        else:  # MLflow's params are written once: what a resume changed (--epochs) becomes a tag.
            self.client.update_run(self.run_id, status="RUNNING")
            logged = self.client.get_run(self.run_id).data.params
            for key, value in flat_params(self.settings).items():
                if logged.get(key) != value:
                    self.client.set_tag(self.run_id, f"resumed.{key}", value)
        self._log_epochs()

    def _earlier_run(self) -> str | None:
        """The MLflow run this run directory began in that store, if it still exists."""
        try:
            with open(self.run_dir.path / STATE_FILE, encoding="utf-8") as stream:
                state = json.load(stream)
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("tracking_uri") != self.uri:
            return None
        try:
            return self.client.get_run(str(state.get("run_id"))).info.run_id
        except Exception:  # noqa: BLE001 - deleted, or never in this store: a new run.
            return None

    def _log_epochs(self) -> None:
        """Logs every history row MLflow does not have yet."""
        import mlflow

        epochs = self.history.get("epoch", [])
        logged = {entry.step for entry in self.client.get_metric_history(self.run_id, "loss")}
        metrics = [
            mlflow.entities.Metric(name, float("nan") if value is None else float(value), 0, int(epoch))
            for row, epoch in enumerate(epochs)
            if int(epoch) not in logged
            for name, values in self.history.items()
            if name != "epoch" and row < len(values)
            for value in [values[row]]
        ]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1,000 metrics a batch.
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Mapping[str, float]) -> None:
        # After HistoryFile (earlier in the list) has added the row.
        self._safely(self._log_epochs)

    def where(self) -> str | None:
        """A line saying where to see the run in MLflow, or None when tracking failed."""
        if self.uri is None or self.run_id is None:
            return None
        if self.artifact_location is not None:  # The embedded store: its command, safe to paste.
            return f"MLflow: mlflow ui --backend-store-uri {shlex.quote(self.uri)}  (run {self.run_id})"
        return f"MLflow: run {self.run_id} at {self.uri}"

    def finish(self, status: str = "FINISHED") -> None:
        """Logs the run's pictures, model.keras, config.json and history.json, and closes the MLflow run."""

        def close() -> None:
            if status == "FINISHED":
                directory = self.run_dir.path
                for path in sorted(directory.glob("*.png")) + [directory / "model.keras"]:
                    if path.is_file() and not path.is_symlink():
                        self.client.log_artifact(self.run_id, str(path))
                for path in (self.run_dir.config, self.run_dir.history):
                    self.client.log_artifact(self.run_id, str(path), artifact_path="run")
            self.client.set_terminated(self.run_id, status=status)

        if self.run_id is not None:
            self._safely(close)
