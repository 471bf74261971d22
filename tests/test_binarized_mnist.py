"""Larochelle and Murray's binarized MNIST: the files beside the project, their reader, and the CLI's dataset."""

import gzip
import hashlib
import json
import re

import numpy as np
import pytest

from aeloops import train
from aeloops.data import load_binarized_mnist
from tests.conftest import REPO

BINARIZED = REPO.parent / "shared" / "data" / "binarized_mnist"
README = REPO.parent / "shared" / "data" / "README.md"

needs_files = pytest.mark.skipif(not BINARIZED.is_dir(), reason="needs ../shared/data/binarized_mnist")


def readme_table():
    """The README's rows: file name -> (lines, ones, md5 after gunzip)."""
    rows = re.findall(r"^\| (binarized_mnist_\w+\.amat\.gz) \| ([\d,]+) \| ([\d,]+) \| ([0-9a-f]{32}) \|$",
                      README.read_text(), re.MULTILINE)  # fmt: skip
    return {name: (int(lines.replace(",", "")), int(ones.replace(",", "")), md5) for name, lines, ones, md5 in rows}


@needs_files
def test_each_file_matches_its_md5_line_count_and_ones_in_the_data_readme():
    table = readme_table()
    assert sorted(table) == sorted(path.name for path in BINARIZED.glob("*.amat.gz"))
    for name, (lines, ones, md5) in table.items():
        content = gzip.decompress((BINARIZED / name).read_bytes())
        assert hashlib.md5(content).hexdigest() == md5, name
        assert content.count(b"\n") == lines and content.count(b"1") == ones, name


@needs_files
def test_the_reader_gives_the_files_images_in_order():
    splits = load_binarized_mnist(BINARIZED)
    table = readme_table()
    for images, name in zip(splits, ("train", "valid", "test")):
        lines, ones, _ = table[f"binarized_mnist_{name}.amat.gz"]
        assert images.shape == (lines, 28, 28) and int((images == 255).sum()) == ones
        assert set(np.unique(images)) <= {0, 255}
    with gzip.open(BINARIZED / "binarized_mnist_test.amat.gz", "rt") as stream:
        first = stream.readline().split()
    np.testing.assert_array_equal(splits.test_images[0].reshape(-1) // 255, np.array(first, np.uint8))


def test_plain_and_gzipped_files_read_alike_and_bad_ones_are_named(tmp_path):
    rng = np.random.default_rng(0)
    for split, name in ((0, "train"), (1, "valid"), (2, "test")):
        rows = (rng.random((5 + split, 784)) < 0.3).astype(int)
        text = "\n".join(" ".join(map(str, row)) for row in rows) + "\n"
        (tmp_path / f"binarized_mnist_{name}.amat").write_text(text)
        with gzip.open(tmp_path / f"{name}.gz", "wt") as out:
            out.write(text)
    plain = load_binarized_mnist(tmp_path)
    assert [len(images) for images in plain] == [5, 6, 7]
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    for name in ("train", "valid", "test"):
        (tmp_path / f"{name}.gz").rename(zipped / f"binarized_mnist_{name}.amat.gz")
    for ours, theirs in zip(load_binarized_mnist(zipped), plain):
        np.testing.assert_array_equal(ours, theirs)
    (zipped / "binarized_mnist_valid.amat.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match="Cannot read .*binarized_mnist_valid.amat.gz"):
        load_binarized_mnist(zipped)
    (tmp_path / "binarized_mnist_test.amat").write_text("0 1 2\n")
    with pytest.raises(ValueError, match="expected lines of 784 zeros and ones"):
        load_binarized_mnist(tmp_path)


@needs_files
def test_the_cli_trains_on_binarized_mnist_and_validates_on_its_test_file(tmp_path, capsys):
    run_dir = tmp_path / "run"
    arguments = ["--model", "vae", "--dataset", "binarized_mnist", "--data-dir", str(BINARIZED), "--epochs", "1"]
    code = train.main([*arguments, "--batch-size", "500", "--mode", "graph", "--run-dir", str(run_dir), "--quiet"])
    assert code == 0, capsys.readouterr().err
    history = json.loads((run_dir / "history.json").read_text())
    assert history["val_loss"][0] < 300  # Nats per image: a VAE that has begun to learn binary digits.
    assert json.loads((run_dir / "config.json").read_text())["dataset"] == "binarized_mnist"
    assert train.main(["--model", "vae", "--dataset", "binarized_mnist", "--run-dir", str(tmp_path / "x")]) == 2
    assert "--dataset binarized_mnist needs --data-dir" in capsys.readouterr().err
