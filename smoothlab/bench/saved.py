"""The adversarial images a benchmark kept: :func:`load_adversarials`.

``run(spec, out=..., save_adversarials=True)`` (``smoothlab bench --save-adversarials``) stores,
per shard in ``out/adversarials/``, each image's least distorted successful adversarial image for
each attack (:mod:`smoothlab.bench.storage`). :func:`load_adversarials` reads them back, checks
every file (spec, shard, checksum, the records it belongs to) and checks each image against the
records: its distortion to the original (re-loaded from the spec's data set) must be the records'
distortion, exactly up to float32 rounding for ``uint8`` images, within the float16 rounding of
the stored pixels otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smoothlab.bench import storage
from smoothlab.bench.spec import BenchSpec

__all__ = ["SavedAdversarials", "load_adversarials"]


@dataclass
class SavedAdversarials:
    """Adversarial images read by :func:`load_adversarials`, one per image.

    Attributes
    ----------
    attack : str
        The attack's key in the records.
    image_ids : numpy.ndarray
        Dataset index of each image, ``(N,)`` int64, increasing.
    x_adv : torch.Tensor
        The adversarial images ``(N, C, H, W)``, float32 in ``[0, 1]``.
    budget, distortion : numpy.ndarray
        The budget of the run that made each image (NaN for attacks that run once) and its
        distortion ``D = ||x_a - x_o||_2`` in the records (eq. 20).
    pred_adv, labels : numpy.ndarray
        The prediction on ``x_adv`` in the records and the true class.
    dtype : str
        How they were stored: ``"uint8"`` (8-bit protocol, exact) or ``"float16"``.
    """

    attack: str
    image_ids: np.ndarray
    x_adv: Any
    budget: np.ndarray
    distortion: np.ndarray
    pred_adv: np.ndarray
    labels: np.ndarray
    dtype: str

    def __len__(self) -> int:
        return int(self.image_ids.size)


def _wanted(index: int | Sequence[int] | None) -> np.ndarray | None:
    if index is None:
        return None
    ids = np.atleast_1d(np.asarray(index))
    if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer) or (ids < 0).any():
        raise TypeError(f"index must be an image index (int >= 0), a sequence of them, or None, got {index!r}")
    return np.unique(ids.astype(np.int64))


def _shard_rows(out: Path, spec: BenchSpec, k: int, ids: np.ndarray, attack: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The valid records and adversarial images of shard ``k``, for ``attack``."""
    records, reason = storage.read_shard(out, spec, k, ids)
    if records is None:
        raise ValueError(f"shard {k} in {out} has no valid records ({reason}): run the benchmark again to compute it")
    adv, reason = storage.read_adversarials(out, spec, k, ids, records)
    if adv is None:
        raise ValueError(
            f"the adversarial images of shard {k} in {out} are {reason}: run the benchmark again with "
            "save_adversarials=True (--save-adversarials) to recompute them"
        )
    return records[records["attack"] == attack], adv[adv["attack"] == attack]


def _decode(adv: pd.DataFrame) -> Any:
    import torch

    images = []
    for dtype, shape, blob in zip(adv["dtype"], adv["shape"], adv["pixels"]):
        arr = np.frombuffer(blob, dtype=dtype).reshape([int(v) for v in shape.split(",")])
        t = torch.from_numpy(arr.copy())
        images.append(t.float() / 255 if dtype == "uint8" else t.float())
    return torch.stack(images)


def _check_distortion(spec: BenchSpec, adv: pd.DataFrame, x_adv: Any) -> None:
    """Each image's distortion to its original must be the records' (module docstring)."""
    import torch

    from smoothlab.bench.shard import load_images

    x, _ = load_images(spec, adv["image_id"].to_numpy(dtype="int64").copy())
    d = (x_adv - x.to(x_adv.dtype)).flatten(1).norm(dim=1).double().numpy()
    ref = adv["distortion"].to_numpy(dtype="float64")
    slack = np.zeros_like(ref)
    halves = adv["dtype"].to_numpy() == "float16"
    if halves.any():  # half a float16 spacing per pixel, in L2
        h = x_adv[torch.as_tensor(np.flatnonzero(halves))].to(torch.float16).numpy()
        slack[halves] = np.sqrt(np.sum((np.spacing(np.abs(h)).astype("float64") / 2) ** 2, axis=(1, 2, 3)))
    bad = np.abs(d - ref) > slack + 1e-5 * ref + 1e-6
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"saved adversarial image of image {int(adv['image_id'].iloc[i])} ({adv['attack'].iloc[i]!r}) is at "
            f"distortion {d[i]:.7g} from its original, but the records say {ref[i]:.7g}: the images or the data set "
            "changed since the run"
        )


def load_adversarials(
    out: str | os.PathLike[str], attack: str, index: int | Sequence[int] | None = None, *, check: bool = True
) -> SavedAdversarials:
    """Read back the adversarial images saved by ``run(..., save_adversarials=True)``.

    Parameters
    ----------
    out : path
        The run's output folder.
    attack : str
        The attack's key in the records (``"pgd2"``, ``"scw"``, a label).
    index : int or sequence of int, optional
        Image indices of the data set (default: every image the attack fooled).
    check : bool
        Check each image's distortion to its original (re-loaded from the spec's data set)
        against the records' (see the module docstring); the files' checksums are always checked.

    Returns
    -------
    SavedAdversarials
        The images (float32), with their records' budget, distortion and prediction.

    Raises
    ------
    ValueError
        ``attack`` not in the run; an image of ``index`` not in the run, or that the attack did not
        fool (no adversarial image); a shard not computed, or whose files are invalid; an image
        whose distortion disagrees with the records.
    FileNotFoundError
        ``out`` holds no benchmark run.

    Examples
    --------
    >>> import tempfile
    >>> from smoothlab.bench import AttackSpec, BenchSpec, load_adversarials, run
    >>> spec = BenchSpec(attacks=(AttackSpec("pgd2", budgets=(2.0, 5.0)),), n_images=4, batch_size=4,
    ...                  shard_size=4, visibility=False)
    >>> out = tempfile.mkdtemp()
    >>> result = run(spec, out=out, workers=0, progress=False, save_adversarials=True)
    >>> saved = load_adversarials(out, "pgd2")
    >>> saved.x_adv.shape[1:], saved.dtype
    (torch.Size([1, 28, 28]), 'float16')
    """
    import torch

    from smoothlab.bench.shard import dataset_size, plan_shards, select_images

    out = Path(out).expanduser()
    spec = storage.read_spec(out)
    if attack not in spec.attack_keys:
        raise ValueError(f"attack must be one of the run's attacks {list(spec.attack_keys)}, got {attack!r}")
    ids = select_images(spec, dataset_size(spec))
    wanted = _wanted(index)
    if wanted is not None and not np.isin(wanted, ids).all():
        raise ValueError(f"index {int(wanted[~np.isin(wanted, ids)][0])} is not an image of the run in {out}")
    recs, advs = [], []
    for k, shard in enumerate(plan_shards(spec, ids)):
        if wanted is None or np.isin(shard, wanted).any():
            r, a = _shard_rows(out, spec, k, shard, attack)
            recs.append(r)
            advs.append(a)
    rec, adv = pd.concat(recs, ignore_index=True), pd.concat(advs, ignore_index=True)
    if wanted is not None:
        missing = wanted[~np.isin(wanted, adv["image_id"].to_numpy())]
        if missing.size:
            raise ValueError(f"attack {attack!r} did not fool image {int(missing[0])} at any budget: no adversarial image")
        adv = adv[adv["image_id"].isin(wanted)]
    adv = adv.sort_values("image_id", kind="stable").reset_index(drop=True)
    x_adv = _decode(adv) if len(adv) else torch.empty(0)
    if check and len(adv):
        _check_distortion(spec, adv, x_adv)
    labels = rec.drop_duplicates("image_id").set_index("image_id")["label"]
    return SavedAdversarials(
        attack=attack,
        image_ids=adv["image_id"].to_numpy(dtype="int64"),
        x_adv=x_adv,
        budget=adv["budget"].to_numpy(dtype="float64"),
        distortion=adv["distortion"].to_numpy(dtype="float64"),
        pred_adv=adv["pred_adv"].to_numpy(dtype="int64"),
        labels=labels.reindex(adv["image_id"]).to_numpy(dtype="int64"),
        dtype=str(adv["dtype"].iloc[0]) if len(adv) else "",
    )
