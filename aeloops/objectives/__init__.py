"""Objectives: a weighted sum of named loss terms, the per-example losses and regularizers, and weights over steps."""
