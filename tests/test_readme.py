"""The examples of README.md and docs/ run."""

import json
import os
import re
import shlex
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from tests.conftest import REPO

# README and the guide pages it maps: every example in them runs here.
README = "\n".join(path.read_text() for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])


def example(name):
    match = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", README, re.S)
    assert match, f"README has no example {name!r}"
    return match.group(1)


def test_custom_model_example_trains_from_python_and_from_the_cli(tmp_path):
    run_example("custom-model")  # The example's training and its assertion.
    # The command line, from the user's directory, with the example's definitions as the module it names.
    definitions, training = example("custom-model").split("\nmodel = build()\n")
    assert "def build():" in definitions and "Trainer(model, objective).fit" in training
    (tmp_path / "my_models.py").write_text(definitions)
    environment = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "aeloops.train", "--model", "my_models:build", "--dataset", "mnist-sample",
         "--epochs", "2", "--run-dir", str(tmp_path / "run"), "--quiet"],
        cwd=tmp_path, env=environment, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "model.keras").exists()


def run_example(name):
    namespace = {"__name__": f"readme_{name}"}
    exec(compile(example(name), f"README:{name}", "exec"), namespace)  # noqa: S102 - the README's own code.
    return namespace


def test_adversarial_example_trains_and_resumes_bit_exactly(tmp_path):
    from aeloops.runs.checkpoints import Checkpointer

    namespace = run_example("adversarial")
    history = namespace["history"]
    assert {"discriminator", "generator", "discriminator_gradient_norm", "generator_gradient_norm"} <= set(history)
    build, images = namespace["AdversarialTrainer"], namespace["images"][:512]

    def fresh(seed):
        keras.utils.set_random_seed(seed)
        model = namespace["Autoencoder"](
            namespace["LinearCodeEncoder"](), namespace["DenseDecoder"](units=(256,), output_units=784),
            input_shape=(784,),
        )  # fmt: skip
        return build(model, mode="graph", steps_per_loop=3)

    def state(trainer):
        holders = (trainer.model, trainer.discriminator, trainer.optimizer, trainer.discriminator_optimizer,
                   trainer.generator_optimizer)  # fmt: skip
        return [variable.numpy() for holder in holders for variable in holder.variables] + [trainer.prior.state.numpy()]

    uninterrupted = fresh(0)
    whole = uninterrupted.fit(images, epochs=2, batch_size=64, verbose=0)
    first = fresh(0)
    first.fit(images, epochs=1, batch_size=64, callbacks=[Checkpointer(first, tmp_path)], verbose=0)
    resumed = fresh(1)  # Other weights and another prior stream, as a new process would have.
    assert Checkpointer(resumed, tmp_path).restore()
    rest = resumed.fit(images, epochs=2, initial_epoch=1, batch_size=64, verbose=0)
    for ours, theirs in zip(state(resumed), state(uninterrupted)):
        np.testing.assert_array_equal(ours, theirs)
    for name in ("discriminator", "generator", "bce"):
        assert rest[name] == whole[name][1:]


def test_contractive_example_stays_in_graph_mode_without_compiling_xla():
    from aeloops.training.mode_probe import TRY_XLA_AFTER, TRY_XLA_AFTER_WITHOUT_CONVOLUTIONS, XlaRecompileWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        namespace = run_example("contractive")
    trainer, report = namespace["trainer"], namespace["trainer"].mode_report
    # What auto decided follows its rule from what it measured (no convolutions: the lower threshold).
    assert report["convolutions"] is False
    if report["rest_over_tracing"] < TRY_XLA_AFTER_WITHOUT_CONVOLUTIONS:  # As README says of this short run.
        assert trainer.mode == "graph" and int(trainer.mode_choice.numpy()) == 2
        assert "too short to repay compiling XLA" in report["reason"] and "xla" not in report["seconds"]
        assert trainer.trace_counts["train"] == 1  # XLA was never compiled.
        assert not [warning for warning in caught if warning.category is XlaRecompileWarning]
    else:  # A machine whose steps are slow beside its tracing: XLA is timed, and the faster kept.
        assert TRY_XLA_AFTER_WITHOUT_CONVOLUTIONS < TRY_XLA_AFTER and len(report["seconds"]["xla"]) >= 2
    assert namespace["history"]["contraction"][-1] > 0
    assert namespace["history"]["bce"][-1] < namespace["history"]["bce"][0]


def test_cli_optimizers_example_logs_both_norms_and_saves_the_average(tmp_path, capsys):
    import json

    from aeloops import train
    from aeloops.models import load_model, registry
    from aeloops.runs import experiment
    from aeloops.runs.checkpoints import Checkpointer
    from aeloops.runs.config import TrainConfig, load_config_file, merge
    from aeloops.training.trainer import Trainer

    command = example_command("cli-optimizers")
    assert command[:3] == ["python", "-m", "aeloops.train"]
    # The command's arguments, as its shell splits them, in this process.
    assert train.main([*command[3:], "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0, capsys.readouterr().err
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    # Each part's optimizer clips its own part: two parts at 0.05 give at most sqrt(2) * 0.05.
    assert max(history["clipped_gradient_norm"]) <= np.sqrt(2) * 0.05 + 1e-6
    assert history["gradient_norm"][0] > history["clipped_gradient_norm"][0]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["optimizers"] == {"encoder": {"learning_rate": 2e-3}, "decoder": {"learning_rate": 5e-4}}
    # model.keras holds the moving average of the weights, which the checkpoint keeps beside the raw ones.
    config = merge(TrainConfig(), load_config_file(tmp_path / "run" / "config.json"), "config.json")
    keras.utils.set_random_seed(0)
    model = registry.get(config.model).build()
    trainer = Trainer(model, optimizer=experiment.make_optimizers(config), mode="graph")
    assert set(trainer.learning_rates()) == {"learning_rate/encoder", "learning_rate/decoder"}
    assert Checkpointer(trainer, tmp_path / "run" / "checkpoints").restore()
    saved_weights = [variable.numpy() for variable in load_model(tmp_path / "run" / "model.keras").trainable_variables]
    raw = [variable.numpy() for variable in model.trainable_variables]
    with trainer.averaged_weights():
        averaged = [variable.numpy() for variable in model.trainable_variables]
    for ours, theirs in zip(saved_weights, averaged):
        np.testing.assert_array_equal(ours, theirs)
    assert not np.allclose(saved_weights[0], raw[0])


def example_command(name):
    match = re.search(rf"<!-- example: {name} -->\n```bash\n(.*?)```", README, re.S)
    assert match, f"README has no command {name!r}"
    return shlex.split(match.group(1).replace("\\\n", " "))


def test_pcgrad_example_trains_alike_in_float32_and_under_mixed_float16():
    namespace = run_example("pcgrad")
    assert namespace["history"]["bce"][-1] < namespace["history"]["bce"][0]
    assert namespace["history"]["gradient_norm"][0] > 0
    images = namespace["images"]

    def moves(policy):
        keras.mixed_precision.set_global_policy(policy)
        try:
            keras.utils.set_random_seed(0)
            trainer = namespace["build_trainer"]()
        finally:
            keras.mixed_precision.set_global_policy("float32")
        before = [variable.numpy() for variable in trainer.model.trainable_variables]
        history = trainer.fit(images, epochs=2, batch_size=128, verbose=0)
        return [v.numpy() - b for v, b in zip(trainer.model.trainable_variables, before)], history, trainer

    float32, float32_history, _ = moves("float32")
    mixed, mixed_history, trainer = moves("mixed_float16")
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    # An update divided by the loss scale it never had would move the weights far less.
    for ours, theirs in zip(mixed, float32):
        assert np.abs(ours - theirs).max() <= 0.2 * np.abs(theirs).max()
    np.testing.assert_allclose(mixed_history["loss"], float32_history["loss"], atol=1e-3)


def test_keras_callbacks_example_logs_a_csv_row_per_epoch_and_stops_early(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_example("keras-callbacks")
    history = namespace["history"]
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert len(rows) == 1 + len(history["loss"]) and rows[0].startswith("epoch,")
    # ReduceLROnPlateau's halvings are the rates logged: each epoch's rate is the last one's or half of it.
    rates = history["learning_rate"]
    assert all(rate in (before, np.float32(before / 2).item()) for before, rate in zip(rates, rates[1:]))


def test_sweep_example_trains_both_points_and_names_the_best(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = run_example("sweep-python")
    study = namespace["study"]
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "COMPLETE"]
    best = min(study.trials, key=lambda trial: trial.value)
    history = (tmp_path / "runs" / "lr-sweep" / f"trial-{best.number:04d}" / "history.json").read_text()
    assert study.best_value == json.loads(history)["val_loss"][-1]
    assert study.best_params == best.params and "started" in capsys.readouterr().out


def test_pcgrad_example_survives_a_term_without_gradient_and_its_naive_version_is_named_for_it():
    # At a sparsity weight of 3e-3 the code dies and its L1 term has no gradient: PCGrad then divides 0 by 0.
    code = example("pcgrad").replace("weight=1e-3", "weight=3e-3").replace("epochs=2", "epochs=7")
    # The example does not seed its model: whether the code dies in 7 epochs must not hang on the tests run before.
    keras.utils.set_random_seed(0)
    safe = {}
    exec(compile(code, "README:pcgrad", "exec"), safe)  # noqa: S102 - the docs' own code.
    assert all(np.isfinite(value).all() for value in safe["history"].values())
    naive = code.replace("tf.math.divide_no_nan(conflict, tf.tensordot(other, other, 1))",
                         "conflict / tf.tensordot(other, other, 1)")  # fmt: skip
    assert naive != code
    keras.utils.set_random_seed(0)
    with pytest.raises(FloatingPointError) as raised:
        exec(compile(naive, "README:pcgrad", "exec"), {})  # noqa: S102
    message = str(raised.value)
    assert re.fullmatch(
        r"The gradient became NaN or Inf at step \d+ while every loss term was finite; training stopped before "
        r"saving it\. A train step that divides by a norm that can be zero \(gradient surgery, say\) needs "
        r"tf\.math\.divide_no_nan; else lower the learning rate, or go on past such steps: skip each "
        r"\(on_nonfinite='skip', --on-nonfinite skip\) or roll back to the state before it "
        r"\(on_nonfinite='rollback', --on-nonfinite rollback\)\.", message), message
