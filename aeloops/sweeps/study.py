"""A sweep on Optuna: trials as ordinary CLI runs, claimed by workers, resumed after a kill, summed up.

Each trial trains with ``aeloops.train`` (one run per seed) into
``<directory>/trial-NNNN`` (``trial-NNNN-seed-S`` with several seeds): a run
directory like any other, resumable, exportable and evaluable. The trial's
value is its metric's last value (the mean over seeds, whose spread is kept
as the trial's ``spread``). A worker holds a claim (an ``flock``) on each
trial it runs, so a rerun of a killed sweep finds the trials left
``RUNNING`` with no live claim and resumes each from its checkpoint, and
two workers never run one trial. New trials are asked for under a
sweep-wide lock, so a sweep ends with exactly the trials asked.

>>> spec = load_sweep("sweeps/kl.toml")                     # doctest: +SKIP
>>> study = create_study(spec)                              # doctest: +SKIP
>>> study.optimize(make_objective(spec), n_trials=3)        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import pathlib
import socket
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from aeloops import train
from aeloops.runs.directory import write_json
from aeloops.sweeps.spec import Choice, SweepSpec, seeds_of, settings_of
from aeloops.training.callbacks import Callback

if TYPE_CHECKING:
    import optuna

    from aeloops.training.trainer import Trainer

__all__ = [
    "Interrupted", "TrialError", "create_study", "make_objective", "run_workers", "storage_url", "summary", "table",
]  # fmt: skip

# Exit statuses of aeloops.train that mean "stopped by a signal, resumable" (SIGINT, SIGTERM).
_STOPPED = (130, 143)
SPEC_FILE = "sweep.json"
BASE_FILE = "base.json"


class TrialError(RuntimeError):
    """A trial's run ended in an error (a refused setting, a non-finite loss); its reason is the message."""


class Interrupted(BaseException):  # noqa: N818 - a stop, not an error: it passes `except Exception`.
    """The sweep was stopped (SIGINT, SIGTERM) during a trial, which stays resumable; ``args[0]`` is the status."""


def storage_url(spec: SweepSpec, storage: str | None = None) -> str:
    """The study's storage: ``storage`` as given, else an SQLite file in the sweep's directory."""
    return storage or f"sqlite:///{spec.directory.resolve()}/study.db"


def _needs_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ValueError("aeloops.sweep needs Optuna, which is not installed: pip install 'aeloops[optuna]'.") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # Its per-trial INFO lines; the sweep prints its own.
    return optuna


def _choices(dimension: Choice) -> list[Any]:
    """A choice's values as Optuna stores them: plain values as they are, lists and tables as JSON text."""
    return [value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)
            for value in dimension.values]  # fmt: skip


def _read_choice(dimension: Choice, stored: Any) -> Any:
    return dimension.values[_choices(dimension).index(stored)]


def make_sampler(spec: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    """The sweep's sampler, seeded by ``seed``."""
    optuna = _needs_optuna()
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler({key: _choices(dimension) for key, dimension in spec.space.items()}, seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def create_study(spec: SweepSpec, storage: str | None = None) -> optuna.Study:
    """Creates the sweep's study, or loads it to continue it."""
    optuna = _needs_optuna()
    pruner = (
        optuna.pruners.MedianPruner(spec.pruning["startup_trials"], spec.pruning["warmup_epochs"])
        if spec.pruning
        else optuna.pruners.NopPruner()
    )
    if storage is None:  # The SQLite file's folder; a storage elsewhere needs none yet.
        spec.directory.mkdir(parents=True, exist_ok=True)
    return optuna.create_study(
        study_name=spec.name, storage=storage_url(spec, storage), sampler=make_sampler(spec, spec.seed), pruner=pruner,
        direction=spec.direction, load_if_exists=True,
    )  # fmt: skip


def suggest(trial: optuna.Trial, spec: SweepSpec) -> dict[str, Any]:
    """Draws (or, for a trial that began before, reads back) a trial's settings."""
    params = {}
    for key, dimension in spec.space.items():
        if isinstance(dimension, Choice):
            params[key] = _read_choice(dimension, trial.suggest_categorical(key, _choices(dimension)))
        elif dimension.is_int:
            params[key] = trial.suggest_int(key, dimension.low, dimension.high, step=int(dimension.step or 1),
                                            log=dimension.log)  # fmt: skip
        else:
            params[key] = trial.suggest_float(key, dimension.low, dimension.high, step=dimension.step,
                                              log=dimension.log)  # fmt: skip
    return params


class _Reporter(Callback):
    """Reports each epoch's metric to the trial and stops the run when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.pruned = False
        self.epoch = 0

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Mapping[str, float]) -> None:
        value = logs.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(value, step=epoch + 1)
        self.epoch = epoch + 1
        if self.trial.should_prune():
            self.pruned = True
            trainer.stop_training = True


def trial_directory(spec: SweepSpec, number: int, seed: int | None) -> pathlib.Path:
    """The run directory of a trial's run with ``seed`` (None: the one run of a trial without seeds)."""
    name = f"trial-{number:04d}" if seed is None else f"trial-{number:04d}-seed-{seed}"
    return spec.directory / name


@contextlib.contextmanager
def _output_to(path: pathlib.Path) -> Iterator[io.StringIO]:
    """Sends a run's terminal output to its log file; yields what it wrote to stderr, to say why a run failed."""
    errors = io.StringIO()
    with open(path, "a", encoding="utf-8") as log:

        class _Both(io.TextIOBase):
            def write(self, text: str) -> int:
                errors.write(text)
                return log.write(text)

        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(_Both()):
            yield errors


def make_objective(
    spec: SweepSpec, *, trust_code: bool = False, log: Callable[[str], None] = print
) -> Callable[[optuna.Trial], float]:
    """Returns the function ``study.optimize`` calls: a trial's runs, trained (or resumed), and its value.

    Raises (from the function): ``optuna.TrialPruned`` when pruned, ``TrialError`` when a run
    failed, ``Interrupted`` when the sweep was stopped during a run.
    """
    optuna = _needs_optuna()
    spec.directory.mkdir(parents=True, exist_ok=True)
    base = spec.directory / BASE_FILE
    if not base.exists():
        write_json(base, spec.base)
    logs = spec.directory / "logs"
    logs.mkdir(exist_ok=True)

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, spec)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # Which machine and process ran it.
        shown = ", ".join(f"{key}={value!r}" for key, value in params.items())
        values, directories = [], []
        for index, seed in enumerate(seeds_of(spec)):
            run_dir = trial_directory(spec, trial.number, seed)
            directories.append(str(run_dir))
            trust = ["--trust-code"] if trust_code else []
            if (run_dir / "config.json").is_file():
                argv = ["--resume", "--run-dir", str(run_dir), "--quiet", *trust]
                action = "resumed"
            else:
                argv = ["--config", str(base), "--run-dir", str(run_dir), "--quiet", *trust]
                argv += [item for setting in settings_of(params) for item in ("--set", setting)]
                argv += [] if seed is None else ["--seed", str(seed)]
                action = "started"
            # Pruning watches the first seed's run: the others follow its verdict.
            reporter = _Reporter(trial, spec.metric) if index == 0 else None
            seed_note = "" if seed is None else f", seed {seed}"
            log(f"Trial {trial.number} {action} ({shown}{seed_note}): {run_dir}")
            began = time.perf_counter()
            with _output_to(logs / f"{run_dir.name}.log") as errors:
                code = train.main(argv, callbacks=[reporter] if reporter else [])
            if reporter is not None and reporter.pruned:
                trial.set_user_attr("run_dirs", directories)
                log(f"Trial {trial.number} pruned after epoch {reporter.epoch}.")
                raise optuna.TrialPruned()
            if code in _STOPPED:
                raise Interrupted(code)
            if code != 0:
                lines = [line for line in errors.getvalue().splitlines() if line.strip()]
                raise TrialError(lines[-1] if lines else f"aeloops.train exited with status {code}")
            history = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))
            if not history.get(spec.metric):
                known = ", ".join(sorted(key for key in history if key != "epoch"))
                raise TrialError(f"its history has no {spec.metric!r} (it has {known}); set metric in the sweep file.")
            value = history[spec.metric][-1]
            if value is None:
                raise TrialError(f"its last {spec.metric} is not a number.")
            values.append(float(value))
            log(f"Trial {trial.number}{seed_note}: {spec.metric} {value:.6g} in {time.perf_counter() - began:.1f} s.")
        trial.set_user_attr("run_dirs", directories)
        if len(values) > 1:
            trial.set_user_attr("values", values)
            trial.set_user_attr("spread", statistics.stdev(values))
        return statistics.fmean(values)

    return objective


@contextlib.contextmanager
def _locked(path: pathlib.Path, blocking: bool = True) -> Iterator[bool]:
    """Holds an ``flock`` on ``path`` for the block; yields whether it was had (always, when blocking)."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _claim(spec: SweepSpec, study: optuna.Study, stack: contextlib.ExitStack) -> optuna.Trial | None:
    """Claims a trial to run: one left running by a stopped worker, else a new one while fewer than asked exist."""
    optuna = _needs_optuna()
    claims = spec.directory / ".claims"
    claims.mkdir(exist_ok=True)
    with _locked(claims / "ask.lock"):
        here = socket.gethostname()
        for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            # A trial another machine runs (or left) is that machine's to resume: its runs are on its disk.
            if frozen.user_attrs.get("worker", here).rsplit(":", 1)[0] != here:
                continue
            if stack.enter_context(_locked(claims / f"{frozen.number}.lock", blocking=False)):
                return optuna.trial.Trial(study, frozen._trial_id)
        count = len(study.get_trials(deepcopy=False))
        if count >= spec.trials:
            return None
        if spec.sampler != "grid":
            # Seeded by the trial's number: workers' samplers, each in its own process, would otherwise draw
            # the same values in turn; so seeded, a sweep draws the same points however many workers run it.
            study.sampler = make_sampler(spec, spec.seed * 1_000_003 + count)
        trial = study.ask()
        stack.enter_context(_locked(claims / f"{trial.number}.lock"))
        return trial


def _tell(study: optuna.Study, trial: optuna.Trial, value: float | None = None, **state: Any) -> None:
    """Records a trial's end.

    Optuna's grid sampler calls ``study.stop()`` once its last point is told,
    which refuses to run outside ``study.optimize``; the trial's state is
    stored before that, and the sweep stops by counting, so it is let pass.
    """
    try:
        study.tell(trial, value, **state)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise


def run_workers(spec: SweepSpec, study: optuna.Study, *, trust_code: bool = False,
                log: Callable[[str], None] = print) -> int | None:  # fmt: skip
    """Runs trials until the sweep has its trials; returns a signal's exit status if stopped, else None."""
    optuna = _needs_optuna()
    objective = make_objective(spec, trust_code=trust_code, log=log)
    while True:
        with contextlib.ExitStack() as claim:
            trial = _claim(spec, study, claim)
            if trial is None:
                return None
            try:
                _tell(study, trial, objective(trial))
            except optuna.TrialPruned:
                _tell(study, trial, state=optuna.trial.TrialState.PRUNED)
            except TrialError as failure:
                trial.set_user_attr("failure", str(failure))
                _tell(study, trial, state=optuna.trial.TrialState.FAIL)
                log(f"Trial {trial.number} failed: {failure}")
            except Interrupted as stop:
                log(f"Trial {trial.number} stopped; run the same command to resume it and go on.")
                return int(stop.args[0])


def summary(spec: SweepSpec, study: optuna.Study) -> dict[str, Any]:
    """Every trial (settings, value, state, run directories, failure) and the best one, as JSON-ready values."""
    trials = []
    for frozen in study.get_trials(deepcopy=False):
        params = {key: _read_choice(spec.space[key], value) if isinstance(spec.space.get(key), Choice) else value
                  for key, value in frozen.params.items()}  # fmt: skip
        trials.append({
            "number": frozen.number,
            "state": frozen.state.name.lower(),
            "params": params,
            "value": frozen.value,
            **{key: frozen.user_attrs[key] for key in ("values", "spread", "failure") if key in frozen.user_attrs},
            "run_dirs": frozen.user_attrs.get("run_dirs", []),
        })  # fmt: skip
    complete = [trial for trial in trials if trial["state"] == "complete"]
    pick = min if spec.direction == "minimize" else max
    best = pick(complete, key=lambda trial: trial["value"]) if complete else None
    return {"name": spec.name, "metric": spec.metric, "direction": spec.direction, "trials": trials, "best": best}


def table(result: Mapping[str, Any]) -> str:
    """The summary as a Markdown table, the best trial marked."""
    best = (result["best"] or {}).get("number")
    lines = [f"| trial | state | {result['metric']} | settings | run |", "| ---: | --- | ---: | --- | --- |"]
    for trial in result["trials"]:
        value = "" if trial["value"] is None else f"{trial['value']:.6g}"
        if "spread" in trial:
            value += f" ± {trial['spread']:.2g}"
        settings = ", ".join(f"{key}={value!r}" for key, value in trial["params"].items())
        state = trial["state"] + (" (best)" if trial["number"] == best else "")
        where = trial.get("failure") or ", ".join(os.path.basename(path) for path in trial["run_dirs"])
        lines.append(f"| {trial['number']} | {state} | {value} | {settings} | {where} |")
    return "\n".join(lines)
