"""Hostile inputs, by class: each is one clear line (exit 2 for the user's input), never a traceback.

Received run directories (planted checkpoint lists, links, code) are
``test_trust.py``'s; damaged checkpoints and kills ``test_reliability.py``'s
and ``test_resume_safety.py``'s; divergence ``test_recovery.py``'s.
"""

import json
import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

from aeloops import train


def one_line(capsys):
    """Returns the one line a refused command wrote to stderr (and that stdout holds no traceback either)."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.out
    return lines[0]


def png_header(width, height):
    """A PNG that declares ``width`` x ``height`` grey pixels and holds almost none of them."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


def write_pngs(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        tf.io.write_file(str(folder / f"{index:03d}.png"), tf.io.encode_png(image[..., None]))


RUN = ("--epochs", "1", "--batch-size", "16", "--mode", "graph", "--no-validation", "--quiet")


# --- Data ---------------------------------------------------------------------------------------


def test_a_decompression_bomb_in_a_folder_is_one_line(tmp_path, mnist, capsys):
    write_pngs(tmp_path / "images", mnist.train_images[:20])
    (tmp_path / "images" / "huge.png").write_bytes(png_header(60_000, 60_000))
    assert train.main(["--dataset", str(tmp_path / "images"), *RUN, "--run-dir", str(tmp_path / "run")]) == 2
    line = one_line(capsys)
    assert line == (f"aeloops.train: error: {tmp_path / 'images' / 'huge.png'} has 3,600,000,000 pixels, over the "
                    "178,956,970 Pillow decodes safely (a decompression bomb, or a huge image); resize it or remove "
                    "it (aeloops skips no image silently).")  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_an_npy_whose_header_declares_more_than_it_holds_is_one_line(tmp_path, capsys):
    path = tmp_path / "images.npy"
    with open(path, "wb") as stream:
        np.lib.format.write_array_header_1_0(stream, {"descr": "|u1", "fortran_order": False, "shape": (10**12, 784)})
        stream.write(bytes(1000))
    assert train.main(["--dataset", str(path), *RUN, "--run-dir", str(tmp_path / "run")]) == 2
    assert one_line(capsys) == (
        f"aeloops.train: error: Cannot read {path}: its header declares uint8 images of shape (1000000000000, 784) "
        "(784,000,000,000,000 bytes), but the file holds 1,000 bytes after it; it is truncated or damaged."
    )


def test_a_link_to_a_folder_inside_an_image_folder_is_followed_once(tmp_path, mnist, capsys):
    write_pngs(tmp_path / "images" / "own", mnist.train_images[:40])
    write_pngs(tmp_path / "elsewhere", mnist.train_images[40:60])
    os.symlink(tmp_path / "elsewhere", tmp_path / "images" / "linked")
    os.symlink(tmp_path / "images", tmp_path / "images" / "own" / "loop")  # A cycle: read once.
    assert train.main(["--dataset", str(tmp_path / "images"), *RUN, "--run-dir", str(tmp_path / "run")]) == 0
    output = capsys.readouterr().out
    # 60 images: 40 of its own and the linked folder's 20; the loop adds none.
    assert "Each epoch trains 3 batches of 16: 12 of the 60 training images" in output, output


# --- TF_CONFIG ----------------------------------------------------------------------------------


def free_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ([{"type": "worker", "index": 0}], 'TF_CONFIG\'s "task" must be an object naming this process\'s role'),
        ({"type": "worker", "index": "zero"}, "TF_CONFIG's task index must be a number from 0 to 1 (this process's "
                                              'place among the 2 "worker" addresses), got \'zero\'.'),
        ({"type": "worker", "index": 2}, "TF_CONFIG's task index must be a number from 0 to 1"),
        ({"type": "evaluator", "index": 0}, "TF_CONFIG's task type 'evaluator' is not a role of its cluster (worker)."),
    ],
)
def test_a_malformed_tf_config_is_one_line(tmp_path, capsys, monkeypatch, task, message):
    cluster = {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    arguments = ["--dataset", "mnist-sample", "--strategy", "multiworker", *RUN, "--run-dir", str(tmp_path / "run")]
    assert train.main(arguments) == 2
    assert message in one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_tf_config_port_another_process_holds_is_one_line(tmp_path, capsys, monkeypatch):
    import socket

    with socket.socket() as holder:
        holder.bind(("", 0))
        holder.listen()
        port = holder.getsockname()[1]
        cluster = {"worker": [f"localhost:{port}"]}
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
        arguments = ["--dataset", "mnist-sample", "--strategy", "multiworker", *RUN, "--run-dir", str(tmp_path / "r")]
        assert train.main(arguments) == 2
    assert one_line(capsys) == (
        f"aeloops.train: error: TF_CONFIG gives this task localhost:{port}, but port {port} cannot be taken here "
        "(Address already in use): another process holds it (an earlier worker still running?); stop it or choose "
        "a free port."
    )
    assert not (tmp_path / "r").exists()


def test_a_bad_image_in_a_shard_is_named_by_its_shard_and_record(tmp_path, mnist, capsys):
    (tmp_path / "shards").mkdir()
    for shard in range(2):
        with tf.io.TFRecordWriter(str(tmp_path / "shards" / f"part-{shard}.tfrecord")) as writer:
            for index in range(100):
                image = tf.io.encode_png(mnist.train_images[shard * 100 + index][..., None]).numpy()
                if (shard, index) == (1, 50):  # Record 150 of the whole: a PNG cut short.
                    image = image[: len(image) // 2]
                feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    assert train.main(["--dataset", str(tmp_path / "shards"), *RUN, "--run-dir", str(tmp_path / "run")]) == 2
    line = one_line(capsys)
    assert line.startswith(f"aeloops.train: error: The image in record 50 (from 0) of {tmp_path / 'shards'}/part-1."
                           "tfrecord cannot be decoded (")  # fmt: skip
    assert line.endswith("); remove or replace it.") and "{{" not in line and "[Op:" not in line


def test_an_image_file_name_that_is_not_utf8_is_named(tmp_path, mnist, capsys):
    write_pngs(tmp_path / "images", mnist.train_images[:20])
    os.rename(os.fsencode(tmp_path / "images" / "005.png"), os.fsencode(tmp_path / "images") + b"/caf\xe9.png")
    assert train.main(["--dataset", str(tmp_path / "images"), *RUN, "--run-dir", str(tmp_path / "run")]) == 2
    assert one_line(capsys) == (
        f"aeloops.train: error: {tmp_path / 'images'}/caf\\xe9.png has a name that is not UTF-8, which TensorFlow "
        "cannot open; rename it in UTF-8 (convmv -f latin1 -t utf8 --notest, say) or remove it (aeloops skips no "
        "image silently)."
    )


# --- Models and numbers -------------------------------------------------------------------------


def test_a_model_builder_that_is_no_builder_says_the_builder_failed(tmp_path, capsys):
    arguments = ["--model", "os:system", "--dataset", "mnist-sample", *RUN, "--run-dir", str(tmp_path / "run")]
    assert train.main(arguments) == 2
    assert one_line(capsys) == (
        "aeloops.train: error: --model os:system: the model's builder failed: system((28, 28, 1)) from os raised "
        "TypeError: expected str, bytes or os.PathLike object, not tuple. --model takes an Autoencoder subclass, a "
        "function building one from the images' shape, or a ModelSpec (docs/custom-models.md)."
    )
    assert not (tmp_path / "run").exists()


def test_images_that_would_not_fit_in_memory_are_refused_before_decoding(tmp_path, mnist, capsys, monkeypatch):
    """A folder decoded into memory at 1000x1000 took 20 GB and the kernel's kill; here the machine is made small."""
    write_pngs(tmp_path / "images", mnist.train_images[:40])
    monkeypatch.setattr("aeloops.memory.available_bytes", lambda: 5_000_000)
    arguments = ["--dataset", str(tmp_path / "images"), "--model", "conv", "--image-size", "200", "200", *RUN]
    assert train.main([*arguments, "--run-dir", str(tmp_path / "run")]) == 2
    assert one_line(capsys) == (
        f"aeloops.train: error: The 40 images of {tmp_path / 'images'} at 200x200x1 (float32) need about 0.0064 GB of "
        "memory, and this machine has 0.005 GB available; stream them from disk each epoch instead (--stream, with "
        "--cache DIR to decode them once), or lower --image-size."
    )
    # The advice, followed: streamed, the same images train.
    assert train.main([*arguments, "--stream", "--run-dir", str(tmp_path / "run")]) == 0


def test_a_model_whose_training_would_not_fit_in_memory_is_refused_before_its_first_step(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("aeloops.memory.available_bytes", lambda: 10_000_000)
    arguments = ["--dataset", "mnist-sample", "--set", "model.encoder_units=[2000,32,8]", *RUN]
    assert train.main([*arguments, "--run-dir", str(tmp_path / "run")]) == 2
    assert one_line(capsys) == (
        "aeloops.train: error: Training model dense (1,687,656 parameters): its gradients and optimizer state need "
        "about 0.0203 GB of memory, and this machine has 0.01 GB available; lower its sizes (--list-models names its "
        "options; --set model.<option>=...) or the images' (--image-size)."
    )
    assert not (tmp_path / "run").exists()


def test_a_model_too_large_to_build_is_one_line(tmp_path, capsys, monkeypatch):
    """TensorFlow's own refusal, as it gave it for encoder_units=[1000000000,32,8] (after 20 s of retries)."""

    def out_of_memory(self, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, "{{function_node __wrapped__StatelessRandomUniformV2_device_/job:localhost/replica:0/task:0/"
            "device:CPU:0}} OOM when allocating tensor with shape[784,1000000000] and type float on /job:localhost/"
            "replica:0/task:0/device:CPU:0 by allocator mklcpu [Op:StatelessRandomUniformV2] name: "
        )

    monkeypatch.setattr("aeloops.models.dense.DenseAutoencoder.build_for_shape", out_of_memory)
    arguments = ["--dataset", "mnist-sample", "--set", "model.encoder_units=[1000000000,32,8]", *RUN]
    assert train.main([*arguments, "--run-dir", str(tmp_path / "run")]) == 2
    assert one_line(capsys) == (
        "aeloops.train: error: Model dense for images of (28, 28, 1), encoder_units=[1000000000, 32, 8] does not fit "
        "in memory (OOM when allocating tensor with shape[784,1000000000] and type float); lower its sizes "
        "(--list-models names its options; --set model.<option>=...) or the images' (--image-size)."
    )


# --- Writes -------------------------------------------------------------------------------------


def test_a_first_save_that_fails_says_nothing_was_saved_there_and_not_that_nothing_was_saved(tmp_path, monkeypatch):
    """A run's best checkpoints have their own folder: its first save failing leaves the run's others intact."""
    import aeloops
    from aeloops.runs.checkpoints import Checkpointer
    from aeloops.runs.directory import RunWriteError

    trainer = aeloops.Trainer(aeloops.DenseAutoencoder(input_shape=(784,)), mode="graph")
    Checkpointer(trainer, tmp_path / "checkpoints").save()
    best = Checkpointer(trainer, tmp_path / "checkpoints" / "best")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(best.manager, "save", full)
    with pytest.raises(RunWriteError) as raised:
        best.save()
    assert str(raised.value) == (
        f"Cannot save a checkpoint in {tmp_path / 'checkpoints' / 'best'}: No space left on device. Nothing had been "
        "saved there yet; free space or fix the permissions, then --resume."
    )
    assert (tmp_path / "checkpoints" / "ckpt-0.index").is_file()
