"""SavedModel exports, loaded and served by TensorFlow alone, in a process that cannot import aeloops."""

import json
import os
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf

from aeloops import export as export_cli
from aeloops import train
from aeloops.evaluation.anomaly import anomaly_scores
from aeloops.export import export
from aeloops.models import registry
from aeloops.training.trainer import Trainer
from tests import warm_python

# Run in another process, where aeloops is made unimportable: only TensorFlow can read the exports.
SERVE = """
import json, sys
import numpy as np
sys.modules["aeloops"] = None
import tensorflow as tf
requests = json.loads(sys.argv[1])
results = {}
for name, request in requests.items():
    served = tf.saved_model.load(request["path"])
    inputs = np.load(request["inputs"])
    for signature, arguments in request["calls"].items():
        function = served.signatures[signature]
        outputs = function(**{key: tf.constant(inputs[value]) for key, value in arguments.items()})
        assert set(outputs) == set(function.structured_outputs), signature
        for key, value in outputs.items():
            results[f"{name}/{signature}/{key}"] = value.numpy()
np.savez(sys.argv[2], **results)
"""


def serve(requests, tmp_path):
    """Calls each export's signatures in a process without aeloops; returns every output by name."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = tmp_path / "served.npz"
    command = warm_python.command(["-c", SERVE, json.dumps(requests), str(out)])
    result = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    with np.load(out) as served:
        return dict(served)


def test_every_registered_model_is_served_by_tensorflow_alone_as_it_computes(tmp_path):
    rng = np.random.default_rng(0)
    requests, expected = {}, {}
    for name in registry.names():
        spec = registry.get(name)
        model = spec.build()
        trainer = Trainer(model, spec.objective(model), mode="graph")
        # Two batch sizes through one signature: the batch dimension is dynamic.
        images = rng.random((5, *model.example_shape), dtype=np.float32)
        codes = np.asarray(model.encode(images[:3]))
        inputs = {"images": images, "one": images[:1], "codes": codes, "count": np.int32(4), "seed": np.int32(7)}
        np.savez(tmp_path / f"{name}.npz", **inputs)
        path = export(model, tmp_path / "exports" / name, trainer.objective)
        calls = {
            "encode": {"inputs": "images"},
            "decode": {"code": "codes"},
            "reconstruct": {"inputs": "one"},
            "anomaly_score": {"inputs": "images"},
        }
        expected[f"{name}/encode/code"] = codes_of = np.asarray(model.encode(images))
        expected[f"{name}/decode/reconstruction"] = np.asarray(model.decode(codes))
        expected[f"{name}/reconstruct/reconstruction"] = np.asarray(model.reconstruct(images[:1]))
        expected[f"{name}/anomaly_score/score"] = anomaly_scores(trainer, images)
        if name == "vae":
            calls["sample"] = {"count": "count", "seed": "seed"}
            prior = tf.random.stateless_normal((4, codes_of.shape[1]), seed=[7, 0])
            expected[f"{name}/sample/reconstruction"] = np.asarray(model.decode(prior))
        requests[name] = {"path": str(path), "inputs": str(tmp_path / f"{name}.npz"), "calls": calls}
    served = serve(requests, tmp_path)
    assert set(served) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(served[key], value, rtol=1e-5, atol=1e-5, err_msg=key)


def test_export_refuses_an_existing_directory_and_leaves_nothing_behind(tmp_path):
    model = registry.get("dense").build()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="already exists; export to a new directory"):
        export(model, tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "keep me"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["taken"]


def test_export_command_refuses_what_it_cannot_export_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "untrained").mkdir()
    (tmp_path / "untrained" / "config.json").write_text("{}")
    cases = [
        ([str(tmp_path / "empty"), "--out", str(tmp_path / "out")], "holds no config.json"),
        ([str(tmp_path / "untrained"), "--out", str(tmp_path / "out")], "has no checkpoint to export"),
        ([str(tmp_path / "untrained"), "--best", "--out", str(tmp_path / "out")], "drop --best"),
        ([str(tmp_path / "untrained"), "--out", str(tmp_path / "empty")], "already exists"),
    ]
    for arguments, message in cases:
        assert export_cli.main(arguments) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("aeloops.export: error: ") and message in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_the_export_of_a_runs_best_checkpoint_serves_its_averaged_weights(tmp_path, mnist, capsys):
    images = tmp_path / "images.npz"
    np.savez(images, x_train=mnist.train_images[:512], x_test=mnist.test_images[:128])
    run_dir = tmp_path / "run"
    # No later epoch improves on the first by 1,000: the best checkpoint is epoch 1's, not the newest.
    arguments = ["--dataset", str(images), "--epochs", "3", "--batch-size", "64", "--use-ema", "--restore-best",
                 "--min-delta", "1000"]  # fmt: skip
    assert train.main([*arguments, "--mode", "graph", "--quiet", "--run-dir", str(run_dir)]) == 0
    assert export_cli.main([str(run_dir), "--best", "--out", str(tmp_path / "best")]) == 0
    best = json.loads((run_dir / "best.json").read_text())
    assert best["best_epoch"] == 1 and best["best_step"] == 8
    assert f"Exported the best checkpoint (step {best['best_step']}) of {run_dir}" in capsys.readouterr().out
    # model.keras is the best checkpoint's moving average; so is what is served.
    model = keras.saving.load_model(run_dir / "model.keras")
    # Served as the run's images are shaped, (28, 28, 1), though the dense model reads 784 values.
    inputs = mnist.test_images[:7, ..., None].astype(np.float32) / 255
    np.savez(tmp_path / "inputs.npz", images=inputs)
    assert export_cli.main([str(run_dir), "--out", str(tmp_path / "newest")]) == 0  # Another model: 16 steps more.
    call = {"inputs": str(tmp_path / "inputs.npz"), "calls": {"reconstruct": {"inputs": "images"}}}
    served = serve({name: {"path": str(tmp_path / name), **call} for name in ("best", "newest")}, tmp_path)
    expected = model.reconstruct(inputs.reshape(7, 784)).numpy().reshape(inputs.shape)
    from_best, from_newest = (served[f"{name}/reconstruct/reconstruction"] for name in ("best", "newest"))
    np.testing.assert_allclose(from_best, expected, atol=1e-5)
    assert np.abs(from_newest - from_best).max() > 1e-3
