"""A researcher's own images: folders, TFRecord shards and arrays of any size and colour, through the CLI.

MNIST written as a folder of PNGs and as TFRecord shards must train to the
very history its IDX files give; synthetic colour sets go through every
registered model; bad input ends in one line and writes nothing.
"""

import errno
import gzip
import json
import os
import pathlib
import shutil
import struct

import keras
import numpy as np
import pytest
import tensorflow as tf

from aeloops import evaluate, export, train
from aeloops.data import image_dataset, load_images
from aeloops.data.decoded import cache_name
from aeloops.data.images import convert, scan
from aeloops.data.locate import source_kind, tfrecord_files
from aeloops.data.stream import ImageStream
from aeloops.models import registry
from tests.conftest import SHARED_MNIST

TRAIN, TEST = 1024, 256


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


def example(image, label=None):
    features = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.encode_png(image).numpy()]))}
    if label is not None:
        features["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def write_shards(directory, images, labels, shards):
    directory.mkdir(parents=True)
    for number, part in enumerate(np.array_split(np.arange(len(images)), shards)):
        with tf.io.TFRecordWriter(str(directory / f"part-{number:05d}-of-{shards:05d}.tfrecord")) as writer:
            for index in part:
                writer.write(example(images[index][..., None], labels[index]))


def write_folder(directory, images):
    directory.mkdir(parents=True)
    for index, image in enumerate(images):
        tf.io.write_file(str(directory / f"{index:05d}.png"), tf.io.encode_png(image[..., None]))


@pytest.fixture(scope="module")
def mnist_three_ways(tmp_path_factory, mnist):
    """The same real MNIST images as IDX files, as folders of PNGs and as TFRecord shards."""
    root = tmp_path_factory.mktemp("mnist")
    train_images, test_images = mnist.train_images[:TRAIN], mnist.test_images[:TEST]
    (root / "idx").mkdir()
    for name, array in (
        ("train-images-idx3-ubyte.gz", train_images), ("train-labels-idx1-ubyte.gz", mnist.train_labels[:TRAIN]),
        ("t10k-images-idx3-ubyte.gz", test_images), ("t10k-labels-idx1-ubyte.gz", mnist.test_labels[:TEST]),
    ):  # fmt: skip
        write_idx(root / "idx" / name, array)
    write_folder(root / "png" / "train", train_images)
    write_folder(root / "png" / "test", test_images)
    write_shards(root / "shards" / "train", train_images, mnist.train_labels[:TRAIN], shards=4)
    write_shards(root / "shards" / "test", test_images, mnist.test_labels[:TEST], shards=2)
    return root


def history_of(run_dir):
    history = json.loads((run_dir / "history.json").read_text())
    return {name: values for name, values in history.items() if "second" not in name}  # Not the clock's readings.


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="needs ../shared/data/mnist")
def test_mnist_as_png_folders_and_tfrecord_shards_trains_to_the_history_of_its_idx_files(
    mnist_three_ways, tmp_path, capsys
):
    common = ["--model", "dense", "--epochs", "2", "--batch-size", "128", "--mode", "graph", "--quiet"]
    sources = {
        "idx": ["--dataset", "mnist", "--data-dir", str(mnist_three_ways / "idx")],
        "png": ["--dataset", str(mnist_three_ways / "png" / "train"),
                "--validation-data", str(mnist_three_ways / "png" / "test")],
        "tfrecord": ["--dataset", str(mnist_three_ways / "shards" / "train" / "*.tfrecord"),
                     "--validation-data", str(mnist_three_ways / "shards" / "test")],
    }  # fmt: skip
    histories = {}
    for name, arguments in sources.items():
        assert train.main([*common, *arguments, "--run-dir", str(tmp_path / name)]) == 0, capsys.readouterr().err
        histories[name] = history_of(tmp_path / name)
        assert json.loads((tmp_path / name / "config.json").read_text())["image_shape"] == [28, 28, 1]
    assert histories["idx"]["val_loss"][1] < histories["idx"]["val_loss"][0]
    for name in ("png", "tfrecord"):
        assert histories[name].keys() == histories["idx"].keys()
        for key, values in histories["idx"].items():
            np.testing.assert_allclose(histories[name][key], values, rtol=1e-6, err_msg=f"{name}: {key}")


def test_a_streamed_folder_trains_as_the_same_images_in_memory_and_resumes_exactly(mnist_three_ways, tmp_path, capsys):
    """--stream decodes the files each epoch in the order the in-memory run shuffles them: the same history."""
    common = ["--dataset", str(mnist_three_ways / "png" / "train"), "--validation-split", "0.25", "--model", "dense",
              "--batch-size", "128", "--mode", "graph", "--deterministic", "--quiet"]  # fmt: skip
    assert train.main([*common, "--epochs", "2", "--run-dir", str(tmp_path / "memory")]) == 0
    assert train.main([*common, "--epochs", "2", "--stream", "--run-dir", str(tmp_path / "stream")]) == 0
    capsys.readouterr()
    # The resumed run reads from a cache of the decoded images, written by its first part and reused by the rest.
    cache = ["--cache", str(tmp_path / "cache")]
    assert train.main([*common, "--epochs", "1", "--stream", *cache, "--run-dir", str(tmp_path / "resumed")]) == 0
    assert "Decoding 1,024 images of" in capsys.readouterr().out
    # config.json names the cache, outside the run: resuming writes there only when told again.
    resume = ["--resume", "--run-dir", str(tmp_path / "resumed"), "--epochs", "2", "--quiet"]
    before = {path: path.read_bytes() for path in (tmp_path / "cache").rglob("*") if path.is_file()}
    assert train.main(resume) == 2
    assert {path: path.read_bytes() for path in (tmp_path / "cache").rglob("*") if path.is_file()} == before
    advice = capsys.readouterr().err.strip().rsplit(": add ", 1)[1].split()
    assert advice == cache
    assert train.main([*resume, *advice]) == 0
    assert "Decoding" not in capsys.readouterr().out
    (cached,) = (tmp_path / "cache").glob("*.npy")
    assert np.load(cached).dtype == np.uint8 and np.load(cached).shape == (1024, 28, 28, 1)  # Every file, once.
    memory, stream, resumed = (history_of(tmp_path / name) for name in ("memory", "stream", "resumed"))
    assert stream.keys() == memory.keys() and len(stream["loss"]) == 2
    for key, values in memory.items():
        np.testing.assert_allclose(stream[key], values, rtol=1e-6, err_msg=key)
    # Bit for bit: the resumed epoch read, from the cache, the batches the uninterrupted run decoded.
    assert resumed == stream


@pytest.mark.parametrize("kind", ["png", "shards"])
def test_a_cache_of_decoded_images_gives_each_epoch_and_worker_the_batches_decoding_gives(
    mnist_three_ways, tmp_path, kind
):
    """Resized, colour-converted or as they are; shuffled or not; one worker's share; after skipped steps."""
    for options, dtype in [({}, np.uint8), ({"image_size": (20, 24)}, np.float32), ({"color_mode": "rgb"}, np.uint8)]:
        files = scan(str(mnist_three_ways / kind / "train"), **options)
        plain = ImageStream(files, 128, files.shape, seed=5, transform=lambda image: image**2)
        cached = ImageStream(files, 128, files.shape, seed=5, transform=lambda image: image**2, cache=tmp_path)
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
        cases = [(1, True, 3, None)]  # Resized and converted: one shuffled epoch; as they are, every case.
        if not options:
            cases += [(0, True, 0, None), (2, False, 0, None), (1, True, 2, context)]
        for epoch, shuffle, done, worker in cases:
            expected = [batch["input"].numpy() for batch in plain.worker_dataset(epoch, shuffle, done, worker)]
            found = [batch["input"].numpy() for batch in cached.worker_dataset(epoch, shuffle, done, worker)]
            assert len(found) == len(expected) > 0
            for got, want in zip(found, expected, strict=True):
                np.testing.assert_array_equal(got, want)
        assert cached._reader.dtype == dtype  # Values that uint8 would round are kept as float32.
    written = sorted(tmp_path.glob("*.npy"))
    assert len(written) == 3
    # A second stream of the same files reuses the cache; a changed file makes a new one.
    times = [path.stat().st_mtime_ns for path in written]
    files = scan(str(mnist_three_ways / kind / "train"))
    assert ImageStream(files, 128, files.shape, cache=tmp_path).decoded.path in map(str, written)
    assert [path.stat().st_mtime_ns for path in written] == times


def test_a_cache_is_keyed_by_the_files_and_a_corrupt_one_is_named(tmp_path, mnist):
    folder = tmp_path / "png"
    write_folder(folder, mnist.train_images[:64])
    first = ImageStream(scan(str(folder)), 16, (28, 28, 1), cache=tmp_path / "cache").decoded
    tf.io.write_file(str(folder / "00003.png"), tf.io.encode_png(mnist.train_images[100][..., None]))
    second = ImageStream(scan(str(folder)), 16, (28, 28, 1), cache=tmp_path / "cache").decoded
    assert second.path != first.path
    np.testing.assert_array_equal(np.load(second.path)[3, ..., 0], mnist.train_images[100])
    encoded = (folder / "00005.png").read_bytes()
    (folder / "00005.png").write_bytes(encoded[: len(encoded) // 2])  # Its header intact, its body cut.
    with pytest.raises(ValueError, match="00005.png cannot be decoded as an image"):
        _ = ImageStream(scan(str(folder)), 16, (28, 28, 1), cache=tmp_path / "cache").decoded
    assert len(list((tmp_path / "cache").iterdir())) == 4  # Two caches and their descriptions; no partial file.


def test_a_cache_whose_bytes_changed_is_decoded_again_and_one_that_cannot_be_written_is_one_line(
    tmp_path, mnist, capsys, monkeypatch
):
    """Pixel bytes changed, size and time kept: not trained on. A full disk: one line, exit 1, nothing left."""
    folder = tmp_path / "png"
    write_folder(folder, mnist.train_images[:64])
    logged = []
    first = ImageStream(scan(str(folder)), 16, (28, 28, 1), cache=tmp_path / "cache", log=logged.append).decoded
    cache = pathlib.Path(first.path)
    original, status = cache.read_bytes(), cache.stat()
    changed = bytearray(original)
    changed[-100:] = bytes(255 - value for value in changed[-100:])  # The last image's last pixels.
    cache.write_bytes(bytes(changed))
    os.utime(cache, ns=(status.st_atime_ns, status.st_mtime_ns))
    again = ImageStream(scan(str(folder)), 16, (28, 28, 1), cache=tmp_path / "cache", log=logged.append).decoded
    assert again.path == first.path and cache.read_bytes() == original
    assert logged[-1].startswith(f"{cache} does not match what was decoded into it (changed since, or written "
                                 "without a checksum); decoding 64 images of")  # fmt: skip
    # Left alone, it is reused without decoding.
    third = ImageStream(scan(str(folder)), 16, (28, 28, 1), cache=tmp_path / "cache", log=logged.append).decoded
    assert third.path == first.path and len(logged) == 2

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("aeloops.data.decoded._Hashing.write", full)
    run = ["--dataset", str(folder), "--stream", "--cache", str(tmp_path / "other"), "--batch-size", "16",
           "--epochs", "1", "--run-dir", str(tmp_path / "run"), "--quiet"]  # fmt: skip
    assert train.main(run) == 1
    error = capsys.readouterr().err
    other = tmp_path / "other"
    assert error == (f"aeloops.train: Cannot write the decoded images in --cache {other}: No space left on "
                     "device. Nothing of the run was changed; free space there, give another --cache DIR, or leave "
                     "--cache out to decode the images every epoch.\n")  # fmt: skip
    assert list((tmp_path / "other").iterdir()) == []  # No partial file left behind.


def test_streamed_shards_train_and_refuse_a_split_they_cannot_hold_out(mnist_three_ways, tmp_path, capsys):
    shards = str(mnist_three_ways / "shards" / "train")
    common = ["--dataset", shards, "--stream", "--batch-size", "128", "--mode", "graph", "--quiet"]
    assert train.main([*common, "--validation-split", "0.1", "--run-dir", str(tmp_path / "split")]) == 2
    assert "Give the validation images with --validation-data" in capsys.readouterr().err
    assert not (tmp_path / "split").exists()
    arguments = [*common, "--validation-data", str(mnist_three_ways / "shards" / "test"), "--epochs", "2"]
    assert train.main([*arguments, "--run-dir", str(tmp_path / "run")]) == 0, capsys.readouterr().err
    history = history_of(tmp_path / "run")
    assert history["val_loss"][1] < history["val_loss"][0]


@pytest.mark.parametrize("kind", ["shards", "png"])
def test_each_worker_streams_its_own_files_and_every_worker_runs_the_epoch_s_steps(mnist_three_ways, mnist, kind):
    files = scan(str(mnist_three_ways / kind / "train"))
    stream = ImageStream(files, batch_size=128, example_shape=(28, 28, 1), seed=3)
    # Which of the 4 shards (256 images each, in order) an image comes from; a folder's images are numbered.
    home = {mnist.train_images[index].tobytes(): index for index in range(TRAIN)}
    seen = []
    for worker in (0, 1):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        batches = [batch["input"].numpy() for batch in stream.worker_dataset(1, True, 2, context)]
        # Every worker runs the epoch's 8 steps (2 already done), one per-replica batch of 64 a step.
        assert len(batches) == stream.steps_per_epoch - 2 == 6 and {len(batch) for batch in batches} == {64}
        seen.append({home[(image[..., 0] * 255).round().astype(np.uint8).tobytes()] for batch in batches
                     for image in batch})  # fmt: skip
    assert not seen[0] & seen[1]  # No image is read by both workers.
    if kind == "shards":  # Split by file: each worker reads two whole shards of the four.
        shards = [{index // 256 for index in worker} for worker in seen]
        assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == {0, 1, 2, 3} and len(shards[0]) == 2
    # Three workers on four shards: one reads 512 images, two read 256, and each still runs the epoch's 5 steps of
    # 3 x 64 (the short ones start their shards again): an epoch that ended early on one would stall the others.
    wide = ImageStream(files, batch_size=192, example_shape=(28, 28, 1), seed=3)
    for worker in range(3):
        context = tf.distribute.InputContext(num_input_pipelines=3, input_pipeline_id=worker, num_replicas_in_sync=3)
        assert [len(batch["input"]) for batch in wide.worker_dataset(0, True, 0, context)] == [64] * 5
    too_few = tf.distribute.InputContext(num_input_pipelines=5, input_pipeline_id=0, num_replicas_in_sync=5)
    if kind == "shards":
        with pytest.raises(ValueError, match="4 TFRecord shards cannot be split by file across 5 workers"):
            stream.worker_dataset(0, True, 0, too_few)


def test_a_folder_of_class_subfolders_gives_labels_and_tfrecords_give_theirs(mnist_three_ways, tmp_path, mnist):
    classes = tmp_path / "classes"
    for index, (image, label) in enumerate(zip(mnist.train_images[:40], mnist.train_labels[:40])):
        (classes / f"digit-{label}").mkdir(parents=True, exist_ok=True)
        tf.io.write_file(str(classes / f"digit-{label}" / f"{index}.png"), tf.io.encode_png(image[..., None]))
    data = load_images(str(classes))
    assert data.class_names == tuple(f"digit-{label}" for label in sorted(set(mnist.train_labels[:40])))
    assert [data.class_names[label] for label in data.train_labels] == sorted(
        f"digit-{label}" for label in mnist.train_labels[:40]
    )
    shards = load_images(str(mnist_three_ways / "shards" / "train"), validation_split=0.25, seed=3)
    assert len(shards.train) == 768 and len(shards.validation) == 256
    held = np.sort(np.random.default_rng(3).permutation(TRAIN)[:256])  # The split is seeded: the same every time.
    np.testing.assert_array_equal(shards.validation_labels, mnist.train_labels[:TRAIN][held])
    np.testing.assert_array_equal(shards.validation[..., 0], mnist.train_images[:TRAIN][held] / np.float32(255))
    streamed = next(iter(image_dataset(str(mnist_three_ways / "shards" / "train"), labels=True).batch(5)))
    np.testing.assert_array_equal(streamed["label"], mnist.train_labels[:5])


def colour_set(count, side, seed=0):
    """Coloured blobs: each channel a Gaussian bump somewhere else, so a model must keep the colours apart."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:side, :side]
    centres = rng.uniform(0.2 * side, 0.8 * side, (count, 3, 2))
    widths = rng.uniform(0.1 * side, 0.25 * side, (count, 3))
    distance = (rows[None, None] - centres[..., 0, None, None]) ** 2 + (
        columns[None, None] - centres[..., 1, None, None]
    ) ** 2
    images = np.exp(-distance / (2 * widths[..., None, None] ** 2))
    return (np.moveaxis(images, 1, -1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def colour_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("colour")
    for side in (32, 64):
        images = colour_set(144, side)
        np.savez(root / f"colour{side}.npz", x_train=images[:128], x_test=images[128:])
    return root


def run(arguments, capsys):
    code = train.main([*arguments, "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


# Options a run chooses (--set model.<option>=...): wider convolutions at 64x64, checked to be rebuilt by export;
# the IWAE's bound on 5 samples, not 50, to keep the test short.
OPTIONS = {("conv", 64): {"encoder_filters": [32, 16, 8], "decoder_filters": [8, 16, 32]},
           ("iwae", 32): {"samples": 5}}  # fmt: skip
# The models with a Gaussian posterior, whose likelihood aeloops.evaluate estimates.
LIKELIHOOD_MODELS = {"vae", "iwae", "betatcvae", "convvae", "vampprior"}


# A model that flattens its input sees only a longer vector at 64x64, and one that reads it row by row a longer
# sequence of longer rows: they are tried at 32x32, and the convolutional models, whose layers see the image's
# rows and columns (their strides and paddings depend on the side), at both sizes, once per class: denoising is
# conv's class with wider layers and input noise.
SIZES = [
    (name, side)
    for name in registry.names()
    for side in ((32, 64) if registry.get(name).takes.split(";")[0] == "any images" and name != "denoising" else (32,))
]


@pytest.mark.parametrize(("model_name", "side"), SIZES)
def test_every_registered_model_trains_pictures_exports_and_evaluates_colour_images(
    model_name, side, colour_files, tmp_path, capsys
):
    run_dir, options = tmp_path / "run", OPTIONS.get((model_name, side), {})
    setting = [f"--set=model.{name}={json.dumps(value)}" for name, value in options.items()]
    # Eager: what is tested is the shapes through every model; graph and XLA compute the same (test_loop.py).
    run(["--model", model_name, "--dataset", str(colour_files / f"colour{side}.npz"), "--epochs", "1",
         "--batch-size", "64", "--mode", "eager", "--run-dir", str(run_dir), *setting], capsys)  # fmt: skip
    history = json.loads((run_dir / "history.json").read_text())
    assert np.isfinite(history["loss"]).all() and np.isfinite(history["val_loss"]).all()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["image_shape"] == [side, side, 3]
    # The model options the run used: the widths it chose; beta-TC-VAE's estimator sized to the 128 images.
    assert config["model_options"] == ({"dataset_size": 128} if model_name == "betatcvae" else options)
    picture = tf.io.decode_png((run_dir / "reconstructions.png").read_bytes()).numpy()
    cell = side + 2
    assert picture.shape == ((3 if model_name == "twohead" else 2) * cell + 2, 10 * cell + 2, 3)
    # The inputs' row is the validation images themselves, in colour.
    images = np.load(colour_files / f"colour{side}.npz")["x_test"]
    np.testing.assert_allclose(picture[2 : side + 2, 2 : side + 2].astype(int), images[0].astype(int), atol=1)
    model = keras.saving.load_model(run_dir / "model.keras")
    built = registry.get(model_name).build((side, side, 3), **config["model_options"])
    assert model.count_params() == built.count_params()
    if model_name == "betatcvae":  # Its minibatch estimator weighted for the run's training images.
        assert model.dataset_size == 128
    # Exported for the data's shape, with a dynamic batch: served, it reconstructs as the model does.
    assert export.main([str(run_dir), "--out", str(tmp_path / "exported")]) == 0, capsys.readouterr().err
    served = tf.saved_model.load(str(tmp_path / "exported")).signatures
    inputs = images[:3] / np.float32(255)
    reconstruction = served["reconstruct"](inputs=tf.constant(inputs))["reconstruction"].numpy()
    expected = model(inputs.reshape(-1, *model.example_shape), training=False)["reconstruction"]
    assert reconstruction.shape == (3, side, side, 3)
    np.testing.assert_allclose(reconstruction, np.reshape(expected, reconstruction.shape), atol=1e-5)
    code = served["encode"](inputs=tf.constant(inputs))["code"]
    decoded = served["decode"](code=code)["reconstruction"].numpy()
    assert decoded.shape == (3, side, side, 3)
    capsys.readouterr()
    code = evaluate.main([str(run_dir), "--nll-samples", "2", "--examples", "4", "--batch-size", "4"])
    if model_name not in LIKELIHOOD_MODELS:  # A model without a posterior is told so, in one line.
        assert code == 2 and "needs an encoder of a Gaussian posterior" in one_error_line(capsys, "aeloops.evaluate")
        return
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 4 and np.isfinite(result["nll"]), result
    if model_name == "convvae":
        # The likelihood of the 8-bit values (Gaussian pixels, dequantized) in bits per dimension, as colour-image
        # papers report it (one epoch on blobs: above a uniform guess's 8).
        assert result["bits_per_dim"] == pytest.approx(result["nll"] / (side * side * 3 * np.log(2)))
        assert 8 < result["bits_per_dim"] < 32, result
        samples = tf.io.decode_png((run_dir / "samples.png").read_bytes()).numpy()
        assert samples.shape == (4 * cell + 2, 10 * cell + 2, 3)


def test_resize_and_colour_conversion_come_from_flags_and_are_recorded(colour_files, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run(["--model", "dense", "--dataset", str(colour_files / "colour64.npz"), "--image-size", "16", "24",
         "--color-mode", "grayscale", "--interpolation", "area", "--epochs", "1", "--batch-size", "64",
         "--run-dir", str(run_dir)], capsys)  # fmt: skip
    config = json.loads((run_dir / "config.json").read_text())
    assert config["image_shape"] == [16, 24, 1] and config["image_size"] == [16, 24]
    assert keras.saving.load_model(run_dir / "model.keras").example_shape == (16 * 24,)
    picture = tf.io.decode_png((run_dir / "reconstructions.png").read_bytes()).numpy()
    assert picture.shape == (2 * 18 + 2, 10 * 26 + 2, 1)


def one_error_line(capsys, program="aeloops.train"):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: "), captured.err
    return lines[0]


def bad_folder(tmp_path, kind):
    folder = tmp_path / "images"
    folder.mkdir()
    good = colour_set(4, 16)
    for index, image in enumerate(good):
        tf.io.write_file(str(folder / f"{index}.png"), tf.io.encode_png(image))
    if kind == "corrupt header":
        (folder / "9.png").write_bytes(b"not an image at all")
    elif kind == "corrupt body":
        encoded = tf.io.encode_png(good[0]).numpy()
        (folder / "9.png").write_bytes(encoded[: len(encoded) // 2])
    elif kind == "mixed sizes":
        tf.io.write_file(str(folder / "9.png"), tf.io.encode_png(colour_set(1, 20)[0]))
    elif kind == "empty":
        for path in folder.iterdir():
            path.unlink()
    return folder


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("empty", "holds no images (PNG, JPG, JPEG, BMP, GIF files"),
        ("corrupt header", "9.png is not a readable image"),
        ("corrupt body", "9.png cannot be decoded as an image; remove or replace it"),
        ("mixed sizes", "holds images of different sizes"),
    ],
)
def test_a_bad_folder_is_refused_in_one_line_naming_the_file_and_nothing_is_written(kind, message, tmp_path, capsys):
    folder = bad_folder(tmp_path, kind)
    assert train.main(["--dataset", str(folder), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert message in line, line
    assert not (tmp_path / "run").exists()
    if kind == "mixed sizes":  # The advice, followed: --image-size resizes them all.
        assert "--image-size HEIGHT WIDTH" in line
        run(["--dataset", str(folder), "--image-size", "16", "16", "--epochs", "1", "--batch-size", "4",
             "--no-validation", "--run-dir", str(tmp_path / "run")], capsys)  # fmt: skip


def test_bad_tfrecords_and_paths_are_refused_in_one_line(tmp_path, capsys):
    arguments = ["--run-dir", str(tmp_path / "run"), "--quiet"]
    with tf.io.TFRecordWriter(str(tmp_path / "wrong.tfrecord")) as writer:
        feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))
        writer.write(tf.train.Example(features=tf.train.Features(feature={"png": feature})).SerializeToString())
    for dataset, message in [
        (str(tmp_path / "wrong.tfrecord"), "its records hold no 'image' feature of encoded image bytes"),
        (str(tmp_path / "nothing-*.tfrecord"), "matches no file"),
        (str(tmp_path / "missing"), "no such file or folder"),
    ]:
        assert train.main(["--dataset", dataset, *arguments]) == 2
        assert message in one_error_line(capsys)
        assert not (tmp_path / "run").exists()


def test_an_option_the_model_lacks_is_refused_naming_those_it_has_and_nothing_is_written(tmp_path, capsys):
    arguments = ["--model", "conv", "--dataset", "mnist-sample", "--set", "model.filters=[32,16,8]"]
    assert train.main([*arguments, "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert "Model conv has no option 'filters'; its options: encoder_filters, decoder_filters," in line, line
    assert not (tmp_path / "run").exists()
    arguments[-1] = "model.encoder_filters=[16, 0, 8]"  # A value the model refuses: its own message, named.
    assert train.main([*arguments, "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("aeloops.train: error: Model conv with encoder_filters=[16, 0, 8]: "), line
    assert not (tmp_path / "run").exists()


def test_colour_images_into_a_model_of_your_own_built_for_grey_are_refused(colour_files, tmp_path, capsys):
    # A model class of one's own is built with its defaults: the seed's 28x28 grey conv autoencoder.
    arguments = ["--model", "aeloops.models.conv:ConvAutoencoder", "--dataset", str(colour_files / "colour32.npz")]
    assert train.main([*arguments, "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert "(32, 32, 3)" in line and "(28, 28, 1)" in line, line
    assert not (tmp_path / "run").exists()


def test_a_cache_is_for_a_streamed_run_and_the_refusal_says_so(colour_files, mnist_three_ways, tmp_path, capsys):
    common = ["--cache", str(tmp_path / "cache"), "--run-dir", str(tmp_path / "run"), "--quiet"]
    assert train.main(["--dataset", str(colour_files / "colour32.npz"), *common]) == 2
    assert "--cache reads a folder of images or TFRecord shards from disk" in one_error_line(capsys)
    folder = str(mnist_three_ways / "png" / "test")
    assert train.main(["--dataset", folder, *common]) == 2
    assert "drop --cache, or add --stream to train from disk" in one_error_line(capsys)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
    # The advice, followed: with --stream the run trains from the cache.
    run(["--dataset", folder, "--stream", "--epochs", "1", "--batch-size", "64", "--no-validation", *common], capsys)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1


def test_a_folder_of_shards_is_found_among_other_files_as_tensorflow_datasets_and_the_docs_lay_them_out(
    mnist_three_ways, tmp_path
):
    # TensorFlow Datasets' layout (its dataset_info.json beside the shards), and the docs' (test/ beside them).
    folder = tmp_path / "mnist" / "3.0.1"
    shutil.copytree(mnist_three_ways / "shards" / "train", folder)
    (folder / "dataset_info.json").write_text("{}")
    (folder / "features.json").write_text("{}")
    shutil.copytree(mnist_three_ways / "shards" / "test", folder / "test")
    assert source_kind(str(folder)) == "tfrecord"
    assert tfrecord_files(str(folder)) == sorted(str(path) for path in folder.glob("*.tfrecord"))
    found = load_images(str(folder))
    reference = load_images(str(mnist_three_ways / "shards" / "train"))
    np.testing.assert_array_equal(found.train, reference.train)


def test_class_folders_in_sorted_order_show_every_class_by_name_in_the_pictures_and_projector(tmp_path, mnist, capsys):
    # Three classes, each a folder of one digit: sorted, the first 12 images are all "cat".
    folders = tmp_path / "animals"
    for name, digit in (("cat", 0), ("dog", 1), ("frog", 7)):
        images = mnist.train_images[mnist.train_labels == digit][:12]
        (folders / name).mkdir(parents=True)
        for index, image in enumerate(images):
            tf.io.write_file(str(folders / name / f"{index:03d}.png"), tf.io.encode_png(image[..., None]))
    run_dir = tmp_path / "run"
    assert train.main(["--dataset", str(folders), "--validation-data", str(folders), "--epochs", "1", "--batch-size",
                       "12", "--mode", "graph", "--quiet", "--run-dir", str(run_dir)]) == 0  # fmt: skip
    capsys.readouterr()
    [metadata] = run_dir.glob("tensorboard/**/metadata.tsv")
    rows = metadata.read_text().splitlines()
    # Each class in turn (the grid shows the first ten of these), all 36 images once, by their folders' names.
    assert rows[:10] == ["cat", "dog", "frog"] * 3 + ["cat"]
    assert sorted(rows) == ["cat"] * 12 + ["dog"] * 12 + ["frog"] * 12


@pytest.mark.parametrize("aspect_ratio", ["stretch", "crop", "pad"])
def test_another_aspect_ratio_is_stretched_cropped_or_padded_as_keras_loaders_do(tmp_path, aspect_ratio):
    """20x40 pictures to 20x20: squeezed, their centre cut out, or shrunk into black bands, each as Keras does it."""
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 256, size=(3, 20, 40, 1), dtype=np.uint8)
    folder = tmp_path / "wide"
    folder.mkdir()
    for index, picture in enumerate(pictures):
        tf.io.write_file(str(folder / f"{index}.png"), tf.io.encode_png(picture))
    files = scan(str(folder), (20, 20), aspect_ratio=aspect_ratio)
    ours = np.stack([image.numpy() for image in image_dataset(files)])
    keras_options = {"crop": {"crop_to_aspect_ratio": True}, "pad": {"pad_to_aspect_ratio": True}}
    theirs = keras.utils.image_dataset_from_directory(
        folder, labels=None, color_mode="grayscale", image_size=(20, 20), shuffle=False,
        **keras_options.get(aspect_ratio, {}),
    )  # fmt: skip
    theirs = np.concatenate([batch.numpy() for batch in theirs]) / 255.0
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    if aspect_ratio == "crop":  # The centre: columns 10 to 29, at their own size.
        np.testing.assert_allclose(ours, pictures[:, :, 10:30] / 255.0, atol=1e-6)
    if aspect_ratio == "pad":  # Black bands above and below the whole picture shrunk to 10x20.
        assert np.all(ours[:, :5] == 0) and np.all(ours[:, 15:] == 0) and ours[:, 5:15].max() > 0.5
    # The same from memory: an array resized alike, and the cache of a stream named apart.
    np.testing.assert_allclose(convert(pictures, (20, 20), aspect_ratio=aspect_ratio), ours, atol=1e-6)
    assert (cache_name(files) == cache_name(scan(str(folder), (20, 20)))) == (aspect_ratio == "stretch")


def test_an_aspect_ratio_without_an_image_size_is_refused(tmp_path, capsys):
    from aeloops import train

    assert train.main(["--dataset", "mnist-sample", "--aspect-ratio", "crop", "--run-dir", str(tmp_path / "r")]) == 2
    assert "aspect_ratio 'crop' says how --image-size meets another aspect ratio; give --image-size HEIGHT WIDTH " \
           "too." in capsys.readouterr().err  # fmt: skip
