import gzip
import struct

import numpy as np
import pytest

from aeloops import data
from aeloops.data import mnist as mnist_lib
from tests.conftest import SHARED_MNIST


def write_idx(path, array, compress=False):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


def write_mnist_dir(directory, compress):
    rng = np.random.default_rng(0)
    splits = data.Splits(
        rng.integers(0, 256, (20, 28, 28)),
        rng.integers(0, 10, 20),
        rng.integers(0, 256, (5, 28, 28)),
        rng.integers(0, 10, 5),
    )
    suffix = ".gz" if compress else ""
    for key, stem in mnist_lib._IDX_NAMES.items():
        write_idx(directory / f"{stem}{suffix}", getattr(splits, key), compress)
    return splits


@pytest.mark.parametrize("compress", [True, False])
def test_idx_directory_round_trip(tmp_path, compress):
    written = write_mnist_dir(tmp_path, compress)
    loaded = data.load_mnist(tmp_path, download=False)
    for expected, actual in zip(written, loaded):
        np.testing.assert_array_equal(actual, expected)
        assert actual.dtype == np.uint8


def test_npz_directory(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 255, (7, 28, 28), dtype=np.uint8),
        "y_train": np.arange(7),
        "x_test": rng.integers(0, 255, (3, 28, 28), dtype=np.uint8),
        "y_test": np.arange(3),
    }
    np.savez(tmp_path / "mnist.npz", **arrays)
    loaded = data.load_mnist(tmp_path, download=False)
    np.testing.assert_array_equal(loaded.train_images, arrays["x_train"])
    np.testing.assert_array_equal(loaded.test_labels, arrays["y_test"])


def test_truncated_and_foreign_idx_files_are_refused(tmp_path):
    path = tmp_path / "images"
    write_idx(path, np.zeros((4, 28, 28)))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        data.read_idx(path)
    path.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(path)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(ValueError, match="Cannot read IDX file"):
        data.read_idx(broken)


def test_missing_dataset_is_reported(tmp_path, monkeypatch):
    with pytest.raises(data.DatasetUnavailableError, match="neither the four mnist IDX files"):
        data.load_mnist(tmp_path, download=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    with pytest.raises(data.DatasetUnavailableError, match="set AELOOPS_DATA_DIR"):
        data.load_mnist(download=False)
    with pytest.raises(ValueError, match="does not exist"):
        data.load_mnist(tmp_path / "nowhere")


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist is not beside the repository")
def test_real_mnist_has_its_known_statistics():
    splits = data.load_mnist(SHARED_MNIST, download=False)
    assert splits.train_images.shape == (60000, 28, 28) and splits.test_images.shape == (10000, 28, 28)
    pixels = splits.train_images / 255.0
    assert pixels.mean() == pytest.approx(0.13066, abs=1e-5)
    assert pixels.std() == pytest.approx(0.30811, abs=1e-5)
    assert np.bincount(splits.train_labels).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(splits.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_bundled_sample_is_real_mnist():
    sample = data.load_sample()
    assert sample.train_images.shape == (5000, 28, 28) and sample.test_images.shape == (1000, 28, 28)
    assert sample.train_images.dtype == np.uint8
    # The first MNIST training label is a 5, the first test label a 7.
    assert sample.train_labels[0] == 5 and sample.test_labels[0] == 7
    if SHARED_MNIST.is_dir():
        full = data.load_mnist(SHARED_MNIST, download=False)
        np.testing.assert_array_equal(sample.train_images, full.train_images[:5000])
        np.testing.assert_array_equal(sample.test_images, full.test_images[:1000])


def test_to_model_inputs_scales_and_reshapes():
    images = np.full((3, 28, 28), 255, np.uint8)
    inputs = data.to_model_inputs(images, (784,))
    assert inputs.shape == (3, 784) and inputs.dtype == np.float32 and inputs.max() == 1.0
    assert data.to_model_inputs(images, (28, 28, 1)).shape == (3, 28, 28, 1)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((0, 784), np.float32), "empty"),
        (np.zeros((2, 30, 30), np.uint8), "does not reshape"),
        (np.full((2, 784), 2.0, np.float32), r"range over \[2, 2\]"),
        (np.full((2, 784), np.nan, np.float32), "NaN or Inf"),
        (np.array([["a"] * 784]), "dtype"),
    ],
)
def test_to_model_inputs_refuses_bad_images(images, message):
    with pytest.raises(ValueError, match=message):
        data.to_model_inputs(images, (784,))


def test_load_array_file(tmp_path):
    images = np.random.default_rng(2).uniform(size=(4, 784)).astype(np.float32)
    np.save(tmp_path / "x.npy", images)
    np.testing.assert_array_equal(data.load_array_file(tmp_path / "x.npy"), images)
    np.savez(tmp_path / "x.npz", x_train=images, other=images[:1])
    np.testing.assert_array_equal(data.load_array_file(tmp_path / "x.npz"), images)
    np.savez(tmp_path / "two.npz", a=images, b=images)
    with pytest.raises(ValueError, match="name the one to use"):
        data.load_array_file(tmp_path / "two.npz")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="truncated or not a NumPy file"):
        data.load_array_file(tmp_path / "bad.npy")
    with pytest.raises(ValueError, match="does not exist"):
        data.load_array_file(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match=".npy or .npz"):
        data.load_array_file(tmp_path / "x.csv")
