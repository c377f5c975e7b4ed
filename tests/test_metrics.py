"""Evaluation protocol of section 5.1 (eqs. 20-21) on small hand-computed cases: the records
(:mod:`smoothlab.records`) and the statistics built on them (:mod:`smoothlab.metrics`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from smoothlab import metrics
from smoothlab.metrics import (
    format_summary,
    mean_distortion,
    operating_characteristic,
    operating_characteristics,
    success_probability,
    summary,
    union_over_budgets,
)
from smoothlab.records import RECORD_COLUMNS, records_from_result, sort_records, validate_records

NAN = math.nan


def make_records(rows: list[tuple]) -> pd.DataFrame:
    """rows: (image_id, attack, budget, label, pred_clean, pred_adv, success, distortion)."""
    out = []
    for i, (image_id, attack, budget, label, pred_clean, pred_adv, success, distortion) in enumerate(rows):
        out.append(
            {
                "image_id": image_id,
                "attack": attack,
                "budget": budget,
                "label": label,
                "pred_clean": pred_clean,
                "pred_adv": pred_adv,
                "correct": pred_clean == label,
                "success": success,
                "distortion": distortion if success else NAN,
                "forward_passes": 10 + i,
                "backward_passes": 5 + i,
                "seconds": 0.5,
            }
        )
    return pd.DataFrame(out)


# PGD2 with budgets 1 and 2 on five images; image 3 is misclassified by the model.
PGD_ROWS = [
    (0, "pgd2", 1.0, 7, 7, 7, False, NAN),
    (0, "pgd2", 2.0, 7, 7, 1, True, 1.8),
    (1, "pgd2", 1.0, 2, 2, 3, True, 0.9),
    (1, "pgd2", 2.0, 2, 2, 3, True, 1.5),
    (2, "pgd2", 1.0, 1, 1, 1, False, NAN),
    (2, "pgd2", 2.0, 1, 1, 1, False, NAN),
    (3, "pgd2", 1.0, 4, 9, 9, True, 0.2),  # misclassified: excluded everywhere
    (3, "pgd2", 2.0, 4, 9, 9, True, 0.1),
    (4, "pgd2", 1.0, 0, 0, 6, True, 1.0),
    (4, "pgd2", 2.0, 0, 0, 6, True, 2.0),
]
# C&W run once (budget NaN) on the same images.
CW_ROWS = [
    (0, "cw", NAN, 7, 7, 1, True, 2.5),
    (1, "cw", NAN, 2, 2, 2, False, NAN),
    (2, "cw", NAN, 1, 1, 8, True, 3.0),
    (3, "cw", NAN, 4, 9, 9, True, 0.05),
    (4, "cw", NAN, 0, 0, 5, True, 2.5),
]


@pytest.fixture
def records() -> pd.DataFrame:
    # Shuffled on purpose: nothing may depend on the row order.
    df = make_records(PGD_ROWS + CW_ROWS)
    return df.sample(frac=1.0, random_state=3).reset_index(drop=True)


def test_union_over_budgets_protocol(records):
    u = union_over_budgets(records)
    pgd = u[u["attack"] == "pgd2"].set_index("image_id")
    assert len(u) == 10 and list(pgd.index) == [0, 1, 2, 3, 4]
    assert pgd["success"].tolist() == [True, True, False, True, True]
    # least distortion over the successful runs, NaN for the failure
    np.testing.assert_array_equal(pgd["distortion"].to_numpy(), [1.8, 0.9, NAN, 0.1, 1.0])
    np.testing.assert_array_equal(pgd["budget"].to_numpy(), [2.0, 1.0, NAN, 2.0, 1.0])
    # prediction of the chosen run; failure -> the largest-budget run
    assert pgd["pred_adv"].tolist() == [1, 3, 1, 9, 6]
    assert pgd["n_runs"].tolist() == [2] * 5
    # costs are totals over the runs (forward_passes = 10 + row index in PGD_ROWS)
    assert pgd.loc[0, "forward_passes"] == 10 + 11
    assert pgd.loc[4, "backward_passes"] == 13 + 14
    assert pgd.loc[2, "seconds"] == 1.0
    cw = u[u["attack"] == "cw"].set_index("image_id")
    assert cw["n_runs"].tolist() == [1] * 5
    assert np.isnan(cw["budget"]).all()
    np.testing.assert_array_equal(cw["distortion"].to_numpy(), [2.5, NAN, 3.0, 0.05, 2.5])
    # idempotent: a union of a union is itself
    again = union_over_budgets(u.drop(columns="n_runs"))
    pd.testing.assert_frame_equal(again.drop(columns=["n_runs"]), u.drop(columns=["n_runs"]))


def test_statistics_hand_computed(records):
    # PGD2: N' = 5, N = 4 (image 3 excluded), successes 0, 1, 4 with D = 1.8, 0.9, 1.0.
    assert success_probability(records, "pgd2") == pytest.approx(3 / 4)
    assert mean_distortion(records, "pgd2") == pytest.approx((1.8 + 0.9 + 1.0) / 3)
    # C&W: successes 0, 2, 4 (D = 2.5, 3.0, 2.5); image 3's success must not count.
    assert success_probability(records, "cw") == pytest.approx(3 / 4)
    assert mean_distortion(records, "cw") == pytest.approx(8.0 / 3)

    table = summary(records)
    assert list(table.index) == ["pgd2", "cw"]  # Table 1 order, not alphabetical
    assert table.loc["pgd2", "n_images"] == 5
    assert table.loc["pgd2", "n_correct"] == 4
    assert table.loc["pgd2", "accuracy"] == pytest.approx(0.8)
    assert table.loc["pgd2", "n_success"] == 3
    assert table.loc["pgd2", "p_success"] == pytest.approx(0.75)
    assert table.loc["pgd2", "mean_distortion"] == pytest.approx(3.7 / 3)
    assert table.loc["pgd2", "max_distortion"] == pytest.approx(1.8)
    assert table.loc["cw", "mean_distortion"] == pytest.approx(8.0 / 3)
    # forward passes per correct image: rows 0-5 and 8-9 -> (10+..+15 + 18+19) / 4
    assert table.loc["pgd2", "forward_passes"] == pytest.approx((10 + 11 + 12 + 13 + 14 + 15 + 18 + 19) / 4)


def test_operating_characteristic_step_function(records):
    d, p = operating_characteristic(records, "pgd2")
    np.testing.assert_allclose(d, [0.0, 0.9, 1.0, 1.8])
    np.testing.assert_allclose(p, [0.0, 0.25, 0.5, 0.75])
    d, p = operating_characteristic(records, "cw")
    # ties (two images at D = 2.5) make a single jump of 2 / N
    np.testing.assert_allclose(d, [0.0, 2.5, 3.0])
    np.testing.assert_allclose(p, [0.0, 0.5, 0.75])
    assert p[-1] == pytest.approx(success_probability(records, "cw"))
    both = operating_characteristics(records)
    assert list(both) == ["pgd2", "cw"]
    np.testing.assert_allclose(both["cw"][0], [0.0, 2.5, 3.0])
    np.testing.assert_allclose(both["cw"][1], [0.0, 0.5, 0.75])
    np.testing.assert_allclose(both["pgd2"][0], [0.0, 0.9, 1.0, 1.8])
    np.testing.assert_allclose(both["pgd2"][1], [0.0, 0.25, 0.5, 0.75])


def test_operating_characteristic_with_successes_at_zero_distortion():
    """Images adversarial from the start (D = 0) make P(0) > 0: one corner at D = 0, not two."""
    rows = [
        (0, "cw", NAN, 3, 3, 5, True, 0.0),
        (1, "cw", NAN, 4, 4, 1, True, 0.0),
        (2, "cw", NAN, 5, 5, 0, True, 1.5),
        (3, "cw", NAN, 6, 6, 6, False, NAN),
        (4, "cw", NAN, 7, 2, 2, True, 0.0),  # misclassified: excluded
        (0, "fgsm", 0.1, 3, 3, 5, True, 0.0),
        (1, "fgsm", 0.1, 4, 4, 4, False, NAN),
        (1, "fgsm", 0.3, 4, 4, 2, True, 0.3),
    ]
    df = make_records(rows)
    d, p = operating_characteristic(df, "cw")
    np.testing.assert_array_equal(d, [0.0, 1.5])
    np.testing.assert_allclose(p, [2 / 4, 3 / 4])
    d, p = operating_characteristic(df, "fgsm")
    np.testing.assert_array_equal(d, [0.0, 0.3])
    np.testing.assert_allclose(p, [1 / 2, 2 / 2])
    both = operating_characteristics(df)
    np.testing.assert_array_equal(both["cw"][0], [0.0, 1.5])
    np.testing.assert_allclose(both["cw"][1], [0.5, 0.75])
    assert summary(df).loc["cw", "mean_distortion"] == pytest.approx(1.5 / 3)


def test_oc_matches_definition_on_random_records():
    # P(D) = |{successes with D(x) <= D}| / N evaluated directly, at many D values.
    rng = np.random.default_rng(0)
    n = 50
    rows = []
    for i in range(n):
        label = int(rng.integers(10))
        pred = label if rng.random() < 0.9 else (label + 1) % 10
        for eps in (1.0, 2.0, 3.0):
            ok = bool(rng.random() < 0.3 * eps)
            rows.append((i, "pgd2", eps, label, pred, (label + 2) % 10, ok, float(np.round(rng.random() * eps, 2))))
    df = make_records(rows)
    d, p = operating_characteristic(df)
    u = union_over_budgets(df)
    u = u[u["correct"]]
    dist = u.loc[u["success"], "distortion"].to_numpy()
    for t in np.linspace(0, 3.5, 71):
        expected = np.sum(dist <= t) / len(u)
        k = np.searchsorted(d, t, side="right") - 1  # right-continuous step lookup
        assert p[k] == pytest.approx(expected)
    assert np.all(np.diff(d) > 0) and np.all(np.diff(p) > 0)


def test_zero_successes_and_single_attack_defaults():
    df = make_records([(0, "fgsm", 0.3, 1, 1, 1, False, NAN), (1, "fgsm", 0.3, 2, 2, 2, False, NAN)])
    assert success_probability(df) == 0.0
    assert math.isnan(mean_distortion(df))  # documented: undefined with N_suc = 0
    d, p = operating_characteristic(df)
    np.testing.assert_array_equal(d, [0.0])
    np.testing.assert_array_equal(p, [0.0])
    row = summary(df).loc["fgsm"]
    assert row["n_success"] == 0 and row["p_success"] == 0.0 and math.isnan(row["mean_distortion"])


def test_all_misclassified_is_an_error_not_a_nan():
    df = make_records([(0, "fgsm", 0.3, 1, 2, 2, True, 0.4)])
    with pytest.raises(ValueError, match="N = 0"):
        success_probability(df)
    with pytest.raises(ValueError, match="N = 0"):
        operating_characteristic(df)
    assert math.isnan(summary(df).loc["fgsm", "p_success"])
    assert "fgsm" not in operating_characteristics(df)


def test_ambiguous_or_unknown_attack(records):
    with pytest.raises(ValueError, match="several attacks"):
        success_probability(records)
    with pytest.raises(ValueError, match="'nope'"):
        mean_distortion(records, "nope")


@pytest.mark.parametrize(
    "mutate, exc, match",
    [
        (lambda df: df.drop(columns=["distortion", "label"]), ValueError, "missing.*distortion"),
        (lambda df: df.iloc[:0], ValueError, "empty"),
        (lambda df: pd.concat([df, df.iloc[:1]]), ValueError, "one row per"),
        (lambda df: df.assign(success=df["success"].astype(int)), TypeError, "success"),
        (lambda df: df.assign(distortion=df["distortion"].fillna(0.0)), ValueError, "NaN where success is False"),
        (lambda df: df.assign(distortion=np.where(df["success"], -1.0, NAN)), ValueError, "finite and >= 0"),
        (lambda df: df.assign(correct=~df["correct"]), ValueError, "pred_clean == label"),
        (lambda df: df.assign(image_id=df["image_id"] - 10), ValueError, "image_id"),
        (lambda df: df.assign(label=df["label"].astype(float) + 0.5), TypeError, "label"),
        (lambda df: df.assign(budget=np.inf), ValueError, "budget"),
    ],
)
def test_validation_errors(records, mutate, exc, match):
    with pytest.raises(exc, match=match):
        summary(mutate(records))


def test_validation_of_type_and_inconsistent_runs(records):
    with pytest.raises(TypeError, match="DataFrame"):
        validate_records(records.to_dict())
    bad = records.copy()
    row = bad.index[(bad["attack"] == "pgd2") & (bad["image_id"] == 0) & (bad["budget"] == 2.0)][0]
    bad.loc[row, ["label", "pred_clean"]] = [5, 5]
    with pytest.raises(ValueError, match="agree between the runs"):
        union_over_budgets(bad)


def test_sort_records_canonical_order(records):
    a = sort_records(records)
    b = sort_records(records.iloc[::-1])
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns[: len(RECORD_COLUMNS)]) == list(RECORD_COLUMNS)
    assert a["attack"].tolist() == ["cw"] * 5 + ["pgd2"] * 10


def test_format_summary(records):
    table = summary(records)
    md = format_summary(table)
    lines = md.strip().splitlines()
    assert lines[0].startswith("| attack | N' | N | accuracy | N_suc | P_suc | D̄ |")
    assert lines[2].startswith("| PGD2 | 5 | 4 | 0.80 | 3 | 0.75 | 1.23 |")
    assert lines[3].startswith("| C&W | 5 | 4 | 0.80 | 3 | 0.75 | 2.67 |")
    csv = format_summary(table, "csv")
    back = pd.read_csv(__import__("io").StringIO(csv), index_col=0)
    np.testing.assert_array_equal(back["mean_distortion"].to_numpy(), table["mean_distortion"].to_numpy())
    with pytest.raises(ValueError, match="fmt"):
        format_summary(table, "latex")
    with pytest.raises(TypeError, match="summary"):
        format_summary(table.to_dict())
    with pytest.raises(ValueError, match="p_success"):
        format_summary(table.drop(columns="p_success"))


def test_records_from_result_with_a_real_attack():
    import torch

    from smoothlab import attacks

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    y[0] = (y[0] + 1) % 3  # image 0 is misclassified
    eps = torch.tensor([0.05, 0.05, 0.05, 0.5, 0.5, 0.5])
    res = attacks.fgsm(model, x, y, eps=eps)
    df = records_from_result(res, image_ids=np.arange(6) + 100, labels=y, budget=eps)
    assert list(df.columns) == list(RECORD_COLUMNS)
    assert df["attack"].tolist() == ["fgsm"] * 6
    np.testing.assert_array_equal(df["budget"].to_numpy(), eps.numpy().astype("float64"))
    np.testing.assert_array_equal(df["success"].to_numpy(), res.success.numpy())
    assert not df.loc[0, "correct"] and df.loc[1:, "correct"].all()
    d = res.distortion.double().numpy()
    ok = res.success.numpy()
    np.testing.assert_array_equal(df["distortion"].to_numpy()[ok], d[ok])
    assert df["distortion"][~ok].isna().all()
    assert df["seconds"].sum() == pytest.approx(res.seconds)
    assert df["visibility"].isna().all()  # not computed without the originals
    with pytest.raises(ValueError, match="image_ids"):
        records_from_result(res, image_ids=np.arange(5), labels=y)
    # with the originals: visibility(x_o, x_a) for the successes, NaN for the failures
    from smoothlab.magnification import visibility

    assert ok.any() and not ok.all()
    dv = records_from_result(res, image_ids=np.arange(6), labels=y, budget=eps, x=x)
    expected = visibility(x[ok], res.x_adv[ok]).double().numpy()
    np.testing.assert_allclose(dv["visibility"].to_numpy()[ok], expected, rtol=1e-6)
    assert (dv["visibility"].to_numpy()[ok] > 0).all() and dv["visibility"][~ok].isna().all()
    opts = records_from_result(res, image_ids=np.arange(6), labels=y, x=x, visibility_options={"beta": 0.5})
    np.testing.assert_allclose(opts["visibility"].to_numpy()[ok], visibility(x[ok], res.x_adv[ok], beta=0.5).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        records_from_result(res, image_ids=np.arange(6), labels=y, x=x[:3])


# --------------------------------------------------------------------------- visibility


def test_visibility_union_and_mean_hand_computed():
    rows = [  # PGD_ROWS with a visibility per run (NaN where not computed)
        (0, "pgd2", 1.0, 7, 7, 7, False, NAN, 0.7),  # failure: its value must be dropped
        (0, "pgd2", 2.0, 7, 7, 1, True, 1.8, 0.4),
        (1, "pgd2", 1.0, 2, 2, 3, True, 0.9, 0.3),  # least distortion -> its V, not the least V
        (1, "pgd2", 2.0, 2, 2, 3, True, 1.5, 0.2),
        (2, "pgd2", 1.0, 1, 1, 1, False, NAN, NAN),
        (2, "pgd2", 2.0, 1, 1, 1, False, NAN, NAN),
        (3, "pgd2", 1.0, 4, 9, 9, True, 0.2, 0.05),  # misclassified: excluded
        (3, "pgd2", 2.0, 4, 9, 9, True, 0.1, 0.01),
        (4, "pgd2", 1.0, 0, 0, 6, True, 1.0, 0.5),
        (4, "pgd2", 2.0, 0, 0, 6, True, 2.0, NAN),
        (0, "cw", NAN, 7, 7, 1, True, 2.5, NAN),  # success whose V was not computed: left out
        (1, "cw", NAN, 2, 2, 8, True, 3.0, 0.9),
        (2, "cw", NAN, 1, 1, 1, False, NAN, NAN),
    ]
    df = make_records([r[:8] for r in rows]).assign(visibility=[r[8] for r in rows])
    df = df.sample(frac=1.0, random_state=5).reset_index(drop=True)
    u = union_over_budgets(df)
    assert list(u.columns[: len(RECORD_COLUMNS)]) == list(RECORD_COLUMNS)
    pgd = u[u["attack"] == "pgd2"].set_index("image_id")
    np.testing.assert_array_equal(pgd["visibility"].to_numpy(), [0.4, 0.3, NAN, 0.01, 0.5])
    assert metrics.mean_visibility(df, "pgd2") == pytest.approx((0.4 + 0.3 + 0.5) / 3)
    assert metrics.mean_visibility(df, "cw") == pytest.approx(0.9)
    table = summary(df)
    assert table.loc["pgd2", "mean_visibility"] == pytest.approx(0.4)
    assert table.loc["cw", "mean_visibility"] == pytest.approx(0.9)
    assert table.loc["pgd2", "mean_distortion"] == pytest.approx(3.7 / 3)  # unchanged by the new column
    # validation: failures lose their value, a negative value on a success is an error
    v = validate_records(df)
    assert v.loc[~v["success"], "visibility"].isna().all()
    assert v.loc[v["success"], "visibility"].notna().sum() == 7
    with pytest.raises(ValueError, match="visibility"):
        validate_records(df.assign(visibility=np.where(df["success"], -1.0, NAN)))
    with pytest.raises(TypeError, match="visibility"):
        validate_records(df.assign(visibility="high"))
    md = format_summary(table).splitlines()
    assert md[0].startswith("| attack | N' | N | accuracy | N_suc | P_suc | D̄ | V̄ |")
    assert md[2].startswith("| PGD2 | 5 | 4 | 0.80 | 3 | 0.75 | 1.23 | 0.40 |")


def test_records_without_visibility_get_nan(records):
    assert "visibility" not in records.columns
    v = validate_records(records)
    assert "visibility" in v.columns and v["visibility"].isna().all()
    assert math.isnan(metrics.mean_visibility(records, "pgd2"))
    assert summary(records)["mean_visibility"].isna().all()
    assert "| PGD2 | 5 | 4 | 0.80 | 3 | 0.75 | 1.23 | — |" in format_summary(summary(records))


# --------------------------------------------------------------------------- the grid's floor (issue 19)


def _grid_records(success_at: dict[int, float | None], grid=(0.5, 1.0, 2.0)) -> pd.DataFrame:
    """Records of one budgeted attack: image i first succeeds at budget success_at[i] (None: never);
    image 99 is misclassified from the start; plus C&W, run once."""
    rows = []
    for i, first in {**success_at, 99: 0.5}.items():
        for b in grid:
            ok = first is not None and b >= first
            rows.append({"image_id": i, "attack": "pgd2", "budget": b, "label": 1, "pred_clean": 1 if i != 99 else 4,
                         "pred_adv": 3 if ok else 1, "correct": i != 99, "success": ok or i == 99,
                         "distortion": b if ok else (0.0 if i == 99 else np.nan)})
    for i in success_at:
        rows.append({"image_id": i, "attack": "cw", "budget": np.nan, "label": 1, "pred_clean": 1, "pred_adv": 3,
                     "correct": True, "success": True, "distortion": 0.1})
    df = pd.DataFrame(rows)
    df["forward_passes"], df["backward_passes"], df["seconds"] = 11, 10, 0.0
    return df


def test_floor_column_on_a_made_up_grid() -> None:
    import warnings

    from smoothlab.metrics import GridFloorWarning, format_summary, grid_floor, summary

    rec = _grid_records({0: 0.5, 1: 1.0, 2: None, 3: 2.0})
    # 1 of the 4 correctly classified images is fooled at 0.5 (the misclassified one does not count)
    with pytest.warns(GridFloorWarning, match="PGD2 25%"):
        floors = grid_floor(rec)
    assert floors == {"pgd2": 0.25}  # C&W runs once: no floor
    with pytest.warns(GridFloorWarning):
        table = summary(rec)
    assert table.loc["pgd2", "floor"] == 0.25 and np.isnan(table.loc["cw", "floor"])
    assert "| 0.25 |" in format_summary(table)
    # nobody at the floor: no warning, floor 0
    quiet = _grid_records({0: 1.0, 1: 2.0, 2: None})
    with warnings.catch_warnings():
        warnings.simplefilter("error", GridFloorWarning)
        assert grid_floor(quiet) == {"pgd2": 0.0}
    # one budget only (Table 3's single setting): no floor
    single = rec[rec.budget.isna() | (rec.budget == 1.0)]
    assert grid_floor(single, warn=False) == {}
