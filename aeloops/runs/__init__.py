"""One command-line run: its config, its directory, its checkpoints and record, and the experiment that ties them.

Modules are imported by name; this file imports nothing, so that the
trainer's ``--help`` and its config checks load no TensorFlow.
"""
