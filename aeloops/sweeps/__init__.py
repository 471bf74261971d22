"""Sweeps: many runs of one model over a search space, on Optuna (``python -m aeloops.sweep SWEEP.toml``).

``spec`` reads and checks a sweep file (no TensorFlow, no Optuna); ``study``
runs its trials as ordinary CLI runs and sums them up. Modules are imported
by name.
"""
