"""Shared fixtures: quiet TensorFlow, real MNIST images, small slices of them."""

from __future__ import annotations

import atexit
import os
import pathlib
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The CLI runs the tests start share one XLA compilation cache (aeloops.training.compile_cache),
# not the user's.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="aeloops-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from aeloops import data  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist() -> data.Splits:
    """Real MNIST from ../shared/data/mnist, else the bundled sample."""
    if SHARED_MNIST.is_dir():
        return data.load_mnist(SHARED_MNIST, download=False)
    return data.load_sample()


@pytest.fixture(scope="session")
def small_images(mnist: data.Splits) -> np.ndarray:
    """2,048 training images as uint8 (28, 28)."""
    return mnist.train_images[:2048]


@pytest.fixture(scope="session")
def small_test_images(mnist: data.Splits) -> np.ndarray:
    """500 test images as uint8 (28, 28): not a multiple of common batch sizes."""
    return mnist.test_images[:500]
