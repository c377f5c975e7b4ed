"""The data sets a benchmark can name.

A :class:`~smoothlab.bench.BenchSpec` names its data set (``dataset``, with a ``source`` and a
``split``) so that a spec stays a small JSON document and every worker loads the images itself.
Each name has a :class:`DatasetEntry`: how to load a source / split, how to count its images
without loading them, and the defaults of a spec on it (source, model, batch and shard sizes).

Built-in names (:data:`DATASETS`), registered the same way as the others:

- ``"mnist"`` -- :func:`smoothlab.data.mnist`: the embedded sample (source ``"embedded"``) or a
  directory of IDX files; splits ``"test"``, ``"train"``; model C4 (sec. 5.2);
- ``"imagenet"`` -- :func:`smoothlab.data.imagenet`: the 1,000-image sample (source ``"samples"``)
  or a folder of photos, read lazily at the attacked model's ``input_size``; split ``"test"``;
  model EfficientNet-Lite0.

Other data sets are added with :func:`register_dataset` (a loader ``(source, split) -> (x, y)``).
A Dask run sends the entry of the spec's registered data set to its workers with the worker
plugin, so its functions must be picklable (module-level functions, or anything cloudpickle
handles).

Each name has a version (:func:`dataset_version`), bumped by every (un)registration that changes
its entry; the benchmark workers' cache keys on it, so images loaded by an earlier loader are
never reused.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "DATASETS",
    "DatasetEntry",
    "register_dataset",
    "unregister_dataset",
    "dataset_entry",
    "dataset_entries",
    "dataset_names",
    "dataset_version",
]


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """What the benchmark needs to know about a data set (made by :func:`register_dataset`).

    Attributes
    ----------
    name : str
        The name a spec gives (``BenchSpec(dataset=name)``).
    loader : callable
        ``loader(source, split)`` (``loader(source, split, size=...)`` when ``sized``) -> the
        images of that split: a pair ``(x, y)`` -- float ``(N, C, H, W)`` in ``[0, 1]`` and integer
        labels ``(N,)`` (tensors or arrays) -- or a lazily loading object with ``len()`` and
        ``batch(indices) -> (x, y)`` (like :class:`smoothlab.data.ImageFolderDataset`).
    source : str
        Default ``BenchSpec.source``.
    model : str or None
        Default ``BenchSpec.model`` (``None``: the spec must name one).
    batch_size, shard_size : int
        Default ``BenchSpec.batch_size`` / ``shard_size`` (a multiple of ``batch_size``).
    splits : tuple of str
        The splits a spec may name (``BenchSpec.split`` defaults to ``"test"``).
    count : callable or None
        ``count(source, split) -> int or None``: the number of images without loading them
        (``None``: unknown, the split is loaded to count it).
    sized : bool
        The loader takes ``size=``: the side of the attacked model's input (its ``input_size``
        attribute; ``None`` where the model has none), for photos read at any size.
    download : callable or None
        ``download(source, split)``: fetch the files of ``source`` (``smoothlab bench --download``).
    """

    name: str
    loader: Callable[..., Any]
    source: str
    model: str | None
    batch_size: int
    shard_size: int
    splits: tuple[str, ...]
    count: Callable[[str, str], int | None] | None = None
    sized: bool = False
    download: Callable[[str, str], Any] | None = None

    def load(self, source: str, split: str, size: int | None = None) -> Any:
        """The images of ``source`` / ``split``: ``(x, y)`` tensors, or the loader's lazy object."""
        data = self.loader(source, split, size=size) if self.sized else self.loader(source, split)
        if isinstance(data, tuple):
            return _check_pair(data, self.name)
        if not (hasattr(data, "__len__") and callable(getattr(data, "batch", None))):
            raise TypeError(
                f"the loader of dataset {self.name!r} must return (x, y) or an object with len() and "
                f"batch(indices), got {type(data).__name__}"
            )
        return data

    def images(self, data: Any, ids: Sequence[int] | np.ndarray) -> tuple[Any, Any]:
        """Images ``(B, C, H, W)`` and labels ``(B,)`` of the indices ``ids`` of ``data`` (from :meth:`load`)."""
        if isinstance(data, tuple):
            import torch

            sel = torch.from_numpy(np.asarray(ids, dtype=np.int64))
            return data[0][sel], data[1][sel]
        return data.batch([int(i) for i in ids])

    @staticmethod
    def n_images(data: Any) -> int:
        """Number of images of ``data`` (from :meth:`load`)."""
        return len(data[1]) if isinstance(data, tuple) else len(data)

    def size_of(self, source: str, split: str) -> int | None:
        """Number of images of ``source`` / ``split`` without loading them (``None``: unknown)."""
        if self.count is None:
            return None
        n = self.count(source, split)
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0):
            raise TypeError(f"the count function of dataset {self.name!r} must return an int >= 0 or None, got {n!r}")
        return None if n is None else int(n)

    def options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`register_dataset` that make this entry."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("name", "loader")}


def _check_pair(data: tuple[Any, ...], name: str) -> tuple[Any, Any]:
    import torch

    if len(data) != 2:
        raise TypeError(f"the loader of dataset {name!r} must return a pair (x, y), got a tuple of {len(data)}")
    x, y = (torch.as_tensor(v) for v in data)  # a tensor stays the same object
    if x.dim() != 4 or not x.dtype.is_floating_point:
        raise ValueError(
            f"the loader of dataset {name!r} must return float images (N, C, H, W), got {x.dtype} of shape {tuple(x.shape)}"
        )
    if y.dim() != 1 or y.dtype.is_floating_point or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"the loader of dataset {name!r} must return integer labels of shape ({x.shape[0]},), got {y.dtype} "
            f"of shape {tuple(y.shape)}"
        )
    return x, y.to(torch.int64)


def _entry(name: str, loader: Callable[..., Any], **options: Any) -> DatasetEntry:
    """A checked :class:`DatasetEntry` (built-in or registered)."""
    from smoothlab._validation import check_int

    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if not callable(loader):
        raise TypeError(f"loader must be callable ((source, split) -> (x, y)), got {type(loader).__name__}")
    for what in ("count", "download"):
        if options.get(what) is not None and not callable(options[what]):
            raise TypeError(f"{what} must be callable or None, got {type(options[what]).__name__}")
    if not isinstance(options["source"], str) or not options["source"]:
        raise TypeError(f"source must be a non-empty str (the default source), got {options['source']!r}")
    if options["model"] is not None and (not isinstance(options["model"], str) or not options["model"]):
        raise TypeError(f"model must be a model name (str) or None, got {options['model']!r}")
    splits = options["splits"]
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    if not splits or any(not isinstance(s, str) or not s for s in splits) or len(set(splits)) != len(splits):
        raise ValueError(f"splits must be distinct non-empty names, got {options['splits']!r}")
    batch = check_int(options["batch_size"], "batch_size", minimum=1)
    shard = check_int(options["shard_size"], "shard_size", minimum=1)
    if shard % batch:
        raise ValueError(f"shard_size must be a multiple of batch_size={batch}, got shard_size={shard}")
    if not isinstance(options.get("sized", False), bool):
        raise TypeError(f"sized must be a bool, got {options['sized']!r}")
    return DatasetEntry(name, loader, **{**options, "splits": splits, "batch_size": batch, "shard_size": shard})


# ---------------------------------------------------------------------------- the built-ins


def _load_mnist(source: str, split: str) -> Any:
    from smoothlab.data._mnist import mnist

    return mnist(split, source)


def _count_mnist(source: str, split: str) -> int | None:
    from smoothlab.data._mnist import _EMBEDDED_TOTAL, EMBEDDED_TEST_SIZE

    if source != "embedded":
        return None  # the IDX files are read to count them
    return EMBEDDED_TEST_SIZE if split == "test" else _EMBEDDED_TOTAL - EMBEDDED_TEST_SIZE


def _download_mnist(source: str, split: str) -> None:
    from smoothlab.data._mnist import mnist

    mnist(split, source, download=True)


def _photo_folder(source: str) -> Any:
    from smoothlab.data._imagenet import imagenet_samples

    return imagenet_samples() if source == "samples" else source


def _load_imagenet(source: str, split: str, *, size: int | None = None) -> Any:
    from smoothlab.data._imagenet import imagenet

    return imagenet(_photo_folder(source), size=224 if size is None else size)


def _count_imagenet(source: str, split: str) -> int:
    from smoothlab.data._imagenet import scan_folder

    return len(scan_folder(_photo_folder(source))[1])


#: Built-in data set names -> their :class:`DatasetEntry`.
DATASETS: Mapping[str, DatasetEntry] = MappingProxyType(
    {
        "mnist": _entry(
            "mnist", _load_mnist, source="embedded", model="c4", batch_size=50, shard_size=100,
            splits=("test", "train"), count=_count_mnist, download=_download_mnist,
        ),
        # a batch of photos holds every budget of an attack: 5 photos x 7 FGSM budgets at 224x224
        # keep EfficientNet-Lite0's activations for the backward pass near 3 GB
        "imagenet": _entry(
            "imagenet", _load_imagenet, source="samples", model="efficientnet_lite0", batch_size=5, shard_size=20,
            splits=("test",), count=_count_imagenet, sized=True,
        ),
    }
)


_REGISTRY: dict[str, DatasetEntry] = {}
_VERSIONS: dict[str, int] = {}
_LOCK = threading.Lock()


def dataset_version(name: str) -> int:
    """How many times ``name``'s entry changed in this process (registered, replaced, unregistered; 0 for built-ins).

    A cache of loaded images keys on ``(name, dataset_version(name))``.
    """
    with _LOCK:
        return _VERSIONS.get(name, 0)


def dataset_names() -> tuple[str, ...]:
    """Built-in names followed by the registered ones."""
    with _LOCK:
        return tuple(DATASETS) + tuple(n for n in _REGISTRY if n not in DATASETS)


def register_dataset(
    name: str,
    loader: Callable[..., Any],
    *,
    model: str | None = None,
    source: str = "default",
    splits: Sequence[str] = ("test",),
    batch_size: int = 50,
    shard_size: int = 100,
    count: Callable[[str, str], int | None] | None = None,
    sized: bool = False,
    download: Callable[[str, str], Any] | None = None,
    overwrite: bool = False,
) -> DatasetEntry:
    """Make ``name`` usable as ``BenchSpec(dataset=name)``.

    Parameters
    ----------
    name : str
        Data set name (not a built-in one).
    loader : callable
        ``loader(source, split) -> (x, y)``: float images ``(N, C, H, W)`` in ``[0, 1]`` and integer
        labels ``(N,)`` (tensors or NumPy arrays), or a lazy object with ``len()`` and
        ``batch(indices) -> (x, y)``. Called at most once per process, source and split (the
        result is cached), also in each Dask worker; image ``i`` of a spec is ``x[i]``.
    model : str, optional
        Default model of a spec on this data set (``None``: the spec must name one).
    source : str
        Default source, passed to ``loader`` (a name or a path the loader understands).
    splits : sequence of str
        The splits a spec may name (``BenchSpec.split``, default ``"test"``).
    batch_size, shard_size : int
        Default images per attack call and per shard (a multiple of ``batch_size``).
    count : callable, optional
        ``count(source, split) -> int or None``: the number of images without loading them, so
        that the calling process of a Dask run need not load the data (``None``: load and count).
    sized : bool
        Call ``loader(source, split, size=...)`` with the attacked model's ``input_size`` attribute
        (``None`` where it has none): photos read at any size.
    download : callable, optional
        ``download(source, split)``: fetch the files (``smoothlab bench --download``).
    overwrite : bool
        Replace an earlier registration of ``name``.

    Returns
    -------
    DatasetEntry
        The registered entry.

    Notes
    -----
    The spec records only the name, source and split: results on disk are tied to them, not to
    the loader's code.

    Examples
    --------
    >>> import torch
    >>> from smoothlab.data import register_dataset, unregister_dataset
    >>> def tiny(source, split):
    ...     g = torch.Generator().manual_seed(0)
    ...     return torch.rand(12, 1, 28, 28, generator=g), torch.arange(12) % 10
    >>> entry = register_dataset("tiny", tiny, model="c4", batch_size=4, shard_size=4)
    >>> entry.n_images(entry.load("default", "test"))
    12
    >>> unregister_dataset("tiny")
    """
    if name in DATASETS:
        raise ValueError(f"dataset name {name!r} is built in; choose another name")
    entry = _entry(
        name, loader, model=model, source=source, splits=splits, batch_size=batch_size, shard_size=shard_size,
        count=count, sized=sized, download=download,
    )
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got {overwrite!r}")
    with _LOCK:
        if name in _REGISTRY and not overwrite and _REGISTRY[name] != entry:
            raise ValueError(f"dataset {name!r} is already registered; pass overwrite=True to replace it")
        if _REGISTRY.get(name) != entry:
            _VERSIONS[name] = _VERSIONS.get(name, 0) + 1  # images loaded by an earlier loader are stale
        _REGISTRY[name] = entry
    return entry


def unregister_dataset(name: str) -> None:
    """Forget a registered data set (built-in names cannot be removed)."""
    if name in DATASETS:
        raise ValueError(f"dataset name {name!r} is built in and cannot be unregistered")
    with _LOCK:
        if name not in _REGISTRY:
            raise ValueError(f"dataset {name!r} is not registered; registered: {sorted(_REGISTRY)}")
        del _REGISTRY[name]
        _VERSIONS[name] = _VERSIONS.get(name, 0) + 1


def dataset_entry(name: str) -> DatasetEntry:
    """The :class:`DatasetEntry` of ``name`` (built-in or registered).

    Raises
    ------
    ValueError
        Unknown name.
    """
    if name in DATASETS:
        return DATASETS[name]
    with _LOCK:
        entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(
            f"dataset must be one of {', '.join(map(repr, dataset_names()))} (or a name given to register_dataset), "
            f"got {name!r}"
        )
    return entry


def dataset_entries(names: Any) -> dict[str, DatasetEntry]:
    """The registered entries among ``names`` (built-in names are skipped): what a Dask run sends
    to its workers."""
    with _LOCK:
        return {n: _REGISTRY[n] for n in names if n is not None and n not in DATASETS and n in _REGISTRY}
