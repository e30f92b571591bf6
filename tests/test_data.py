"""Data sources: real files, fixed-seed splits, clear errors when files are missing."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from edgebench.config import DataConfig
from edgebench.data import DataNotFoundError, load_data, read_idx
from edgebench.data import sources

DEBIAN = sources.DEBIAN_FASHION_MNIST


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def _fake_idx_dir(d: Path, n_train=200, n_test=50) -> Path:
    rng = np.random.default_rng(0)
    d.mkdir(parents=True, exist_ok=True)
    _write_idx(d / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28)))
    _write_idx(d / "train-labels-idx1-ubyte.gz", np.arange(n_train) % 10)
    _write_idx(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28)))
    _write_idx(d / "t10k-labels-idx1-ubyte.gz", np.arange(n_test) % 10)
    return d


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    _write_idx(tmp_path / "x.gz", arr)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), arr)


def test_read_idx_rejects_truncated_file(tmp_path):
    arr = np.zeros((4, 4), dtype=np.uint8)
    _write_idx(tmp_path / "x.gz", arr)
    data = gzip.decompress((tmp_path / "x.gz").read_bytes())[:-3]
    (tmp_path / "y").write_bytes(data)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "y")


def test_digits_splits_are_fixed_and_disjoint():
    cfg = DataConfig(name="digits")
    a, b = load_data(cfg, "unused"), load_data(cfg, "unused")
    assert a.sizes() == {"train": 1295, "val": 143, "test": 359}
    assert sum(a.sizes().values()) == 1797
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    # normalised with training statistics
    assert abs(float(a.train_x.mean())) < 1e-4
    c = load_data(DataConfig(name="digits", split_seed=1), "unused")
    assert not torch.equal(a.test_y, c.test_y)


def test_fashion_mnist_from_a_configured_root(tmp_path):
    root = _fake_idx_dir(tmp_path / "fm")
    s = load_data(DataConfig(name="fashion_mnist", root=str(root), download=False), tmp_path)
    assert s.sizes() == {"train": 180, "val": 20, "test": 50}
    assert s.input_shape == (1, 28, 28)
    assert s.source == str(root)


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(DataNotFoundError) as e:
        load_data(DataConfig(name="fashion_mnist", root=str(tmp_path / "empty"), download=False), tmp_path)
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "data.root" in msg and "data=digits" in msg


def test_mnist_missing_without_download(tmp_path):
    with pytest.raises(DataNotFoundError, match="MNIST IDX files not found"):
        load_data(DataConfig(name="mnist", download=False), tmp_path)


def test_cifar10_missing_without_download(tmp_path):
    with pytest.raises(DataNotFoundError, match="CIFAR-10 not found"):
        load_data(DataConfig(name="cifar10", download=False), tmp_path)


@pytest.mark.skipif(not DEBIAN.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian_package(tmp_path):
    s = load_data(DataConfig(name="fashion_mnist", download=False), tmp_path)
    assert s.sizes() == {"train": 54000, "val": 6000, "test": 10000}
    assert s.source == str(DEBIAN)
    assert torch.bincount(s.test_y).tolist() == [1000] * 10


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    s = load_data(DataConfig(name="image_folder", root=str(tmp_path / "imgs"), image_size=16, channels=1), tmp_path)
    assert s.input_shape == (1, 16, 16)
    assert s.class_names == ["cat", "dog"]
    assert sum(s.sizes().values()) == 40 and s.sizes()["test"] == 8


def test_image_folder_missing(tmp_path):
    with pytest.raises(DataNotFoundError, match="is not a folder"):
        load_data(DataConfig(name="image_folder", root=str(tmp_path / "none")), tmp_path)


@pytest.mark.parametrize("download", [False, True])
def test_fashion_mnist_given_root_without_data_is_an_error_not_a_fallback(tmp_path, monkeypatch, download):
    # a system copy that the old search order would have used silently
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", _fake_idx_dir(tmp_path / "system"))
    _fake_idx_dir(tmp_path / "data_dir" / "FashionMNIST" / "raw")
    monkeypatch.setattr(sources, "_torchvision_download", lambda *a: None)  # no network
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError) as e:
        load_data(DataConfig(name="fashion_mnist", root=str(empty), download=download), tmp_path / "data_dir")
    msg = str(e.value)
    assert f"data.root={empty}" in msg
    assert all(f in msg for f in sources.IDX_FILES.values()), msg  # what the folder should hold
    # without data.root the system copy is still found
    s = load_data(DataConfig(name="fashion_mnist", download=False), tmp_path / "data_dir")
    assert s.source == str(tmp_path / "system")


def test_mnist_given_root_without_data_names_root_and_files(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        load_data(DataConfig(name="mnist", root=str(tmp_path / "nothing_here"), download=False), tmp_path)
    msg = str(e.value)
    assert f"data.root={tmp_path / 'nothing_here'}" in msg and "does not exist" in msg
    assert all(f in msg for f in sources.IDX_FILES.values()), msg


def test_a_process_loads_the_same_data_once():
    """A sweep's jobs in one process: the second load of the same data config reuses the tensors (a fresh
    DataSplits each time); another config loads again."""
    from edgebench import data

    a = data.load_data(DataConfig(name="digits"), "unused")
    b = data.load_data(DataConfig(name="digits"), "unused")
    assert a is not b and a.train_x is b.train_x and a.digest == b.digest
    a.train_x = None  # a caller replacing an attribute does not change what the next run gets
    assert data.load_data(DataConfig(name="digits"), "unused").train_x is b.train_x
    c = data.load_data(DataConfig(name="digits", split_seed=1), "unused")
    assert c.train_x is not b.train_x and len(c.train_x) == len(b.train_x)
