"""A one-line description of the machine a benchmark ran on."""

from __future__ import annotations

import os
import pathlib
import platform

import tensorflow as tf

__all__ = ["cpu_name", "describe"]


def cpu_name() -> str:
    """Returns the CPU's model name (from /proc/cpuinfo where it exists)."""
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe() -> str:
    """Returns CPU, core count, GPUs and TensorFlow version in one line."""
    gpus = tf.config.list_physical_devices("GPU")
    gpu_names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
    return (
        f"{cpu_name()}, {os.cpu_count()} CPUs; GPU: {', '.join(gpu_names) or 'none'}; "
        f"TensorFlow {tf.__version__}, Python {platform.python_version()}"
    )
