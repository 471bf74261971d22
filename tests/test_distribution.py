"""tf.distribute: MirroredStrategy over two logical CPUs matches one device."""

import json
import os
import signal
import socket
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from aeloops import train
from tests import warm_python
from tests.conftest import REPO


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    output = tmp_path_factory.mktemp("distributed") / "results.json"
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run(
        warm_python.command(["-m", "tests.distributed_helper", str(output)]),
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(output.read_text())


@pytest.mark.parametrize("case", ["sparse-auto", "conv-graph", "override-graph"])
def test_mirrored_matches_single_device(results, case):
    single, mirrored = results[case]["single"], results[case]["mirrored"]
    assert single["replicas"] == 1 and mirrored["replicas"] == 2
    assert mirrored["step"] == single["step"] == 2 * (1024 // 64)
    assert set(mirrored["history"]) == set(single["history"])
    for key, values in single["history"].items():
        np.testing.assert_allclose(mirrored["history"][key], values, rtol=2e-4, atol=1e-6, err_msg=key)
    for ours, theirs in zip(mirrored["weights"], single["weights"]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=2e-5)
    # Keras callbacks: the same calls as on one device, and the rate they halved is the one trained with and logged.
    # (auto mode's probe times calls of its own sizes on one device, where XLA is a candidate.)
    epochs_only = [[event for event in run["events"] if event[0] != "batch_end"] for run in (single, mirrored)]
    assert epochs_only[0] == epochs_only[1] and len(epochs_only[0]) == 4
    ends = [event[1] for event in mirrored["events"] if event[0] == "batch_end"]
    assert ends == [3, 7, 11, 15] * 2 and (mirrored["events"] == single["events"] or case.endswith("auto"))
    rates = [key for key in single["history"] if key.startswith("learning_rate")]
    assert rates and all(mirrored["history"][key][1] == mirrored["history"][key][0] / 2 for key in rates)


def test_an_overridden_step_with_clipped_per_part_optimizers_logs_what_one_device_does(results):
    history = results["override-graph"]["mirrored"]["history"]
    assert {"code_energy", "gradient_norm", "clipped_gradient_norm"} <= set(history)
    # Clipping acts on the gradient summed over replicas, as on one device:
    # two parts clipped at 0.05 each give at most sqrt(2) * 0.05 in all.
    assert max(history["clipped_gradient_norm"]) <= np.sqrt(2) * 0.05 + 1e-6
    assert min(history["gradient_norm"]) > 0.05


def test_a_rollback_under_mirrored_strategy_restores_every_replica_as_one_device_does(results):
    single, mirrored = (results["override-graph"][kind]["history"] for kind in ("single", "mirrored"))
    assert mirrored["recoveries"] == single["recoveries"] == [1.0, 0.0]
    assert mirrored["rolled_back_steps"] == single["rolled_back_steps"] == [4.0, 0.0]
    # The encoder's blown-up rate came back lowered a millionfold (then halved for epoch 2 by the scheduler).
    assert mirrored["learning_rate/encoder"] == pytest.approx([1e-3, 5e-4])


def test_xla_across_cpu_replicas_is_refused_clearly(results):
    assert "use mode='graph'" in results["xla_error"]
    assert results["auto_mode"] == "graph"


def test_regularizers_are_scaled_once(results):
    history = {key: np.array(values) for key, values in results["sparse-auto"]["mirrored"]["history"].items()}
    assert history["layer_losses"][0] > 0 and history["sparsity"][0] > 0
    # The total is the sum of its parts on two replicas as on one: nothing is scaled twice.
    parts = history["bce"] + 1e-4 * history["sparsity"] + history["layer_losses"]
    np.testing.assert_allclose(parts, history["loss"], rtol=1e-5)


def free_ports(count=2):
    """Ports nothing listens on, distinct: all are probed at once, so two probes cannot return one port.

    TensorFlow's gRPC server refuses a port another socket holds (even with
    SO_REUSEPORT), so the probes close before the workers start; another
    process binding exactly one of these ports in that moment would fail the
    test with "Could not start gRPC server", never pass it wrongly.
    """
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("localhost", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def cli(arguments, tf_config=None):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    environment.pop("TF_CONFIG", None)
    task = 0
    if tf_config is not None:
        environment["TF_CONFIG"] = json.dumps(tf_config)
        task = tf_config["task"]["index"]
    return subprocess.Popen(
        # Each worker from its own server: two interpreters, each with its own string-hash seed.
        warm_python.command(["-m", "aeloops.train", *arguments], server=task),
        cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def checkpoint_values(directory):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(directory)))
    # The preemption handler adds its own run counter to multi-worker checkpoints.
    skipped = (
        "_CHECKPOINTABLE_OBJECT_GRAPH",
        "save_counter/.ATTRIBUTES/VARIABLE_VALUE",
        "checkpointed_runs/.ATTRIBUTES/VARIABLE_VALUE",
        # The run's record (settings, history): only the chief keeps the history.
        "run_record/.ATTRIBUTES/VARIABLE_VALUE",
    )
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map() if name not in skipped}


def test_two_workers_stopped_by_sigterm_to_one_resume_together_and_match_one_process(tmp_path, mnist):
    """A preemption notice to one worker stops both at one step; resumed, they end as one process's run does."""
    images = tmp_path / "images.npz"
    np.savez(images, x_train=mnist.train_images[:2048], x_test=mnist.test_images[:256])  # 32 steps an epoch.
    common = ["--dataset", str(images), "--model", "sparse", "--epochs", "3", "--batch-size", "64",
              "--steps-per-loop", "1", "--quiet"]  # fmt: skip
    run_dir = tmp_path / "run"
    multiworker = [*common, "--strategy", "multiworker", "--run-dir", str(run_dir)]
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}

    def start_workers(arguments):
        return [cli(arguments, {"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in (0, 1)]

    chief, other = start_workers(multiworker)
    for line in chief.stdout:  # The chief's first epoch line: training is under way.
        if "val_loss" in line:
            break
    other.send_signal(signal.SIGTERM)
    outputs = [worker.communicate(timeout=600) for worker in (chief, other)]
    assert [chief.returncode, other.returncode] == [143, 143], (outputs[0][0][-1000:], outputs[1][0][-1000:])
    scratch = tmp_path / "run.worker-1"
    chief_step = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    other_step = tf.train.latest_checkpoint(str(scratch / "checkpoints"))
    assert chief_step.rsplit("-", 1)[1] == other_step.rsplit("-", 1)[1]  # Both stopped at one step.
    assert 32 < int(chief_step.rsplit("-", 1)[1]) < 3 * 32

    for worker in start_workers(["--resume", *multiworker]):
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-2000:]
    # Only the chief wrote the run; the other worker saved into its scratch directory.
    assert (run_dir / "model.keras").exists() and (run_dir / "history.json").exists()
    assert not (scratch / "history.json").exists() and not (scratch / "tensorboard").exists()
    # The two workers end bit-identical: their last checkpoints (the chief's and the other's scratch copy) agree.
    ours, theirs = checkpoint_values(run_dir / "checkpoints"), checkpoint_values(scratch / "checkpoints")
    assert len(ours) > 10 and ours.keys() == theirs.keys()  # The weights, the optimizer's slots, the step, ...
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    # The same run in one process, uninterrupted: this one, as nothing here needs a fresh one.
    assert train.main([*common, "--strategy", "mirrored", "--run-dir", str(tmp_path / "reference")]) == 0
    single = checkpoint_values(tmp_path / "reference" / "checkpoints")
    for name in ours:
        np.testing.assert_allclose(ours[name], single[name], rtol=1e-3, atol=2e-5, err_msg=name)
    history = json.loads((run_dir / "history.json").read_text())
    reference_history = json.loads((tmp_path / "reference" / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3] and history["loss"][2] < history["loss"][0]
    np.testing.assert_allclose(history["loss"], reference_history["loss"], rtol=2e-4)
    np.testing.assert_allclose(history["val_loss"], reference_history["val_loss"], rtol=2e-4)


def test_two_workers_stream_tfrecord_shards_split_by_file_and_stay_in_step(tmp_path, mnist):
    # Shards of unequal sizes: one worker's two shards hold 300 images, the other's 212, and both run 8 steps.
    shards = tmp_path / "shards"
    shards.mkdir()
    bounds = [0, 200, 300, 400, 512]
    for number, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        with tf.io.TFRecordWriter(str(shards / f"part-{number}.tfrecord")) as writer:
            for image in mnist.train_images[start:stop]:
                encoded = tf.io.encode_png(image[..., None]).numpy()
                feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))}
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    run_dir = tmp_path / "run"
    arguments = ["--dataset", str(shards), "--stream", "--model", "sparse", "--epochs", "2", "--batch-size", "64",
                 "--no-validation", "--quiet", "--strategy", "multiworker", "--run-dir", str(run_dir)]  # fmt: skip
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = [cli(arguments, {"cluster": cluster, "task": {"type": "worker", "index": index}}) for index in (0, 1)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-3000:]
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == [1, 2] and history["loss"][1] < history["loss"][0]
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-16")  # 512 // 64 steps twice.
    chief = checkpoint_values(run_dir / "checkpoints")
    other = checkpoint_values(tmp_path / "run.worker-1" / "checkpoints")
    for name in chief:  # One model: every step's all-reduce kept the workers' weights identical.
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
