"""A run's objective from its config: the model's own terms, changed or extended by ``[objective.<term>]`` tables.

>>> config = TrainConfig(model="sparse", objective={"sparsity": {"weight": 1e-5}})  # doctest: +SKIP
>>> build_objective(config, model).terms[1].weight                                  # doctest: +SKIP
1e-05
"""

from __future__ import annotations

import dataclasses
import re

from aeloops.models import registry
from aeloops.models.base import Autoencoder
from aeloops.objectives import schedules
from aeloops.objectives.objective import LossTerm, Objective
from aeloops.runs.config import TrainConfig

__all__ = ["build_objective", "unused_outputs"]


def build_objective(config: TrainConfig, model: Autoencoder) -> Objective:
    """Returns the model's objective with ``--loss`` and the ``objective.*`` tables applied.

    A table naming one of the model's terms changes its weight or schedule
    (or its output, loss, target, reduction); a table naming a new term adds it, with
    ``output`` and ``loss`` given (``target`` "input" by default, "none" for
    a regularizer that reads the output alone).
    """
    objective = registry.get(config.model).objective(model, config.loss)
    terms: list[LossTerm] = []
    for term in objective.terms:
        settings = config.objective.get(term.name)
        terms.append(term if settings is None else dataclasses.replace(term, **_changes(settings, term.weight)))
    for name, settings in config.objective.items():
        if name in objective.names:
            continue
        missing = [key for key in ("output", "loss") if key not in settings]
        if missing:
            raise ValueError(
                f"Model {config.model} has no loss term {name!r} (its terms are {', '.join(objective.names)}); "
                f"to add one, give objective.{name}.{missing[0]} (output and loss)."
            )
        terms.append(LossTerm(name, **{"target": "input", **_changes(settings, 1.0)}))
    return Objective(terms)


def _changes(settings: dict, weight: float | schedules.Schedule) -> dict:
    """Returns the ``LossTerm`` fields a config table sets; ``weight`` is the term's current one."""
    changes = {key: settings[key] for key in ("output", "loss", "reduction") if key in settings}
    if "target" in settings:
        changes["target"] = None if settings["target"] == "none" else settings["target"]
    value = float(settings.get("weight", 1.0 if callable(weight) else weight))
    schedule = settings.get("schedule", "constant" if "weight" in settings else None)
    if schedule == "constant":
        changes["weight"] = value
    elif schedule == "linear_warmup":
        changes["weight"] = schedules.linear_warmup(value, settings["schedule_steps"])
    elif schedule == "cyclical":
        changes["weight"] = schedules.cyclical(value, settings["schedule_steps"])
    return changes


def unused_outputs(model: Autoencoder, objective: Objective) -> list[str]:
    """Returns the model outputs that no loss term reads, leaving out those every model has.

    The code, the reconstruction (and its logits), hidden activations and
    the outputs a model lists in ``intermediate_outputs`` are there to be
    looked at; anything else (a penalty the encoder computes, say) probably
    meant to feed a term.
    """
    read = {term.output for term in objective.terms}
    ordinary = {"code", "reconstruction", "logits", *getattr(model, "intermediate_outputs", ())}
    return [
        name
        for name in model.output_names()
        if name not in read and name not in ordinary and not re.fullmatch(r"(hidden|code)_\d+", name)
    ]
