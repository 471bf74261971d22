"""What a user of the command line sees: a clean terminal, a first run worth looking at, early errors, one import.

The tests of what a terminal shows run ``python`` as a subprocess, as a user
would, and read all of its stderr, not only the last line.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import aeloops
from aeloops import train
from aeloops.data import load_sample
from aeloops.models import base, registry
from aeloops.runs import config as config_lib
from aeloops.runs.datasets import spread_sample
from aeloops.runs.stderr_filter import is_startup_chatter
from aeloops.training import optimizers
from tests.conftest import REPO

ENVIRONMENT_UNSET = ("TF_CPP_MIN_LOG_LEVEL", "AELOOPS_SHOW_TF_LOGS")
ENVIRONMENT = {name: value for name, value in os.environ.items() if name not in ENVIRONMENT_UNSET}
ENVIRONMENT["PYTHONPATH"] = str(REPO)  # As a user has it: nothing set but where the package is.


def python(*arguments, cwd=REPO, env=None):
    return subprocess.run(
        [sys.executable, *arguments], cwd=cwd, env={**ENVIRONMENT, **(env or {})}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def test_an_error_found_after_tensorflow_loads_is_one_line(tmp_path):
    result = python("-m", "aeloops.train", "--dataset", "mnist-sample", "--batch-size", "100000",
                    "--run-dir", str(tmp_path / "r"))  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        "aeloops.train: error: --batch-size 100000 is larger than the 5000 training examples; lower it.\n"
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model", "dnese"], "Unknown model 'dnese'; did you mean 'dense'?"),
        (["--model", "no_such_module:build"], "Cannot find module 'no_such_module'"),
        (["--optimizer", "adamm"], "Unknown optimizer 'adamm'"),
        (["--set", "optimizers.encoder.optimizer=lbfgs", "--set", "optimizers.decoder.optimizer=adam"],
         "Unknown optimizers.encoder.optimizer 'lbfgs'"),
        (["--loss", "huber"], "Unknown loss 'huber'"),
    ],
)  # fmt: skip
def test_names_are_checked_before_tensorflow_loads(tmp_path, arguments, message):
    code = (
        "import sys; from aeloops import train; "
        f"status = train.main({[*arguments, '--run-dir', str(tmp_path / 'r')]!r}); "
        "print(status, 'tensorflow' in sys.modules)"
    )
    result = python("-c", code)
    assert result.stdout.split() == ["2", "False"], result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_the_names_checked_early_are_the_library_s_own():
    assert list(config_lib.BUILTIN_MODELS) == registry.names()
    assert list(config_lib.OPTIMIZER_NAMES) == optimizers.names()
    assert config_lib.RECONSTRUCTION_LOSSES == base.RECONSTRUCTION_LOSSES
    from aeloops.evaluation import samplers
    from aeloops.runs import choices

    assert choices.SAMPLERS == samplers.SAMPLERS  # What sample and evaluate offer before TensorFlow loads.
    from aeloops.evaluation import sample_quality

    assert choices.SAMPLE_METRICS == sample_quality.METRICS


def test_the_filter_drops_tensorflow_chatter_and_keeps_everything_else():
    chatter = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795911483.820712   12064 port.cc:153] oneDNN custom operations are on.",
        "I0000 00:00:1795911483.821087   12064 cudart_stub.cc:31] Could not find cuda drivers on your machine.",
        "E0000 00:00:1795911485.838678   12064 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
        "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow.",
    ]
    kept = ["aeloops.train: error: a real problem", "E0000 00:00:1.0 7 checkpoint_reader.cc:9] a real TF error",
            "Traceback (most recent call last):"]  # fmt: skip
    assert [line for line in chatter + kept if not is_startup_chatter(line)] == kept
    text = "\n".join(chatter[:2] + kept[:1] + chatter[2:] + kept[1:]) + "\n"
    code = (
        "import os, sys; from aeloops.runs.stderr_filter import StderrFilter; f = StderrFilter(); f.start(); "
        f"os.write(2, {text.encode()!r}); print('partial line', file=sys.stderr, end=''); f.stop()"
    )
    assert python("-c", code).stderr == "\n".join(kept) + "\npartial line"
    shown = python("-c", code, env={"AELOOPS_SHOW_TF_LOGS": "1"}).stderr
    assert shown == text + "partial line"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "twohead.keras"
    registry.get("twohead").build().save(path)  # Saved here: what is tested is loading, in fresh processes.
    return path


@pytest.mark.parametrize(
    ("imports", "load"),
    [("import aeloops, keras", "keras.saving.load_model"), ("import keras, aeloops", "keras.saving.load_model"),
     ("import aeloops, tensorflow as tf", "tf.keras.models.load_model"),
     ("import tensorflow as tf, aeloops", "tf.keras.models.load_model")],
)  # fmt: skip
def test_import_aeloops_is_all_load_model_needs(saved_model, imports, load):
    result = python("-c", f"{imports}; print(type({load}({str(saved_model)!r})).__name__)")
    assert result.stdout.strip() == "MultiHeadAutoencoder", result.stderr[-500:]


FIRST_IMPORTS = sorted(
    # One public name of each module behind the names (they load the same way), each first in its own process.
    {module: f"import aeloops; aeloops.{name}" for name, module in sorted(aeloops._EXPORTS.items())}
    .values()
) + [
    "import aeloops; from aeloops.objectives.objective import LossTerm",  # docs/library.md's first lines
    "import aeloops.objectives.losses",  # a module of the package before the package's names
    "import aeloops, tensorflow",
]  # fmt: skip


def test_every_public_name_imports_first_in_a_fresh_process():
    # Each statement alone, then every public name, then what the import promises Keras: the models registered.
    check = (
        "; import keras; missing = [n for n in aeloops.__all__ if getattr(aeloops, n, None) is None]; "
        "print(missing, 'aeloops>DenseAutoencoder' in keras.saving.get_custom_objects())"
    )
    processes = {
        first: subprocess.Popen(
            [sys.executable, "-c", f"{first}; import aeloops{check}"], cwd=REPO, env=ENVIRONMENT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for first in FIRST_IMPORTS
    }  # fmt: skip
    for first, process in processes.items():
        out, err = process.communicate(timeout=600)
        assert out.split() == ["[]", "True"], f"{first}: {err[-800:]}"


def test_import_aeloops_alone_loads_no_tensorflow():
    result = python("-c", "import sys, aeloops; print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert result.stdout.split() == ["False", "False"]


MY_MODELS = """
import keras
import tensorflow as tf
from aeloops.models import Autoencoder, DenseDecoder, Encoder


class EnergyEncoder(Encoder):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.code = keras.layers.Dense(16, activation="tanh")

    def call(self, inputs, training=None):
        code = self.code(inputs)
        return {"code": code, "code_energy": tf.square(code)}


def build():
    return Autoencoder(EnergyEncoder(), DenseDecoder(units=(), output_units=784), input_shape=(784,))
"""


def test_a_model_output_no_term_reads_is_named_and_a_term_can_be_declared_in_toml(tmp_path, monkeypatch, capsys):
    # In this process (what the terminal shows is the first run's business, below): as `python -m` from tmp_path.
    (tmp_path / "my_models.py").write_text(MY_MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    common = ["--model", "my_models:build", "--dataset", "mnist-sample", "--epochs", "2", "--quiet"]
    assert train.main([*common, "--run-dir", "plain"]) == 0
    plain = capsys.readouterr()
    assert plain.err == ""
    notes = [line for line in plain.out.splitlines() if line.startswith("Note:")]
    assert len(notes) == 1 and "'code_energy'" in notes[0]
    (tmp_path / "run.toml").write_text(
        '[objective.energy]\noutput = "code_energy"\nloss = "sum"\ntarget = "none"\nweight = 0.01\n'
        'schedule = "linear_warmup"\nschedule_steps = 100\n'
    )
    assert train.main([*common, "--config", "run.toml", "--run-dir", "declared"]) == 0
    declared = capsys.readouterr()
    assert "Note:" not in declared.out, declared.err
    history = json.loads((tmp_path / "declared" / "history.json").read_text())
    # 78 steps an epoch: the warm-up (100 steps) ends during the second.
    assert 0 < history["weight/energy"][0] < history["weight/energy"][1] <= 0.01
    for epoch in range(2):
        weighted = history["bce"][epoch] + history["weight/energy"][epoch] * history["energy"][epoch]
        assert history["loss"][epoch] == pytest.approx(weighted, rel=1e-5)
    # The declared term is part of the run's record, so the record repeats it.
    assert json.loads((tmp_path / "declared" / "config.json").read_text())["objective"]["energy"]["output"] == (
        "code_energy"
    )


def transcript_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("transcript", REPO / "tools" / "transcript.py")
    transcript = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(transcript)
    return transcript


def test_a_transcript_keeps_each_line_as_the_terminal_shows_it():
    transcript = transcript_tool()
    # A progress bar redrawn in place: the terminal shows each line as its last carriage return left it.
    raw = ("Epoch 1/3\r\n\x1b[1m 1/78\x1b[0m bar\r78/78 done\r\nEpoch 2/3\r\nx\r\n"
           "Epoch 3/3\r\n78/78 last\r\nFinished\r\n")  # fmt: skip
    lines = transcript.elide_epochs(transcript.screen_lines(raw))
    assert lines == ["Epoch 1/3", "78/78 done", "...", "Epoch 3/3", "78/78 last", "Finished"]


def test_the_first_run_in_a_terminal_shows_only_its_own_lines_digits_and_where_to_look(tmp_path, monkeypatch):
    """The default run on the bundled sample, in a terminal: each epoch, then where to look; no TensorFlow chatter."""
    for name in ENVIRONMENT_UNSET:  # As a user has it: nothing set.
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # This repository's aeloops, whatever is installed.
    transcript = transcript_tool()
    shown = transcript.screen_lines(transcript.run_in_terminal(["--dataset", "mnist-sample"], tmp_path))
    [run_dir] = tmp_path.glob("runs/dense-*")
    run = run_dir.relative_to(tmp_path)
    epochs = config_lib.TrainConfig().epochs
    # Every line the terminal shows, in order: what is on the screen is the run's own output, nothing else.
    assert len(shown) == 2 * epochs + 6, shown
    # The batches leave 5,000 % 64 images out of each epoch: said once, before the first.
    assert shown[0] == (
        "Each epoch trains 78 batches of 64: 8 of the 5,000 training images sit each epoch out (others each epoch, "
        "as it shuffles)."
    )
    for epoch in range(epochs):
        assert shown[1 + 2 * epoch] == f"Epoch {epoch + 1}/{epochs}"
        assert re.fullmatch(r"78/78 ━{20} \d+s \d+ms/step - bce: .* - val_loss: \d\.\d{4}", shown[2 + 2 * epoch])
    assert shown[-5].startswith("Mode 'auto' kept graph mode: ") and shown[-4].startswith("Best val_loss ")
    assert shown[-3].startswith("Finished in ") and shown[-3].endswith(f"the run is in {run}.")
    assert shown[-2] == f"  Reconstructions (inputs above, outputs below): {run / 'reconstructions.png'}"
    assert shown[-1].startswith(f"  TensorBoard: tensorboard --logdir {run / 'tensorboard'}  (then open http://")
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["epoch"]) == epochs
    assert history["val_bce"][-1] <= 0.18  # Measured: 0.154 to 0.156.
    # The picture shows ten validation digits, one of each class (a seeded sample), above their
    # reconstructions, which resemble them.
    picture = tf.io.decode_png((run_dir / "reconstructions.png").read_bytes()).numpy()[..., 0].astype(int)
    sample = load_sample()
    chosen = spread_sample(sample.test_labels, len(sample.test_images), 1000, 0)[:10]
    assert sample.test_labels[chosen].tolist() == list(range(10))
    digits = sample.test_images[chosen].astype(int)
    inputs, outputs = (np.stack([picture[top : top + 28, 2 + 30 * column : 30 + 30 * column] for column in range(10)])
                       for top in (2, 32))  # fmt: skip
    assert np.abs(inputs - digits).max() <= 1
    assert np.abs(outputs - digits).mean() < 0.1 * 255 < np.abs(outputs - digits[::-1]).mean()
    # README's block, after its two lines on falling back to the sample, has the screen's shape: the batches'
    # note, the first epoch, "...", the last, then where to look.
    block = transcript.BLOCK.search((REPO / "README.md").read_text())[2].splitlines()
    assert block[1].startswith("MNIST is not on this machine") and block[2] == shown[0]
    assert block[3] == f"Epoch 1/{epochs}"
    assert [line.split()[0] for line in block[2:]] == [line.split()[0] for line in transcript.elide_epochs(shown)]
