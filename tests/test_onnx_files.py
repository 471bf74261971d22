"""ONNX export: a file per signature, run by ONNX Runtime as TensorFlow computes it."""

import numpy as np
import pytest

from aeloops import export as export_cli
from aeloops import train
from aeloops.evaluation.anomaly import anomaly_scores
from aeloops.evaluation.onnx_files import write_onnx
from aeloops.models import registry
from aeloops.training.trainer import Trainer

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")


def run_onnx(path, values):
    """Runs one ONNX file on ``values``; returns its outputs by name."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: values})))


# Dense, convolutional, variational (a sum over pixels in its score) and recurrent models.
@pytest.mark.parametrize("name", ["dense", "conv", "vae", "seq2seq"])
def test_each_signature_runs_in_onnx_runtime_as_tensorflow_computes_it(name, tmp_path):
    spec = registry.get(name)
    model = spec.build()
    trainer = Trainer(model, spec.objective(model), mode="graph")
    report = write_onnx(model, tmp_path / "model.onnx", trainer.objective)
    assert sorted(path.name for path in report.path.iterdir()) == [
        "anomaly_score.onnx", "decode.onnx", "encode.onnx", "reconstruct.onnx"
    ]  # fmt: skip
    images = np.random.default_rng(4).random((5, *model.example_shape), dtype=np.float32)
    codes = np.asarray(model.encode(images[:3]))
    expected = {
        "encode": (images, "code", np.asarray(model.encode(images))),
        "decode": (codes, "reconstruction", np.asarray(model.decode(codes))),
        "reconstruct": (images[:1], "reconstruction", np.asarray(model.reconstruct(images[:1]))),
        "anomaly_score": (images, "score", anomaly_scores(trainer, images)),
    }
    for signature, (inputs, key, value) in expected.items():
        served = run_onnx(report.path / f"{signature}.onnx", inputs)
        assert list(served) == [key], signature
        np.testing.assert_allclose(served[key], value, rtol=1e-5, atol=1e-5, err_msg=signature)


def test_the_export_command_writes_onnx_into_the_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    arguments = ["--dataset", "mnist-sample", "--epochs", "1", "--batch-size", "256", "--mode", "graph", "--quiet"]
    assert train.main([*arguments, "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    assert export_cli.main([str(run_dir), "--format", "onnx", "--best"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"Exported the best checkpoint (step 19) of {run_dir} to {run_dir}/model-best.onnx: ")
    images = np.random.default_rng(5).random((3, 28, 28, 1), dtype=np.float32)
    assert run_onnx(run_dir / "model-best.onnx" / "reconstruct.onnx", images)["reconstruction"].shape == (3, 28, 28, 1)
