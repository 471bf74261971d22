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
import difflib
import importlib.metadata
import importlib.util
import json
import pathlib
import shlex
from collections.abc import Iterable
from typing import Any

import tomllib

from aeloops.data.locate import COLOR_MODES, INTERPOLATIONS, NAMED_DATASETS, check_source
from aeloops.runs.choices import (
    BINARIZATIONS,
    BUILTIN_MODELS,
    LR_SCHEDULES,
    MODES,
    NONFINITE_POLICIES,
    OPTIMIZER_NAMES,
    OPTIMIZER_OPTIONS,
    PART_SETTINGS,
    PRECISIONS,
    RECONSTRUCTION_LOSSES,
    SCHEDULES,
    STRATEGIES,
    TERM_SETTINGS,
    TRUST_HELP,
    VERSIONS_KEY,
)
from aeloops.runs.config_checks import validate

__all__ = [  # The choices are aeloops.runs.choices', offered here too where settings are read.
    "BINARIZATIONS",
    "BUILTIN_MODELS",
    "DATASETS",
    "LR_SCHEDULES",
    "MODES",
    "NONFINITE_POLICIES",
    "OPTIMIZER_NAMES",
    "OPTIMIZER_OPTIONS",
    "PART_SETTINGS",
    "PRECISIONS",
    "RECONSTRUCTION_LOSSES",
    "SCHEDULES",
    "STRATEGIES",
    "TERM_SETTINGS",
    "TRUST_HELP",
    "VERSIONS_KEY",
    "TrainConfig",
    "apply_overrides",
    "check_names",
    "check_code_source",
    "load_config_file",
    "load_run_config",
    "merge",
    "saved_config",
    "software_versions",
]

DATASETS = NAMED_DATASETS


def _setting(
    default: Any,
    help: str,
    *,
    flag: bool = True,
    metavar: str | tuple[str, ...] | None = None,  # noqa: A002
) -> Any:
    """A TrainConfig field whose ``help`` (and ``flag=False``: no flag) the CLI's parser is built from.

    A tuple ``metavar`` makes a flag of that many values (``--image-size HEIGHT WIDTH``).
    """
    factory = {"default_factory": dict} if default == {} else {"default": default}
    return dataclasses.field(**factory, metadata={"help": help, "flag": flag, "metavar": metavar})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The fully resolved settings of one run; ``config.json`` holds one.

    Each field is a ``--flag`` of ``python -m aeloops.train`` (underscores
    become dashes) and a key of a TOML/JSON config file.
    """

    model: str = _setting("dense", "registered model name or module:builder (see --list-models)")
    # The model's own arguments a run changes, e.g. {"encoder_filters": [32, 64, 128]}: --set
    # model.encoder_filters=[32,64,128] or a [model_options] table; --list-models names each model's.
    model_options: dict[str, Any] = _setting({}, "the model's options", flag=False)
    dataset: str = _setting(
        "mnist", f"{', '.join(DATASETS)}, a .npy/.npz file, a folder of images, or TFRecord shards (a file or glob)"
    )
    data_dir: str | None = _setting(None, "directory with the MNIST IDX files, mnist.npz or binarized MNIST's files")
    image_size: list[int] | None = _setting(
        None, "resize every image to this size (default: the data's own)", metavar=("HEIGHT", "WIDTH")
    )
    color_mode: str | None = _setting(None, f"{' or '.join(COLOR_MODES)} (default: the data's own)")
    interpolation: str = _setting("bilinear", f"how --image-size resizes: {', '.join(INTERPOLATIONS)}")
    aspect_ratio: str = _setting(
        "stretch", "how --image-size meets another aspect ratio: stretch, crop (the centre) or pad (with black)"
    )
    validation_split: float | None = _setting(None, "hold out this fraction of the training images (seeded)")
    validation_data: str | None = _setting(None, "validation images from another path (default: the test split)")
    stream: bool = _setting(False, "decode a folder's or shards' images from disk each epoch, not once into memory")
    cache: str | None = _setting(
        None, "with a streamed run: decode the images once into this directory and read them from there", metavar="DIR"
    )
    # The data's (height, width, channels), which the model is built for: recorded by the run, not set.
    image_shape: list[int] | None = _setting(None, "the data's image shape, recorded by the run", flag=False)
    binarize: str = _setting("none", f"{', '.join(BINARIZATIONS)}: binary images, for a Bernoulli likelihood")
    epochs: int = _setting(20, "epochs to train in all")
    batch_size: int = _setting(64, "global batch size")
    optimizer: str = _setting("adam", "adam, adadelta, sgd, ... (see aeloops.training.optimizers)")
    learning_rate: float | None = _setting(None, "learning rate (default: the optimizer's)")
    clipnorm: float | None = _setting(None, "clip each gradient tensor to this norm (Keras clipnorm)")
    global_clipnorm: float | None = _setting(None, "clip the whole gradient to this global norm")
    clipvalue: float | None = _setting(None, "clip each gradient element to [-value, value]")
    use_ema: bool = _setting(False, "keep an exponential moving average of the weights for evaluation and saving")
    ema_momentum: float = _setting(0.99, "momentum of the weights' moving average")
    gradient_accumulation_steps: int | None = _setting(None, "apply the mean gradient of this many steps (>= 2)")
    loss: str | None = _setting(None, "reconstruction loss where the model allows a choice: bce, mse, mae")
    mode: str = _setting("auto", ", ".join(MODES))
    steps_per_loop: int = _setting(50, "training steps per compiled call")
    seed: int = _setting(0, "seed for weights and shuffling")
    run_dir: str | None = _setting(None, "where the run writes (default runs/<model>-<timestamp>)")
    resume: bool = _setting(False, "continue the run in --run-dir")
    precision: str = _setting("float32", ", ".join(PRECISIONS))
    strategy: str = _setting("default", ", ".join(STRATEGIES))
    validation: bool = _setting(True, "evaluate the test split after each epoch")
    keep_checkpoints: int = _setting(3, "checkpoints kept")
    summary_every: int = _setting(100, "steps between TensorBoard scalars")
    projector_every: int | None = _setting(None, "also write the Projector's codes every this many epochs")
    fid_every: int | None = _setting(
        None, "also write the FID and KID of drawn samples to TensorBoard every this many epochs (samples/fid)"
    )
    gradient_cosines: bool = _setting(False, "also log the cosine between each pair of loss terms' gradients")
    on_nonfinite: str = _setting(
        "stop", "when a loss term or gradient is NaN or Inf: stop, skip the update, or rollback (and go on)"
    )
    # How --on-nonfinite rollback recovers (aeloops.training.recovery.Recovery).
    max_recoveries: int = _setting(3, "rollback: the most recoveries a run makes before it stops")
    rollback_lr_factor: float = _setting(1.0, "rollback: multiply the learning rate by this at each recovery")
    spike_factor: float | None = _setting(
        None, "rollback: also roll back a call whose loss exceeds this many times the recent median"
    )
    spike_window: int = _setting(20, "rollback: how many compiled calls the spike rule's median covers")
    deterministic: bool = _setting(False, "deterministic ops: a resumed run repeats exactly")
    # What is watched each epoch: the best checkpoint, early stopping and plateau reductions.
    monitor: str | None = _setting(None, "value watched for the best checkpoint (default val_loss, else loss)")
    min_delta: float = _setting(0.0, "the least change of --monitor that counts as an improvement")
    early_stopping_patience: int | None = _setting(None, "stop after this many epochs without improvement")
    restore_best: bool = _setting(False, "write model.keras and the pictures from the best checkpoint")
    lr_schedule: str = _setting("constant", ", ".join(LR_SCHEDULES))
    warmup_steps: int = _setting(0, "linear warm-up steps before --lr-schedule cosine decays")
    decay_steps: int | None = _setting(None, "cosine: steps to decay over (default the whole run); step: steps apart")
    lr_factor: float = _setting(0.5, "step and plateau: the factor that lowers the learning rate")
    lr_patience: int = _setting(3, "plateau: epochs without improvement of --monitor before lowering it")
    min_learning_rate: float = _setting(0.0, "the learning rate the schedules never go below")
    # "first:last" steps to profile for TensorBoard's profile plugin.
    profile_steps: str | None = _setting(None, "profile these steps for TensorBoard, e.g. 10:20", metavar="FIRST:LAST")
    quiet: bool = _setting(False, "one line per epoch, no progress bar")
    # Per-term settings of the objective, e.g. {"sparsity": {"weight": 1e-5}}.
    objective: dict[str, dict[str, float]] = _setting({}, "per-term settings", flag=False)
    # Per-part optimizers, e.g. {"encoder": {"learning_rate": 1e-3}, "decoder": {...}}:
    # each key names a submodule of the model, each table the settings that
    # differ from the run's optimizer settings above.
    optimizers: dict[str, dict[str, Any]] = _setting({}, "per-part optimizer settings", flag=False)

    def __post_init__(self) -> None:
        validate(self)

    def profile_window(self) -> tuple[int, int] | None:
        """Returns ``profile_steps`` as ``(first, last)``, or None."""
        if self.profile_steps is None:
            return None
        first, _, last = self.profile_steps.partition(":")
        return int(first), int(last)

    def optimizer_settings(self) -> dict[str, dict[str, Any]]:
        """Returns each part's full optimizer settings (``{"model": ...}`` without parts)."""
        shared = {name: getattr(self, name) for name in PART_SETTINGS}
        if not self.optimizers:
            return {"model": shared}
        return {part: {**shared, **settings} for part, settings in self.optimizers.items()}

    def to_dict(self) -> dict[str, Any]:
        """Returns the config as plain JSON-ready values."""
        return dataclasses.asdict(self)


_FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}
# Settings that describe how a run is watched, not what it computes: a
# resumed run may change them.
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "quiet",
        "resume",
        "summary_every",
        "keep_checkpoints",
        "profile_steps",
        "projector_every",
        "cache",
        "gradient_cosines",
        "fid_every",
    }
)
# Settings with a table of their own in config files and --set (a.b.c=value).
TABLES = ("objective", "optimizers")


def check_names(config: TrainConfig) -> None:
    """Checks the names TensorFlow is not needed to check (model, optimizers, loss), with a fix for each.

    A ``module:attribute`` model is checked for its module only, without importing it.
    """
    if ":" in config.model:
        module, _, attribute = config.model.partition(":")
        if not module or not attribute:
            raise ValueError(f"--model {config.model!r}: a model of your own is given as module:attribute.")
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ValueError(
                f"Cannot find module {module!r} for --model {config.model}; put its folder on PYTHONPATH "
                "or run from the folder that holds it."
            )
    elif config.model not in BUILTIN_MODELS:
        close = difflib.get_close_matches(config.model, BUILTIN_MODELS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"Unknown model {config.model!r}; {hint}choose one of {', '.join(BUILTIN_MODELS)} "
            "(python -m aeloops.train --list-models) or give module:attribute."
        )
    for part, settings in config.optimizer_settings().items():
        name = settings["optimizer"]
        if name.lower() not in OPTIMIZER_NAMES:
            where = "optimizer" if part == "model" else f"optimizers.{part}.optimizer"
            raise ValueError(f"Unknown {where} {name!r}; choose one of {', '.join(OPTIMIZER_NAMES)}.")
    if config.loss is not None and config.loss not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"Unknown loss {config.loss!r}; choose one of {', '.join(RECONSTRUCTION_LOSSES)}.")
    check_source(config.dataset)
    if config.validation_data is not None:
        check_source(config.validation_data, "--validation-data")


def check_code_source(model: str, source: str | None, fix: str) -> None:
    """Refuses a ``module:attribute`` model that a file names, before anything is imported.

    A run directory or a config file may come from someone else; like Keras's
    ``safe_mode``, aeloops imports code only when the user says so: by typing
    the model on the command line (``source`` None) or by ``--trust-code``
    (the caller then does not call this). ``fix`` says how to allow it.
    """
    if ":" not in model or source is None:
        return
    module = model.partition(":")[0]
    raise ValueError(
        f"{source} names the model {model!r}, which would import and run Python module {module!r}; "
        f"aeloops runs no code a file names unless you say so: {fix}."
    )


def code_fix(model: str, *, typed: bool) -> str:
    """Returns the advice for ``check_code_source``: --trust-code, and for training also --model typed."""
    trust = "add --trust-code if you trust the file and that module"
    return f"{trust}, or give --model {shlex.quote(model)} yourself" if typed else trust


def merge(config: TrainConfig, values: dict[str, Any], source: str) -> TrainConfig:
    """Returns ``config`` with ``values`` applied; unknown keys name ``source``."""
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], _FIELDS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known settings are {', '.join(sorted(_FIELDS))}."
        raise ValueError(f"{source}: unknown setting {unknown[0]!r}; {hint}")
    values = dict(values)
    for table in TABLES:
        if table not in values:
            continue
        merged = {key: dict(settings) for key, settings in getattr(config, table).items()}
        if not isinstance(values[table], dict):
            raise TypeError(f"{source}: {table} must be a table of settings.")
        for key, settings in values[table].items():
            if not isinstance(settings, dict):
                raise TypeError(f"{source}: {table}.{key} must be a table such as {{weight = 0.1}}.")
            merged.setdefault(key, {}).update(settings)
        values[table] = merged
    try:
        return dataclasses.replace(config, **values)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{source}: {error}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Builds a JSON object, refusing a key given twice (as TOML does) rather than keeping the last."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise json.JSONDecodeError(f"the key {key!r} is given twice", "", 0)
        seen[key] = value
    return seen


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
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text, object_pairs_hook=_unique_keys)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Config file {path} is malformed: {error}.") from None
    if not isinstance(values, dict):
        raise ValueError(f"Config file {path} must hold a table of settings, not {type(values).__name__}.")
    values.pop(VERSIONS_KEY, None)  # A record of the run that wrote it, not a setting.
    return values


def load_run_config(path: str | pathlib.Path, *, trust_code: bool = False) -> TrainConfig:
    """Returns the settings a run's ``config.json`` holds; a ``module:attribute`` model needs ``trust_code``."""
    config = merge(TrainConfig(), load_config_file(path), str(path))
    if not trust_code:
        check_code_source(config.model, str(path), code_fix(config.model, typed=False))
    return config


def software_versions() -> dict[str, str]:
    """Returns the installed versions of aeloops, TensorFlow, Keras and NumPy, read without importing them."""
    versions = {}
    for package in ("aeloops", "tensorflow", "keras", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _parse_value(text: str) -> Any:
    """Parses an override's value as a TOML value, else keeps it as a string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(config: TrainConfig, overrides: Iterable[str]) -> TrainConfig:
    """Applies ``key=value`` overrides (``objective.<term>.weight=...``, ``optimizers.<part>.<setting>=...``).

    ``model.<option>=...`` sets one of the model's options (``model_options``).

    Table settings are applied together, so that settings that go together
    (a schedule and its length, say) may come in separate overrides.
    """
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    table_overrides = []
    for override in overrides:
        key, separator, text = override.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ValueError(f"--set takes key=value, got {override!r}.")
        value = _parse_value(text.strip())
        path = key.split(".")
        if path[0] in ("model", "model_options") and len(path) == 2:
            options = {**config.model_options, path[1]: value}
            config = merge(config, {"model_options": options}, f"--set {override}")
        elif path[0] in TABLES:
            if len(path) != 3:
                raise ValueError(
                    f"--set {override!r}: table settings look like objective.<term>.weight=0.1 "
                    "or optimizers.<part>.learning_rate=1e-4."
                )
            tables.setdefault(path[0], {}).setdefault(path[1], {})[path[2]] = value
            table_overrides.append(override)
        elif len(path) == 1:
            config = merge(config, {key.replace("-", "_"): value}, f"--set {override}")
        else:
            raise ValueError(f"--set {override!r}: unknown setting {key!r}.")
    if tables:
        config = merge(config, tables, f"--set {' '.join(table_overrides)}")
    return config


def saved_config(config: TrainConfig) -> dict:
    """Returns config.json's content: without run_dir, so `--config <run>/config.json` repeats the run elsewhere.

    ``versions`` records the software the run used; loading the file ignores it.
    """
    settings = dataclasses.replace(config, run_dir=None, resume=False).to_dict()
    return {**settings, VERSIONS_KEY: software_versions()}
