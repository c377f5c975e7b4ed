"""Per-image records, the data of the evaluation protocol of section 5.1: schema, building, validation.

Every evaluation in smoothlab (a notebook cell, the CLI, one Dask shard) yields the same
*records*: a :class:`pandas.DataFrame` with one row per ``(image, attack, budget)`` and the
columns of :data:`RECORD_COLUMNS`:

===================  =========  ===========================================================
column               dtype      meaning
===================  =========  ===========================================================
``image_id``         int64      index of the image in its dataset split
``attack``           str        attack name (``"fgsm"``, ``"pgd2"``, ``"scw"``, ...)
``budget``           float64    target distortion ``eps`` of the run; NaN for attacks
                                without one (C&W, sC&W)
``label``            int64      true class
``pred_clean``       int64      model prediction on the original image
``pred_adv``         int64      model prediction on the adversarial image
``correct``          bool       ``pred_clean == label`` (the image belongs to X, N of N')
``success``          bool       the attack succeeded on this image
``distortion``       float64    ``D = ||x_a - x_o||_2`` on the [0, 1] scale; **NaN where
                                the attack failed** (distortion makes no sense for a
                                failure, sec. 5.1)
``visibility``       float64    :func:`smoothlab.magnification.visibility` ``V(x_o, x_a)``: how
                                much the perturbation shows under adversarial magnification
                                (appendix A); NaN where the attack failed, and where it was
                                not computed. *Optional on input*: records without it get a
                                NaN column
``ssim``             float64    :func:`smoothlab.similarity.ssim` ``(x_o, x_a)``, the structural
                                similarity (1: identical); NaN where the attack failed or it was
                                not computed. *Optional on input*, like ``visibility``
``ciede2000``        float64    :func:`smoothlab.similarity.ciede2000` ``(x_o, x_a)``, the CIEDE2000
                                colour difference ΔE00 averaged over the pixels (0: identical; grey
                                images read as RGB); NaN where the attack failed or it was not
                                computed (images of other than 1 or 3 channels). *Optional on input*
``forward_passes``   int64      forward passes spent on this image
``backward_passes``  int64      backward passes spent on this image
``seconds``          float64    wall time of the attack call divided evenly over its batch
===================  =========  ===========================================================

The statistics of sec. 5.1 (eqs. 20-21) are computed from records by :mod:`smoothlab.metrics`.

Public API
----------
- :data:`RECORD_COLUMNS`, :data:`OPTIONAL_RECORD_COLUMNS` -- the schema above;
- :func:`records_from_result` -- one attack call -> records (with the ``visibility`` column from a
  :class:`smoothlab.magnification.Magnifier` of the originals, shared between calls on the same
  images through ``visibility_cache``, and the ``ssim`` and ``ciede2000`` columns);
- :func:`validate_records` -- check a frame against the schema and return it with the schema's dtypes;
- :func:`sort_records` -- the canonical row order (bit-identical aggregates however records were made).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from smoothlab.attacks import AttackResult

__all__ = ["RECORD_COLUMNS", "OPTIONAL_RECORD_COLUMNS", "validate_records", "sort_records", "records_from_result"]

#: Column name -> dtype of the record schema (see the module docstring).
RECORD_COLUMNS: dict[str, str] = {
    "image_id": "int64",
    "attack": "str",
    "budget": "float64",
    "label": "int64",
    "pred_clean": "int64",
    "pred_adv": "int64",
    "correct": "bool",
    "success": "bool",
    "distortion": "float64",
    "visibility": "float64",
    "ssim": "float64",
    "ciede2000": "float64",
    "forward_passes": "int64",
    "backward_passes": "int64",
    "seconds": "float64",
}


#: Columns of :data:`RECORD_COLUMNS` that records may lack (:func:`validate_records` adds
#: them, filled with NaN): records made before they existed, or by hand.
OPTIONAL_RECORD_COLUMNS: tuple[str, ...] = ("visibility", "ssim", "ciede2000")
#: Integer columns that count something (>= 0).
_NON_NEGATIVE_COLUMNS = ("image_id", "forward_passes", "backward_passes")


# --------------------------------------------------------------------------- validation


def validate_records(records: Any, name: str = "records") -> pd.DataFrame:
    """Check a records frame and return a copy with the schema's dtypes.

    Parameters
    ----------
    records : pandas.DataFrame
        Per-image records (one row per image, attack and budget), see the module docstring.
    name : str
        Argument name used in error messages.

    Returns
    -------
    pandas.DataFrame
        A copy holding the columns of :data:`RECORD_COLUMNS` (first, with their dtypes)
        followed by any extra column, with a fresh ``RangeIndex``. A missing ``visibility``
        column is added (NaN), and ``visibility`` is set to NaN where ``success`` is false
        (like the distortion, it is defined for successes only).

    Raises
    ------
    TypeError
        ``records`` is not a DataFrame, or a column has the wrong kind of values.
    ValueError
        The frame is empty, misses columns, holds NaN where a value is required, a negative
        or non-finite distortion for a success, a success without a distortion, or the same
        ``(image_id, attack, budget)`` twice.
    """
    df = _records_copy(records, name)
    for col, dtype in RECORD_COLUMNS.items():
        df[col] = _COERCE[dtype](df[col], f"{name}[{col!r}]")
    _check_ranges(df, name)
    _check_distortion_and_visibility(df, name)
    _check_consistency(df, name)
    extra = [c for c in df.columns if c not in RECORD_COLUMNS]
    return df[list(RECORD_COLUMNS) + extra]


def _records_copy(records: Any, name: str) -> pd.DataFrame:
    """A copy of a non-empty DataFrame holding every required column, optional ones added (NaN)."""
    if not isinstance(records, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas.DataFrame of per-image records, got {type(records).__name__}")
    missing = [c for c in RECORD_COLUMNS if c not in records.columns and c not in OPTIONAL_RECORD_COLUMNS]
    if missing:
        raise ValueError(
            f"{name} is missing the record column(s) {missing}; expected at least {list(RECORD_COLUMNS)}, "
            f"got columns {list(map(str, records.columns))}"
        )
    if len(records) == 0:
        raise ValueError(f"{name} must hold at least one record, got an empty DataFrame")
    df = records.reset_index(drop=True).copy()
    for col in OPTIONAL_RECORD_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    return df


def _no_missing(s: pd.Series, where: str) -> None:
    if s.isna().any():
        raise ValueError(f"{where} must not hold missing values, got {int(s.isna().sum())} NaN")


def _as_int64(s: pd.Series, where: str) -> pd.Series:
    _no_missing(s, where)
    if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_integer_dtype(s):
        # Accept integral floats (e.g. after a round trip through a NaN-able format).
        if not (pd.api.types.is_float_dtype(s) and np.all(np.mod(s.to_numpy(), 1) == 0)):
            raise TypeError(f"{where} must hold integers, got dtype {s.dtype}")
    return s.astype("int64")


def _as_bool(s: pd.Series, where: str) -> pd.Series:
    _no_missing(s, where)
    if not pd.api.types.is_bool_dtype(s):
        raise TypeError(f"{where} must hold booleans, got dtype {s.dtype}")
    return s.astype(bool)


def _as_float64(s: pd.Series, where: str) -> pd.Series:
    if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        raise TypeError(f"{where} must hold real numbers, got dtype {s.dtype}")
    return s.astype("float64")


def _as_names(s: pd.Series, where: str) -> pd.Series:
    if s.isna().any() or not all(isinstance(a, str) and a for a in s):
        raise TypeError(f"{where} must hold non-empty strings (attack names)")
    return s.astype(str)  # pandas' default string dtype ("str" in pandas 3)


#: How each dtype of :data:`RECORD_COLUMNS` is checked and converted.
_COERCE = {"int64": _as_int64, "bool": _as_bool, "float64": _as_float64, "str": _as_names}


def _check_ranges(df: pd.DataFrame, name: str) -> None:
    """Counts and indices >= 0; budgets finite and >= 0, or NaN (no budget)."""
    for col in _NON_NEGATIVE_COLUMNS:
        if (df[col] < 0).any():
            raise ValueError(f"{name}[{col!r}] must be >= 0, got minimum {int(df[col].min())}")
    bad_budget = ~np.isnan(df["budget"]) & ~(np.isfinite(df["budget"]) & (df["budget"] >= 0))
    if bad_budget.any():
        raise ValueError(f"{name}['budget'] must be finite and >= 0 or NaN, got {df.loc[bad_budget, 'budget'].iloc[0]}")


def _check_distortion_and_visibility(df: pd.DataFrame, name: str) -> None:
    """Distortion finite and >= 0 for every success, NaN for every failure; visibility finite and
    >= 0 or NaN (not computed) for a success, and set to NaN for failures."""
    d = df["distortion"].to_numpy()
    succ = df["success"].to_numpy()
    if np.any(succ & ~(np.isfinite(d) & (d >= 0))):
        bad = d[succ & ~(np.isfinite(d) & (d >= 0))][0]
        raise ValueError(f"{name}['distortion'] must be finite and >= 0 where success is True, got {bad}")
    if np.any(~succ & ~np.isnan(d)):
        raise ValueError(
            f"{name}['distortion'] must be NaN where success is False (distortion makes no sense "
            f"for a failure, sec. 5.1); got {int(np.sum(~succ & ~np.isnan(d)))} failure(s) with a value"
        )
    v = df["visibility"].to_numpy()
    bad_v = succ & ~np.isnan(v) & ~(np.isfinite(v) & (v >= 0))
    if np.any(bad_v):
        raise ValueError(f"{name}['visibility'] must be finite and >= 0 (or NaN: not computed), got {v[bad_v][0]}")
    df.loc[~succ, "visibility"] = np.nan  # like the distortion, it makes no sense for a failure
    q = df["ssim"].to_numpy()
    bad_q = succ & ~np.isnan(q) & ~(np.isfinite(q) & (q >= -1) & (q <= 1))
    if np.any(bad_q):
        raise ValueError(f"{name}['ssim'] must be in [-1, 1] (or NaN: not computed), got {q[bad_q][0]}")
    df.loc[~succ, "ssim"] = np.nan
    e = df["ciede2000"].to_numpy()
    bad_e = succ & ~np.isnan(e) & ~(np.isfinite(e) & (e >= 0))
    if np.any(bad_e):
        raise ValueError(f"{name}['ciede2000'] must be finite and >= 0 (or NaN: not computed), got {e[bad_e][0]}")
    df.loc[~succ, "ciede2000"] = np.nan


def _check_consistency(df: pd.DataFrame, name: str) -> None:
    """``correct == (pred_clean == label)`` and one row per ``(image_id, attack, budget)``."""
    if not np.array_equal(df["correct"].to_numpy(), (df["pred_clean"] == df["label"]).to_numpy()):
        raise ValueError(f"{name}['correct'] must equal pred_clean == label in every row")
    dup = df.duplicated(subset=["image_id", "attack", "budget"], keep=False)
    if dup.any():
        first = df.loc[dup].iloc[0]
        raise ValueError(
            f"{name} must hold one row per (image_id, attack, budget); got {int(dup.sum())} duplicated rows, "
            f"e.g. image_id={int(first['image_id'])}, attack={first['attack']!r}, budget={first['budget']}"
        )


def sort_records(records: pd.DataFrame) -> pd.DataFrame:
    """Sort records by ``(attack, budget, image_id)`` (NaN budgets last) with a fresh index.

    A canonical order makes every aggregate bit-identical however the records were produced
    (number of Dask workers, shard size, order of completion).
    """
    df = validate_records(records)
    return df.sort_values(["attack", "budget", "image_id"], kind="stable", na_position="last").reset_index(drop=True)


# --------------------------------------------------------------------------- records


def _to_numpy(value: Any) -> np.ndarray:
    """Tensor / array / sequence -> 1-D numpy array on the host."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def records_from_result(
    result: AttackResult,
    *,
    image_ids: Any,
    labels: Any,
    budget: float | Sequence[float] | Any | None = None,
    x: Any = None,
    visibility_options: dict[str, Any] | None = None,
    visibility: bool = True,
    visibility_cache: dict[Any, Any] | None = None,
) -> pd.DataFrame:
    """Turn one attack call into per-image records (one row per image of the batch).

    Parameters
    ----------
    result : smoothlab.attacks.AttackResult
        Output of an attack on a batch of ``B`` images.
    image_ids : array-like of int, shape (B,)
        Dataset index of each image of the batch.
    labels : array-like of int, shape (B,)
        True class of each image (the ``y`` given to the attack).
    budget : float, array-like of shape (B,), or None
        Target distortion ``eps`` of the run (a ``(B,)`` array when several budgets are
        stacked in the batch). ``None``: taken from ``result.params["eps"]`` when the attack
        has one, else NaN (C&W, sC&W).
    x : torch.Tensor, optional
        The original images ``(B, C, H, W)`` given to the attack. When given, the
        ``visibility`` column is :func:`smoothlab.magnification.visibility` ``(x, result.x_adv)``
        the ``ssim`` column :func:`smoothlab.similarity.ssim` ``(x, result.x_adv)`` and the
        ``ciede2000`` column :func:`smoothlab.similarity.ciede2000` ``(x, result.x_adv)`` for the
        successes (computed for those images only, without gradients); otherwise they are NaN.
        SSIM stays NaN for images smaller than its 7x7 window, ΔE00 for images of other than 1
        or 3 channels.
    visibility_options : dict, optional
        Keyword arguments of :func:`smoothlab.magnification.visibility` (magnification options);
        default: its defaults.
    visibility : bool
        Compute the ``visibility`` column when ``x`` is given (default); ``False`` leaves it NaN
        (the SSIM, much cheaper, is still computed).
    visibility_cache : dict, optional
        A dict (empty at first) shared by the calls on the same originals, e.g. every attack and
        budget of one batch of a benchmark: the :class:`~smoothlab.magnification.Magnifier` of each
        original (keyed by image id and options) is built once and reused, with bit-identical
        values (it depends on that image alone). An id that comes back with another image raises
        ``ValueError``.

    Returns
    -------
    pandas.DataFrame
        Records with the columns of :data:`RECORD_COLUMNS`. ``distortion`` and ``visibility``
        are NaN where the attack failed; ``seconds`` is ``result.seconds / B`` for every row
        (the attack's time; computing the visibility is not counted).
    """
    for field in ("success", "distortion", "pred_clean", "pred_adv", "forward_passes", "backward_passes", "attack", "seconds"):
        if not hasattr(result, field):
            raise TypeError(f"result must be an AttackResult (missing field {field!r}), got {type(result).__name__}")
    success = _to_numpy(result.success).reshape(-1)
    b = success.shape[0]
    if b == 0:
        raise ValueError("result must hold at least one image, got an empty batch")
    if success.dtype != np.bool_:
        raise TypeError(f"result.success must be boolean, got dtype {success.dtype}")

    def per_image(value: Any, what: str) -> np.ndarray:
        arr = _to_numpy(value)
        if arr.ndim == 0:
            arr = np.full(b, arr.item())
        if arr.shape != (b,):
            raise ValueError(f"{what} must have shape ({b},) like result.success, got shape {arr.shape}")
        return arr

    ids = per_image(image_ids, "image_ids")
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"image_ids must be integers, got dtype {ids.dtype}")
    y = per_image(labels, "labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {y.dtype}")
    if budget is None:
        eps = (result.params or {}).get("eps") if isinstance(getattr(result, "params", None), dict) else None
        budget = math.nan if eps is None else eps
    budgets = per_image(budget, "budget").astype("float64")
    distortion = per_image(result.distortion, "result.distortion").astype("float64")
    pred_clean = per_image(result.pred_clean, "result.pred_clean").astype("int64")
    seconds = float(result.seconds)
    vis = np.full(b, np.nan, dtype="float64")
    sim = np.full(b, np.nan, dtype="float64")
    de = np.full(b, np.nan, dtype="float64")
    if x is not None:
        _check_originals(x, result, b)
        if visibility:
            vis = _visibility_of_successes(x, result, success.astype(bool), visibility_options, ids, visibility_cache)
        sim = _ssim_of_successes(x, result, success.astype(bool))
        de = _ciede2000_of_successes(x, result, success.astype(bool))
    df = pd.DataFrame(
        {
            "image_id": ids.astype("int64"),
            "attack": [str(result.attack)] * b,
            "budget": budgets,
            "label": y.astype("int64"),
            "pred_clean": pred_clean,
            "pred_adv": per_image(result.pred_adv, "result.pred_adv").astype("int64"),
            "correct": pred_clean == y.astype("int64"),
            "success": success.astype(bool),
            "distortion": np.where(success, distortion, np.nan),
            "visibility": vis,
            "ssim": sim,
            "ciede2000": de,
            "forward_passes": per_image(result.forward_passes, "result.forward_passes").astype("int64"),
            "backward_passes": per_image(result.backward_passes, "result.backward_passes").astype("int64"),
            "seconds": np.full(b, seconds / b, dtype="float64"),
        }
    )
    return validate_records(df, "records built from result")


def _check_originals(x: Any, result: Any, b: int) -> None:
    """``x`` must be the ``(B, C, H, W)`` tensor of originals matching ``result.x_adv``."""
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be the torch.Tensor of original images given to the attack, got {type(x).__name__}")
    x_adv = getattr(result, "x_adv", None)
    if not isinstance(x_adv, torch.Tensor) or x.shape != x_adv.shape or x.shape[0] != b:
        raise ValueError(
            f"x must have the shape of result.x_adv {tuple(getattr(x_adv, 'shape', ()))} with {b} images, "
            f"got {tuple(x.shape)}"
        )


def _ssim_of_successes(x: Any, result: Any, success: np.ndarray) -> np.ndarray:
    """``ssim(x_o, x_a)`` for the successful images of a batch, NaN elsewhere (and for images
    smaller than the SSIM window)."""
    import torch

    from smoothlab.similarity import SSIM_WINDOW, ssim

    out = np.full(success.shape[0], np.nan, dtype="float64")
    if success.any() and min(x.shape[-2:]) >= SSIM_WINDOW:
        idx = torch.from_numpy(np.flatnonzero(success)).to(x.device)
        xa = result.x_adv.detach()[idx].to(x.dtype).clamp(0.0, 1.0)
        out[success] = ssim(x.detach()[idx], xa).cpu().numpy()
    return out


def _ciede2000_of_successes(x: Any, result: Any, success: np.ndarray) -> np.ndarray:
    """``ciede2000(x_o, x_a)`` for the successful images of a batch, NaN elsewhere (and for images
    of other than 1 or 3 channels)."""
    import torch

    from smoothlab.similarity import ciede2000

    out = np.full(success.shape[0], np.nan, dtype="float64")
    if success.any() and x.shape[1] in (1, 3):
        idx = torch.from_numpy(np.flatnonzero(success)).to(x.device)
        xa = result.x_adv.detach()[idx].to(x.dtype).clamp(0.0, 1.0)
        out[success] = ciede2000(x.detach()[idx], xa).cpu().numpy()
    return out


def _visibility_of_successes(
    x: Any,
    result: Any,
    success: np.ndarray,
    options: dict[str, Any] | None,
    ids: np.ndarray | None = None,
    cache: dict[Any, Any] | None = None,
) -> np.ndarray:
    """``visibility(x_o, x_a)`` for the successful images of a batch, NaN elsewhere; with ``cache``,
    each original's magnification is computed once (see :func:`records_from_result`)."""
    import torch

    from smoothlab.magnification import visibility

    b = success.shape[0]
    x_adv = result.x_adv
    out = np.full(b, np.nan, dtype="float64")
    if success.any():
        pos = np.flatnonzero(success)
        idx = torch.from_numpy(pos).to(x.device)
        with torch.no_grad():
            xo, xa = x.detach()[idx], x_adv.detach()[idx].to(x.dtype)
            if cache is None or ids is None:
                v = visibility(xo, xa, **(options or {}))
            else:
                v = _cached_visibility(xo, xa, ids[pos], options or {}, cache)
        out[success] = v.double().cpu().numpy()
    return out


def _cached_visibility(xo: Any, xa: Any, ids: np.ndarray, options: dict[str, Any], cache: dict[Any, Any]) -> Any:
    """:func:`~smoothlab.magnification.visibility` ``(xo, xa, **options)`` with the magnifier of each
    original taken from ``cache`` (keyed by image id and options; built once, on first sight)."""
    import torch

    from smoothlab._validation import check_images
    from smoothlab.magnification import Magnifier

    check_images(xo, "x_o")  # every original, cached or not (Magnifier below sees the new ones only)
    flat = options.get("flat_weighting", True)
    mag = {k: v for k, v in options.items() if k != "flat_weighting"}
    tag = repr(sorted(mag.items()))
    keys = [(int(i), tag) for i in ids]
    first: dict[Any, int] = {}
    for j, key in enumerate(keys):
        if key not in cache and key not in first:
            first[key] = j
    if first:  # originals not seen yet: magnified once, in one batch
        built = Magnifier(xo[list(first.values())], **mag)
        for n, key in enumerate(first):
            cache[key] = built.select(n)
    joined = Magnifier.cat([cache[key] for key in keys])
    if not torch.equal(joined.x_o, xo):
        raise ValueError("visibility_cache holds another image for some image id: use one cache per set of originals")
    return joined.visibility(xa, flat_weighting=flat)
