"""Plotly figures: image grids, operating characteristic (Figure 2), summary table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("plotly")

from smoothlab.metrics import operating_characteristics, summary  # noqa: E402
from smoothlab.viz import image_grid, operating_characteristic_figure, summary_table, to_rgb  # noqa: E402

NAN = math.nan


def test_to_rgb_scales():
    x = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]]])  # (1, 1, 2, 2) in [0, 1]
    rgb = to_rgb(x)
    assert rgb.shape == (1, 2, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, :, :, 0], [[0, 128], [255, 64]])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])  # grey -> equal channels
    r = torch.tensor([[[[-0.2, 0.0], [0.1, 0.2]]], [[[3.0, 3.0], [3.0, 3.0]]]])
    mm = to_rgb(r)  # auto -> minmax per image and channel
    np.testing.assert_array_equal(mm[0, :, :, 0], [[0, 128], [191, 255]])
    np.testing.assert_array_equal(mm[1, :, :, 0], [[128, 128], [128, 128]])  # constant -> mid-grey
    sym = to_rgb(r, "symmetric")
    np.testing.assert_array_equal(sym[0, :, :, 0], [[0, 128], [191, 255]])
    np.testing.assert_array_equal(sym[1, :, :, 0], [[255] * 2] * 2)
    # colour: each channel scaled on its own
    c = np.stack([np.full((2, 2), 0.1), np.array([[0.0, 2.0], [4.0, 0.0]]), np.zeros((2, 2))])[None]
    cm = to_rgb(c, "minmax")
    np.testing.assert_array_equal(cm[0, :, :, 1], [[0, 128], [255, 0]])
    np.testing.assert_array_equal(cm[0, :, :, 0], np.full((2, 2), 128))
    np.testing.assert_array_equal(to_rgb(np.full((1, 1, 2, 2), 1.7), "none"), 255)


def test_image_grid_traces_hold_the_images():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 5, 4, generator=g)
    r = (torch.rand(3, 1, 5, 4, generator=g) - 0.5) * 0.3
    x_adv = (x + r).clamp(0, 1)
    fig = image_grid(
        {"original": x, "adversarial": x_adv, "perturbation": x_adv - x},
        captions={"adversarial": ["a", "b", "c"]},
        title="t",
    )
    assert len(fig.data) == 9
    assert all(t.type == "image" for t in fig.data)
    # row-major: row 0 = originals in [0, 1] shown unscaled
    for j in range(3):
        z = np.asarray(fig.data[j].z)
        assert z.shape == (5, 4, 3)
        np.testing.assert_array_equal(z[..., 0], np.rint(x[j, 0].double().numpy() * 255))
    # perturbation row rescaled per image (min -> 0, max -> 255)
    zp = np.asarray(fig.data[6].z)[..., 0]
    assert zp.min() == 0 and zp.max() == 255
    texts = [a.text for a in fig.layout.annotations]
    assert texts == ["a", "b", "c"]
    assert fig.layout.yaxis.title.text == "original"
    assert fig.layout.title.text == "t"
    # per-row scale and column limit
    fig2 = image_grid({"x": x, "r": x_adv - x}, scale={"r": "symmetric"}, max_images=2)
    assert len(fig2.data) == 4
    np.testing.assert_array_equal(np.asarray(fig2.data[2].z), to_rgb((x_adv - x)[:1], "symmetric")[0])


def test_image_grid_errors():
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="same number of images"):
        image_grid({"a": x, "b": x[:1]})
    with pytest.raises(ValueError, match="non-empty"):
        image_grid({})
    with pytest.raises(ValueError, match="channels"):
        image_grid({"a": torch.rand(2, 2, 4, 4)})
    with pytest.raises(ValueError, match="scale"):
        image_grid({"a": x}, scale="log")
    with pytest.raises(ValueError, match="one caption per image"):
        image_grid({"a": x}, captions={"a": ["only one"]})
    with pytest.raises(TypeError, match="Tensor"):
        image_grid({"a": [[1.0]]})


def _records() -> pd.DataFrame:
    rows = []
    # pgd2: two budgets; fgsm: one; cw: budget NaN; image 3 misclassified
    spec = {
        "pgd2": [(1.0, [0.9, None, 1.0, 0.2]), (2.0, [1.5, 1.9, 1.2, 0.3])],
        "fgsm": [(0.3, [4.0, None, None, 0.1])],
        "cw": [(NAN, [2.5, 3.0, None, 0.1])],
    }
    for attack, runs in spec.items():
        for budget, dists in runs:
            for i, d in enumerate(dists):
                label, pred = (i, i) if i != 3 else (3, 4)
                rows.append(
                    dict(image_id=i, attack=attack, budget=budget, label=label, pred_clean=pred,
                         pred_adv=(pred + 1) % 10 if d is not None else pred, correct=label == pred,
                         success=d is not None, distortion=NAN if d is None else d,
                         forward_passes=1, backward_passes=1, seconds=0.1)
                )
    return pd.DataFrame(rows)


def test_operating_characteristic_figure_from_records():
    records = _records()
    fig = operating_characteristic_figure(records)
    assert [t.name for t in fig.data] == ["FGSM", "PGD2", "C&W"]  # Table 1 order, paper names
    assert [t.meta for t in fig.data] == ["fgsm", "pgd2", "cw"]
    assert all(t.line.shape == "hv" for t in fig.data)
    pgd = fig.data[1]
    # union over budgets: D = 0.9, 1.9, 1.0 over N = 3 correct images
    np.testing.assert_allclose(np.asarray(pgd.x), [0.0, 0.9, 1.0, 1.9])
    np.testing.assert_allclose(np.asarray(pgd.y), [0.0, 1 / 3, 2 / 3, 1.0])
    fgsm = fig.data[0]
    np.testing.assert_allclose(np.asarray(fgsm.y), [0.0, 1 / 3])
    assert fig.layout.xaxis.title.text == "distortion D"
    # same figure from precomputed (D, P) data, and the extend option
    oc = operating_characteristics(records)
    fig2 = operating_characteristic_figure(oc, labels={"cw": "CW-L2"}, extend=True)
    assert [t.name for t in fig2.data] == ["FGSM", "PGD2", "CW-L2"]
    assert all(np.asarray(t.x)[-1] == 4.0 for t in fig2.data)
    np.testing.assert_allclose(np.asarray(fig2.data[1].y)[-2:], [1.0, 1.0])


def test_operating_characteristic_figure_errors():
    with pytest.raises(TypeError, match="records DataFrame"):
        operating_characteristic_figure([1, 2])
    with pytest.raises(ValueError, match="non-decreasing"):
        operating_characteristic_figure({"pgd2": ([0, 2, 1], [0, 0.5, 1.0])})
    with pytest.raises(ValueError, match="missing"):
        operating_characteristic_figure(_records().drop(columns="success"))


def test_summary_table():
    records = _records()
    fig = summary_table(records, digits=3)
    table = fig.data[0]
    assert table.type == "table"
    assert list(table.header.values[:7]) == ["attack", "N'", "N", "accuracy", "N_suc", "P_suc", "D̄"]
    cols = table.cells.values
    assert list(cols[0]) == ["FGSM", "PGD2", "C&W"]
    expected = summary(records)
    assert list(cols[6]) == [f"{v:.3f}" for v in expected["mean_distortion"]]
    assert list(cols[4]) == ["1", "3", "2"]
    # a summary frame is accepted as it is
    assert summary_table(expected).data[0].cells.values[0] == cols[0]
    # hand-checked (union over budgets, image 3 misclassified): FGSM succeeds on image 0 only
    # (D = 4); PGD2 on 0, 1, 2 with least distortions 0.9, 1.9, 1.0; C&W on 0, 1 (2.5, 3.0)
    assert list(cols[1]) == ["4", "4", "4"] and list(cols[2]) == ["3", "3", "3"]  # N', N
    assert list(cols[3]) == ["0.750", "0.750", "0.750"]  # accuracy N / N'
    assert list(cols[5]) == ["0.333", "1.000", "0.667"]  # P_suc = N_suc / N
    assert list(cols[6]) == ["4.000", "1.267", "2.750"]  # D̄ over the successes
    assert list(cols[10]) == ["4.000", "1.900", "3.000"]  # D_max (after V̄, SSIM and ΔE00)
