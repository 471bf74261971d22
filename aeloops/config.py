"""TrainConfig: every setting of a training run, loaded from files and overrides.

This module must not import TensorFlow: ``python -m aeloops.train --help``
and config errors answer at once.

>>> config = TrainConfig(model="sparse", epochs=3)
>>> config = apply_overrides(config, ["objective.sparsity.weight=1e-5", "batch_size=128"])
>>> config.objective, config.batch_size
({'sparsity': {'weight': 1e-05}}, 128)
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Iterable
from typing import Any

import tomllib

__all__ = [
    "DATASETS",
    "MODES",
    "PRECISIONS",
    "STRATEGIES",
    "TrainConfig",
    "apply_overrides",
    "load_config_file",
    "merge",
]

MODES = ("auto", "xla", "graph", "eager")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multiworker")
DATASETS = ("mnist", "fashion_mnist", "mnist-sample")
NONFINITE_POLICIES = ("stop", "skip")
TERM_SETTINGS = ("weight",)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The fully resolved settings of one run; ``config.json`` holds one."""

    model: str = "dense"
    dataset: str = "mnist"
    data_dir: str | None = None
    epochs: int = 5
    batch_size: int = 256
    optimizer: str = "adam"
    learning_rate: float | None = None
    loss: str | None = None
    mode: str = "auto"
    steps_per_loop: int = 50
    seed: int = 0
    run_dir: str | None = None
    resume: bool = False
    precision: str = "float32"
    strategy: str = "default"
    validation: bool = True
    keep_checkpoints: int = 3
    summary_every: int = 100
    on_nonfinite: str = "stop"
    deterministic: bool = False
    # "first:last" steps to profile for TensorBoard's profile plugin.
    profile_steps: str | None = None
    quiet: bool = False
    # Per-term settings of the objective, e.g. {"sparsity": {"weight": 1e-5}}.
    objective: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self)

    def profile_window(self) -> tuple[int, int] | None:
        """Returns ``profile_steps`` as ``(first, last)``, or None."""
        if self.profile_steps is None:
            return None
        first, _, last = self.profile_steps.partition(":")
        return int(first), int(last)

    def to_dict(self) -> dict[str, Any]:
        """Returns the config as plain JSON-ready values."""
        return dataclasses.asdict(self)


_FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}
# Settings that describe how a run is watched, not what it computes: a
# resumed run may change them.
RESUMABLE_CHANGES = frozenset({"epochs", "quiet", "resume", "summary_every", "keep_checkpoints", "profile_steps"})


def _expect(name: str, value: Any, kinds: tuple[type, ...], description: str) -> None:
    if isinstance(value, bool) and bool not in kinds:
        raise TypeError(f"{name} must be {description}, got {value!r}.")
    if not isinstance(value, kinds):
        raise TypeError(f"{name} must be {description}, got {value!r} ({type(value).__name__}).")


def _validate(config: TrainConfig) -> None:
    for name in ("epochs", "batch_size", "steps_per_loop", "keep_checkpoints", "summary_every"):
        value = getattr(config, name)
        _expect(name, value, (int,), "a positive integer")
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}.")
    _expect("seed", config.seed, (int,), "an integer")
    for name in ("model", "dataset", "optimizer"):
        _expect(name, getattr(config, name), (str,), "a string")
        if not getattr(config, name):
            raise ValueError(f"{name} must not be empty.")
    for name in ("data_dir", "loss", "run_dir", "profile_steps"):
        if getattr(config, name) is not None:
            _expect(name, getattr(config, name), (str,), "a string")
    for name in ("resume", "validation", "quiet", "deterministic"):
        _expect(name, getattr(config, name), (bool,), "true or false")
    if config.learning_rate is not None:
        _expect("learning_rate", config.learning_rate, (int, float), "a positive number")
        if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {config.learning_rate}.")
    for name, choices in (
        ("mode", MODES),
        ("precision", PRECISIONS),
        ("strategy", STRATEGIES),
        ("on_nonfinite", NONFINITE_POLICIES),
    ):
        if getattr(config, name) not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}; got {getattr(config, name)!r}.")
    if config.dataset not in DATASETS and not config.dataset.endswith((".npy", ".npz")):
        raise ValueError(
            f"Unknown dataset {config.dataset!r}; choose one of {', '.join(DATASETS)} or a .npy/.npz path."
        )
    if config.profile_steps is not None:
        first, separator, last = config.profile_steps.partition(":")
        if not (separator and first.isdigit() and last.isdigit() and int(first) < int(last)):
            raise ValueError(f"profile_steps must look like 10:20 (first < last), got {config.profile_steps!r}.")
    _expect("objective", config.objective, (dict,), "a table of term settings")
    for term, settings in config.objective.items():
        _expect(f"objective.{term}", settings, (dict,), "a table such as {weight = 0.1}")
        for key, value in settings.items():
            if key not in TERM_SETTINGS:
                raise ValueError(f"Unknown setting objective.{term}.{key}; a term accepts {', '.join(TERM_SETTINGS)}.")
            _expect(f"objective.{term}.{key}", value, (int, float), "a number")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"objective.{term}.{key} must be finite and >= 0, got {value}.")


def merge(config: TrainConfig, values: dict[str, Any], source: str) -> TrainConfig:
    """Returns ``config`` with ``values`` applied; unknown keys name ``source``."""
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{source}: unknown setting {unknown[0]!r}; known settings are {', '.join(sorted(_FIELDS))}.")
    values = dict(values)
    if "objective" in values:
        objective = {term: dict(settings) for term, settings in config.objective.items()}
        if not isinstance(values["objective"], dict):
            raise TypeError(f"{source}: objective must be a table of term settings.")
        for term, settings in values["objective"].items():
            if not isinstance(settings, dict):
                raise TypeError(f"{source}: objective.{term} must be a table such as {{weight = 0.1}}.")
            objective.setdefault(term, {}).update(settings)
        values["objective"] = objective
    try:
        return dataclasses.replace(config, **values)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{source}: {error}") from None


def load_config_file(path: str | pathlib.Path) -> dict[str, Any]:
    """Reads a ``.toml`` or ``.json`` config file into a dict of settings."""
    path = pathlib.Path(path)
    if path.suffix not in (".toml", ".json"):
        raise ValueError(f"Config file {path} must end in .toml or .json.")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"Cannot read config file {path}: {error.strerror}.") from None
    except UnicodeDecodeError:
        raise ValueError(f"Config file {path} is not UTF-8 text.") from None
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Config file {path} is malformed: {error}.") from None
    if not isinstance(values, dict):
        raise ValueError(f"Config file {path} must hold a table of settings, not {type(values).__name__}.")
    return values


def _parse_value(text: str) -> Any:
    """Parses an override's value as a TOML value, else keeps it as a string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(config: TrainConfig, overrides: Iterable[str]) -> TrainConfig:
    """Applies ``key=value`` overrides (``objective.<term>.weight=...`` for terms)."""
    for override in overrides:
        key, separator, text = override.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ValueError(f"--set takes key=value, got {override!r}.")
        value = _parse_value(text.strip())
        path = key.split(".")
        if path[0] == "objective":
            if len(path) != 3:
                raise ValueError(f"--set {override!r}: objective settings look like objective.<term>.weight=0.1.")
            config = merge(config, {"objective": {path[1]: {path[2]: value}}}, f"--set {override}")
        elif len(path) == 1:
            config = merge(config, {key.replace("-", "_"): value}, f"--set {override}")
        else:
            raise ValueError(f"--set {override!r}: unknown setting {key!r}.")
    return config
