"""The statistics of the evaluation protocol of section 5.1 (eqs. 20-21), and their tables.

Every statistic is computed from per-image *records* (:mod:`smoothlab.records`: one row per
``(image, attack, budget)`` with the columns of :data:`smoothlab.records.RECORD_COLUMNS`, built by
:func:`smoothlab.records.records_from_result`) by the functions of this module:

- :func:`union_over_budgets` -- the multi-budget protocol: an image succeeds if any run
  succeeds and its distortion is the least over the successful runs (sec. 5.1);
- :func:`success_probability` -- ``P_suc = N_suc / N`` (eq. 20);
- :func:`mean_distortion` -- conditional average distortion ``D̄`` over successes (eq. 20);
- :func:`mean_visibility` -- average visibility ``V̄`` over the successes (the same
  conditioning as ``D̄``; successes whose visibility was not computed are left out);
- :func:`mean_ssim`, :func:`mean_ciede2000` -- average SSIM and CIEDE2000 ΔE00 over the successes, conditioned the same way;
- :func:`operating_characteristic` -- ``P(D)`` as a step function (eq. 21);
- :func:`summary` -- one row per attack: ``N'``, ``N``, accuracy, ``N_suc``, ``P_suc``, ``D̄``, ``V̄``, SSIM, ΔE00;
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

Display lives here too, not in a module of its own: :data:`ATTACK_ORDER` (:func:`attack_order`)
orders the rows of every statistic (Table 1), :data:`SUMMARY_COLUMNS` names :func:`summary`'s
columns in the paper's notation, and :func:`format_summary` and :func:`side_by_side` only render
:func:`summary` tables: about a hundred lines that change together with :func:`summary`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from smoothlab.attacks import ATTACK_LABELS, attack_names
from smoothlab.records import RECORD_COLUMNS, validate_records

__all__ = [
    "SUMMARY_COLUMNS",
    "ATTACK_ORDER",
    "ATTACK_LABELS",
    "attack_label",
    "FLOOR_WARNING",
    "GridFloorWarning",
    "grid_floor",
    "union_over_budgets",
    "success_probability",
    "mean_distortion",
    "mean_visibility",
    "mean_ssim",
    "mean_ciede2000",
    "operating_characteristic",
    "operating_characteristics",
    "summary",
    "format_summary",
    "attack_order",
    "visibility_summary",
    "paired_comparison",
    "worst_cases",
    "side_by_side",
]

#: The order of Table 1 (the minimal-norm attacks DDN and FMN, not in the paper, after C&W and
#: their smooth versions after sC&W), then the attacks a user registered: the attack registry's
#: order (:func:`smoothlab.attacks.attack_names`) when smoothlab was imported; :func:`attack_order`
#: reads it live.
ATTACK_ORDER: tuple[str, ...] = attack_names()


def attack_label(name: str) -> str:
    """The display name of attack ``name`` (its registry label; ``name`` itself if unregistered)."""
    return ATTACK_LABELS.get(str(name), str(name))



def attack_order(names: Iterable[str]) -> list[str]:
    """Sort attack names in the order of Table 1, unknown names after, alphabetically."""
    unique = list(dict.fromkeys(names))
    rank = {name: i for i, name in enumerate(attack_names())}
    return sorted(unique, key=lambda n: (rank.get(n, len(rank)), n))


# --------------------------------------------------------------------------- protocol


def union_over_budgets(records: pd.DataFrame) -> pd.DataFrame:
    """Merge the runs of each attack over its budgets: one row per ``(image_id, attack)``.

    Section 5.1: an attack that targets a distortion is run for several budgets ``eps``;
    it succeeds on an image if any run succeeds, and the image's distortion is the minimum
    over the successful runs. Attacks run once (budget NaN) pass through unchanged.

    Parameters
    ----------
    records : pandas.DataFrame
        Per-image records (:mod:`smoothlab.records`).

    Returns
    -------
    pandas.DataFrame
        Records with one row per ``(image_id, attack)``, sorted by ``(attack, image_id)``:
        ``success`` = any run succeeded; ``distortion`` = least distortion over successful
        runs (NaN for a failure); ``budget``, ``pred_adv``, ``visibility``, ``ssim`` and ``ciede2000`` = those of
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


def mean_ciede2000(records: pd.DataFrame, attack: str | None = None) -> float:
    """Average CIEDE2000 colour difference ΔE00 (:func:`smoothlab.similarity.ciede2000`) over the
    successes, conditioned like ``D̄``: after the union over budgets (each image keeps the ΔE00 of
    its least-distortion successful run), over correctly classified images only; successes without
    one (NaN) are left out. NaN when no success has one.

    Raises
    ------
    ValueError
        Invalid records, an ambiguous or unknown ``attack``, or no correctly classified image.
    """
    kept = _correct_only(_select(records, attack, "mean_ciede2000"), "mean_ciede2000")
    return _mean_visibility(kept, "ciede2000")


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


#: The columns of :func:`summary`, ``name -> meaning``.
SUMMARY_COLUMNS: dict[str, str] = {
    "n_images": "N'",
    "n_correct": "N",
    "accuracy": "accuracy",
    "n_success": "N_suc",
    "p_success": "P_suc",
    "mean_distortion": "D̄",
    "mean_visibility": "V̄",
    "mean_ssim": "SSIM",
    "mean_ciede2000": "ΔE00",
    "max_distortion": "D_max",
    "floor": "floor",
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
        successes, :func:`mean_ssim`), ``mean_ciede2000`` (ΔE00: mean CIEDE2000 colour difference
        over the successes, :func:`mean_ciede2000`), ``max_distortion`` (D_max of eq. 21), ``floor`` (attacks run
        at two budgets or more: the fraction of the N images already fooled at the smallest budget,
        :func:`grid_floor`; NaN otherwise), ``forward_passes`` and ``backward_passes``
        (mean per correctly classified image, all budgets together) and ``seconds``
        (total over all records of the attack, misclassified images included).
        ``mean_distortion``/``mean_visibility``/``mean_ssim``/``mean_ciede2000``/``max_distortion`` are NaN when
        ``n_success = 0`` (``mean_visibility``/``mean_ssim``/``mean_ciede2000`` also when none was computed) and
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
    floors = grid_floor(records)
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
                "mean_ciede2000": _mean_visibility(kept, "ciede2000"),
                "max_distortion": float(np.max(d)) if d.size else math.nan,
                "floor": floors.get(name, math.nan),
                "forward_passes": float(kept["forward_passes"].sum()) / n if n else math.nan,
                "backward_passes": float(kept["backward_passes"].sum()) / n if n else math.nan,
                "seconds": float(part["seconds"].sum()),
            }
        )
    out = pd.DataFrame(rows, index=pd.Index(names, name="attack", dtype=object))
    return out.astype({"n_images": "int64", "n_correct": "int64", "n_success": "int64"})


#: Above this share of images fooled at the smallest budget, :func:`grid_floor` warns: for more than
#: one image in ten the grid, not the attack, sets the distortion (its own least distortion lies
#: somewhere below the smallest budget), so D̄ reads as an upper bound rather than the attack's.
FLOOR_WARNING = 0.1


class GridFloorWarning(UserWarning):
    """Many images succeed at the smallest budget of a grid: D̄ measures the grid (see :func:`grid_floor`)."""


def grid_floor(records: pd.DataFrame, *, warn: bool = True) -> dict[str, float]:
    """Per attack run at two budgets or more, the fraction of the correctly classified images that
    already succeed at its smallest budget (the "floor" of its grid).

    An attack that targets a distortion gets, per image, the least successful budget of its grid
    (sec. 5.1). Where that is the grid's smallest budget, the image's own least distortion is
    unknown (somewhere at or below it): D̄ then measures the grid, not the attack. A warning
    (:class:`GridFloorWarning`) names the attacks above :data:`FLOOR_WARNING`.

    Examples
    --------
    >>> import pandas as pd
    >>> from smoothlab.metrics import grid_floor
    >>> rec = pd.DataFrame({"image_id": [0, 1, 0, 1], "attack": "pgd2", "budget": [1.0, 1.0, 2.0, 2.0],
    ...     "label": 1, "pred_clean": 1, "pred_adv": [3, 1, 3, 3], "correct": True,
    ...     "success": [True, False, True, True], "distortion": [1.0, None, 2.0, 2.0],
    ...     "forward_passes": 11, "backward_passes": 10, "seconds": 0.0})
    >>> grid_floor(rec, warn=False)
    {'pgd2': 0.5}
    """
    import warnings

    df = validate_records(records)
    df = df[df["correct"] & df["budget"].notna()]
    out: dict[str, float] = {}
    for name in attack_order(df["attack"]):
        part = df[df["attack"] == name]
        if part["budget"].nunique() < 2:
            continue
        at_floor = part[part["budget"] == part["budget"].min()]
        out[name] = float(at_floor["success"].sum()) / part["image_id"].nunique()
    high = {n: f for n, f in out.items() if f > FLOOR_WARNING}
    if warn and high:
        listed = ", ".join(f"{attack_label(n)} {f:.0%}" for n, f in high.items())
        warnings.warn(
            f"the smallest budget of the grid already fools more than {FLOOR_WARNING:.0%} of the images for {listed}: "
            "their D̄ measures the grid's floor, not the attack; add smaller budgets (BenchSpec.with_budgets)",
            GridFloorWarning,
            stacklevel=2,
        )
    return out


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
        Per-image records with a ``visibility`` column (:func:`smoothlab.records.records_from_result` with ``x``).

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
