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
from smoothlab.viz import to_rgb  # noqa: E402
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
    sliders = [c for c in box.children if isinstance(c, widgets.SelectionSlider)]
    assert len(sliders) == 3 and isinstance(box.children[-1], widgets.Output)
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
        assert [a.text for a in fig.layout.annotations][:3] == ["original", "noise", "shift"]


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


def test_alpha_explorer_bad_input():
    x, noisy, _ = _images()
    with pytest.raises(ValueError, match="alphas"):
        alpha_explorer(x, {"noise": noisy}, alphas=())
    with pytest.raises(ValueError, match="x"):
        alpha_explorer(x + 2.0, {"noise": noisy})
    with pytest.raises(ValueError, match="alpha"):
        alpha_explorer(x, {"noise": noisy}, alphas=(0.5, 1.0))


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
