"""A sweep file: the base run, the search space, how trials are chosen and judged; checked before any trial.

```toml
name = "kl-weight"            # the study (default: the file's name)
directory = "runs/kl-weight"  # where the trials' runs go (default: runs/<name>)
config = "vae.toml"           # a base config file, as aeloops.train --config takes (optional)
sampler = "grid"              # grid, random or tpe
trials = 6                    # default for a grid: every point
metric = "val_loss"           # a history value: its last epoch's is the trial's
direction = "minimize"
pruning = false               # Optuna's median pruner on each epoch's value (or a table of its settings)
seeds = [0, 1]                # each point trained once per seed: the mean is the trial's value
seed = 0                      # the sampler's

[base]                        # any aeloops.train setting, over config's
model = "vae"
epochs = 10

[space]                       # keys as --set takes them
"objective.kl.weight" = [0.5, 1.0, 2.0]
learning_rate = {low = 1e-4, high = 1e-2, log = true}
"model.latent_dim" = {low = 2, high = 16}
```

This module does not import TensorFlow or Optuna: a bad sweep file is
refused at once, in one line, before anything is written.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import tomllib

from aeloops.runs import config as config_lib

__all__ = ["SAMPLERS", "Choice", "Range", "SweepSpec", "load_sweep", "override", "parse_sweep"]

SAMPLERS = ("grid", "random", "tpe")
DIRECTIONS = ("minimize", "maximize")
_KEYS = ("name", "directory", "config", "sampler", "trials", "metric", "direction", "pruning", "seeds", "seed", "base",
         "space")  # fmt: skip
_RANGE_KEYS = ("low", "high", "log", "step")


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of the listed values."""

    values: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Range:
    """A number in [low, high]: an int when both ends are ints, else a float; ``log`` samples its logarithm."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    @property
    def is_int(self) -> bool:
        """Whether the range holds integers."""
        return isinstance(self.low, int) and isinstance(self.high, int)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A checked sweep file."""

    name: str
    directory: pathlib.Path
    base: dict[str, Any]  # The base run's settings (TrainConfig.to_dict() of the merged base).
    space: dict[str, Choice | Range]
    sampler: str = "tpe"
    trials: int = 10
    metric: str = "val_loss"
    direction: str = "minimize"
    # Optuna's median pruner's settings (``startup_trials``, ``warmup_epochs``), or None: no pruning.
    pruning: dict[str, int] | None = None
    seeds: tuple[int, ...] | None = None
    seed: int = 0
    source: str = "sweep"

    def grid(self) -> dict[str, list[Any]]:
        """The grid of a grid sweep: every key's values."""
        return {key: list(dimension.values) for key, dimension in self.space.items()}  # type: ignore[union-attr]


def override(key: str, value: Any) -> str:
    """Returns ``key=value`` as ``aeloops.train --set`` reads it (the value as TOML)."""
    return f"{key}={json.dumps(value)}"


def _fail(source: str, where: str, problem: str) -> ValueError:
    return ValueError(f"{source}: {where} {problem}")


def _dimension(source: str, key: str, value: Any) -> Choice | Range:
    """Reads one entry of ``[space]``: a list of choices, or a table ``{low, high, log, step}``."""
    where = f"space.{key!r}"
    if isinstance(value, list):
        if not value:
            raise _fail(source, where, "is an empty list; give at least one value.")
        return Choice(tuple(value))
    if not isinstance(value, dict):
        raise _fail(source, where, f"must be a list of values or a table {{low = ..., high = ...}}, got {value!r}.")
    unknown = sorted(set(value) - set(_RANGE_KEYS))
    if unknown or not {"low", "high"} <= set(value):
        what = f"has the unknown key {unknown[0]!r}" if unknown else "needs both low and high"
        raise _fail(source, where, f"{what}; a range is {{low = ..., high = ..., log = true, step = ...}}.")
    low, high = value["low"], value["high"]
    for end, number in (("low", low), ("high", high)):
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise _fail(source, where, f"has {end} = {number!r}; it must be a finite number.")
    if low >= high:
        raise _fail(source, where, f"has low = {low!r} not below high = {high!r}; the range is empty.")
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise _fail(source, where, f"has log = {log!r}; it must be true or false.")
    if log and low <= 0:
        raise _fail(source, where, f"is on a log scale, so low must be above 0, got {low!r}.")
    step = value.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0 or log):
        raise _fail(source, where, f"has step = {step!r}; a step is a positive number, without log.")
    return Range(low, high, log, step)


def _check_key(source: str, key: str, dimension: Choice | Range, base: config_lib.TrainConfig) -> None:
    """Applies every end or choice of ``key`` to the base run, so a wrong setting or type is found now."""
    values = list(dimension.values) if isinstance(dimension, Choice) else [dimension.low, dimension.high]
    for value in values:
        try:
            config_lib.apply_overrides(base, [override(key, value)])
        except (ValueError, TypeError) as error:
            message = str(error).split(": ", 1)[-1] if str(error).startswith("--set") else str(error)
            raise _fail(source, f"space.{key!r} = {value!r}:", message) from None


def _int(source: str, key: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise _fail(source, key, f"must be an integer of at least {least}, got {value!r}.")
    return value


def load_sweep(path: str | pathlib.Path, *, trust_code: bool = False) -> SweepSpec:
    """Reads and checks a sweep file; every problem is one ``ValueError`` line naming the file and the key."""
    path = pathlib.Path(path)
    if path.suffix != ".toml":
        raise ValueError(f"{path}: a sweep file is TOML (.toml).")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"Cannot read sweep file {path}: {error.strerror}.") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"Sweep file {path} is malformed: {error}.") from None
    return parse_sweep(values, source=str(path), name=path.stem, relative_to=path.parent, trust_code=trust_code)


def parse_sweep(
    values: Mapping[str, Any],
    *,
    source: str = "sweep",
    name: str = "sweep",
    relative_to: str | pathlib.Path = ".",
    trust_code: bool = False,
) -> SweepSpec:
    """Checks a sweep given as a dict (a sweep file's tables, from a notebook, say).

    ``source`` names it in messages, ``name`` is its default name and
    ``relative_to`` the folder its ``config`` file is read from.
    """
    for key in values:
        if key not in _KEYS:
            close = difflib.get_close_matches(key, _KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; the keys are {', '.join(_KEYS)}"
            raise _fail(source, f"{key!r}", f"is not a sweep setting{hint}. Run settings go in [base].")
    base = config_lib.TrainConfig()
    if "config" in values:
        config_path = pathlib.Path(relative_to) / str(values["config"])
        base = config_lib.merge(base, config_lib.load_config_file(config_path), str(config_path))
    if not isinstance(values.get("base", {}), dict):
        raise _fail(source, "base", "must be a table of aeloops.train settings.")
    base = config_lib.merge(base, values.get("base", {}), f"{source} [base]")
    if not trust_code:
        config_lib.check_code_source(base.model, source, config_lib.code_fix(base.model, typed=False))
    space_values = values.get("space")
    if not isinstance(space_values, dict) or not space_values:
        raise _fail(source, "space", "must be a table of at least one setting to search, e.g. learning_rate = [...].")
    space = {key: _dimension(source, key, value) for key, value in space_values.items()}
    for key, dimension in space.items():
        _check_key(source, key, dimension, base)
    sampler = values.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise _fail(source, "sampler", f"must be one of {', '.join(SAMPLERS)}, got {sampler!r}.")
    if sampler == "grid":
        ranges = [key for key, dimension in space.items() if isinstance(dimension, Range)]
        if ranges:
            raise _fail(source, f"space.{ranges[0]!r}", "is a range, but a grid takes lists of values only.")
    grid_size = math.prod(len(dimension.values) for dimension in space.values() if isinstance(dimension, Choice))
    trials = _int(source, "trials", values.get("trials", grid_size if sampler == "grid" else 10), 1)
    if sampler == "grid" and trials > grid_size:
        raise _fail(source, "trials", f"is {trials}, but the grid has {grid_size} points; no point runs twice.")
    direction = values.get("direction", "minimize")
    if direction not in DIRECTIONS:
        raise _fail(source, "direction", f"must be minimize or maximize, got {direction!r}.")
    metric = values.get("metric", "val_loss" if base.validation else "loss")
    if not isinstance(metric, str) or not metric:
        raise _fail(source, "metric", f"must name a history value such as val_loss, got {metric!r}.")
    if metric.startswith("val_") and not base.validation:
        raise _fail(source, "metric", f"is {metric!r}, but the base run has no validation; use loss, or validation.")
    pruning = values.get("pruning", False)
    if isinstance(pruning, dict):
        unknown = sorted(set(pruning) - {"startup_trials", "warmup_epochs"})
        if unknown:
            raise _fail(source, f"pruning.{unknown[0]}", "is not a pruning setting (startup_trials, warmup_epochs).")
        pruning = {
            "startup_trials": _int(source, "pruning.startup_trials", pruning.get("startup_trials", 5), 0),
            "warmup_epochs": _int(source, "pruning.warmup_epochs", pruning.get("warmup_epochs", 0), 0),
        }
    elif pruning is True:
        pruning = {"startup_trials": 5, "warmup_epochs": 0}  # Optuna's MedianPruner's defaults.
    elif pruning is not False:
        shape = "{startup_trials = 5, warmup_epochs = 0}"
        raise _fail(source, "pruning", f"must be true, false or {shape}, got {pruning!r}.")
    else:
        pruning = None
    seeds = values.get("seeds")
    if seeds is not None:
        if not isinstance(seeds, list) or not seeds or len(set(map(repr, seeds))) != len(seeds):
            raise _fail(source, "seeds", f"must be a list of distinct integers, got {seeds!r}.")
        seeds = tuple(_int(source, "seeds", seed, 0) for seed in seeds)
        if "seed" in space:
            raise _fail(source, "space.'seed'", "is searched and seeds are listed; keep one of the two.")
    name = values.get("name", name)
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise _fail(source, "name", f"must be a plain name, got {name!r}.")
    directory = values.get("directory", f"runs/{name}")
    if not isinstance(directory, str) or not directory:
        raise _fail(source, "directory", f"must be a path, got {directory!r}.")
    return SweepSpec(
        name=name,
        directory=pathlib.Path(directory),
        base={**base.to_dict(), "run_dir": None, "resume": False},
        space=space,
        sampler=sampler,
        trials=trials,
        metric=metric,
        direction=direction,
        pruning=pruning,
        seeds=seeds,
        seed=_int(source, "seed", values.get("seed", 0), 0),
        source=source,
    )


def settings_of(params: Mapping[str, Any]) -> list[str]:
    """A trial's parameters as ``--set`` overrides, in a stable order."""
    return [override(key, value) for key, value in sorted(params.items())]


def seeds_of(spec: SweepSpec) -> Sequence[int | None]:
    """The seeds each point trains with: the listed ones, or the base run's own (None)."""
    return spec.seeds if spec.seeds is not None else (None,)
