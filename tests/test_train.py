"""End-to-end tests of ``python -m aeloops.train`` on real MNIST."""

import json
import os
import re
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from aeloops import data, train
from aeloops.data import mnist as mnist_lib
from aeloops.models import registry
from aeloops.runs.config import TrainConfig
from tests import warm_python
from tests.conftest import REPO, SHARED_MNIST

pytestmark = pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="needs ../shared/data/mnist")


def cli(*args, env=None, **kwargs):
    """Starts the CLI in a subprocess with unbuffered output."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    command = warm_python.command(["-m", "aeloops.train", "--data-dir", str(SHARED_MNIST), *args])
    return subprocess.Popen(command, cwd=REPO, env=environment, text=True, **kwargs)


def test_help_does_not_import_tensorflow():
    code = "import sys; from aeloops import train; train.build_parser(); print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "False"
    help_text = subprocess.run(
        [sys.executable, "-m", "aeloops.train", "--help"], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    for flag in ("--model", "--resume", "--precision", "--strategy", "--steps-per-loop", "--set", "--list-models"):
        assert flag in help_text


def test_list_models_names_every_model_with_its_parameter_count(capsys):
    assert train.main(["--list-models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    options, lines = lines[1::2], lines[::2]  # Each model's line, then its options'.
    assert len(lines) == len(registry.names())
    conv = options[registry.names().index("conv")]
    assert conv.strip().startswith("options (--set model.<option>=...): encoder_filters=[16,8,8], decoder_filters=")
    assert "decoder_paddings, " in conv  # Chosen by the model for the images' size: no default to show.
    assert any(line.startswith("sparse") and "50,992 params" in line for line in lines)
    assert any(line.startswith("conv") and "4,385 params" in line for line in lines)
    # One column for the counts, however long a name: "params" starts at the same place on every line.
    assert len({line.index(" params") for line in lines}) == 1


def check_run_directory(run_dir, model_name, epochs):
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == model_name and config["epochs"] == epochs and config["run_dir"] is None
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == list(range(1, epochs + 1))
    assert all(np.isfinite(history["loss"])) and len(history["val_loss"]) == epochs
    assert len(history["epoch_seconds"]) == epochs and min(history["samples_per_second"]) > 0
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")) is not None
    for split in ("train", "validation"):
        assert any(name.startswith("events.out.tfevents") for name in os.listdir(run_dir / "tensorboard" / split))
    image = tf.io.decode_png((run_dir / "reconstructions.png").read_bytes()).numpy()
    rows = 1 + (2 if model_name == "twohead" else 1)
    assert image.shape == (rows * 30 + 2, 10 * 30 + 2, 1)
    model = keras.saving.load_model(run_dir / "model.keras")
    assert model.count_params() == registry.get(model_name).build().count_params()
    return history, model


@pytest.fixture(scope="module")
def mnist_subset(tmp_path_factory, mnist):
    """1,024 real MNIST training images and 500 test images, as a user's .npz file."""
    path = tmp_path_factory.mktemp("data") / "mnist_subset.npz"
    np.savez(path, x_train=mnist.train_images[:1024], x_test=mnist.test_images[:500])
    return path


@pytest.mark.parametrize("model_name", registry.names())
def test_each_model_trains_end_to_end(tmp_path, mnist_subset, model_name, capsys):
    run_dir = tmp_path / "run"
    # In this process (the tests above and below run the CLI as a user does): 15 imports of TensorFlow saved.
    code = train.main(
        ["--model", model_name, "--dataset", str(mnist_subset), "--epochs", "2", "--run-dir", str(run_dir), "--quiet"]
    )
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert "val_loss" in stdout and "Finished" in stdout
    history, _ = check_run_directory(run_dir, model_name, 2)
    assert history["loss"][1] < history["loss"][0]
    latent_dims = {"vae": 2, "iwae": 50, "wae": 8, "betatcvae": 10, "aae": 8}
    if model_name in latent_dims:  # Digits generated from the prior, each code dimension swept.
        samples = tf.io.decode_png((run_dir / "samples.png").read_bytes()).numpy()
        traversal = tf.io.decode_png((run_dir / "latent_traversal.png").read_bytes()).numpy()
        rows = min(10, latent_dims[model_name])
        assert samples.shape == (4 * 30 + 2, 10 * 30 + 2, 1) and traversal.shape == (rows * 30 + 2, 9 * 30 + 2, 1)
        assert samples.std() > 20 and traversal.std() > 20  # Decoded digits, not a blank page.
    assert (run_dir / "latent_map.png").exists() == (model_name == "vae")  # The 2-D code's map.
    if model_name == "vae":
        latent_map = tf.io.decode_png((run_dir / "latent_map.png").read_bytes()).numpy()
        assert latent_map.shape == (15 * 30 + 2, 15 * 30 + 2, 1) and latent_map.std() > 20


def test_config_json_repeats_a_run_exactly(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    args = ("--model", "sparse", "--dataset", "mnist-sample", "--epochs", "2", "--batch-size", "256",
            "--set", "objective.sparsity.weight=1e-3")  # fmt: skip
    assert train.main([*args, "--run-dir", str(first), "--quiet"]) == 0
    assert train.main(["--config", str(first / "config.json"), "--run-dir", str(second), "--quiet"]) == 0
    assert json.loads((first / "config.json").read_text()) == json.loads((second / "config.json").read_text())
    history_first = json.loads((first / "history.json").read_text())
    history_second = json.loads((second / "history.json").read_text())
    assert history_first["loss"] == history_second["loss"]
    assert history_first["sparsity"] == history_second["sparsity"]


def wait_for_first_epoch(process):
    """Reads the CLI's output until its first epoch line; no sleeping."""
    for line in process.stdout:
        if "val_loss" in line:
            return
    raise AssertionError(f"the run ended early: {process.stderr.read()}")


# The bundled sample at batch 32, one step per call: 156 steps an epoch.
SIGNAL_RUN = ("--dataset", "mnist-sample", "--epochs", "3", "--batch-size", "32", "--steps-per-loop", "1",
              "--mode", "graph", "--quiet")  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The final model of the signal tests' run left alone."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert train.main([*SIGNAL_RUN, "--run-dir", str(run_dir)]) == 0  # In this process: nothing stops it.
    return check_run_directory(run_dir, "dense", 3)[1]


def test_ctrl_c_from_outside_saves_and_resume_finishes_like_an_uninterrupted_run(tmp_path, uninterrupted, capsys):
    """A real Ctrl-C, sent by another process; SIGTERM and a second Ctrl-C are test_reliability's."""
    stopped = tmp_path / "stopped"
    process = cli(*SIGNAL_RUN, "--run-dir", str(stopped), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_first_epoch(process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    assert "Stopped at step" in stdout
    history = json.loads((stopped / "history.json").read_text())
    assert history["epoch"] == [1]
    saved_step = int(tf.train.latest_checkpoint(str(stopped / "checkpoints")).rsplit("-", 1)[1])
    # The signal came after epoch 1 ended: the run stops in epoch 2 or 3, however slow the machine.
    assert 156 <= saved_step < 3 * 156
    assert f"Stopped at step {saved_step}" in stdout
    assert not (stopped / "model.keras").exists()

    capsys.readouterr()
    assert train.main(["--resume", "--run-dir", str(stopped), "--quiet"]) == 0  # The resume in this process.
    assert f"Resuming {stopped} at step {saved_step}" in capsys.readouterr().out
    resumed_history, resumed = check_run_directory(stopped, "dense", 3)
    for ours, theirs in zip(resumed.weights, uninterrupted.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def write_npy(path, array):
    np.save(path, array)
    return str(path)


def bad_inputs(tmp_path):
    """(arguments, expected message) for every error a user can cause."""
    truncated = tmp_path / "truncated.npy"
    np.save(truncated, np.zeros((10, 784), np.float32))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    (tmp_path / "unknown_key.toml").write_text('model = "dense"\ncolour = "red"\n')
    (tmp_path / "wrong_type.toml").write_text('epochs = "ten"\n')
    (tmp_path / "malformed.toml").write_text("epochs = \n")
    (tmp_path / "a_file").write_text("not a directory")
    return [
        (["--model", "nope"], "Unknown model 'nope'"),
        (["--dataset", "cifar"], "--dataset cifar: no such file or folder; give mnist, fashion_mnist"),
        (["--optimizer", "lbfgs"], "Unknown optimizer 'lbfgs'"),
        (["--loss", "huber"], "Unknown loss 'huber'"),
        (["--model", "rowwise", "--loss", "bce"], "choose --loss mse or mae"),
        (["--model", "twohead", "--loss", "mse"], "drop --loss"),
        (["--epochs", "0"], "epochs must be a positive integer"),
        (["--batch-size", "-3"], "batch_size must be a positive integer"),
        (["--batch-size", "70000"], "larger than the 60000 training examples"),
        (["--dataset", str(tmp_path / "missing.npy")], "does not exist"),
        (["--dataset", str(truncated)], "truncated"),
        (["--dataset", write_npy(tmp_path / "shape.npy", np.zeros((10, 3, 3, 3, 3), np.float32))],
         "Arrays of images must have shape (n, d), (n, height, width) or (n, height, width, channels)"),
        (["--dataset", write_npy(tmp_path / "text.npy", np.array([["a"] * 784]))], "dtype"),
        (["--dataset", write_npy(tmp_path / "range.npy", np.full((300, 784), 255.0, np.float32))], "range over"),
        (["--dataset", write_npy(tmp_path / "nan.npy", np.full((300, 784), np.nan, np.float32))], "NaN or Inf"),
        (["--config", str(tmp_path / "unknown_key.toml")], "unknown setting 'colour'"),
        (["--config", str(tmp_path / "wrong_type.toml")], "epochs must be a positive integer"),
        (["--config", str(tmp_path / "malformed.toml")], "malformed"),
        (["--set", "epochs"], "key=value"),
        (["--set", "objective.nope.weight=1"], "has no loss term 'nope'"),
        (["--run-dir", str(tmp_path / "a_file" / "run")], "Cannot write to run directory"),
        (["--run-dir", os.fsdecode(os.fsencode(str(tmp_path)) + b"/run-\xff")], "is not valid UTF-8"),
        (["--resume"], "--resume needs --run-dir"),
        (["--resume", "--run-dir", str(tmp_path / "missing_run")], "holds no config.json"),
        (["--strategy", "multiworker"], "needs TF_CONFIG"),
    ]


def test_every_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep me")
    cases = bad_inputs(tmp_path) + [(["--run-dir", str(existing)], "already exists; pass --resume")]
    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*")}
    for arguments, message in cases:
        run_dir = [] if any(a in arguments for a in ("--run-dir", "--resume")) else ["--run-dir", str(tmp_path / "r")]
        code = train.main(["--data-dir", str(SHARED_MNIST), "--epochs", "1", *run_dir, *arguments])
        captured = capsys.readouterr()
        assert code == 2, (arguments, captured.err)
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("aeloops.train: error: "), (arguments, captured.err)
        assert message in lines[0], (arguments, lines[0])
        assert not (tmp_path / "r").exists(), arguments
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*")} == before
    assert (existing / "notes.txt").read_text() == "keep me"


def test_resume_refuses_to_change_what_the_run_computes(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["--data-dir", str(SHARED_MNIST), "--dataset", "mnist-sample", "--epochs", "1", "--quiet"]
    assert train.main([*args, "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    assert train.main(["--resume", "--run-dir", str(run_dir), "--model", "deep"]) == 2
    assert "model cannot change" in capsys.readouterr().err
    # More epochs is a change a resume allows.
    assert train.main(["--resume", "--run-dir", str(run_dir), "--epochs", "2", "--quiet"]) == 0
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1, 2]


def test_network_free_default_falls_back_to_the_sample_and_records_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("AELOOPS_DATA_DIR", raising=False)

    def offline(variant):
        raise data.DatasetUnavailableError(f"{variant} could not be downloaded")

    monkeypatch.setattr(mnist_lib, "_download", offline)
    code = train.main(["--epochs", "1", "--run-dir", str(tmp_path / "run"), "--quiet"])
    output = capsys.readouterr().out
    assert code == 0
    assert output.count("bundled 5,000-image sample") == 1
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    # 5,000 sample images at the default batch of 64: 78 steps, then a checkpoint.
    assert history["epoch"] == [1]
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-78")
    # config.json says what was used, so repeating it anywhere trains on the sample, and records the mode
    # "auto" chose, as the run said it did (graph mode here, kept for a run too short to repay compiling XLA).
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    said = re.search(r"Mode 'auto' (?:kept graph mode|chose (\w+))", output)
    assert said and saved["dataset"] == "mnist-sample" and saved["mode"] == (said[1] or "graph")
    assert saved["versions"]["tensorflow"] == tf.__version__ and saved["versions"]["aeloops"] == "0.1.0"
    monkeypatch.undo()  # A machine with MNIST at hand: the repeat must still use the sample.
    code = train.main(["--config", str(tmp_path / "run" / "config.json"), "--run-dir", str(tmp_path / "again")])
    assert code == 0 and "bundled" not in capsys.readouterr().out
    assert json.loads((tmp_path / "again" / "history.json").read_text())["loss"] == history["loss"]


@pytest.mark.parametrize(
    "arguments",
    [["--precision", "mixed_float16"], ["--precision", "mixed_bfloat16"], ["--strategy", "mirrored"]],
    ids=["mixed_float16", "mixed_bfloat16", "mirrored"],
)
def test_precisions_and_strategies_train(tmp_path, mnist_subset, capsys, arguments):
    run_dir = tmp_path / "run"
    common = ["--dataset", str(mnist_subset), "--epochs", "2", "--run-dir", str(run_dir), "--quiet"]
    code = train.main([*common, *arguments])
    assert code == 0, capsys.readouterr().err
    history, model = check_run_directory(run_dir, "dense", 2)
    assert history["loss"][1] < history["loss"][0] < 0.7
    assert keras.mixed_precision.global_policy().name == "float32"  # Restored after the run.
    if "--precision" in arguments:
        assert model.dtype_policy.name == arguments[1]


def test_mirrored_run_resumes(tmp_path, mnist_subset, capsys):
    run_dir = tmp_path / "run"
    common = ["--dataset", str(mnist_subset), "--strategy", "mirrored", "--run-dir", str(run_dir), "--quiet"]
    assert train.main([*common, "--epochs", "1"]) == 0
    first = [variable.numpy() for variable in keras.saving.load_model(run_dir / "model.keras").weights]
    assert train.main(["--resume", *common, "--epochs", "2"]) == 0
    assert "Resuming" in capsys.readouterr().out
    history, model = check_run_directory(run_dir, "dense", 2)
    assert history["loss"][1] < history["loss"][0]
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(first, model.weights))  # It trained on.
    steps = 2 * (1024 // TrainConfig().batch_size)
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith(f"ckpt-{steps}")


def test_per_part_optimizers_with_ema_and_accumulation_resume_exactly(tmp_path, capsys):
    """A run extended with --resume ends bit-identical to one run straight through, averages and all."""
    common = ["--dataset", "mnist-sample", "--quiet", "--mode", "graph", "--steps-per-loop", "5", "--deterministic",
              "--set", "optimizers.encoder.learning_rate=2e-3", "--set", "optimizers.decoder.learning_rate=5e-4",
              "--set", "optimizers.decoder.gradient_accumulation_steps=2",
              "--use-ema", "--clipvalue", "0.01"]  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train.main([*common, "--epochs", "2", "--run-dir", str(straight)]) == 0
    assert train.main([*common, "--epochs", "1", "--run-dir", str(resumed)]) == 0
    assert train.main(["--resume", *common, "--epochs", "2", "--run-dir", str(resumed)]) == 0
    histories = [json.loads((run / "history.json").read_text()) for run in (straight, resumed)]
    for key in ("loss", "val_loss", "gradient_norm", "clipped_gradient_norm"):
        assert histories[0][key] == histories[1][key], key
    latest = [tf.train.latest_checkpoint(str(run / "checkpoints")) for run in (straight, resumed)]
    readers = [tf.train.load_checkpoint(prefix) for prefix in latest]
    names = [name for name, _ in tf.train.list_variables(latest[0])]
    assert any("optimizers/decoder" in name for name in names) and any("optimizers/encoder" in name for name in names)
    for name in names:
        # Counters and names differ; so does the run's record (its history's timings).
        if not name.startswith(("save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH", "run_record")):
            np.testing.assert_array_equal(readers[0].get_tensor(name), readers[1].get_tensor(name), err_msg=name)
    saved = [keras.saving.load_model(run / "model.keras").weights for run in (straight, resumed)]
    for ours, theirs in zip(*saved):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
