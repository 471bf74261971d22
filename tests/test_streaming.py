import os
import subprocess
import sys

import numpy as np
import pytest

from aeloops.data import to_model_inputs
from aeloops.data.npy_rows import npy_dataset
from aeloops.models import registry
from aeloops.training.trainer import Trainer
from tests.conftest import REPO


def test_streamed_batches_are_the_file_rows(tmp_path, small_images):
    path = tmp_path / "images.npy"
    np.save(path, small_images[:300])
    batches = list(npy_dataset(path, 64, (784,), shuffle=False).as_numpy_iterator())
    assert len(batches) == 4  # 300 // 64: the partial batch is dropped.
    expected = to_model_inputs(small_images[:256], (784,))
    np.testing.assert_array_equal(np.concatenate([batch["input"] for batch in batches]), expected)
    shuffled = np.concatenate([b["input"] for b in npy_dataset(path, 64, (784,), seed=1).as_numpy_iterator()])
    assert not np.array_equal(shuffled, expected)
    # A pass draws 256 distinct rows of the file's 300.
    file_rows = {row.tobytes() for row in to_model_inputs(small_images[:300], (784,))}
    assert len({row.tobytes() for row in shuffled}) == 256 and {row.tobytes() for row in shuffled} <= file_rows


def test_training_on_a_streamed_file_matches_the_same_rows_in_memory(tmp_path, small_images):
    path = tmp_path / "images.npy"
    np.save(path, small_images[:512])
    histories = []
    for data in (npy_dataset(path, 64, (784,), shuffle=False), to_model_inputs(small_images[:512], (784,))):
        model = registry.get("dense").build()
        model.set_weights([np.full(w.shape, 0.01, np.float32) for w in model.get_weights()])
        histories.append(Trainer(model, mode="graph").fit(data, epochs=2, batch_size=64, shuffle=False, verbose=0))
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-5)


def test_bad_files_are_refused(tmp_path):
    (tmp_path / "text.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="Cannot read"):
        npy_dataset(tmp_path / "text.npy", 8, (784,))
    np.save(tmp_path / "small.npy", np.zeros((10, 784), np.uint8))
    with pytest.raises(ValueError, match="batch_size must lie in"):
        npy_dataset(tmp_path / "small.npy", 64, (784,))
    with pytest.raises(ValueError, match="do not reshape"):
        npy_dataset(tmp_path / "small.npy", 8, (28, 28, 3))
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes((tmp_path / "small.npy").read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        npy_dataset(truncated, 8, (784,))


# Iterators of streamed files left alive, mid-pass, when the program ends.
LIVE_AT_EXIT = """
import os
import sys
import time
import numpy as np
from aeloops.data.npy_rows import npy_dataset
np.save(sys.argv[1], np.random.default_rng(0).integers(0, 255, (8192, 784), dtype=np.uint8))
read = os.pread
os.pread = lambda *args: (time.sleep(0.001), read(*args))[1]  # Slow reads: some are in flight at exit, always.
alive = []
for seed in range(4):
    alive.append(iter(npy_dataset(sys.argv[1], 256, (784,), seed=seed)))
    next(alive[-1])
print("done", flush=True)
"""


def test_a_program_ends_with_streams_still_being_read(tmp_path):
    """Without the drain at exit, a live iterator's reads wait for Python as it shuts down: the process hangs."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-c", LIVE_AT_EXIT, str(tmp_path / "rows.npy")]
    # The hang was a race, which the slow reads make all but certain: without the drain, 5 runs of 5 hung.
    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
    assert "Traceback" not in result.stderr, result.stderr
