"""TensorBoard summaries: event files read back, and a real TensorBoard server."""

import contextlib
import json
import re
import signal
import subprocess
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aeloops import train
from aeloops.data import load_sample, to_model_inputs
from aeloops.models import registry
from aeloops.objectives.objective import LossTerm, Objective
from aeloops.runs.datasets import spread_sample
from aeloops.tensorboard.summaries import SummaryWriter
from aeloops.tensorboard.term_norms import TermGradientNorms
from aeloops.training.callbacks import Callback
from aeloops.training.trainer import Trainer
from tests import warm_python
from tests.test_images import assert_named_rows

# 512 images at batch 64, 3 steps per call: 8 steps an epoch, calls end at
# steps 3, 6, 8, 11, 14, 16; with summaries every 4 steps, writes at 6, 8, 14, 16.
EPOCHS, STEP_WRITES = 2, 4


def tensors(logdir):
    """Returns {tag: [(step, value), ...]} of one run's TF2 summaries (stored as tensors)."""
    accumulator = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    accumulator.Reload()
    return {
        tag: [(event.step, tf.make_ndarray(event.tensor_proto)) for event in accumulator.Tensors(tag)]
        for tag in accumulator.Tags()["tensors"]
    }


def train_with_summaries(name, images, logdir, objective=None, **writer_options):
    keras.utils.set_random_seed(0)
    spec = registry.get(name)
    model = spec.build()
    objective = objective or spec.objective(model)
    inputs = to_model_inputs(images, model.example_shape)
    trainer = Trainer(model, objective, mode="graph", steps_per_loop=3)
    writer = SummaryWriter(
        trainer,
        logdir,
        every_steps=4,
        examples=inputs[:6],
        config={"model": name},
        hparams={"model": name},
        trial_id=f"{name}-trial",
        **writer_options,
    )
    history = trainer.fit(
        inputs[:512], epochs=EPOCHS, batch_size=64, validation_data=inputs[512:700], callbacks=[writer], verbose=0
    )
    return trainer, history


@pytest.mark.parametrize("name", ["dense", "conv", "twohead"])
def test_event_files_hold_every_term(tmp_path, small_images, name):
    trainer, history = train_with_summaries(name, small_images, tmp_path)
    train, validation = tensors(tmp_path / "train"), tensors(tmp_path / "validation")
    terms = [*trainer.objective.names, "loss"]
    for term in trainer.objective.names:
        assert [step for step, _ in train[f"gradient_norm/{term}"]] == [6, 8, 14, 16]
    assert not [tag for tag in train if tag.startswith("gradient_cosine/")]  # Only when asked for.
    for term in terms:
        assert [step for step, _ in train[term]] == [6, 8, 14, 16]
        assert [step for step, _ in train[f"epoch_{term}"]] == [1, 2]  # As the terminal counts epochs.
        assert [step for step, _ in validation[f"epoch_{term}"]] == [1, 2]
        np.testing.assert_allclose([value for _, value in validation[f"epoch_{term}"]], history[f"val_{term}"])
        np.testing.assert_allclose([value for _, value in train[f"epoch_{term}"]], history[term], rtol=1e-6)
        # The train run holds the validation metrics too, as the history names them: HParams reads only it.
        np.testing.assert_allclose([value for _, value in train[f"val_{term}"]], history[f"val_{term}"])
    for tag in ("gradient_norm", "learning_rate", "epoch_seconds", "samples_per_second", "validation_seconds"):
        assert len(train[tag]) in (STEP_WRITES, EPOCHS) and all(np.isfinite(v) for _, v in train[tag])
    np.testing.assert_allclose([value for _, value in train["validation_seconds"]], history["validation_seconds"])
    # Step scalars carry the values of the run, not placeholders: the rate the optimizer used, each epoch's too.
    rate = float(trainer.learning_rates()["learning_rate"])
    np.testing.assert_allclose([value for _, value in train["learning_rate"]], rate, rtol=1e-6)
    np.testing.assert_allclose(history["learning_rate"], rate, rtol=1e-6)
    for variable in trainer.model.trainable_variables:
        assert len(train[variable.path]) == EPOCHS
    assert "config" in train
    accumulator = EventAccumulator(str(tmp_path / "train"))
    accumulator.Reload()
    layer_paths = {variable.path.rsplit("/", 1)[0] for variable in trainer.model.trainable_variables}
    node_names = " ".join(node.name for node in accumulator.Graph().node)
    # The step's graph holds every layer, in scopes named as the layers are (TensorFlow may number them).
    for path in layer_paths:
        scope = "".join(rf"{re.escape(part)}(_\d+)*/" for part in path.split("/")[1:])
        assert re.search(scope, node_names), (path, node_names[:300])
    images = validation["reconstructions"]
    assert len(images) == EPOCHS
    rows = 1 + (2 if name == "twohead" else 1)
    # An image summary holds width, height and the PNG bytes: the grid enlarged 3x, each row under its name.
    width, height = int(images[0][1][0]), int(images[0][1][1])
    assert width == (6 * 30 + 2) * 3
    picture = tf.io.decode_png(images[0][1][2]).numpy()[..., 0]
    assert picture.shape == (height, width)
    assert_named_rows(picture, rows)
    assert len(validation["code"]) == EPOCHS


def test_scheduled_weights_and_layer_losses_are_logged(tmp_path, small_images):
    objective = Objective(
        [
            LossTerm("bce", "logits", "bce_logits"),
            LossTerm("sparsity", "code", "l1", target=None, weight=lambda step: tf.cast(step, tf.float32) * 1e-5),
        ]
    )
    trainer, _ = train_with_summaries("sparse", small_images, tmp_path, objective)
    train = tensors(tmp_path / "train")
    written = train["weight/sparsity"]
    assert [step for step, _ in written] == [6, 8, 14, 16]
    # Each value is the weight of the call's steps (weights 3e-5..5e-5 for the call ending at step 6, ...),
    # averaged with its term, so the logged loss is the weighted sum of the logged terms.
    calls = {6: (3, 5), 8: (6, 7), 14: (11, 13), 16: (14, 15)}  # 8 steps an epoch, 3 per call: 3 + 3 + 2.
    for (step, weight), (loss_step, loss), (_, bce), (_, sparsity) in zip(
        written, train["loss"], train["bce"], train["sparsity"]
    ):
        first, last = calls[step]
        assert step == loss_step and first * 1e-5 <= weight <= last * 1e-5
        np.testing.assert_allclose(loss, bce + weight * sparsity, rtol=1e-5)
    assert "weight/bce" not in train


def test_gradient_norms_per_term_add_up_for_a_single_term(small_images):
    keras.utils.set_random_seed(0)
    model = registry.get("dense").build()
    images = to_model_inputs(small_images[:64], (784,))
    trainer = Trainer(model, mode="graph")
    norms = TermGradientNorms(trainer)(images)
    with tf.GradientTape() as tape:
        loss = trainer.objective(model(images, training=False), {"input": images})["loss"]
    expected = tf.linalg.global_norm(tape.gradient(loss, model.trainable_variables))
    assert set(norms) == {"bce"}
    assert norms["bce"] == pytest.approx(float(expected), rel=1e-5)


def test_profile_window_is_written(tmp_path, small_images):
    keras.utils.set_random_seed(0)
    model = registry.get("dense").build()
    trainer = Trainer(model, mode="graph", steps_per_loop=2)
    writer = SummaryWriter(trainer, tmp_path, every_steps=100, profile_steps=(2, 6))
    trainer.fit(to_model_inputs(small_images[:512], (784,)), batch_size=64, callbacks=[writer], verbose=0)
    assert list((tmp_path / "train" / "plugins" / "profile").rglob("*.xplane.pb"))


@contextlib.contextmanager
def tensorboard_server(logdir):
    """Serves ``logdir`` with a real TensorBoard on a free loopback port; yields ``get(path, body=None, raw=False)``."""
    server = subprocess.Popen(
        warm_python.command(["-m", "tensorboard.main", "--logdir", str(logdir), "--port", "0", "--host", "127.0.0.1"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in server.stderr:  # TensorBoard announces its address once it serves.
            if "http://" in line:
                address = line.split("http://", 1)[1].split()[0].rstrip("/")
                break
        else:
            raise AssertionError("TensorBoard exited without serving")

        def get(path, body=None, raw=False):
            request = urllib.request.Request(f"http://{address}{path}", data=body)
            if body is not None:
                request.add_header("Content-Type", "application/json")
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.read() if raw else json.loads(response.read())

        yield get
    finally:
        server.terminate()
        server.wait(timeout=60)
    # It stopped on our signal, not by crashing, and left no process behind.
    assert server.returncode in (0, -signal.SIGTERM)


STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def session_groups(get):
    request = {"experimentName": "", "startIndex": 0, "sliceSize": 100, "allowedStatuses": STATUSES}
    return get("/data/plugin/hparams/session_groups", json.dumps(request).encode())["sessionGroups"]


def test_a_real_tensorboard_serves_a_run_from_python(tmp_path, mnist):
    """What the CLI writes, from Python with the writer's defaults: auto's mode, the Projector over labelled data."""
    keras.utils.set_random_seed(0)
    model = registry.get("twohead").build()
    images, labels = to_model_inputs(mnist.train_images[:700], model.example_shape), mnist.train_labels[:700]
    trainer = Trainer(model, registry.get("twohead").objective(model), mode="auto", steps_per_loop=3)
    writer = SummaryWriter(
        trainer, tmp_path / "run", every_steps=4, examples=images[512:518],
        histogram_examples=images[512:], labels=labels[512:], trial_id="twohead-trial",
    )  # fmt: skip
    history = trainer.fit(
        images[:512], epochs=EPOCHS, batch_size=64, validation_data=images[512:], callbacks=[writer], verbose=0
    )
    with tensorboard_server(tmp_path) as get:
        # Two runs per training run, Keras's: the HParams row lives in train, not in a third run above.
        assert sorted(get("/data/runs")) == ["run/train", "run/validation"]
        scalar_tags = get("/data/plugin/scalars/tags")
        assert {"head_1_bce", "head_2_squared_error", "loss", "gradient_norm"} <= set(scalar_tags["run/train"])
        assert {"epoch_loss", "epoch_head_1_bce"} <= set(scalar_tags["run/validation"])
        assert "reconstructions" in get("/data/plugin/images/tags")["run/validation"]
        assert "code" in get("/data/plugin/histograms/tags")["run/validation"]
        # The Graphs dashboard draws what this endpoint serves: the training step's op graph, which
        # must hold the model's layers and the optimizer's update (it was once exported empty).
        assert get("/data/plugin/graphs/info")["run/train"]["run_graph"]
        graph = tf.compat.v1.GraphDef()
        text_format.Parse(get("/data/plugin/graphs/graph?run=run/train&conceptual=false", raw=True), graph)
        node_names = " ".join(node.name for node in graph.node)
        assert len(graph.node) > 100
        assert "head_1" in node_names and "head_2" in node_names, node_names[:500]
        assert re.search(r"\badam(_\d+)?/", node_names), node_names[:500]  # The optimizer's update, in its scope.
        # The step reads model -> objective -> backward pass -> optimizer, with the library's bookkeeping in
        # one box beside them (besides the function's inputs and outputs).
        tops = {node.name.split("/")[0] for node in graph.node}
        boxes = {name for name in tops if not re.fullmatch(r"(Identity|NoOp)(_\d+)?|batch(_\d+)?", name)}
        model_scope = boxes - {"objective", "gradient_tape", "optimizer", "aeloops"}
        assert len(boxes) == 5 and len(model_scope) == 1 and "autoencoder" in model_scope.pop(), sorted(tops)
        experiment = get("/data/plugin/hparams/experiment", json.dumps({"experimentName": ""}).encode())
        assert {"model", "mode", "seed", "learning_rate", "weight/head_1_bce"} <= {
            info["name"] for info in experiment["hparamInfos"]
        }
        metrics = [info["name"] for info in experiment["metricInfos"]]
        assert {"group": "", "tag": "val_loss"} in metrics and {"group": "", "tag": "epoch_loss"} in metrics
        assert {"group": "", "tag": "val_head_2_squared_error"} in metrics
        [group] = session_groups(get)
        # The row's validation loss is the run's last, as the history has it.
        shown = {value["name"]["tag"]: value["value"] for value in group["metricValues"] if not value["name"]["group"]}
        assert shown["val_loss"] == pytest.approx(history["val_loss"][-1], rel=1e-6)
        assert group["name"] == "twohead-trial" and group["sessions"][0]["status"] == "STATUS_SUCCESS"
        # The mode that trained, not "auto"; the config text says the same.
        assert group["hparams"]["mode"] == trainer.mode and trainer.mode in ("graph", "xla")
        assert group["hparams"]["model"] == "MultiHeadAutoencoder"
        [(_, text)] = tensors(tmp_path / "run" / "train")["config"]
        assert json.loads(text.item().decode().strip("`\n"))["mode"] == trainer.mode
        # The Projector opens on the train run: the validation images' codes, labelled, with thumbnails.
        [run] = get("/data/plugin/projector/runs")
        [embedding] = get(f"/data/plugin/projector/info?run={run}")["embeddings"]
        name = embedding["tensorName"]
        shown = get(f"/data/plugin/projector/metadata?run={run}&name={name}", raw=True).decode().split()
        assert run == "run/train" and shown == [str(label) for label in labels[512:]]
        sprite = tf.io.decode_png(get(f"/data/plugin/projector/sprite_image?run={run}&name={name}", raw=True))
        assert sprite.shape == (14 * 28, 14 * 28, 1)  # 188 thumbnails in a 14 x 14 square.


RUN_NAMES = ("diverges", "sparse", "vae")


def test_hparams_compare_runs_of_different_models_with_their_outcomes(tmp_path, capsys):
    runs = tmp_path / "runs"
    common = ["--dataset", "mnist-sample", "--epochs", "1", "--quiet"]
    assert train.main([*common, "--model", "sparse", "--run-dir", str(runs / "sparse")]) == 0
    assert train.main([*common, "--model", "vae", "--set", "objective.kl.schedule=linear_warmup",
                       "--set", "objective.kl.schedule_steps=50", "--run-dir", str(runs / "vae")]) == 0  # fmt: skip
    assert train.main([*common, "--learning-rate", "1e9", "--run-dir", str(runs / "diverges")]) == 1
    capsys.readouterr()
    with tensorboard_server(runs) as get:
        # Two runs per training run, whether it finished or failed.
        parts = ("train", "validation")
        assert sorted(get("/data/runs")) == [f"{name}/tensorboard/{part}" for name in RUN_NAMES for part in parts]
        experiment = get("/data/plugin/hparams/experiment", json.dumps({"experimentName": ""}).encode())
        columns = {info["name"]: info for info in experiment["hparamInfos"]}
        # Every run's hyperparameters are columns, not only the first run's.
        assert {"weight/sparsity", "weight/kl", "weight/bce", "learning_rate", "mode", "batch_size"} <= set(columns)
        assert columns["learning_rate"]["type"] == "DATA_TYPE_FLOAT64"
        metrics = [info["name"] for info in experiment["metricInfos"]]
        for tag in ("val_loss", "val_bce", "val_sparsity", "val_kl"):
            assert {"group": "", "tag": tag} in metrics, tag
        groups = {group["name"]: group for group in session_groups(get)}
        assert set(groups) == {"sparse", "vae", "diverges"}
        status = {name: group["sessions"][0]["status"] for name, group in groups.items()}
        assert status == {"sparse": "STATUS_SUCCESS", "vae": "STATUS_SUCCESS", "diverges": "STATUS_FAILURE"}
        assert groups["vae"]["hparams"]["weight/kl"] == "linear_warmup(0 to 1 over 50 steps)"
        assert groups["sparse"]["hparams"]["learning_rate"] == pytest.approx(0.001)
        # What tells runs of one model apart: the images' shape and colours, the run's length, the validation.
        shown = groups["sparse"]["hparams"]
        assert (shown["image_shape"], shown["epochs"], shown["validation"], shown["stream"]) == (
            "28x28x1", 1, "the test split", False
        )  # fmt: skip
        assert shown["dataset"] == "mnist-sample"
        assert groups["diverges"]["hparams"]["learning_rate"] == pytest.approx(1e9)
        # HParams says the mode that ran: auto's choice, as config.json records it (not "auto").
        for name in ("sparse", "vae"):
            ran = json.loads((runs / name / "config.json").read_text())["mode"]
            assert ran in ("graph", "xla") and groups[name]["hparams"]["mode"] == ran
        # A momentum is shown only for a moving average (none here).
        assert "ema_momentum" not in columns
        # The Text dashboard's config is the run's as it ran too: the mode chosen, the default rate used.
        [(_, text)] = tensors(runs / "sparse" / "tensorboard" / "train")["config"]
        shown = json.loads(text.item().decode().strip("`\n"))
        assert shown["mode"] == groups["sparse"]["hparams"]["mode"] and shown["learning_rate"] == pytest.approx(1e-3)
        # Scalars, graphs, pictures and histograms of the same runs.
        scalar_tags = get("/data/plugin/scalars/tags")
        assert {"epoch_loss", "epoch_kl", "epoch_bce"} <= set(scalar_tags["vae/tensorboard/validation"])
        assert {"epoch_kl", "epoch_weight/kl", "epoch_gradient_norm"} <= set(scalar_tags["vae/tensorboard/train"])
        for model in ("sparse", "vae"):
            assert get("/data/plugin/graphs/info")[f"{model}/tensorboard/train"]["run_graph"]
        image_tags = get("/data/plugin/images/tags")
        assert {"reconstructions", "samples", "samples/latent_map", "samples/latent_traversal"} <= set(
            image_tags["vae/tensorboard/validation"]
        )
        assert "samples" not in image_tags["sparse/tensorboard/validation"]
        [(_, _, buckets)] = get("/data/plugin/histograms/histograms?run=sparse/tensorboard/validation&tag=code")
        assert sum(count for _, _, count in buckets) == 1000 * 32  # 1,000 validation images' 32-unit codes.
        # One histogram a weight, of every value it holds, at the last epoch.
        weights = get("/data/plugin/histograms/tags")["sparse/tensorboard/train"]
        url = "/data/plugin/histograms/histograms?run=sparse/tensorboard/train&tag="
        last = [get(url + tag)[-1] for tag in weights]
        sizes = [int(np.prod(variable.shape)) for variable in registry.get("sparse").build().trainable_weights]
        assert sorted(sum(count for *_, count in buckets) for *_, buckets in last) == sorted(sizes)
        # The Projector: 1,000 codes with their thumbnails and digit labels, for each run.
        # One Projector run per training run, its train/ run, labelled: the one the Projector opens on.
        run = "sparse/tensorboard/train"
        assert sorted(get("/data/plugin/projector/runs")) == [run, "vae/tensorboard/train"]
        [embedding] = get(f"/data/plugin/projector/info?run={run}")["embeddings"]
        name = embedding["tensorName"]
        assert embedding["tensorShape"] == [1000, 32] and embedding["sprite"]["singleImageDim"] == [28, 28]
        values = np.frombuffer(get(f"/data/plugin/projector/tensor?run={run}&name={name}", raw=True), np.float32)
        sample = load_sample()  # The Projector's 1,000: a seeded sample, each class in turn.
        chosen = spread_sample(sample.test_labels, len(sample.test_images), 1000, 0)
        codes = keras.saving.load_model(runs / "sparse" / "model.keras").encode(
            to_model_inputs(sample.test_images[chosen], (784,))
        )
        np.testing.assert_allclose(values.reshape(1000, 32), codes, rtol=1e-5, atol=1e-6)
        labels = get(f"/data/plugin/projector/metadata?run={run}&name={name}", raw=True).decode().split()
        assert labels == [str(label) for label in sample.test_labels[chosen]]
        sprite = get(f"/data/plugin/projector/sprite_image?run={run}&name={name}", raw=True)
        assert tf.io.decode_png(sprite).shape == (32 * 28, 32 * 28, 1)


def test_the_graph_of_an_xla_run_is_not_empty(tmp_path, small_images):
    """TensorFlow exports an XLA-compiled loop's graph empty; the training step's graph is written instead."""
    keras.utils.set_random_seed(0)
    model = registry.get("sparse").build()
    inputs = to_model_inputs(small_images[:256], (784,))
    trainer = Trainer(model, registry.get("sparse").objective(model), mode="xla", steps_per_loop=4)
    writer = SummaryWriter(trainer, tmp_path, examples=inputs[:8])
    trainer.fit(inputs, epochs=1, batch_size=64, verbose=0, callbacks=[writer])
    accumulator = EventAccumulator(str(tmp_path / "train"))
    accumulator.Reload()
    node_names = [node.name for node in accumulator.Graph().node]
    assert any("encoder" in name for name in node_names) and any("decoder" in name for name in node_names)
    assert trainer.trace_counts["train"] == 1  # Writing the graph traced no training loop.


def test_the_projector_can_be_written_every_few_epochs(tmp_path, small_images):
    keras.utils.set_random_seed(0)
    model = registry.get("sparse").build()
    inputs = to_model_inputs(small_images[:256], (784,))
    trainer = Trainer(model, registry.get("sparse").objective(model), mode="graph", steps_per_loop=4)
    writer = SummaryWriter(trainer, tmp_path, histogram_examples=inputs[:100], projector_every=1)
    seen = []

    class AfterEachEpoch(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "train")))
            seen.append(reader.get_tensor("codes/.ATTRIBUTES/VARIABLE_VALUE"))

    trainer.fit(inputs, epochs=2, batch_size=64, verbose=0, callbacks=[writer, AfterEachEpoch()])
    assert [codes.shape for codes in seen] == [(100, 32), (100, 32)]
    assert not np.array_equal(seen[0], seen[1])  # Each epoch's own codes.
    np.testing.assert_allclose(seen[1], model.encode(inputs[:100]).numpy(), rtol=1e-5, atol=1e-6)


def test_gradient_cosines_when_asked_hold_the_cosine_of_the_terms_gradients(tmp_path, small_images):
    trainer, _ = train_with_summaries("sparse", small_images, tmp_path, gradient_cosines=True)
    written = tensors(tmp_path / "train")["gradient_cosine/bce/sparsity"]
    assert [step for step, _ in written] == [6, 8, 14, 16]
    # The last write is at the run's last step: the weights now. Recompute it as the definition says.
    examples = to_model_inputs(small_images, trainer.model.example_shape)[:6]
    variables = trainer.model.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        terms = trainer.compute_terms({"input": tf.constant(examples)}, training=False)
        weighted = [term.weight_at(trainer.step) * terms[term.name] for term in trainer.objective.terms]
    flat = []
    for loss in weighted:
        gradients = tape.gradient(loss, variables)
        flat.append(np.concatenate([np.zeros(v.shape.num_elements()) if g is None else g.numpy().ravel()
                                    for g, v in zip(gradients, variables)]))  # fmt: skip
    expected = flat[0] @ flat[1] / np.linalg.norm(flat[0]) / np.linalg.norm(flat[1])
    assert expected != 0
    np.testing.assert_allclose(written[-1][1], expected, rtol=1e-4, atol=1e-6)


def test_a_run_from_python_gets_its_hparams_row_and_config_text_from_the_trainer(tmp_path, small_images):
    keras.utils.set_random_seed(0)
    spec = registry.get("sparse")
    model = spec.build()
    trainer = Trainer(model, spec.objective(model), mode="auto", steps_per_loop=4)
    inputs = to_model_inputs(small_images[:512], (784,))
    writer = SummaryWriter(trainer, tmp_path / "python", examples=inputs[:6])  # No config=, no hparams=.
    trainer.fit(inputs, epochs=1, batch_size=64, callbacks=[writer], verbose=0)
    [(_, text)] = tensors(tmp_path / "python" / "train")["config"]
    config = json.loads(text.item().decode().strip("`\n"))
    assert config["model"] == type(model).__name__ and config["optimizer"] == "Adam"
    assert config["mode"] == trainer.mode  # Written once auto had chosen: the mode that ran.
    assert config["weight/sparsity"] == pytest.approx(1e-4) and config["learning_rate"] == pytest.approx(0.001)
    with tensorboard_server(tmp_path) as get:
        [group] = session_groups(get)
        assert group["hparams"]["mode"] == trainer.mode  # What ran: auto's choice.
        assert group["hparams"]["weight/sparsity"] == pytest.approx(1e-4)
        assert group["sessions"][0]["status"] == "STATUS_SUCCESS"


def test_fid_every_writes_the_fid_an_epoch_s_checkpoint_measures_again(tmp_path):
    from aeloops.evaluation import samplers
    from aeloops.evaluation.classifier import classifier_extractor, dataset_classifier
    from aeloops.evaluation.sample_quality import sample_quality
    from aeloops.runs.sample_watch import COUNT

    run_dir = tmp_path / "vae"
    arguments = ["--model", "vae", "--dataset", "mnist-sample", "--epochs", "2", "--fid-every", "2", "--seed", "3"]
    assert train.main([*arguments, "--mode", "graph", "--quiet", "--run-dir", str(run_dir)]) == 0
    written = tensors(run_dir / "tensorboard" / "validation")
    assert [step for step, _ in written["samples/fid"]] == [2] and [step for step, _ in written["samples/kid"]] == [2]
    fid = float(written["samples/fid"][0][1])
    # Measured again from what the run saved at epoch 2, as the docstring promises: the same seeded draw.
    sample = load_sample()
    classifier = dataset_classifier(to_model_inputs(sample.train_images, (28, 28, 1)), sample.train_labels)
    model = keras.saving.load_model(run_dir / "model.keras")
    real = to_model_inputs(sample.test_images, (784,))[:COUNT]
    drawn = samplers.sample(model, len(real), sampler="prior", seed=3 + 1)
    expected = sample_quality(real, drawn.images, classifier_extractor(classifier), seed=3, metrics=("fid",))["fid"]
    assert 0 < fid == pytest.approx(expected, rel=1e-5)
