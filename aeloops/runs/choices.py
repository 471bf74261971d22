"""The values a run's settings may take: the choices ``config`` offers and ``config_checks`` enforces.

Plain constants, importing nothing that loads TensorFlow, so that the config
and its checks both read them without importing each other. The Trainer's own
options are defined with it (``training.options``) and offered here.
"""

from __future__ import annotations

from aeloops.training.options import MODES, NONFINITE_POLICIES, OPTIMIZER_OPTIONS

__all__ = [
    "BINARIZATIONS",
    "BUILTIN_MODELS",
    "LR_SCHEDULES",
    "MLFLOW_DEFAULT",
    "MODES",
    "NONFINITE_POLICIES",
    "OPTIMIZER_NAMES",
    "OPTIMIZER_OPTIONS",
    "PART_SETTINGS",
    "PRECISIONS",
    "RECONSTRUCTION_LOSSES",
    "SAMPLERS",
    "SAMPLE_METRICS",
    "SCHEDULES",
    "STRATEGIES",
    "TERM_SETTINGS",
    "TRUST_HELP",
    "VERSIONS_KEY",
]

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multiworker")
# How images become binary for a Bernoulli likelihood: not at all; at 0.5; by one draw per pixel
# with its intensity as the probability (as Larochelle and Murray's binarized MNIST was made); or
# by a new draw at every training step (aeloops.data.binarize, Trainer(dynamic_binarization=True)).
BINARIZATIONS = ("none", "threshold", "fixed", "dynamic")
LR_SCHEDULES = ("constant", "cosine", "step", "plateau")
# What a config file may say of a loss term (objective.<term>.<setting>):
# its weight and schedule for a model's own terms; output and loss (and a
# target) as well to declare a new one.
TERM_SETTINGS = ("weight", "schedule", "schedule_steps", "output", "loss", "target", "reduction")
SCHEDULES = ("constant", "linear_warmup", "cyclical")
# Names checked before TensorFlow loads, so a typo fails at once; the
# tests check them against aeloops.models.registry and aeloops.training.optimizers.
BUILTIN_MODELS = (
    "aae", "betatcvae", "conv", "convtranspose", "convvae", "deep", "denoising", "dense", "iwae", "rowwise", "seq2seq",
    "sparse", "twohead", "vae", "vampprior", "vqvae", "wae",
)  # fmt: skip
OPTIMIZER_NAMES = ("adadelta", "adagrad", "adam", "adamw", "nadam", "rmsprop", "sgd")
RECONSTRUCTION_LOSSES = ("bce", "mse", "mae")
# Where drawn codes come from (aeloops.evaluation.samplers), for the commands that draw, before TensorFlow loads.
SAMPLERS = ("prior", "gmm")
# What evaluate measures of drawn samples (aeloops.evaluation.sample_quality.METRICS): --fid, --kid, --prd.
SAMPLE_METRICS = ("fid", "kid", "prd")
# --trust-code's help, the same for every command that reads a run's config.json.
TRUST_HELP = "allow a module:attribute model named by the run's config.json to be imported (its code runs)"
# config.json's record of the software a run used (not a setting).
VERSIONS_KEY = "versions"
PART_SETTINGS = ("optimizer", "learning_rate", *OPTIMIZER_OPTIONS)

# `--mlflow` given without a tracking URI: MLflow's embedded SQLite store beside the runs.
MLFLOW_DEFAULT = "default"
