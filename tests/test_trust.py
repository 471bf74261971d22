"""Hostile runs and files, by class: no code runs unasked, no write follows a link, pasted advice is safe.

A run directory or a config file may come from someone else. Each test
plants the real thing (a module that leaves a marker when imported, a
symbolic link to a file outside the run, a path a shell would split) and
calls the CLI in-process.
"""

import contextlib
import io
import itertools
import json
import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

from aeloops import evaluate, export, train
from aeloops.runs.directory import RunDirectory, write_json

# A name a shell splits, expands and unquotes.
HOSTILE_NAME = "it's $HOME `x` é"
_modules = itertools.count()


@pytest.fixture(scope="module")
def images_file(tmp_path_factory, mnist):
    path = tmp_path_factory.mktemp("data") / "images.npz"
    np.savez(path, x_train=mnist.train_images[:512], x_test=mnist.test_images[:128])
    return path


@pytest.fixture(scope="module")
def finished(images_file, tmp_path_factory):
    """A finished 1-epoch run under a hostile path, and what the CLI printed."""
    run_dir = tmp_path_factory.mktemp("finished") / "my runs" / HOSTILE_NAME
    arguments = ["--dataset", str(images_file), "--epochs", "1", "--batch-size", "128", "--mode", "graph"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):  # A module fixture has no capsys.
        assert train.main([*arguments, "--quiet", "--run-dir", str(run_dir)]) == 0
    return run_dir, stdout.getvalue()


@pytest.fixture
def run_dir(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished[0], copy, symlinks=True)
    return copy


def plant_module(directory: pathlib.Path, monkeypatch) -> tuple[str, pathlib.Path]:
    """Writes a module that leaves a marker file when imported; returns its ``module:build`` and the marker."""
    name = f"planted_{os.getpid()}_{next(_modules)}"
    marker = directory / f"{name}.ran"
    (directory / f"{name}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n\n"
        "def build():\n    raise ValueError('built by the planted module')\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(directory))
    return f"{name}:build", marker


def one_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def set_model(run_dir: pathlib.Path, model: str) -> None:
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    (run_dir / "config.json").write_text(json.dumps({**config, "model": model}), encoding="utf-8")


# Every command that reads a model name from a file, as (name, argv builder, where the name comes from).
def _train_toml(tmp_path, run_dir, model, images_file):
    path = tmp_path / "settings.toml"
    path.write_text(f"model = {json.dumps(model)}\ndataset = {json.dumps(str(images_file))}\n", encoding="utf-8")
    return train.main, ["--config", str(path), "--run-dir", str(tmp_path / "new"), "--quiet"], path


def _train_json(tmp_path, run_dir, model, images_file):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"model": model, "dataset": str(images_file)}), encoding="utf-8")
    return train.main, ["--config", str(path), "--run-dir", str(tmp_path / "new"), "--quiet"], path


def _train_resume(tmp_path, run_dir, model, images_file):
    set_model(run_dir, model)
    return train.main, ["--resume", "--run-dir", str(run_dir), "--epochs", "2", "--quiet"], run_dir / "config.json"


def _evaluate(tmp_path, run_dir, model, images_file):
    set_model(run_dir, model)
    return evaluate.main, [str(run_dir), "--nll-samples", "2"], run_dir / "config.json"


def _export(tmp_path, run_dir, model, images_file):
    set_model(run_dir, model)
    return export.main, [str(run_dir), "--out", str(tmp_path / "exported")], run_dir / "config.json"


ENTRY_POINTS = {"train --config .toml": _train_toml, "train --config .json": _train_json,
                "train --resume": _train_resume, "evaluate": _evaluate, "export": _export}  # fmt: skip


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_module_named_by_a_file_is_refused_unimported_and_trust_code_allows_it(
    entry, run_dir, images_file, tmp_path, capsys, monkeypatch
):
    model, marker = plant_module(tmp_path, monkeypatch)
    command, argv, source = ENTRY_POINTS[entry](tmp_path, run_dir, model, images_file)
    before = sorted(path.relative_to(run_dir) for path in run_dir.rglob("*"))
    assert command(argv) == 2
    line = one_line(capsys)
    assert f"{source} names the model {model!r}" in line and "--trust-code" in line, line
    assert not marker.exists()
    assert not (tmp_path / "new").exists() and not (tmp_path / "exported").exists()
    assert sorted(path.relative_to(run_dir) for path in run_dir.rglob("*")) == before
    # The advice, followed: with --trust-code the module is imported (and its build then fails, by design).
    assert command([*argv, "--trust-code"]) == 2
    assert marker.read_text() == "imported"
    assert "built by the planted module" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["os:system", "os:abort", "subprocess:call", "builtins:exec", "a.b.c:d"])
def test_any_module_attribute_in_a_config_file_is_refused_before_anything_runs(model, tmp_path, capsys):
    # os:abort would end this very process if it were called.
    path = tmp_path / "settings.toml"
    path.write_text(f"model = {json.dumps(model)}\n", encoding="utf-8")
    assert train.main(["--config", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    assert "--trust-code" in one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_model_typed_on_the_command_line_needs_no_trust_flag(tmp_path, capsys, monkeypatch):
    model, marker = plant_module(tmp_path, monkeypatch)
    assert train.main(["--model", model, "--dataset", "mnist-sample", "--run-dir", str(tmp_path / "run")]) == 2
    assert marker.read_text() == "imported"
    assert "built by the planted module" in capsys.readouterr().err


def victim(tmp_path: pathlib.Path) -> pathlib.Path:
    """A file outside the run that a followed link would change."""
    path = tmp_path / "outside" / "victim.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text("precious", encoding="utf-8")
    return path


def test_a_link_planted_at_any_entry_of_a_run_is_refused_and_its_target_untouched(finished, tmp_path, capsys):
    """Every file and folder a finished run holds, replaced in turn by a link out of the run."""
    entries = sorted(path.relative_to(finished[0]) for path in finished[0].rglob("*"))
    assert len(entries) > 10 and pathlib.Path("history.json") in entries
    target = victim(tmp_path)
    for number, entry in enumerate(entries):
        copy = tmp_path / f"run-{number}"
        shutil.copytree(finished[0], copy)
        planted = copy / entry
        shutil.rmtree(planted) if planted.is_dir() else planted.unlink()
        planted.symlink_to(target.parent if (finished[0] / entry).is_dir() else target)
        for command, argv in [
            (train.main, ["--resume", "--run-dir", str(copy), "--epochs", "2", "--quiet"]),
            (evaluate.main, [str(copy), "--nll-samples", "2"]),
        ]:
            assert command(argv) == 2, entry
            line = one_line(capsys)
            assert "is a symbolic link, and aeloops never writes through one" in line, (entry, line)
        assert target.read_text() == "precious" and sorted(target.parent.iterdir()) == [target]


def test_the_advice_for_a_planted_link_followed_literally_lets_the_run_resume(run_dir, tmp_path, capsys):
    target = victim(tmp_path)
    (run_dir / "history.json").unlink()
    (run_dir / "history.json").symlink_to(target)
    assert train.main(["--resume", "--run-dir", str(run_dir), "--epochs", "2", "--quiet"]) == 2
    command = one_line(capsys).split("remove it (", 1)[1].split(") or use", 1)[0]
    subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True)
    assert train.main(["--resume", "--run-dir", str(run_dir), "--epochs", "2", "--quiet"]) == 0
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1, 2]
    assert not (run_dir / "history.json").is_symlink() and target.read_text() == "precious"


def test_a_directory_holding_only_a_lock_link_is_not_new_and_the_target_is_not_emptied(tmp_path, capsys):
    target = victim(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").symlink_to(target)
    assert train.main(["--dataset", "mnist-sample", "--run-dir", str(run_dir), "--quiet"]) == 2
    assert "already exists" in one_line(capsys)
    assert target.read_text() == "precious"
    with pytest.raises(ValueError, match="is a symbolic link"), RunDirectory(run_dir).lock():
        pass
    assert target.read_text() == "precious"


def test_export_refuses_an_out_that_is_a_link(run_dir, tmp_path, capsys):
    target = victim(tmp_path)
    out = tmp_path / "exported"
    out.symlink_to(target.parent / "not-yet")  # Dangling: exists() says no, yet a write would land outside.
    assert export.main([str(run_dir), "--out", str(out)]) == 2
    assert "is a symbolic link" in one_line(capsys)
    assert sorted(target.parent.iterdir()) == [target]


def test_json_writes_never_follow_a_link_at_the_target_or_a_partial_name(tmp_path):
    target = victim(tmp_path)
    (tmp_path / "history.json.partial").symlink_to(target)  # The fixed temporary name of earlier versions.
    write_json(tmp_path / "history.json", {"loss": [1.0]})
    assert json.loads((tmp_path / "history.json").read_text()) == {"loss": [1.0]}
    assert target.read_text() == "precious"
    (tmp_path / "best.json").symlink_to(target)
    with pytest.raises(ValueError, match="is a symbolic link"):
        write_json(tmp_path / "best.json", {"best": 1})
    assert target.read_text() == "precious"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["best.json", "history.json", "history.json.partial",
                                                                 "outside"]  # fmt: skip


def test_the_printed_tensorboard_command_pasted_into_a_shell_gets_the_run_path_whole(finished):
    run_dir, stdout = finished
    command = stdout.split("TensorBoard: ", 1)[1].split("  (then open", 1)[0]
    # A stand-in tensorboard that prints the arguments it received, one a line.
    shown = subprocess.run(
        ["bash", "-c", 'tensorboard() { printf "%s\\n" "$@"; }; ' + command], capture_output=True, text=True, check=True
    ).stdout
    assert shown.splitlines() == ["--logdir", str(run_dir / "tensorboard")]


@pytest.mark.parametrize("failure", ["full disk", "sigterm"])
def test_an_export_that_fails_or_is_stopped_ends_in_one_line_and_leaves_nothing(
    failure, run_dir, tmp_path, capsys, monkeypatch
):
    import signal

    import tensorflow as tf

    save = tf.saved_model.save

    def save_then_fail(obj, directory, **kwargs):
        save(obj, directory, **kwargs)  # A whole SavedModel in the temporary directory, then the failure.
        if failure == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", save_then_fail)
    out = tmp_path / "out" / "exported"
    code = export.main([str(run_dir), "--out", str(out)])
    line = one_line(capsys)
    if failure == "sigterm":
        assert code == 143 and line == f"aeloops.export: stopped; nothing was left at {out}."
    else:
        expected = f"aeloops.export: cannot write {out}: No space left on device; nothing was left there."
        assert code == 1 and line == expected
    assert list((tmp_path / "out").iterdir()) == []  # Neither the export nor its temporary directory.


def test_an_npz_whose_validation_member_fails_its_crc_is_one_line_in_train_and_evaluate(
    run_dir, images_file, tmp_path, capsys
):
    broken = tmp_path / "broken.npz"
    with np.load(images_file) as archive:
        np.savez(broken, x_train=archive["x_train"], x_test=archive["x_test"])  # x_test written last.
    content = bytearray(broken.read_bytes())
    directory = content.rfind(b"PK\x01\x02")  # The central directory follows the last member's data.
    content[directory - 500] ^= 0xFF  # One flipped byte inside x_test's pixels.
    broken.write_bytes(bytes(content))
    assert train.main(["--dataset", str(broken), "--run-dir", str(tmp_path / "new-run"), "--quiet"]) == 2
    assert "x_test" in one_line(capsys) and not (tmp_path / "new-run").exists()
    assert evaluate.main([str(run_dir), "--nll-samples", "2", "--data", str(broken)]) == 2
    assert "x_test" in one_line(capsys)


def test_a_resume_asking_for_fewer_epochs_keeps_config_json_repeating_the_whole_run(run_dir, capsys):
    assert train.main(["--resume", "--run-dir", str(run_dir), "--epochs", "2", "--quiet"]) == 0
    assert train.main(["--resume", "--run-dir", str(run_dir), "--epochs", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 2  # It trained 2: --config repeats that.
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1, 2]


# Names a shell would split, expand, glob, unquote or run: every advice must survive each.
HOSTILE_NAMES = ["my runs", "it's", 'say "hi"', "$HOME", "`touch pwned`", "$(touch pwned)", "a;b", "a&&b", "*", "-rf",
                 "tab\there", "é ü 漢字", "back\\slash", "new\nline"]  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_the_rm_advice_for_a_link_pasted_into_bash_removes_that_link_only(name, tmp_path):
    run_dir = tmp_path / "runs" / name / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    target = victim(tmp_path)
    (run_dir / "history.json").symlink_to(target)
    (tmp_path / "my").mkdir()  # What an unquoted 'my runs' would hit.
    with pytest.raises(ValueError, match="is a symbolic link") as raised:
        RunDirectory(run_dir).check_resumable()
    command = str(raised.value).split("remove it (", 1)[1].rsplit(") or use", 1)[0]
    subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True)
    assert not os.path.lexists(run_dir / "history.json")
    assert target.read_text() == "precious" and (tmp_path / "my").is_dir()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["my", "outside", "runs"]  # Nothing ran: no 'pwned'.


def plant_checkpoint_list(directory: pathlib.Path, outside: str) -> None:
    """Writes ``directory``'s checkpoint list as a received run's might: ``outside`` first, then its own checkpoints.

    Its timestamps are after ``last_preserved_timestamp``, so TensorFlow's manager takes every entry as its own
    and deletes the oldest when it prunes.
    """
    own = sorted((path.name[: -len(".index")] for path in directory.glob("ckpt-*.index")), key=lambda n: int(n[5:]))
    names = [outside, *own]
    lines = [f'model_checkpoint_path: "{own[-1]}"', *(f'all_model_checkpoint_paths: "{name}"' for name in names)]
    lines += [f"all_model_checkpoint_timestamps: {2e9 + number}" for number in range(len(names))]
    (directory / "checkpoint").write_text("\n".join([*lines, "last_preserved_timestamp: 1.0"]) + "\n")


def decoy_checkpoint(folder: pathlib.Path, name: str) -> dict[pathlib.Path, bytes]:
    """A stranger's files outside the run, named as a checkpoint ``name``; returns them with their bytes."""
    folder.mkdir()
    files = {folder / f"{name}.index": b"index of years of work", folder / f"{name}.data-00000-of-00001": b"\x00" * 64}
    for path, content in files.items():
        path.write_bytes(content)
    return files


CHECKPOINT_READERS = {
    "train --resume": lambda run, out: (train.main, ["--resume", "--run-dir", str(run), "--epochs", "3", "--quiet"]),
    "evaluate": lambda run, out: (evaluate.main, [str(run), "--nll-samples", "2"]),
    "export": lambda run, out: (export.main, [str(run), "--out", str(out)]),
    "evaluate --best": lambda run, out: (evaluate.main, [str(run), "--nll-samples", "2", "--best"]),
    "export --best": lambda run, out: (export.main, [str(run), "--out", str(out), "--best"]),
}


@pytest.mark.parametrize(("listed", "name"), [("absolute", "thesis"), ("relative", "thesis"), ("absolute", "ckpt-1")])
@pytest.mark.parametrize("which", ["checkpoints", "checkpoints/best"])
def test_a_checkpoint_list_naming_files_outside_the_run_is_refused_by_every_command(
    run_dir, tmp_path, capsys, monkeypatch, which, listed, name
):
    decoys = decoy_checkpoint(tmp_path / "elsewhere", name)
    outside = str(tmp_path / "elsewhere" / name)
    planted = run_dir / which
    plant_checkpoint_list(planted, outside if listed == "absolute" else os.path.relpath(outside, planted))
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    readers = [name for name in CHECKPOINT_READERS if name.endswith("--best") == which.endswith("best")]
    for reader in [*readers, "train --resume"] if which.endswith("best") else readers:
        command, argv = CHECKPOINT_READERS[reader](run_dir, tmp_path / "exported")
        assert command(argv) == 2, reader
        line = one_line(capsys)
        assert f"The checkpoint list {planted / 'checkpoint'} names " in line and f"elsewhere/{name}'" in line, line
        assert {path: path.read_bytes() for path in decoys} == decoys
        assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before, reader
        assert not (tmp_path / "exported").exists()
    # The advice, followed literally in a shell, lets the run go on from its own checkpoints (named as a user
    # in its parent folder would: relative, as TensorFlow then lists them).
    subprocess.run(["bash", "-c", line.rsplit(": ", 1)[1]], cwd=tmp_path, check=True)
    monkeypatch.chdir(run_dir.parent)
    for reader in ["train --resume", readers[-1]]:
        command, argv = CHECKPOINT_READERS[reader](pathlib.Path(run_dir.name), tmp_path / "exported")
        assert command(argv) == 0, (reader, capsys.readouterr().err)
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1, 2, 3]
    assert {path: path.read_bytes() for path in decoys} == decoys
    assert (planted / "checkpoint.untrusted").exists()
