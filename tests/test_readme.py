"""The README's examples run."""

import os
import re
import subprocess
import sys

from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def example(name):
    match = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", README, re.S)
    assert match, f"README has no example {name!r}"
    return match.group(1)


def test_custom_model_example_trains_from_python_and_from_the_cli(tmp_path):
    code = example("custom-model")
    (tmp_path / "my_models.py").write_text(code)
    environment = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    # Importing the module runs the example's training and its assertion.
    subprocess.run([sys.executable, "-c", "import my_models"], cwd=tmp_path, env=environment, check=True)
    result = subprocess.run(
        [sys.executable, "-m", "aeloops.train", "--model", "my_models:build", "--dataset", "mnist-sample",
         "--epochs", "2", "--run-dir", str(tmp_path / "run"), "--quiet"],
        cwd=tmp_path, env=environment, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "model.keras").exists()
