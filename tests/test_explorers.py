"""ipywidgets explorers: the alpha slider of notebook 1 and the magnification sliders of notebook 4.

Real ipywidgets and Plotly. What an explorer shows after a slider move is read from the state of
its Output widget (magnification explorer: it sets the widget's outputs) or, for the alpha
explorer, which ``display()``-s into the widget, from the captured stdout (outside a Jupyter
kernel ``IPython.display.display`` prints the object).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

pytest.importorskip("plotly")
widgets = pytest.importorskip("ipywidgets")

from smoothlab.magnification import magnify, to_display  # noqa: E402
from smoothlab.smoothing import Smoother  # noqa: E402
from smoothlab.viz import FIT_HEIGHT, FIT_WIDTH, comparison_grid, to_rgb  # noqa: E402
from smoothlab.viz.explorers import alpha_explorer, magnification_explorer  # noqa: E402


def _images(seed: int = 0, size: int = 14) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 2-image batch with a sharp edge, a noisy copy and a smoothly shifted copy."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((2, 1, size, size), 0.2)
    x[..., size // 2 :] = 0.8
    x = (x + 0.02 * torch.rand(x.shape, generator=g)).clamp(0, 1)
    noisy = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    shifted = (x + 0.05).clamp(0, 1)
    return x, noisy, shifted


def _row(fig, row: int, n_cols: int) -> list[np.ndarray]:
    return [np.asarray(t.z) for t in fig.data[row * n_cols : (row + 1) * n_cols]]


# ------------------------------------------------------------------------------ magnification


def test_magnification_explorer_structure_and_figures():
    x, noisy, shifted = _images()
    betas, sds, srs = (0.0, 0.8), (1.0, 2.0), (0.1, 0.3)
    box = magnification_explorer(x, {"noise": noisy, "shift": shifted}, betas, sds, srs, index=1, cell_size=60)
    assert isinstance(box, widgets.VBox)
    # the three sliders side by side in one row above the output (saves height on a laptop screen)
    row, out = box.children
    assert isinstance(row, widgets.HBox) and isinstance(out, widgets.Output)
    sliders = list(row.children)
    assert len(sliders) == 3 and all(isinstance(s, widgets.SelectionSlider) for s in sliders)
    assert list(box.sliders.values()) == sliders
    # one figure per combination of slider values, keyed (beta, sigma_d, sigma_r)
    assert set(box.figures) == set(itertools.product(betas, sds, srs))
    assert len(box.figures) == 8
    # starts at the values closest to magnify's defaults (0.8, 3, 0.2)
    assert (box.sliders["beta"].value, box.sliders["sigma_d"].value) == (0.8, 2.0)
    assert box.sliders["sigma_r"].value in (0.1, 0.3)
    # each figure: the images (original + 2) on top, their magnifications below
    batch = torch.cat([x[1:2], noisy[1:2], shifted[1:2]])
    for (beta, sd, sr), fig in box.figures.items():
        assert len(fig.data) == 6
        for got, want in zip(_row(fig, 0, 3), to_rgb(batch, "none")):
            np.testing.assert_array_equal(got, want)
        want_mag = to_rgb(to_display(magnify(batch, beta, sd, sr)), "none")
        for got, want in zip(_row(fig, 1, 3), want_mag):
            np.testing.assert_array_equal(got, want)
        # titled columns, titled rows, and a figure that fits the default laptop box
        assert [a.text for a in fig.layout.annotations] == ["original", "noise", "shift"]
        assert [fig.layout[f"yaxis{k}"].title.text for k in (1, 4)] == ["image", "magnified"]
        assert fig.layout.width <= FIT_WIDTH and fig.layout.height <= FIT_HEIGHT


def _shown(box) -> dict:
    """The figure held by the explorer's Output widget, as Plotly JSON."""
    (output,) = box.children[-1].outputs
    assert output["output_type"] == "display_data"
    return output["data"]["application/vnd.plotly.v1+json"]


def test_magnification_explorer_slider_redraws(monkeypatch):
    pio = pytest.importorskip("plotly.io")
    monkeypatch.setattr(pio.renderers, "default", "plotly_mimetype")  # what JupyterLab gets
    x, noisy, _ = _images(1)
    box = magnification_explorer(x, {"noise": noisy}, betas=(0.0, 1.0), sigma_ds=(1.0, 3.0), sigma_rs=(0.2,))
    start = (box.sliders["beta"].value, box.sliders["sigma_d"].value, box.sliders["sigma_r"].value)
    assert start == (1.0, 3.0, 0.2)
    shown = box.displayed
    assert shown is box.figures[start]
    first = _shown(box)
    assert first["layout"]["title"]["text"] == shown.layout.title.text
    box.sliders["beta"].value = 0.0
    assert box.displayed is box.figures[(0.0, 3.0, 0.2)]
    assert box.displayed is not shown
    # the Output widget now holds the new figure, and only it
    second = _shown(box)
    assert second["layout"]["title"]["text"] == box.displayed.layout.title.text != first["layout"]["title"]["text"]
    assert second == box.displayed._repr_mimebundle_()["application/vnd.plotly.v1+json"]
    # the magnified row really changes with beta (local vs global normalisation)
    before, after = _row(shown, 1, 2), _row(box.displayed, 1, 2)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    box.sliders["sigma_d"].value = 1.0
    assert box.displayed is box.figures[(0.0, 1.0, 0.2)]
    assert "σ_d = 1" in box.displayed.layout.title.text


def test_magnification_explorer_options_reach_magnify():
    x, noisy, _ = _images(2)
    box = magnification_explorer(x, {"noise": noisy}, betas=(0.8,), sigma_ds=(2.0,), sigma_rs=(0.2,),
                                 radius=1, global_scale="residual_rms", quantile=0.9)
    batch = torch.cat([x[:1], noisy[:1]])
    mags = magnify(batch, 0.8, 2.0, 0.2, radius=1, global_scale="residual_rms")
    want = to_rgb(to_display(mags, quantile=0.9), "none")
    for got, w in zip(_row(box.figures[(0.8, 2.0, 0.2)], 1, 2), want):
        np.testing.assert_array_equal(got, w)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"others": {}}, ValueError, "others"),
        ({"others": [1]}, TypeError, "others"),
        ({"others": {"a": torch.rand(2, 1, 10, 10)}}, ValueError, "shape of x"),
        ({"others": {"a": torch.rand(2, 1, 14, 14, dtype=torch.float64)}}, TypeError, "dtype"),
        ({"others": {"a": torch.rand(2, 1, 14, 14) + 1.0}}, ValueError, "others"),
        ({"others": {3: torch.rand(2, 1, 14, 14)}}, TypeError, "str keys"),
        ({"betas": ()}, ValueError, "betas"),
        ({"betas": (0.5, 1.5)}, ValueError, r"betas\[1\]"),
        ({"betas": (0.5, 0.5)}, ValueError, "distinct"),
        ({"betas": "0.5"}, TypeError, "betas"),
        ({"sigma_ds": (0.0,)}, ValueError, "sigma_ds"),
        ({"sigma_rs": (-0.1,)}, ValueError, "sigma_rs"),
        ({"index": 2}, ValueError, "index"),
        ({"beta": 0.5}, TypeError, "option"),
        ({"window": "triangle"}, ValueError, "window"),
    ],
)
def test_magnification_explorer_bad_input(kwargs, error, match):
    x, noisy, _ = _images()
    args = {"others": {"noise": noisy}, "betas": (0.8,), "sigma_ds": (1.0,), "sigma_rs": (0.2,)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        magnification_explorer(x, **args)


def test_magnification_explorer_bad_x():
    _, noisy, _ = _images()
    with pytest.raises(ValueError, match="x"):
        magnification_explorer(noisy[0], {"noise": noisy[0]})  # (C, H, W): not a batch
    with pytest.raises(TypeError, match="x"):
        magnification_explorer(noisy.numpy(), {"noise": noisy})


# ------------------------------------------------------------------------------ alpha


def test_alpha_explorer_figures_and_redraw():
    x, noisy, _ = _images(3, size=10)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    alphas = (0.0, 0.9, 0.99)
    box = alpha_explorer(x, {"noise": z}, alphas=alphas, cell_size=60)
    assert isinstance(box, widgets.VBox)
    slider, out = box.children
    assert isinstance(slider, widgets.SelectionSlider) and isinstance(out, widgets.Output)
    assert set(box.figures) == set(alphas)
    assert slider.value == 0.9
    # rows: guide, z, ŝ_α(z); alpha = 0 is the identity, so ŝ_0(z) is shown exactly like z
    f0 = box.figures[0.0]
    np.testing.assert_array_equal(np.asarray(f0.data[2].z), np.asarray(f0.data[1].z))
    f99 = box.figures[0.99]
    assert not np.array_equal(np.asarray(f99.data[2].z), np.asarray(f99.data[1].z))
    smoothed = Smoother(x[:1], 0.99)(z[:1])
    np.testing.assert_array_equal(np.asarray(f99.data[2].z), to_rgb(smoothed, "minmax")[0])
    # moving the slider puts the figure of the new value in the Output widget
    assert box.displayed is box.figures[0.9]
    slider.value = 0.99
    assert box.displayed is box.figures[0.99]
    assert out.outputs[0]["data"] == box.figures[0.99]._repr_mimebundle_()
    slider.value = 0.0
    assert box.displayed is box.figures[0.0] and len(out.outputs) == 1
    assert box.sliders == {"alpha": slider}


def test_alpha_explorer_one_row_per_signal():
    x, _, _ = _images(4, size=12)
    g = torch.Generator().manual_seed(1)
    signals = {"noise": torch.randn(x.shape, generator=g), "step": (torch.arange(12) > 5).float().expand_as(x).contiguous()}
    box = alpha_explorer(x, signals, alphas=(0.0, 0.95), index=1)
    fig = box.figures[0.95]
    # rows = signals, columns = guide / signal / smoothed: the same three columns in each row
    assert [t.name for t in fig.data] == [f"{r} / {c}" for r in signals for c in ("guide x", "signal z", "ŝ_α(z)")]
    assert [a.text for a in fig.layout.annotations] == ["guide x", "signal z", "ŝ_α(z)"]
    assert [fig.layout[f"yaxis{k}"].title.text for k in (1, 4)] == ["noise", "step"]
    for j in range(3):  # same column -> same horizontal position, the row below
        top, bottom = fig.get_subplot(1, j + 1), fig.get_subplot(2, j + 1)
        assert top.xaxis.domain == bottom.xaxis.domain and top.yaxis.domain[0] > bottom.yaxis.domain[1]
    np.testing.assert_array_equal(np.asarray(fig.data[3].z), to_rgb(x[1:2], "none")[0])  # the guide of row 2, as it is
    want = to_rgb(Smoother(x[1:2], 0.95)(signals["step"][1:2]), "minmax")[0]
    np.testing.assert_array_equal(np.asarray(fig.data[5].z), want)
    assert fig.layout.width <= FIT_WIDTH and fig.layout.height <= FIT_HEIGHT


def test_alpha_explorer_bad_input():
    x, noisy, _ = _images()
    with pytest.raises(ValueError, match="alphas"):
        alpha_explorer(x, {"noise": noisy}, alphas=())
    with pytest.raises(ValueError, match="x"):
        alpha_explorer(x + 2.0, {"noise": noisy})
    with pytest.raises(ValueError, match="alpha"):
        alpha_explorer(x, {"noise": noisy}, alphas=(0.5, 1.0))
    with pytest.raises(ValueError, match="signals"):
        alpha_explorer(x, {})
    with pytest.raises(ValueError, match=r"signals\['noise'\]"):
        alpha_explorer(x, {"noise": noisy[:1]})
    with pytest.raises(ValueError, match="index"):
        alpha_explorer(x, {"noise": noisy}, index=2)


# ------------------------------------------------------------------------------ comparison grid


def test_comparison_grid_layout_titles_and_empty_cells():
    g = torch.Generator().manual_seed(5)
    a, b, c = (torch.rand(1, 1, 8, 8, generator=g) for _ in range(3))
    fig = comparison_grid({"first": {"x": a, "y": b}, "second": {"y": c, "z": a[0]}}, scale="none", title="T")
    # columns in order of first appearance; row 1 has no z, row 2 no x: 4 traces, row-major
    assert [t.name for t in fig.data] == ["first / x", "first / y", "second / y", "second / z"]
    assert [an.text for an in fig.layout.annotations] == ["x", "y", "z"]
    assert fig.layout.title.text == "T"
    assert [fig.layout[f"yaxis{k}"].title.text for k in (1, 4)] == ["first", "second"]
    # second / y sits under first / y
    assert fig.data[2].xaxis == "x5" and fig.get_subplot(2, 2).xaxis.domain == fig.get_subplot(1, 2).xaxis.domain
    np.testing.assert_array_equal(np.asarray(fig.data[3].z), to_rgb(a, "none")[0])


@pytest.mark.parametrize("n_rows, n_cols, size", [(1, 1, 28), (2, 7, 28), (3, 4, 96), (5, 1, 48), (2, 3, 300)])
def test_comparison_grid_fits_the_box(n_rows, n_cols, size):
    img = torch.rand(1, 3, size, size)
    rows = {f"r{i}": {f"c{j}": img for j in range(n_cols)} for i in range(n_rows)}
    for width, height in [(900, 440), (1200, 650), (400, 300)]:
        fig = comparison_grid(rows, width=width, height=height, cell_size=500)
        assert fig.layout.width <= width and fig.layout.height <= height
        # the cells are square like the images, and as large as the box (or the cap cell_size) allows
        dom = fig.get_subplot(1, 1)
        cell_w = (dom.xaxis.domain[1] - dom.xaxis.domain[0]) * (fig.layout.width - fig.layout.margin.l - fig.layout.margin.r)
        cell_h = (dom.yaxis.domain[1] - dom.yaxis.domain[0]) * (fig.layout.height - fig.layout.margin.t - fig.layout.margin.b)
        assert abs(cell_w - cell_h) < 2
        assert fig.layout.width > width - 10 or fig.layout.height > height - 10 or abs(cell_w - 500) < 1
    small = comparison_grid(rows, cell_size=40)  # cell_size caps the cells when the box is large
    dom = small.get_subplot(1, 1)
    assert (dom.xaxis.domain[1] - dom.xaxis.domain[0]) * (small.layout.width - small.layout.margin.l - small.layout.margin.r) <= 40.5


def test_comparison_grid_shared_scales():
    z = torch.tensor([[-2.0, 0.0], [1.0, 2.0]]).reshape(1, 1, 2, 2)
    s = 0.25 * z
    rows = {"noise": {"z": z, "ŝ(z)": s}, "step": {"z": z + 1.0, "ŝ(z)": s + 1.0}}

    def grey(fig, k):
        return np.asarray(fig.data[k].z)[..., 0].astype(int)

    def ref(v, lo, hi):  # the mapping written out: (v - lo) / (hi - lo) on 0..255
        return np.rint((v.double().reshape(2, 2).numpy() - lo) / (hi - lo) * 255).astype(int)

    per_image = comparison_grid(rows, scale="minmax")  # each image on its own range: z and s look alike
    np.testing.assert_array_equal(grey(per_image, 0), grey(per_image, 1))
    np.testing.assert_array_equal(grey(per_image, 1), ref(s, -0.5, 0.5))
    per_row = comparison_grid(rows, scale="minmax", shared="row")  # one range per row: s is fainter
    np.testing.assert_array_equal(grey(per_row, 0), ref(z, -2, 2))
    np.testing.assert_array_equal(grey(per_row, 1), ref(s, -2, 2))
    np.testing.assert_array_equal(grey(per_row, 3), ref(s + 1, -1, 3))
    # scales by column, row or cell; shared="row" groups the cells of a row that have the same scale
    mixed = comparison_grid(rows, scale={"z": "symmetric", "ŝ(z)": "minmax", ("step", "ŝ(z)"): "none"}, shared="row")
    np.testing.assert_array_equal(grey(mixed, 0), np.rint((0.5 + z.double().reshape(2, 2).numpy() / 4) * 255).astype(int))
    np.testing.assert_array_equal(grey(mixed, 1), ref(s, -0.5, 0.5))
    np.testing.assert_array_equal(grey(mixed, 3), ref((s + 1).clamp(0, 1), 0, 1))
    everything = comparison_grid(rows, scale="symmetric", shared="all")  # zero mid-grey, max |v| = 3 over the grid
    np.testing.assert_array_equal(grey(everything, 2), np.rint((0.5 + (z + 1).double().reshape(2, 2).numpy() / 6) * 255).astype(int))
    np.testing.assert_array_equal(grey(everything, 1), np.rint((0.5 + s.double().reshape(2, 2).numpy() / 6) * 255).astype(int))


@pytest.mark.parametrize(
    "rows, kwargs, error, match",
    [
        ({}, {}, ValueError, "rows"),
        ({"a": {}}, {}, ValueError, r"rows\['a'\]"),
        ({"a": {"x": torch.rand(2, 1, 4, 4)}}, {}, ValueError, r"rows\['a'\]\['x'\]"),
        ({"a": {"x": [[0.0]]}}, {}, TypeError, r"rows\['a'\]\['x'\]"),
        ({"a": {"x": torch.full((1, 4, 4), float("nan"))}}, {}, ValueError, "finite"),
        ({"a": {"x": torch.rand(1, 4, 4)}}, {"scale": "log"}, ValueError, "scale"),
        ({"a": {"x": torch.rand(1, 4, 4)}}, {"scale": {"b": "none"}}, ValueError, "not a row"),
        ({"a": {"x": torch.rand(1, 4, 4)}}, {"scale": {("a", "y"): "none"}}, ValueError, "not a row"),
        ({"a": {"x": torch.rand(1, 4, 4)}}, {"scale": {"x": "log"}}, ValueError, r"scale\['x'\]"),
        ({"a": {"x": torch.rand(1, 4, 4)}}, {"shared": "column"}, ValueError, "shared"),
        ({"a": {"x": torch.rand(1, 4, 4)}}, {"width": 50}, ValueError, "width"),
        ({"a": {"x": torch.rand(1, 4, 4)}}, {"height": 1.5}, TypeError, "height"),
    ],
)
def test_comparison_grid_bad_input(rows, kwargs, error, match):
    with pytest.raises(error, match=match):
        comparison_grid(rows, **kwargs)


def test_alpha_explorer_hand_checked_values():
    """A 1 x 3 guide: pixels 0 and 1 alike, pixel 2 isolated (its Gaussian weights underflow to 0).
    On the pair, W = [[0, 1], [1, 0]] = 𝒲, so ŝ_α(z) = (z_0 + α z_1, α z_0 + z_1) / (1 + α); on the
    isolated pixel ŝ_α is the identity. α = 0.5, z = (0, 1, 2): ŝ = (1/3, 2/3, 2), shown min-max
    scaled: (0, 0.2, 1) -> grey levels 0, 51, 255; z itself: 0, 128, 255."""
    x = torch.tensor([0.5, 0.5, 0.0]).view(1, 1, 1, 3)
    z = torch.tensor([0.0, 1.0, 2.0]).view(1, 1, 1, 3)
    box = alpha_explorer(x, {"z": z}, alphas=(0.0, 0.5), kernel="gaussian", lam=1e4)
    fig = box.figures[0.5]
    grey = lambda t: np.asarray(t.z)[0, :, 0].tolist()  # noqa: E731  (row 0, channel R of the RGB image)
    assert grey(fig.data[0]) == [128, 128, 0]  # the guide, unscaled
    assert grey(fig.data[1]) == [0, 128, 255]
    assert grey(fig.data[2]) == [0, 51, 255]
    assert grey(box.figures[0.0].data[2]) == [0, 128, 255]  # α = 0: the identity
