"""What a CLI run watches each epoch: the monitored value, its best checkpoint, early stopping, the schedule.

>>> config = resolve(TrainConfig(lr_schedule="cosine", epochs=10), steps_per_epoch=100, has_validation=True)
>>> config.monitor, config.decay_steps
('val_loss', 1000)
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from aeloops.objectives.objective import TOTAL, Objective
from aeloops.runs.config import TrainConfig
from aeloops.runs.early_stopping import EarlyStopping
from aeloops.runs.lr_schedules import ReduceOnPlateau, schedule

if TYPE_CHECKING:
    from aeloops.training.callbacks import Callback
    from aeloops.training.trainer import Trainer

__all__ = ["check_monitor", "learning_rate_schedule", "make_watchers", "resolve"]


def resolve(config: TrainConfig, steps_per_epoch: int, has_validation: bool) -> TrainConfig:
    """Returns ``config`` with the defaults that depend on the data filled in, as config.json records them.

    The monitor defaults to ``val_loss`` (``loss`` without validation
    data); a cosine schedule decays over the whole run by default, fixed at
    its start so that a resume that adds epochs keeps the same schedule.
    """
    monitor = config.monitor or ("val_loss" if has_validation else TOTAL)
    decay_steps = config.decay_steps
    if config.lr_schedule == "cosine" and decay_steps is None:
        decay_steps = max(config.epochs * steps_per_epoch - config.warmup_steps, 1)
    return dataclasses.replace(config, monitor=monitor, decay_steps=decay_steps)


def check_monitor(config: TrainConfig, objective: Objective, has_validation: bool) -> None:
    """Refuses a monitor that is not a value the run logs, naming the ones it does."""
    names = [TOTAL, *(term.name for term in objective.terms), "gradient_norm"]
    if has_validation:
        names += [f"val_{name}" for name in (TOTAL, *(term.name for term in objective.terms))]
    if config.monitor not in names:
        hint = " (validation is off)" if config.monitor.startswith("val_") and not has_validation else ""
        raise ValueError(
            f"--monitor {config.monitor!r} is not a value this run logs{hint}; choose one of {', '.join(names)}."
        )


def learning_rate_schedule(config: TrainConfig) -> Callable | None:
    """Returns what turns a base learning rate into ``config``'s schedule, or None for a constant rate."""
    if config.lr_schedule in ("constant", "plateau"):
        return None
    return functools.partial(
        schedule,
        config.lr_schedule,
        warmup_steps=config.warmup_steps,
        decay_steps=config.decay_steps,
        factor=config.lr_factor,
        minimum=config.min_learning_rate,
    )


def make_watchers(config: TrainConfig, trainer: Trainer, best_directory: pathlib.Path) -> dict[str, Callback]:
    """Returns the run's watchers by name: ``early_stopping`` (which keeps the best checkpoint), ``plateau``."""
    watchers: dict[str, Callback] = {
        "early_stopping": EarlyStopping(
            trainer, best_directory, config.monitor, config.early_stopping_patience, config.min_delta
        )
    }
    if config.lr_schedule == "plateau":
        watchers["plateau"] = ReduceOnPlateau(
            trainer.optimizers.values(),
            config.monitor,
            config.lr_factor,
            config.lr_patience,
            config.min_delta,
            config.min_learning_rate,
        )
    return watchers
