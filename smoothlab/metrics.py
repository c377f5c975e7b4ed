"""The evaluation protocol of section 5.1: per-image records and the statistics built on them.

Every evaluation in smoothlab (a notebook cell, the CLI, one Dask shard) yields the same
*records*: a :class:`pandas.DataFrame` with one row per ``(image, attack, budget)`` and the
columns of :data:`RECORD_COLUMNS`:

==================  =========  ===========================================================
column              dtype      meaning
==================  =========  ===========================================================
``image_id``        int64      index of the image in its dataset split
``attack``          str        attack name (``"fgsm"``, ``"pgd2"``, ``"scw"``, ...)
``budget``          float64    target distortion ``eps`` of the run; NaN for attacks
                               without one (C&W, sC&W)
``label``           int64      true class
``pred_clean``      int64      model prediction on the original image
``pred_adv``        int64      model prediction on the adversarial image
``correct``         bool       ``pred_clean == label`` (the image belongs to X, N of N')
``success``         bool       the attack succeeded on this image
``distortion``      float64    ``D = ||x_a - x_o||_2`` on the [0, 1] scale; **NaN where
                               the attack failed** (distortion makes no sense for a
                               failure, sec. 5.1)
``visibility``      float64    :func:`smoothlab.magnification.visibility` ``V(x_o, x_a)``: how
                               much the perturbation shows under adversarial magnification
                               (appendix A); NaN where the attack failed, and where it was
                               not computed. *Optional on input*: records without it get a
                               NaN column
``ssim``            float64    :func:`smoothlab.similarity.ssim` ``(x_o, x_a)``, the structural
                               similarity (1: identical); NaN where the attack failed or it was
                               not computed. *Optional on input*, like ``visibility``
``forward_passes``  int64      forward passes spent on this image
``backward_passes`` int64      backward passes spent on this image
``seconds``         float64    wall time of the attack call divided evenly over its batch
==================  =========  ===========================================================

Every statistic is computed from records by the functions of this module:

- :func:`union_over_budgets` -- the multi-budget protocol: an image succeeds if any run
  succeeds and its distortion is the least over the successful runs (sec. 5.1);
- :func:`success_probability` -- ``P_suc = N_suc / N`` (eq. 20);
- :func:`mean_distortion` -- conditional average distortion ``D̄`` over successes (eq. 20);
- :func:`mean_visibility` -- average visibility ``V̄`` over the successes (the same
  conditioning as ``D̄``; successes whose visibility was not computed are left out);
- :func:`mean_ssim` -- average SSIM over the successes, conditioned the same way;
- :func:`operating_characteristic` -- ``P(D)`` as a step function (eq. 21);
- :func:`summary` -- one row per attack: ``N'``, ``N``, accuracy, ``N_suc``, ``P_suc``, ``D̄``, ``V̄``, SSIM;
- :func:`visibility_summary`, :func:`paired_comparison` -- how visible each attack is, and image by
  image which of two is the less visible; :func:`worst_cases` -- each attack's image of largest
  distortion (the paper's Fig. 5); :func:`side_by_side` -- several summaries next to each other.

Under transferability (sec. 5.4) the records hold the *target* model's predictions: ``correct``
says the target classifies the original, ``success`` that it misclassifies the adversarial
image crafted on the source model; every statistic then follows unchanged.

Only images the model classifies correctly (``correct``) count: the records of the other
images are excluded from every statistic except the count ``N'`` and the accuracy ``N/N'``.
Statistics apply :func:`union_over_budgets` themselves, so they accept raw records
with several budgets per attack as well as records that are already one row per image.

Undefined values (documented choice): ``D̄`` and ``V̄`` are NaN for an attack with no success
(``N_suc = 0``: the conditional mean has nothing to average; ``V̄`` also when no success has a
visibility), and ``P_suc``/``accuracy``
are NaN in :func:`summary` for an attack whose records hold no correctly classified image
(``N = 0``); :func:`success_probability` and :func:`operating_characteristic` raise a
``ValueError`` in that case instead, because there is nothing to measure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from smoothlab.attacks import ATTACK_LABELS, attack_names

if TYPE_CHECKING:  # pragma: no cover
    from smoothlab.attacks import AttackResult

__all__ = [
    "RECORD_COLUMNS",
    "OPTIONAL_RECORD_COLUMNS",
    "SUMMARY_COLUMNS",
    "ATTACK_ORDER",
    "ATTACK_LABELS",
    "attack_label",
    "validate_records",
    "records_from_result",
    "union_over_budgets",
    "success_probability",
    "mean_distortion",
    "mean_visibility",
    "mean_ssim",
    "operating_characteristic",
    "operating_characteristics",
    "summary",
    "format_summary",
    "sort_records",
    "attack_order",
    "visibility_summary",
    "paired_comparison",
    "worst_cases",
    "side_by_side",
]

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
    "forward_passes": "int64",
    "backward_passes": "int64",
    "seconds": "float64",
}

#: The order of Table 1 (the minimal-norm attacks DDN and FMN, not in the paper, after C&W and
#: their smooth versions after sC&W), then the attacks a user registered: the attack registry's
#: order (:func:`smoothlab.attacks.attack_names`) when smoothlab was imported; :func:`attack_order`
#: reads it live.
ATTACK_ORDER: tuple[str, ...] = attack_names()


def attack_label(name: str) -> str:
    """The display name of attack ``name`` (its registry label; ``name`` itself if unregistered)."""
    return ATTACK_LABELS.get(str(name), str(name))


#: Columns of :data:`RECORD_COLUMNS` that records may lack (:func:`validate_records` adds
#: them, filled with NaN): records made before they existed, or by hand.
OPTIONAL_RECORD_COLUMNS: tuple[str, ...] = ("visibility", "ssim")
#: Integer columns that count something (>= 0).
_NON_NEGATIVE_COLUMNS = ("image_id", "forward_passes", "backward_passes")


# --------------------------------------------------------------------------- validation


def attack_order(names: Iterable[str]) -> list[str]:
    """Sort attack names in the order of Table 1, unknown names after, alphabetically."""
    unique = list(dict.fromkeys(names))
    rank = {name: i for i, name in enumerate(attack_names())}
    return sorted(unique, key=lambda n: (rank.get(n, len(rank)), n))


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
        and the ``ssim`` column :func:`smoothlab.similarity.ssim` ``(x, result.x_adv)`` for the
        successes (computed for those images only, without gradients); otherwise they are NaN.
        SSIM stays NaN for images smaller than its 7x7 window.
    visibility_options : dict, optional
        Keyword arguments of :func:`smoothlab.magnification.visibility` (magnification options);
        default: its defaults.
    visibility : bool
        Compute the ``visibility`` column when ``x`` is given (default); ``False`` leaves it NaN
        (the SSIM, much cheaper, is still computed).
    visibility_cache : dict, optional
        A dict (empty at first) shared by the calls on the same originals, e.g. every attack and
        budget of one batch of a benchmark: the magnification of each original (keyed by image id
        and options) is computed once and reused, with bit-identical values (it depends on that
        image alone). An id that comes back with another image raises ``ValueError``.

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
    if x is not None:
        _check_originals(x, result, b)
        if visibility:
            vis = _visibility_of_successes(x, result, success.astype(bool), visibility_options, ids, visibility_cache)
        sim = _ssim_of_successes(x, result, success.astype(bool))
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
    """:func:`~smoothlab.magnification.visibility` with the originals' parts from ``cache``."""
    import torch

    from smoothlab._validation import check_images
    from smoothlab.magnification import _magnify_parts, _visibility_of_parts, _visibility_options

    check_images(xo, "x_o")  # the checks of visibility()
    check_images(xa, "x_a")
    flat = options.get("flat_weighting", True)
    mag = {k: v for k, v in options.items() if k != "flat_weighting"}
    opts = _visibility_options(mag)
    tag = repr(sorted(mag.items()))
    keys = [(int(i), tag) for i in ids]
    first = {}
    for j, key in enumerate(keys):
        if key not in cache and key not in first:
            first[key] = j
    if first:  # originals not seen yet: their parts, once each
        new = list(first.values())
        parts = _magnify_parts(xo[new], *opts)
        for n, key in enumerate(first):
            cache[key] = (xo[new[n]].clone(),) + tuple(p[n] for p in parts)
    stored = [cache[key] for key in keys]
    if not torch.equal(torch.stack([s[0] for s in stored]), xo):
        raise ValueError("visibility_cache holds another image for some image id: use one cache per set of originals")
    parts_o = tuple(torch.stack([s[k] for s in stored]) for k in (1, 2, 3))
    return _visibility_of_parts(parts_o, _magnify_parts(xa, *opts)[0], flat)


# --------------------------------------------------------------------------- protocol


def union_over_budgets(records: pd.DataFrame) -> pd.DataFrame:
    """Merge the runs of each attack over its budgets: one row per ``(image_id, attack)``.

    Section 5.1: an attack that targets a distortion is run for several budgets ``eps``;
    it succeeds on an image if any run succeeds, and the image's distortion is the minimum
    over the successful runs. Attacks run once (budget NaN) pass through unchanged.

    Parameters
    ----------
    records : pandas.DataFrame
        Per-image records (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        Records with one row per ``(image_id, attack)``, sorted by ``(attack, image_id)``:
        ``success`` = any run succeeded; ``distortion`` = least distortion over successful
        runs (NaN for a failure); ``budget``, ``pred_adv``, ``visibility`` and ``ssim`` = those of
        the run that gave this least distortion (for a failure: NaN and the prediction of the largest-budget
        run); ``forward_passes``, ``backward_passes`` and ``seconds`` = totals over all runs
        (the cost of the whole protocol); ``n_runs`` = number of runs merged.

    Raises
    ------
    ValueError
        Invalid records, or an image whose label / clean prediction differs between runs.
    """
    df = validate_records(records)
    df = df[list(RECORD_COLUMNS)]
    keys = ["attack", "image_id"]
    consistent = df.groupby(keys, sort=False)[["label", "pred_clean"]].nunique()
    if (consistent > 1).any().any():
        bad = consistent[(consistent > 1).any(axis=1)].index[0]
        raise ValueError(
            f"records: label and pred_clean must agree between the runs of one image; they differ for "
            f"attack={bad[0]!r}, image_id={bad[1]}"
        )
    # Pick, per (attack, image), the successful run of least distortion (ties: smallest
    # budget); failures sort after successes, then by largest budget.
    order = df.assign(
        _fail=~df["success"],
        _d=df["distortion"].fillna(np.inf),
        _b=np.where(df["success"], df["budget"].fillna(np.inf), -df["budget"].fillna(-np.inf)),
    ).sort_values(keys + ["_fail", "_d", "_b"], kind="stable")
    best = order.drop_duplicates(keys, keep="first").set_index(keys)
    totals = df.groupby(keys, sort=True).agg(
        forward_passes=("forward_passes", "sum"),
        backward_passes=("backward_passes", "sum"),
        seconds=("seconds", "sum"),
        n_runs=("image_id", "size"),
    )
    out = best.drop(columns=["_fail", "_d", "_b", "forward_passes", "backward_passes", "seconds"]).join(totals)
    out.loc[~out["success"], "budget"] = np.nan
    out = out.reset_index().sort_values(keys, kind="stable").reset_index(drop=True)
    out["n_runs"] = out["n_runs"].astype("int64")
    return out[list(RECORD_COLUMNS) + ["n_runs"]]


def _select(records: pd.DataFrame, attack: str | None, func: str) -> pd.DataFrame:
    """Union over budgets, restricted to one attack (required when several are present)."""
    df = union_over_budgets(records)
    attacks = attack_order(df["attack"])
    if attack is None:
        if len(attacks) > 1:
            raise ValueError(
                f"{func}: records hold several attacks {attacks}; pass attack= one of them "
                f"(or use summary() / operating_characteristics() for all)"
            )
        attack = attacks[0]
    if attack not in attacks:
        raise ValueError(f"attack must be one of the attacks in the records {attacks}, got {attack!r}")
    return df[df["attack"] == attack]


def _correct_only(df: pd.DataFrame, func: str) -> pd.DataFrame:
    """The records of one attack (:func:`_select`) on correctly classified images; raise if none."""
    kept = df[df["correct"]]
    if len(kept) == 0:
        raise ValueError(
            f"{func}: no image of attack {df['attack'].iloc[0]!r} is classified correctly (N = 0 of N' = {len(df)}); "
            "the statistic is undefined"
        )
    return kept


def success_probability(records: pd.DataFrame, attack: str | None = None) -> float:
    """Success probability ``P_suc = N_suc / N`` (eq. 20) after the union over budgets.

    Parameters
    ----------
    records : pandas.DataFrame
        Per-image records.
    attack : str, optional
        Attack to evaluate; may be omitted when the records hold a single attack.

    Raises
    ------
    ValueError
        Invalid records, an ambiguous or unknown ``attack``, or no correctly classified image.
    """
    kept = _correct_only(_select(records, attack, "success_probability"), "success_probability")
    return float(kept["success"].sum()) / float(len(kept))


def mean_distortion(records: pd.DataFrame, attack: str | None = None) -> float:
    """Conditional average distortion ``D̄`` over the successes (eq. 20).

    ``D̄ = (1 / N_suc) * sum over x_o in X_suc of D(x_o)``, after the union over budgets and
    over correctly classified images only. Returns NaN when the attack never succeeds
    (``N_suc = 0``: the conditional mean is undefined).

    Raises
    ------
    ValueError
        Invalid records, an ambiguous or unknown ``attack``, or no correctly classified image.
    """
    kept = _correct_only(_select(records, attack, "mean_distortion"), "mean_distortion")
    d = kept.loc[kept["success"], "distortion"].to_numpy()
    return float(np.sum(d) / d.size) if d.size else math.nan


def mean_visibility(records: pd.DataFrame, attack: str | None = None) -> float:
    """Average visibility ``V̄`` over the successes, conditioned like ``D̄`` (eq. 20).

    After the union over budgets (each image keeps the visibility of its least-distortion
    successful run) and over correctly classified images only; successes whose visibility
    was not computed (NaN) are left out. NaN when no success has a visibility.

    Raises
    ------
    ValueError
        Invalid records, an ambiguous or unknown ``attack``, or no correctly classified image.
    """
    kept = _correct_only(_select(records, attack, "mean_visibility"), "mean_visibility")
    return _mean_visibility(kept)


def mean_ssim(records: pd.DataFrame, attack: str | None = None) -> float:
    """Average SSIM (:func:`smoothlab.similarity.ssim`) over the successes, conditioned like ``D̄``.

    After the union over budgets (each image keeps the SSIM of its least-distortion successful
    run), over correctly classified images only; successes without an SSIM (NaN) are left out.
    NaN when no success has one.

    Raises
    ------
    ValueError
        Invalid records, an ambiguous or unknown ``attack``, or no correctly classified image.
    """
    kept = _correct_only(_select(records, attack, "mean_ssim"), "mean_ssim")
    return _mean_visibility(kept, "ssim")


def _mean_visibility(kept: pd.DataFrame, column: str = "visibility") -> float:
    v = kept.loc[kept["success"], column].to_numpy(dtype="float64")
    v = v[~np.isnan(v)]
    return float(np.sum(v) / v.size) if v.size else math.nan


def _oc_from_union(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    n = len(df)
    d = np.sort(df.loc[df["success"], "distortion"].to_numpy(dtype="float64"))
    if d.size == 0:
        return np.zeros(1), np.zeros(1)
    values, counts = np.unique(d, return_counts=True)
    p = np.cumsum(counts) / n
    if values[0] > 0:
        values = np.concatenate([[0.0], values])
        p = np.concatenate([[0.0], p])
    return values, p


def operating_characteristic(records: pd.DataFrame, attack: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Operating characteristic ``P(D)`` (eq. 21) as the corners of a step function.

    ``P(D) = |{x_o in X_suc : D(x_o) <= D}| / N`` for ``D`` in ``[0, D_max]``.

    Parameters
    ----------
    records : pandas.DataFrame
        Per-image records (the union over budgets is applied first).
    attack : str, optional
        Attack to evaluate; may be omitted when the records hold a single attack.

    Returns
    -------
    D, P : numpy.ndarray
        Increasing distortions ``D[0] = 0 < D[1] < ... < D[-1] = D_max`` (the distinct
        distortions of the successes, preceded by 0) and ``P[k] = P(D[k])``, so
        ``P[0] = P(0) = 0`` and ``P[-1] = P_suc``. ``P(D)`` is right-continuous and constant
        between the ``D[k]``: plot it with a "hv" step line. With no success at all the
        result is ``D = [0], P = [0]``.

    Raises
    ------
    ValueError
        Invalid records, an ambiguous or unknown ``attack``, or no correctly classified image.
    """
    kept = _correct_only(_select(records, attack, "operating_characteristic"), "operating_characteristic")
    return _oc_from_union(kept)


def operating_characteristics(records: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`operating_characteristic` of every attack in the records (Table 1 order).

    Attacks with no correctly classified image are left out.
    """
    df = union_over_budgets(records)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in attack_order(df["attack"]):
        kept = df[(df["attack"] == name) & df["correct"]]
        if len(kept):
            out[name] = _oc_from_union(kept)
    return out


SUMMARY_COLUMNS: dict[str, str] = {
    "n_images": "N'",
    "n_correct": "N",
    "accuracy": "accuracy",
    "n_success": "N_suc",
    "p_success": "P_suc",
    "mean_distortion": "D̄",
    "mean_visibility": "V̄",
    "mean_ssim": "SSIM",
    "max_distortion": "D_max",
    "forward_passes": "fwd/img",
    "backward_passes": "bwd/img",
    "seconds": "seconds",
}


def summary(records: pd.DataFrame) -> pd.DataFrame:
    """Global statistics per attack (Table 1 of the paper, plus counts and costs).

    Parameters
    ----------
    records : pandas.DataFrame
        Per-image records, possibly several budgets per attack.

    Returns
    -------
    pandas.DataFrame
        Indexed by attack (Table 1 order), with columns
        ``n_images`` (N', all images), ``n_correct`` (N, correctly classified),
        ``accuracy`` (N / N'), ``n_success`` (N_suc), ``p_success`` (P_suc = N_suc / N,
        eq. 20), ``mean_distortion`` (D̄, eq. 20, conditional on success),
        ``mean_visibility`` (V̄: mean visibility over the successes, see
        :func:`mean_visibility`), ``mean_ssim`` (SSIM: mean structural similarity over the
        successes, :func:`mean_ssim`), ``max_distortion`` (D_max of eq. 21), ``forward_passes`` and ``backward_passes``
        (mean per correctly classified image, all budgets together) and ``seconds``
        (total over all records of the attack, misclassified images included).
        ``mean_distortion``/``mean_visibility``/``mean_ssim``/``max_distortion`` are NaN when
        ``n_success = 0`` (``mean_visibility``/``mean_ssim`` also when none was computed) and
        ``p_success`` is NaN when ``n_correct = 0`` (undefined statistics).

    Examples
    --------
    Four images, one attack at one budget; image 3 is misclassified from the start, so it
    counts in ``N'`` only:

    >>> import numpy as np
    >>> import pandas as pd
    >>> from smoothlab.metrics import summary
    >>> records = pd.DataFrame({
    ...     "image_id": [0, 1, 2, 3], "attack": "pgd2", "budget": 5.0,
    ...     "label": [7, 2, 1, 0], "pred_clean": [7, 2, 1, 6], "pred_adv": [3, 8, 1, 6],
    ...     "correct": [True, True, True, False], "success": [True, True, False, True],
    ...     "distortion": [1.0, 3.0, np.nan, 0.0],
    ...     "forward_passes": 11, "backward_passes": 10, "seconds": 0.01})
    >>> row = summary(records).loc["pgd2"]
    >>> int(row.n_images), int(row.n_correct), int(row.n_success)      # N', N, N_suc
    (4, 3, 2)
    >>> round(float(row.p_success), 3), float(row.mean_distortion)      # P_suc, D̄ (eq. 20)
    (0.667, 2.0)
    """
    df = union_over_budgets(records)
    rows = []
    names = attack_order(df["attack"])
    for name in names:
        part = df[df["attack"] == name]
        kept = part[part["correct"]]
        n_all, n = len(part), len(kept)
        d = kept.loc[kept["success"], "distortion"].to_numpy(dtype="float64")
        rows.append(
            {
                "n_images": n_all,
                "n_correct": n,
                "accuracy": n / n_all,
                "n_success": int(d.size),
                "p_success": d.size / n if n else math.nan,
                "mean_distortion": float(np.sum(d) / d.size) if d.size else math.nan,
                "mean_visibility": _mean_visibility(kept),
                "mean_ssim": _mean_visibility(kept, "ssim"),
                "max_distortion": float(np.max(d)) if d.size else math.nan,
                "forward_passes": float(kept["forward_passes"].sum()) / n if n else math.nan,
                "backward_passes": float(kept["backward_passes"].sum()) / n if n else math.nan,
                "seconds": float(part["seconds"].sum()),
            }
        )
    out = pd.DataFrame(rows, index=pd.Index(names, name="attack", dtype=object))
    return out.astype({"n_images": "int64", "n_correct": "int64", "n_success": "int64"})


def format_summary(table: pd.DataFrame, fmt: str = "markdown", *, digits: int = 2) -> str:
    """Render a :func:`summary` table as Markdown (paper notation) or CSV.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`summary`.
    fmt : {"markdown", "csv"}
        Output format. Markdown uses the paper's names (``P_suc``, ``D̄``, ...) and
        ``digits`` decimals; CSV keeps the raw column names and full precision.
    digits : int
        Decimals of the floating-point columns in Markdown.
    """
    if fmt not in ("markdown", "csv"):
        raise ValueError(f"fmt must be one of 'markdown', 'csv'; got {fmt!r}")
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be the DataFrame returned by summary(), got {type(table).__name__}")
    missing = [c for c in SUMMARY_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table must be the output of summary() with columns {list(SUMMARY_COLUMNS)}; missing {missing}")
    if fmt == "csv":
        return table.to_csv(float_format="%.17g", na_rep="nan")
    header = ["attack"] + [SUMMARY_COLUMNS[c] for c in SUMMARY_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * len(SUMMARY_COLUMNS)) + "|"]
    for name, row in table.iterrows():
        cells = [attack_label(name)]
        for col in SUMMARY_COLUMNS:
            v = row[col]
            if col.startswith("n_"):
                cells.append(str(int(v)))
            elif isinstance(v, float) and math.isnan(v):
                cells.append("—")
            else:
                cells.append(f"{float(v):.{1 if col in ('forward_passes', 'backward_passes') else digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def visibility_summary(records: pd.DataFrame) -> pd.DataFrame:
    """Per attack, how visible its successful adversarial examples are (notebook 4, sec. 5).

    Parameters
    ----------
    records : pandas.DataFrame
        Per-image records with a ``visibility`` column (``records_from_result(..., x=x)``).

    Returns
    -------
    pandas.DataFrame
        Indexed by attack (Table 1 order), columns ``n_correct`` (N), ``p_success`` (P_suc),
        ``mean_distortion`` (D̄), ``mean_visibility`` (V̄, as in :func:`summary`),
        ``median_visibility`` and ``mean_visibility_per_distortion`` (the mean of ``V / D`` over
        the successes with ``D > 0``: visibility per unit of distortion, to compare the *shapes*
        of perturbations of different norms). NaN where an attack has no success with a visibility.

    Examples
    --------
    >>> import pandas as pd
    >>> from smoothlab.metrics import visibility_summary
    >>> records = pd.DataFrame({
    ...     "image_id": [0, 1, 2], "attack": "cw", "budget": float("nan"), "label": 1, "pred_clean": 1,
    ...     "pred_adv": [2, 2, 1], "correct": True, "success": [True, True, False],
    ...     "distortion": [1.0, 2.0, float("nan")], "visibility": [0.5, 0.5, float("nan")],
    ...     "forward_passes": 1, "backward_passes": 1, "seconds": 0.0})
    >>> row = visibility_summary(records).loc["cw"]
    >>> float(row.mean_visibility), float(row.median_visibility), float(row.mean_visibility_per_distortion)
    (0.5, 0.5, 0.375)
    """
    df = union_over_budgets(records)
    table = summary(records)[["n_correct", "p_success", "mean_distortion", "mean_visibility"]].copy()
    ok = df[df["correct"] & df["success"] & df["visibility"].notna()]
    per_d = ok[ok["distortion"] > 0]
    table["median_visibility"] = ok.groupby("attack")["visibility"].median().reindex(table.index)
    table["mean_visibility_per_distortion"] = (
        (per_d["visibility"] / per_d["distortion"]).groupby(per_d["attack"]).mean().reindex(table.index)
    )
    return table


def paired_comparison(records: pd.DataFrame, attack: str, other: str, column: str = "visibility") -> tuple[float, int]:
    """Image by image, how often ``attack`` scores below ``other`` on ``column``.

    Only the correctly classified images on which both attacks succeed (after
    :func:`union_over_budgets`) and both values are known are compared.

    Parameters
    ----------
    records : pandas.DataFrame
        Per-image records of both attacks.
    attack, other : str
        Attack names.
    column : str
        ``"visibility"`` (default), ``"distortion"`` or ``"ssim"``.

    Returns
    -------
    (float, int)
        The fraction of the compared images where ``attack``'s value is strictly smaller, and
        their number (the fraction is NaN when there is none).

    Examples
    --------
    >>> import pandas as pd
    >>> from smoothlab.metrics import paired_comparison
    >>> records = pd.DataFrame({
    ...     "image_id": [0, 1, 2, 0, 1, 2], "attack": ["scw"] * 3 + ["cw"] * 3, "budget": float("nan"),
    ...     "label": 1, "pred_clean": 1, "pred_adv": 2, "correct": True,
    ...     "success": [True, True, True, True, True, False],
    ...     "distortion": [1.0, 3.0, 1.0, 2.0, 2.0, float("nan")],
    ...     "forward_passes": 1, "backward_passes": 1, "seconds": 0.0})
    >>> paired_comparison(records, "scw", "cw", "distortion")        # image 2: cw failed, not compared
    (0.5, 2)
    """
    if column not in ("visibility", "distortion", "ssim"):
        raise ValueError(f"column must be one of 'visibility', 'distortion', 'ssim'; got {column!r}")
    df = union_over_budgets(records)
    names = set(df["attack"])
    for name, value in (("attack", attack), ("other", other)):
        if value not in names:
            raise ValueError(f"{name} must be an attack of the records {sorted(names)}, got {value!r}")
    ok = df[df["correct"] & df["success"] & df[column].notna()]
    wide = ok.pivot(index="image_id", columns="attack", values=column)
    if attack not in wide.columns or other not in wide.columns:
        return math.nan, 0
    both = wide[[attack, other]].dropna()
    n = len(both)
    return (float((both[attack] < both[other]).mean()) if n else math.nan), n


def worst_cases(records: pd.DataFrame) -> pd.Series:
    """Per attack, the image on which its success needed the largest distortion (the paper's Fig. 5).

    Parameters
    ----------
    records : pandas.DataFrame
        Per-image records (several budgets per attack allowed: :func:`union_over_budgets`).

    Returns
    -------
    pandas.Series
        Attack (Table 1 order) -> ``image_id`` of its successful, correctly classified image of
        largest ``D`` (ties: the smallest ``image_id``). Attacks without a success are left out.

    Examples
    --------
    >>> import pandas as pd
    >>> from smoothlab.metrics import worst_cases
    >>> records = pd.DataFrame({
    ...     "image_id": [0, 1, 2], "attack": "pgd2", "budget": 5.0, "label": 1, "pred_clean": 1,
    ...     "pred_adv": 2, "correct": True, "success": True, "distortion": [1.0, 3.0, 2.0],
    ...     "forward_passes": 1, "backward_passes": 1, "seconds": 0.0})
    >>> worst_cases(records).to_dict()
    {'pgd2': 1}
    """
    df = union_over_budgets(records)
    ok = df[df["correct"] & df["success"]].sort_values(["attack", "distortion", "image_id"], ascending=[True, False, True])
    first = ok.drop_duplicates("attack", keep="first").set_index("attack")["image_id"]
    return first.reindex(attack_order(first.index)).astype("int64")


def side_by_side(
    summaries: Mapping[str, pd.DataFrame],
    columns: Sequence[str] = ("n_correct", "p_success", "mean_distortion", "mean_visibility"),
) -> pd.DataFrame:
    """Several :func:`summary` tables next to each other, in the paper's notation.

    Parameters
    ----------
    summaries : mapping of str to pandas.DataFrame
        Scenario name -> :func:`summary` (e.g. Tables 2 and 3 of one run each).
    columns : sequence of str
        Columns of :data:`SUMMARY_COLUMNS` to keep.

    Returns
    -------
    pandas.DataFrame
        Index: the attacks' display names (:data:`ATTACK_LABELS`) in Table 1 order; columns: a
        two-level index ``(scenario, statistic)`` with the statistics renamed as in
        :data:`SUMMARY_COLUMNS` (``N``, ``P_suc``, ``D̄``, ``V̄``, ...).
    """
    if not isinstance(summaries, Mapping) or not summaries:
        raise TypeError(f"summaries must be a non-empty mapping of name -> summary table, got {type(summaries).__name__}")
    unknown = [c for c in columns if c not in SUMMARY_COLUMNS]
    if unknown:
        raise ValueError(f"columns must be among {list(SUMMARY_COLUMNS)}, got {unknown}")
    parts = {}
    for name, table in summaries.items():
        if not isinstance(table, pd.DataFrame) or any(c not in table.columns for c in columns):
            raise TypeError(f"summaries[{name!r}] must be a summary() table with columns {list(columns)}")
        parts[name] = table[list(columns)].rename(columns=SUMMARY_COLUMNS)
    out = pd.concat(parts, axis=1)
    out = out.reindex(attack_order(out.index))
    out.index = [attack_label(a) for a in out.index]
    return out
