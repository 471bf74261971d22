"""Every CLI flag README documents, used once for its effect (not only for its refusals).

In-process runs of a dense model on 512 real MNIST images, so the table is
cheap; each row asserts what the flag changes in what a run leaves.
"""

import gzip
import json
import struct

import keras
import numpy as np
import pytest
import tensorflow as tf

from aeloops import evaluate, train
from aeloops.runs import stderr_filter
from aeloops.runs.datasets import spread_sample

STEPS_PER_EPOCH = 8  # 512 images at batch 64.


@pytest.fixture(scope="module")
def images(tmp_path_factory, mnist):
    path = tmp_path_factory.mktemp("flags") / "images.npz"
    np.savez(path, x_train=mnist.train_images[:512], x_test=mnist.test_images[:128])
    return path


def run(tmp_path, name, images, *flags, epochs=1):
    run_dir = tmp_path / name
    arguments = ["--dataset", str(images), "--epochs", str(epochs), "--batch-size", "64", "--mode", "graph"]
    assert train.main([*arguments, *flags, "--run-dir", str(run_dir), "--quiet"]) == 0
    return run_dir


def weights(run_dir):
    return [variable.numpy() for variable in keras.saving.load_model(run_dir / "model.keras").weights]


def history(run_dir):
    return json.loads((run_dir / "history.json").read_text())


def test_seed_makes_the_weights_and_the_same_seed_repeats_them(images, tmp_path, capsys):
    first, again, other = (run(tmp_path, name, images, "--seed", seed) for name, seed in
                           (("first", "7"), ("again", "7"), ("other", "8")))  # fmt: skip
    for ours, theirs in zip(weights(first), weights(again), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    # The seed draws the initial weights (the step-0 checkpoint), not only the order of the batches.
    initial = [initial_kernels(run_dir) for run_dir in (first, again, other)]
    assert initial[0].keys() == initial[2].keys() and len(initial[0]) == 6  # The dense model's six layers.
    assert all(np.array_equal(initial[0][name], initial[1][name]) for name in initial[0])
    assert all(not np.array_equal(initial[0][name], initial[2][name]) for name in initial[0])
    assert any(not np.array_equal(ours, theirs) for ours, theirs in zip(weights(first), weights(other), strict=True))
    assert json.loads((other / "config.json").read_text())["seed"] == 8


def initial_kernels(run_dir):
    """The nonzero 2-D weights (the layers' kernels) of a run's step-0 checkpoint, by their names there."""
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints" / "ckpt-0"))
    tensors = {name: reader.get_tensor(name) for name, shape in reader.get_variable_to_shape_map().items()
               if len(shape) == 2 and name.endswith("/.ATTRIBUTES/VARIABLE_VALUE")}  # fmt: skip
    return {name: value for name, value in tensors.items() if value.any()}  # Not Adam's slots, zeros at step 0.


def test_loss_names_the_reconstruction_term(images, tmp_path, capsys):
    logged = history(run(tmp_path, "mse", images, "--loss", "mse"))
    assert "mse" in logged and "bce" not in logged
    assert logged["loss"] == logged["mse"]  # The dense model's only term, at weight 1.


def test_keep_checkpoints_keeps_that_many(images, tmp_path, capsys):
    run_dir = run(tmp_path, "kept", images, "--keep-checkpoints", "1", epochs=3)
    kept = sorted(path.name for path in (run_dir / "checkpoints").glob("ckpt-*.index"))
    assert kept == [f"ckpt-{3 * STEPS_PER_EPOCH}.index"]


def test_profile_steps_writes_a_trace_for_tensorboard(images, tmp_path, capsys):
    run_dir = run(tmp_path, "profiled", images, "--profile-steps", "2:4")
    assert list((run_dir / "tensorboard").rglob("*.xplane.pb"))


def test_ema_momentum_sets_how_the_saved_weights_average(images, tmp_path, capsys):
    plain = weights(run(tmp_path, "plain", images))
    # Momentum 0 keeps no memory: the average is the weights themselves; 0.9 remembers earlier steps.
    none = weights(run(tmp_path, "momentum0", images, "--use-ema", "--ema-momentum", "0"))
    for ours, theirs in zip(none, plain, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-7)
    some = weights(run(tmp_path, "momentum09", images, "--use-ema", "--ema-momentum", "0.9"))
    assert max(np.abs(ours - theirs).max() for ours, theirs in zip(some, plain, strict=True)) > 1e-3


def test_gradient_cosines_writes_the_cosine_of_each_pair_of_terms(images, tmp_path, capsys):
    from tests.test_summaries import tensors

    run_dir = run(tmp_path, "cosines", images, "--model", "sparse", "--gradient-cosines", "--summary-every", "4",
              "--steps-per-loop", "4")
    written = tensors(run_dir / "tensorboard" / "train")["gradient_cosine/bce/sparsity"]
    assert [step for step, _ in written] == [4, 8] and all(-1 <= value <= 1 for _, value in written)
    assert written[0][1] != written[1][1]


def test_step_schedule_lowers_the_rate_by_its_factor_every_decay_steps(images, tmp_path, capsys):
    flags = ["--lr-schedule", "step", "--decay-steps", str(STEPS_PER_EPOCH), "--lr-factor", "0.5",
             "--learning-rate", "0.002"]  # fmt: skip
    rates = history(run(tmp_path, "step", images, *flags, epochs=3))["learning_rate"]
    # The rate in effect at the end of each epoch: lowered at steps 8, 16 and 24.
    np.testing.assert_allclose(rates, [0.001, 0.0005, 0.00025], rtol=1e-6)


def test_show_tf_logs_leaves_stderr_unfiltered(images, tmp_path, capsys, monkeypatch):
    started = []
    original = stderr_filter.StderrFilter.start
    monkeypatch.setattr(stderr_filter.StderrFilter, "start", lambda self: started.append(True) or original(self))
    run(tmp_path, "filtered", images)
    assert started == [True]
    run(tmp_path, "shown", images, "--show-tf-logs")
    assert started == [True]  # Not started again: TensorFlow's lines reach the terminal.


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


def test_dataset_fashion_mnist_reads_its_own_files(tmp_path, capsys):
    # Fashion-MNIST's files carry MNIST's names; these stand-ins are bright squares, unlike any digit.
    data_dir = tmp_path / "fashion"
    data_dir.mkdir()
    rng = np.random.default_rng(0)
    squares = np.zeros((192, 28, 28), np.uint8)
    squares[:, 6:22, 6:22] = rng.integers(128, 256, (192, 1, 1))
    labels = rng.integers(0, 10, 192)
    for name, array in (("train-images-idx3-ubyte.gz", squares[:128]), ("train-labels-idx1-ubyte.gz", labels[:128]),
                        ("t10k-images-idx3-ubyte.gz", squares[128:]), ("t10k-labels-idx1-ubyte.gz", labels[128:])):
        write_idx(data_dir / name, array)  # fmt: skip
    run_dir = tmp_path / "run"
    arguments = ["--dataset", "fashion_mnist", "--data-dir", str(data_dir), "--epochs", "1", "--batch-size", "64"]
    assert train.main([*arguments, "--run-dir", str(run_dir), "--quiet"]) == 0, capsys.readouterr().err
    assert json.loads((run_dir / "config.json").read_text())["dataset"] == "fashion_mnist"
    picture = tf.io.decode_png((run_dir / "reconstructions.png").read_bytes()).numpy()
    # The first of the pictured sample of validation images (each class in turn), as the files hold it.
    first = spread_sample(labels[128:], 64, 1000, 0)[0]
    np.testing.assert_array_equal(picture[2:30, 2:30, 0], squares[128 + first])


def test_evaluate_best_evaluates_the_best_checkpoint(images, tmp_path, capsys):
    # No epoch after the first improves by 1,000: the best checkpoint is epoch 1's, the newest epoch 3's.
    run_dir = run(tmp_path, "vae", images, "--model", "vae", "--min-delta", "1000", epochs=3)
    capsys.readouterr()
    figures = {}
    for which in ("newest", "best"):
        flags = ["--best"] if which == "best" else []
        assert evaluate.main([str(run_dir), "--nll-samples", "4", "--examples", "32", *flags]) == 0
        figures[which] = json.loads(capsys.readouterr().out)
    assert (figures["best"]["checkpoint"], figures["best"]["step"]) == ("best", STEPS_PER_EPOCH)
    assert (figures["newest"]["checkpoint"], figures["newest"]["step"]) == ("newest", 3 * STEPS_PER_EPOCH)
    assert figures["best"]["nll"] != figures["newest"]["nll"]
