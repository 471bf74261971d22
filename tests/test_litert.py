"""LiteRT export: every registered model, run by LiteRT's own interpreter, computes what TensorFlow computes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from aeloops import export as export_cli
from aeloops import train
from aeloops.evaluation.anomaly import anomaly_scores
from aeloops.evaluation.litert import write_tflite
from aeloops.models import Autoencoder, DenseDecoder, Encoder, registry
from aeloops.training.trainer import Trainer

litert = pytest.importorskip("ai_edge_litert.interpreter")


def run_litert(path, signature, values, batch):
    """Calls a signature of the file in LiteRT's interpreter, ``batch`` examples a call (None: all at once)."""
    interpreter = litert.Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner(signature)
    (name,) = interpreter.get_signature_list()[signature]["inputs"]
    step = batch or len(values)
    parts = [runner(**{name: values[start : start + step]}) for start in range(0, len(values), step)]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def test_every_registered_model_runs_in_litert_as_tensorflow_computes_it(tmp_path):
    rng = np.random.default_rng(1)
    batches = {}
    for name in registry.names():
        spec = registry.get(name)
        model = spec.build()
        # Eager: the reference scores need no compiled predict loop (tracing one a model cost more than the rest).
        trainer = Trainer(model, spec.objective(model), mode="eager")
        report = write_tflite(model, tmp_path / f"{name}.tflite", trainer.objective)
        batches[name] = report.batch_size
        images = rng.random((5, *model.example_shape), dtype=np.float32)
        codes = np.asarray(model.encode(images[:3]))
        expected = {
            ("encode", "code"): (images, np.asarray(model.encode(images))),
            ("decode", "reconstruction"): (codes, np.asarray(model.decode(codes))),
            ("reconstruct", "reconstruction"): (images, np.asarray(model.reconstruct(images))),
            ("anomaly_score", "score"): (images, anomaly_scores(trainer, images)),
        }
        assert report.signatures == ("encode", "decode", "reconstruct", "anomaly_score"), name
        for (signature, key), (inputs, value) in expected.items():
            served = run_litert(report.path, signature, inputs, report.batch_size)[key]
            np.testing.assert_allclose(served, value, rtol=1e-5, atol=1e-5, err_msg=f"{name}/{signature}")
    # Dense models take any batch; a convolution after up-sampling, or an LSTM, one example a call.
    assert batches["dense"] is None and batches["vae"] is None and batches["convtranspose"] is None
    assert batches["conv"] == 1 and batches["seq2seq"] == 1


def test_quantized_files_are_smaller_and_their_error_is_measured(tmp_path):
    keras.utils.set_random_seed(0)
    model = registry.get("dense").build()
    reports = {quantize: write_tflite(model, tmp_path / f"{quantize}.tflite", quantize=quantize)
               for quantize in ("none", "float16", "int8")}  # fmt: skip
    assert reports["int8"].bytes < reports["float16"].bytes < 0.6 * reports["none"].bytes
    images = np.random.default_rng(2).random((16, 784), dtype=np.float32)
    exact = np.asarray(model.reconstruct(images))
    errors = {}
    for quantize, report in reports.items():
        served = run_litert(report.path, "reconstruct", images, None)["reconstruction"]
        errors[quantize] = float(np.max(np.abs(served - exact)))
    # The file's own report measured the same kind of error; each format's as docs/tools.md states it.
    assert errors["none"] < 1e-6 < errors["float16"] < errors["int8"] < 1e-2


def test_an_operation_litert_lacks_is_refused_naming_it_and_nothing_is_written(tmp_path):
    class SingularValues(Encoder):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.code = keras.layers.Dense(8)

        def call(self, inputs, training=None):
            code = self.code(inputs)
            return {"code": code + tf.linalg.svd(tf.reshape(code, [-1, 2, 4]), compute_uv=False)[:, :1]}

    model = Autoencoder(SingularValues(), DenseDecoder(units=(), output_units=784), input_shape=(784,))
    with pytest.raises(ValueError) as raised:
        write_tflite(model, tmp_path / "svd.tflite")
    assert str(raised.value) == (
        "LiteRT cannot hold this model (no built-in operation for TensorFlow's Svd); export it as a SavedModel "
        "(--format savedmodel)."
    )
    assert list(tmp_path.iterdir()) == []


def test_the_export_command_writes_a_litert_file_into_the_run_and_never_over_one(tmp_path, capsys):
    run_dir = tmp_path / "run"
    arguments = ["--dataset", "mnist-sample", "--epochs", "1", "--batch-size", "256", "--mode", "graph", "--quiet"]
    assert train.main([*arguments, "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    assert export_cli.main([str(run_dir), "--format", "tflite", "--quantize", "float16"]) == 0
    out, err = capsys.readouterr()
    path = run_dir / "model.float16.tflite"
    assert err == "" and out.startswith(f"Exported the newest checkpoint (step 19) of {run_dir} to {path} (float16")
    assert "inputs 28x28x1 floats in [0, 1], any batch size" in out
    images = np.random.default_rng(3).random((4, 28, 28, 1), dtype=np.float32)
    model = keras.saving.load_model(run_dir / "model.keras")
    served = run_litert(path, "reconstruct", images, None)["reconstruction"]
    np.testing.assert_allclose(served, np.asarray(model.reconstruct(images.reshape(4, 784))).reshape(4, 28, 28, 1),
                               atol=1e-3)  # fmt: skip
    before = path.read_bytes()
    assert export_cli.main([str(run_dir), "--format", "tflite", "--quantize", "float16"]) == 2
    assert capsys.readouterr().err == (
        f"aeloops.export: error: {path} already exists (an earlier export); name another with --out.\n"
    )
    assert path.read_bytes() == before
    assert export_cli.main([str(run_dir), "--quantize", "int8"]) == 2
    assert "--quantize applies to LiteRT files; add --format tflite." in capsys.readouterr().err
