"""docs/ builds into a site, strictly: a broken link, page or API reference fails the suite."""

import shutil
import subprocess
import sys

from tests.conftest import REPO


def build(source, site):
    # Not --quiet: mkdocs then stops counting the warnings that --strict turns into failures.
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    return subprocess.run(command, cwd=source, capture_output=True, text=True)


def test_the_docs_build_strictly_with_the_api_reference_from_the_docstrings(tmp_path):
    result = build(REPO, tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("Trainer.gradients", "Trainer.apply_gradients", "Trainer.fit", "Checkpointer.restore"):
        assert f'id="aeloops.{"training.trainer" if name.startswith("Trainer") else "runs.checkpoints"}.{name}"' in api
    assert "Applies ``gradients``" in api or "Applies <code>gradients</code>" in api  # The docstring's own words.
    for page in ("library", "train-step", "cli", "own-data", "tensorboard", "guarantees", "scaling", "benchmarks"):
        assert (tmp_path / "site" / page / "index.html").exists(), page


def test_a_broken_link_fails_the_build(tmp_path):
    copy = tmp_path / "repo"  # What a build reads: the config, the pages and the package's sources.
    for folder in ("docs", "aeloops"):
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "mkdocs.yml", copy)
    page = copy / "docs" / "scaling.md"
    page.write_text(page.read_text() + "\nSee [the missing page](missing.md).\n")
    result = build(copy, tmp_path / "site")
    assert result.returncode != 0 and "missing.md" in result.stderr
