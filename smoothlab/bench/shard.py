"""One shard of a benchmark: load images and model (cached per process), run the attacks.

:func:`run_shard` is the unit of work. The Dask runner calls it in a worker process, the
in-process runner in the calling process: the same function, so the records are the same.
The dataset and the model are built at most once per process and kept in a process-local
cache (:func:`cached_dataset`, :func:`cached_model`); a task only carries the spec and a list
of image indices, never a model or images.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from smoothlab.bench.spec import AttackSpec, BenchSpec

__all__ = [
    "cached_dataset",
    "cached_model",
    "forget_model",
    "dataset_size",
    "clear_cache",
    "select_images",
    "plan_shards",
    "run_shard",
    "torch_threads",
    "cache_info",
    "ADVERSARIAL_COLUMNS",
]

# Process-local cache: ("data", dataset, source, split, input size, registry version) -> images;
# ("model", name, device, registry version) -> module.
_CACHE: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.RLock()
# Counts of what was built in this process (tests and benchmarks check "once per worker").
_BUILDS: dict[str, int] = {"data": 0, "model": 0}
# Device chosen for this process (set by the Dask worker plugin, e.g. "cuda:1").
_DEVICE: dict[str, str] = {}
# Shortcuts of run_shard that cannot change a record (issue 10): one smoother per batch and
# smoothing spec shared by the attacks (indexed for stacked budgets), and each original's
# magnification computed once per batch for the visibility column. Tests switch them off to
# check that the records stay bit-identical.
_SHORTCUTS = True


def clear_cache() -> None:
    """Forget the cached datasets and models of this process."""
    with _LOCK:
        _CACHE.clear()
        _BUILDS.update(data=0, model=0)


def cache_info() -> dict[str, Any]:
    """What this process has cached and how many times it built a dataset / model."""
    with _LOCK:
        return {"keys": sorted(map(str, _CACHE)), "builds": dict(_BUILDS), "device": _DEVICE.get("device")}


def set_process_device(device: str | None) -> None:
    """Pin this process to a device (``"cuda:1"``); ``None`` forgets the choice."""
    with _LOCK:
        if device is None:
            _DEVICE.pop("device", None)
        else:
            _DEVICE["device"] = device


def _device(spec: BenchSpec) -> Any:
    import torch

    device = spec.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "device" in _DEVICE:
        device = _DEVICE["device"]
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"the benchmark asks for device {device!r} but CUDA is not available in this process")
    return torch.device(device)


def cached_dataset(spec: BenchSpec) -> Any:
    """The spec's images, loaded once per process by its data set's loader
    (:func:`smoothlab.data.dataset_entry`): CPU tensors ``(x, y)`` (MNIST), or a lazily loading
    object (ImageNet: a :class:`smoothlab.data.ImageFolderDataset` at the attacked model's input size)."""
    from smoothlab.data import dataset_entry, dataset_version

    entry = dataset_entry(spec.dataset)
    size = getattr(cached_model(spec), "input_size", None) if entry.sized else None
    # the registry version is part of the key: a re-registered name never gets stale images
    key = ("data", spec.dataset, spec.source, spec.split, size, dataset_version(spec.dataset))
    with _LOCK:
        if key not in _CACHE:
            for stale in [k for k in _CACHE if k[:2] == ("data", spec.dataset) and k[5] != key[5]]:
                del _CACHE[stale]  # images loaded by an earlier loader of the name
            _CACHE[key] = entry.load(spec.source, spec.split, size)
            _BUILDS["data"] += 1
        return _CACHE[key]


def load_images(spec: BenchSpec, ids: np.ndarray) -> tuple[Any, Any]:
    """Images ``(B, C, H, W)`` and labels ``(B,)`` (CPU tensors) of the image indices ``ids``."""
    from smoothlab.data import dataset_entry

    return dataset_entry(spec.dataset).images(cached_dataset(spec), ids)


def dataset_size(spec: BenchSpec) -> int:
    """Number of images of the spec's split, without loading them where the data set can count them."""
    from smoothlab.data import dataset_entry

    entry = dataset_entry(spec.dataset)
    n = entry.size_of(spec.source, spec.split)
    return entry.n_images(cached_dataset(spec)) if n is None else n


def cached_model(spec: BenchSpec, name: str | None = None) -> Any:
    """The model ``name`` (default: ``spec.model``) on the spec's device, built once per process."""
    from smoothlab.models import build_model, model_version

    device = _device(spec)
    name = spec.model if name is None else name
    # the registry version is part of the key: a re-registered name never gets a stale instance
    key = ("model", name, str(device), model_version(name))
    with _LOCK:
        if key not in _CACHE:
            for stale in [k for k in _CACHE if k[:2] == ("model", name) and k[3] != key[3]]:
                del _CACHE[stale]  # instances built by an earlier factory of the name
            _CACHE[key] = build_model(name, device)
            _BUILDS["model"] += 1
        return _CACHE[key]


def forget_model(name: str) -> None:
    """Drop the cached instances of model ``name`` (all devices) from this process's cache."""
    with _LOCK:
        for key in [k for k in _CACHE if k[0] == "model" and k[1] == name]:
            del _CACHE[key]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``torch.set_num_threads(n)`` and restore the previous value (``None``: no change)."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def select_images(spec: BenchSpec, n_available: int) -> np.ndarray:
    """Indices of the images to evaluate, checked against the split size.

    Raises
    ------
    ValueError
        ``n_images`` larger than the split, or an index of ``image_ids`` out of range.
    """
    where = f"the {spec.dataset} {spec.split} split ({spec.source}) of {n_available} images"
    if spec.image_ids is not None:
        ids = np.asarray(spec.image_ids, dtype=np.int64)
        bad = ids[(ids < 0) | (ids >= n_available)]
        if bad.size:
            raise ValueError(f"image index {int(bad[0])} is out of range for {where}: valid indices are 0..{n_available - 1}")
        return ids
    n = n_available if spec.n_images is None else spec.n_images
    if n > n_available:
        raise ValueError(f"n_images={n} is out of range for {where}")
    return np.arange(n, dtype=np.int64)


def plan_shards(spec: BenchSpec, image_ids: np.ndarray) -> list[np.ndarray]:
    """Consecutive chunks of ``shard_size`` images; shard ``k`` is ``image_ids[k*S:(k+1)*S]``."""
    s = spec.shard_size
    return [image_ids[i : i + s] for i in range(0, len(image_ids), s)]


def _attack_kwargs(attack: AttackSpec) -> dict[str, Any]:
    """The attack's keyword arguments, with a ``smoother`` dict turned into a SmoothingSpec."""
    kwargs = dict(attack.params)
    sm = kwargs.get("smoother")
    if isinstance(sm, dict):
        from smoothlab.smoothing import SmoothingSpec

        kwargs["smoother"] = SmoothingSpec(**sm)
    return kwargs


def _share_smoother(kwargs: dict[str, Any], cache: dict[Any, Any], xb: Any, repeats: int) -> None:
    """Replace a :class:`~smoothlab.SmoothingSpec` in ``kwargs`` by the smoother of the batch ``xb``,
    built once per batch and spec (``cache``) and shared by the attacks; with ``repeats`` (stacked
    budgets) it is indexed ``repeats`` times along the batch, like the attack's images. The attack
    would build exactly this smoother on its images (the set-up of each image depends on that
    image alone), without factorising each image once per budget and attack."""
    import torch

    from smoothlab.smoothing import SmoothingSpec

    sm = kwargs.get("smoother")
    if not isinstance(sm, SmoothingSpec):
        return
    key = (sm, repr(sorted(sm.options.items())))
    if key not in cache:
        cache[key] = sm.build(xb)
    S = cache[key]
    kwargs["smoother"] = S[torch.arange(xb.shape[0], device=xb.device).repeat(repeats)] if repeats else S


def _accepts_seed(fn: Any) -> bool:
    try:
        return "seed" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _predict(model: Any, x: Any, batch: int = 1000) -> Any:
    """Class predictions of ``model`` on ``x`` (no gradient), in chunks of ``batch`` images."""
    import torch

    with torch.no_grad():
        return torch.cat([model(x[i : i + batch]).argmax(dim=1) for i in range(0, x.shape[0], batch)])


def _on_target(result: Any, target: Any, y: Any, pred_clean: Any) -> Any:
    """The attack's result as seen by ``target`` (sec. 5.4): the target's predictions on the
    originals (``pred_clean``, computed once per batch) and on ``x_a``; success = the target
    misclassifies ``x_a``. Everything else (``x_a``, distortion, passes) is the attack's."""
    import dataclasses

    pred_adv = _predict(target, result.x_adv)
    return dataclasses.replace(result, pred_clean=pred_clean, pred_adv=pred_adv, success=pred_adv != y)


def _records_of_call(
    spec: BenchSpec, fn: Any, kwargs: dict[str, Any], model: Any, target: Any, xin: Any, yin: Any, ids: np.ndarray,
    budget: np.ndarray | None, target_clean: Any, vis_cache: dict[Any, Any] | None,
) -> tuple[pd.DataFrame, Any]:
    """One attack call on ``xin`` (with per-image budgets ``budget`` when the attack has them), judged by the
    target model when there is one: its records (the spec's float64 budgets; ``eps`` itself is passed in the
    images' dtype) and its adversarial images."""
    import torch

    from smoothlab.records import records_from_result

    if budget is None:
        res = fn(model, xin, yin, **kwargs)  # budget from params["eps"] when the attack has one, else NaN (C&W)
    else:
        res = fn(model, xin, yin, eps=torch.as_tensor(budget, dtype=xin.dtype, device=xin.device), **kwargs)
    if target is not None:
        res = _on_target(res, target, yin, target_clean)
    rec = records_from_result(res, image_ids=ids, labels=yin, budget=budget, x=xin, visibility=spec.visibility,
                              visibility_cache=vis_cache)
    return rec, res


def _sweep_to_first_success(
    spec: BenchSpec, fn: Any, kwargs: dict[str, Any], model: Any, target: Any, xb: Any, yb: Any, block: np.ndarray,
    target_clean: Any, vis_cache: dict[Any, Any] | None, budgets: Sequence[float],
) -> list[tuple[pd.DataFrame, Any]]:
    """``spec.sweep == "first-success"``: the budgets in increasing order, each run on the images of the
    batch that no smaller budget fooled (and that the model classifies correctly), so each image's sweep
    stops at its first successful budget. The records hold one row per budget run: every image at the
    smallest budget (the ``floor``), then fewer. Sec. 5.1's per-image distortion is the least over the
    successful budgets; it is the first successful one's wherever larger budgets give larger
    distortions: always for FGSM (one gradient, so each pixel's change grows with ``ε``), and for
    I-FGSM, PGD2 and sPGD2 on every one of 4,160 (image, attack) pairs measured on the full grid
    (``benchmarks/README.md``, "A protocol that costs less"). ``sweep="full"`` runs every budget on every image.
    Returns the records and the adversarial images of each budget's call."""
    import torch

    from smoothlab.smoothing import Smoother

    S = kwargs.get("smoother")
    shared = isinstance(S, Smoother)  # the batch's smoother (_share_smoother): indexed like the images left
    left = torch.arange(xb.shape[0], device=xb.device)
    calls = []
    for eps in sorted(budgets):
        if left.numel() == 0:
            break
        yin = yb[left]
        ids = block[left.cpu().numpy()]
        rec, res = _records_of_call(
            spec, fn, dict(kwargs, smoother=S[left]) if shared else kwargs, model, target, xb[left], yin, ids,
            np.full(ids.size, float(eps), dtype=np.float64), None if target_clean is None else target_clean[left],
            vis_cache,
        )
        calls.append((rec, res.x_adv))
        go_on = (res.pred_clean.to(yin.device) == yin) & ~res.success.to(yin.device)
        left = left[go_on.to(left.device)]
    return calls


#: Columns of the adversarial images of a shard (:func:`run_shard` with ``adversarials=True``).
ADVERSARIAL_COLUMNS = ("attack", "image_id", "budget", "distortion", "pred_adv", "dtype", "shape", "pixels")


def _least_distorted(rec: pd.DataFrame, x_adv: Any, exact_8bit: bool) -> pd.DataFrame:
    """Per image of one attack call's records ``rec`` (row ``i`` is ``x_adv[i]``), its least
    distorted successful adversarial image (ties: the smallest budget, as
    :func:`smoothlab.metrics.union_over_budgets`), as ``uint8`` bytes (``round(255 x)``) when
    ``exact_8bit`` (a quantised attack: exact), else ``float16`` bytes."""
    import torch

    pos = np.flatnonzero(rec["success"].to_numpy())
    sub = rec.iloc[pos].assign(_pos=pos, _b=rec["budget"].to_numpy()[pos])
    best = sub.sort_values(["image_id", "distortion", "_b"], kind="stable", na_position="last")
    best = best.drop_duplicates("image_id", keep="first")
    xs = x_adv.detach()[torch.tensor(best["_pos"].to_numpy(dtype="int64"), device=x_adv.device)].cpu()
    if exact_8bit:
        arr, dtype = (xs.float() * 255).round().clamp(0, 255).to(torch.uint8).numpy(), "uint8"
    else:
        arr, dtype = xs.to(torch.float16).numpy(), "float16"
    return pd.DataFrame(
        {
            "attack": best["attack"].astype(str).to_numpy(),
            "image_id": best["image_id"].to_numpy(dtype="int64"),
            "budget": best["budget"].to_numpy(dtype="float64"),
            "distortion": best["distortion"].to_numpy(dtype="float64"),
            "pred_adv": best["pred_adv"].to_numpy(dtype="int64"),
            "dtype": [dtype] * len(best),
            "shape": [",".join(map(str, a.shape)) for a in arr],
            "pixels": pd.Series([a.tobytes() for a in arr], dtype=object),
        },
        columns=list(ADVERSARIAL_COLUMNS),
    )


def run_shard(
    spec: BenchSpec, shard_index: int, image_ids: Sequence[int], *, adversarials: bool = False
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Run every attack of ``spec`` on the images ``image_ids`` (shard ``shard_index``).

    Images are processed in batches of ``spec.batch_size`` aligned on the global image list
    (shard ``k`` starts at position ``k * shard_size``, a multiple of ``batch_size``), so every
    record is the same whatever the shard size or the worker that computed it. With
    ``spec.sweep == "full"`` the budgets of an attack are stacked in the batch dimension of a single
    call; with ``"first-success"`` (default) they are run in increasing order, each on the images of
    the batch that no smaller budget fooled.

    The attacks are crafted on ``spec.model``; with ``spec.target_model`` the adversarial
    images are then classified by the target and the records hold the target's predictions
    and success (transferability, sec. 5.4). The ``ssim`` column, and with ``spec.visibility``
    the ``visibility`` column, are filled right after each attack (successes only; NaN for failures).

    The attacks run at the caller's torch thread count (the runner sets it: 1 by default), not held to
    the CPUs the load leaves free as elsewhere (``smoothlab._threads.kept_threads``): the thread
    count can change the rounding, and the records must not depend on the machine's load.

    With ``adversarials=True`` it also keeps, per attack and image, the least distorted successful
    adversarial image (:data:`ADVERSARIAL_COLUMNS`: ``uint8`` for an attack with
    ``quantise=True``, ``float16`` otherwise), taken from the same attack calls.

    Returns
    -------
    pandas.DataFrame, or (pandas.DataFrame, pandas.DataFrame)
        Per-image records (:data:`smoothlab.records.RECORD_COLUMNS`), ``attack`` = the
        attack's key, sorted by ``(attack, budget, image_id)``; with ``adversarials=True`` also
        the adversarial images, sorted by ``(attack, image_id)``.
    """
    from smoothlab._threads import kept_threads

    ids = np.asarray(image_ids, dtype=np.int64)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"image_ids must be a non-empty 1-D list of indices, got shape {ids.shape}")
    if ids.size > spec.shard_size:
        raise ValueError(f"shard {shard_index} holds {ids.size} images, more than shard_size={spec.shard_size}")
    with kept_threads():  # the caller's thread count, whatever the load: the records must not depend on it
        return _run_shard(spec, shard_index, ids, adversarials)


def _run_shard(
    spec: BenchSpec, shard_index: int, ids: np.ndarray, adversarials: bool
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`run_shard` on checked ``ids``."""
    from smoothlab.attacks import ATTACKS
    from smoothlab.records import sort_records

    model = cached_model(spec)
    target = None if spec.target_model is None else cached_model(spec, spec.target_model)
    device = _device(spec)
    frames, advs = [], []
    first_block = shard_index * (spec.shard_size // spec.batch_size)
    for j, start in enumerate(range(0, ids.size, spec.batch_size)):
        block = ids[start : start + spec.batch_size]
        xb, yb = load_images(spec, block)
        xb, yb = xb.to(device), yb.to(device)
        b = block.size
        target_clean = None if target is None else _predict(target, xb)
        smoothers: dict[Any, Any] = {}  # this batch's smoothers, per smoothing spec
        vis_cache: dict[Any, Any] | None = {} if _SHORTCUTS else None  # its originals' magnifications
        for attack in spec.attacks:
            fn = ATTACKS[attack.name]
            kwargs = _attack_kwargs(attack)
            if _accepts_seed(fn) and "seed" not in kwargs:
                kwargs["seed"] = spec.seed + first_block + j
            if attack.budgets and spec.sweep == "first-success":
                if _SHORTCUTS:
                    _share_smoother(kwargs, smoothers, xb, 0)
                calls = _sweep_to_first_success(spec, fn, kwargs, model, target, xb, yb, block, target_clean, vis_cache,
                                                attack.budgets)
            else:  # one call: the budgets stacked in the batch dimension
                k = max(1, len(attack.budgets))
                if _SHORTCUTS:
                    _share_smoother(kwargs, smoothers, xb, k if attack.budgets else 0)
                budget = np.repeat(np.asarray(attack.budgets, dtype=np.float64), b) if attack.budgets else None
                rec, res = _records_of_call(
                    spec, fn, kwargs, model, target, xb.repeat(k, 1, 1, 1) if attack.budgets else xb,
                    yb.repeat(k) if attack.budgets else yb, np.tile(block, k), budget,
                    None if target_clean is None else target_clean.repeat(k), vis_cache,
                )
                calls = [(rec, res.x_adv)]
            for rec, x_adv in calls:  # with the sweep an image succeeds in one call at most
                rec["attack"] = attack.key
                frames.append(rec)
                if adversarials:
                    advs.append(_least_distorted(rec, x_adv, attack.params.get("quantise") is True))
    records = sort_records(pd.concat(frames, ignore_index=True))
    if not adversarials:
        return records
    adv = pd.concat(advs, ignore_index=True).sort_values(["attack", "image_id"], kind="stable")
    return records, adv.reset_index(drop=True)
