"""The checks a ``TrainConfig`` makes of its settings when it is made: types, ranges and choices.

No TensorFlow here either: a bad setting is refused before it loads.

>>> from aeloops.runs.config import TrainConfig
>>> TrainConfig(lr_factor=2.0)
Traceback (most recent call last):
...
ValueError: lr_factor must be between 0 and 1 (exclusive), so the rate falls and stays > 0, got 2.0.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from aeloops.data.locate import ASPECT_RATIOS, COLOR_MODES, INTERPOLATIONS
from aeloops.runs.choices import (
    BINARIZATIONS,
    LR_SCHEDULES,
    MODES,
    NONFINITE_POLICIES,
    PART_SETTINGS,
    PRECISIONS,
    SCHEDULES,
    STRATEGIES,
    TERM_SETTINGS,
)

if TYPE_CHECKING:
    from aeloops.runs.config import TrainConfig

__all__ = ["validate"]


def _expect(name: str, value: Any, kinds: tuple[type, ...], description: str) -> None:
    if isinstance(value, bool) and bool not in kinds:
        raise TypeError(f"{name} must be {description}, got {value!r}.")
    if not isinstance(value, kinds):
        raise TypeError(f"{name} must be {description}, got {value!r} ({type(value).__name__}).")


def validate(config: TrainConfig) -> None:
    """Checks every setting's type and range, naming the setting and what it accepts."""
    for name in ("projector_every", "fid_every"):
        value = getattr(config, name)
        if value is not None:
            _expect(name, value, (int,), "a positive integer")
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}.")
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
    _validate_watching(config)
    for name in ("data_dir", "loss", "run_dir", "profile_steps", "monitor", "cache"):
        if getattr(config, name) is not None:
            _expect(name, getattr(config, name), (str,), "a string")
    for name in ("resume", "validation", "quiet", "deterministic", "restore_best", "stream", "gradient_cosines"):
        _expect(name, getattr(config, name), (bool,), "true or false")
    _validate_optimizer_settings({name: getattr(config, name) for name in PART_SETTINGS}, "")
    for name, choices in (
        ("mode", MODES),
        ("precision", PRECISIONS),
        ("strategy", STRATEGIES),
        ("on_nonfinite", NONFINITE_POLICIES),
        ("lr_schedule", LR_SCHEDULES),
        ("binarize", BINARIZATIONS),
    ):
        if getattr(config, name) not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}; got {getattr(config, name)!r}.")
    _validate_images(config)
    _validate_recovery(config)
    if config.profile_steps is not None:
        first, separator, last = config.profile_steps.partition(":")
        if not (separator and first.isdigit() and last.isdigit() and int(first) < int(last)):
            raise ValueError(f"profile_steps must look like 10:20 (first < last), got {config.profile_steps!r}.")
    _expect("model_options", config.model_options, (dict,), "a table of the model's options")
    _expect("objective", config.objective, (dict,), "a table of term settings")
    for term, settings in config.objective.items():
        _expect(f"objective.{term}", settings, (dict,), "a table such as {weight = 0.1}")
        _validate_term_settings(term, settings)
    _expect("optimizers", config.optimizers, (dict,), "a table of per-part optimizer settings")
    for part, settings in config.optimizers.items():
        _expect(f"optimizers.{part}", settings, (dict,), "a table such as {learning_rate = 1e-4}")
        for key in settings:
            if key not in PART_SETTINGS:
                raise ValueError(f"Unknown setting optimizers.{part}.{key}; a part accepts {', '.join(PART_SETTINGS)}.")
        _validate_optimizer_settings(settings, f"optimizers.{part}.")


def _validate_images(config: TrainConfig) -> None:
    """Checks how images are read: their size, colours, resizing and validation split."""
    for name in ("image_size", "image_shape"):
        value, length = getattr(config, name), 2 if name == "image_size" else 3
        if value is None:
            continue
        _expect(name, value, (list, tuple), f"{length} positive integers")
        if len(value) != length or any(isinstance(side, bool) or not isinstance(side, int) or side < 1
                                       for side in value):  # fmt: skip
            raise ValueError(f"{name} must be {length} positive integers, got {value!r}.")
    if config.color_mode is not None and config.color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be one of {', '.join(COLOR_MODES)}; got {config.color_mode!r}.")
    if config.interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {config.interpolation!r}.")
    if config.aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}; got {config.aspect_ratio!r}.")
    if config.aspect_ratio != "stretch" and config.image_size is None:
        raise ValueError(
            f"aspect_ratio {config.aspect_ratio!r} says how --image-size meets another aspect ratio; "
            "give --image-size HEIGHT WIDTH too."
        )
    if config.validation_split is not None:
        _expect("validation_split", config.validation_split, (float, int), "a fraction between 0 and 1")
        if not 0 < config.validation_split < 1:
            raise ValueError(f"validation_split must lie strictly between 0 and 1, got {config.validation_split}.")
    if config.validation_data is not None:
        _expect("validation_data", config.validation_data, (str,), "a path")
    if config.validation_split is not None and config.validation_data is not None:
        raise ValueError("Give validation_split or validation_data, not both.")


def _validate_recovery(config: TrainConfig) -> None:
    """Checks how ``on_nonfinite = "rollback"`` recovers, and that its settings are not given for nothing."""
    for name in ("max_recoveries", "spike_window"):
        value = getattr(config, name)
        _expect(name, value, (int,), "a positive integer")
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}.")
    _expect("rollback_lr_factor", config.rollback_lr_factor, (int, float), "a number")
    if not (math.isfinite(config.rollback_lr_factor) and 0 < config.rollback_lr_factor <= 1):
        raise ValueError(f"rollback_lr_factor must lie in (0, 1], got {config.rollback_lr_factor}.")
    if config.spike_factor is not None:
        _expect("spike_factor", config.spike_factor, (int, float), "a number")
        if not (math.isfinite(config.spike_factor) and config.spike_factor > 1):
            raise ValueError(f"spike_factor must be a number above 1, got {config.spike_factor}.")
    names = ("max_recoveries", "rollback_lr_factor", "spike_factor", "spike_window")
    changed = [
        field.name
        for field in dataclasses.fields(config)
        if field.name in names and getattr(config, field.name) != field.default
    ]
    if changed and config.on_nonfinite != "rollback":
        raise ValueError(
            f"{changed[0]} sets how a run recovers by rolling back, but on_nonfinite is {config.on_nonfinite!r}; "
            'add on_nonfinite = "rollback" (--on-nonfinite rollback).'
        )


def _validate_watching(config: TrainConfig) -> None:
    """Checks the settings of early stopping and learning-rate schedules, naming the flag at fault."""
    for name, low in (("early_stopping_patience", 1), ("decay_steps", 1), ("lr_patience", 1), ("warmup_steps", 0)):
        value = getattr(config, name)
        if value is not None:
            _expect(name, value, (int,), "an integer")
            if value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value}.")
    for name, test, rule in (
        ("min_delta", lambda value: value >= 0, ">= 0"),
        ("lr_factor", lambda value: 0 < value < 1, "between 0 and 1 (exclusive), so the rate falls and stays > 0"),
        ("min_learning_rate", lambda value: value >= 0, ">= 0"),
    ):
        value = getattr(config, name)
        _expect(name, value, (int, float), "a number")
        if not (math.isfinite(value) and test(value)):
            raise ValueError(f"{name} must be {rule}, got {value}.")
    if config.warmup_steps and config.lr_schedule != "cosine":
        raise ValueError(f"warmup_steps is for lr_schedule 'cosine'; lr_schedule is {config.lr_schedule!r}.")
    if config.lr_schedule == "step" and config.decay_steps is None:
        raise ValueError("lr_schedule 'step' needs decay_steps: the number of steps between reductions.")


def _validate_term_settings(term: str, settings: dict[str, Any]) -> None:
    for key, value in settings.items():
        name = f"objective.{term}.{key}"
        if key not in TERM_SETTINGS:
            raise ValueError(f"Unknown setting {name}; a term accepts {', '.join(TERM_SETTINGS)}.")
        if key == "weight":
            _expect(name, value, (int, float), "a number")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}.")
        elif key == "schedule_steps":
            _expect(name, value, (int,), "a positive integer")
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}.")
        else:
            _expect(name, value, (str,), "a string")
    if settings.get("reduction", "mean") not in ("mean", "sum"):
        raise ValueError(f"objective.{term}.reduction must be mean or sum; got {settings['reduction']!r}.")
    schedule = settings.get("schedule", "constant")
    if schedule not in SCHEDULES:
        raise ValueError(f"objective.{term}.schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}.")
    if schedule != "constant" and "schedule_steps" not in settings:
        raise ValueError(
            f"objective.{term}.schedule = {schedule!r} needs objective.{term}.schedule_steps "
            "(the warm-up length, or the cycle's period, in steps)."
        )


def _validate_optimizer_settings(settings: dict[str, Any], prefix: str) -> None:
    """Checks optimizer settings as Keras would, but with a message that names the setting."""
    if "optimizer" in settings:
        _expect(f"{prefix}optimizer", settings["optimizer"], (str,), "an optimizer name")
    for name in ("learning_rate", "clipnorm", "global_clipnorm", "clipvalue"):
        value = settings.get(name)
        if value is not None:
            _expect(f"{prefix}{name}", value, (int, float), "a positive number")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{prefix}{name} must be a positive number, got {value}.")
    clipping = [name for name in ("clipnorm", "global_clipnorm", "clipvalue") if settings.get(name) is not None]
    if len(clipping) > 1:
        raise ValueError(f"Set only one of {prefix}clipnorm, global_clipnorm and clipvalue; got {', '.join(clipping)}.")
    if "use_ema" in settings:
        _expect(f"{prefix}use_ema", settings["use_ema"], (bool,), "true or false")
    if "ema_momentum" in settings:
        momentum = settings["ema_momentum"]
        _expect(f"{prefix}ema_momentum", momentum, (int, float), "a number in [0, 1)")
        if not 0 <= momentum < 1:
            raise ValueError(f"{prefix}ema_momentum must lie in [0, 1), got {momentum}.")
    steps = settings.get("gradient_accumulation_steps")
    if steps is not None:
        _expect(f"{prefix}gradient_accumulation_steps", steps, (int,), "an integer >= 2")
        if steps < 2:
            raise ValueError(f"{prefix}gradient_accumulation_steps must be at least 2 (or unset), got {steps}.")
