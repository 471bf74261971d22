"""tf.distribute: MirroredStrategy over two logical CPUs matches one device."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    output = tmp_path_factory.mktemp("distributed") / "results.json"
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run(
        [sys.executable, "-m", "tests.distributed_helper", str(output)],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(output.read_text())


@pytest.mark.parametrize("case", ["sparse-graph", "dense-auto", "conv-graph"])
def test_mirrored_matches_single_device(results, case):
    single, mirrored = results[case]["single"], results[case]["mirrored"]
    assert single["replicas"] == 1 and mirrored["replicas"] == 2
    assert mirrored["step"] == single["step"] == 2 * (1024 // 64)
    assert set(mirrored["history"]) == set(single["history"])
    for key, values in single["history"].items():
        np.testing.assert_allclose(mirrored["history"][key], values, rtol=2e-4, atol=1e-6, err_msg=key)
    for ours, theirs in zip(mirrored["weights"], single["weights"]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=2e-5)


def test_xla_across_cpu_replicas_is_refused_clearly(results):
    assert "use mode='graph'" in results["xla_error"]
    assert results["auto_mode"] == "graph"


def test_regularizers_are_scaled_once(results):
    history = results["dense-auto"]["mirrored"]["history"]
    assert history["layer_losses"][0] > 0
    # The total is the sum of its parts on two replicas as on one: nothing is scaled twice.
    np.testing.assert_allclose(np.array(history["bce"]) + np.array(history["layer_losses"]), history["loss"], rtol=1e-5)
    sparse = results["sparse-graph"]["mirrored"]["history"]
    np.testing.assert_allclose(np.array(sparse["bce"]) + 1e-4 * np.array(sparse["sparsity"]), sparse["loss"], rtol=1e-5)
