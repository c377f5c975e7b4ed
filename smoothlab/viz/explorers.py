"""Interactive explorers (ipywidgets + Plotly) for the notebooks.

Both libraries are optional (``pip install smoothlab[viz]``) and imported when an explorer is
built. An explorer precomputes what its sliders can show, so moving a slider only redraws. Its
images are laid out for comparison by :func:`smoothlab.viz.comparison_grid`: side by side, a title
on every row and column, sized to fit a laptop screen with the sliders above.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from smoothlab._validation import check_images, check_int
from smoothlab.smoothing import Smoother
from smoothlab.viz._grid import FIT_HEIGHT, FIT_WIDTH

__all__ = ["alpha_explorer", "magnification_explorer", "smoothing_sweep"]


def _show(out: Any, figure: Any) -> None:
    """Put ``figure`` in an ipywidgets ``Output`` by setting its state in the kernel.

    Capturing a ``display()`` in the Output instead makes nbclient (``nbconvert --execute``) send
    on the shell channel while it waits there for the cell's reply, which intermittently hangs it
    (nbclient issue 312). The bundle is what ``display(figure)`` would show.
    """
    bundle = figure._repr_mimebundle_()
    out.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)


# ------------------------------------------------------------------------------ shared steps


def _slider_values(values: Any, name: str, low: float, high: float | None, *, low_open: bool, high_open: bool = False) -> list[float]:
    """A non-empty sequence of distinct numbers in range, as floats (the options of one slider)."""
    from smoothlab._validation import check_range

    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    values = list(values)
    if len(values) == 0:
        raise ValueError(f"{name} must hold at least one value, got an empty sequence")
    out = [check_range(v, f"{name}[{i}]", low, high, low_open=low_open, high_open=high_open) for i, v in enumerate(values)]
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must hold distinct values, got {list(values)!r}")
    return out


def _slider_labels(values: list[float]) -> list[tuple[str, float]]:
    labels = [f"{v:.3g}" for v in values]
    if len(set(labels)) != len(labels):  # values too close for 3 digits: show them in full
        labels = [repr(v) for v in values]
    return list(zip(labels, values))


def _selection_slider(description: str, values: list[float], default: float, **options: Any) -> Any:
    """A ``SelectionSlider`` over ``values``, starting at the value closest to ``default``."""
    import ipywidgets as widgets

    start = min(values, key=lambda v: abs(v - default))
    return widgets.SelectionSlider(options=_slider_labels(values), value=start, description=description, **options)


def _check_index(x: torch.Tensor, index: Any) -> int:
    index = check_int(index, "index", minimum=0)
    if index >= x.shape[0]:
        raise ValueError(f"index must be in [0, {x.shape[0]}) for x of batch size {x.shape[0]}, got {index}")
    return index


def _explorer(controls: Sequence[Any], sliders: Mapping[str, Any], figures: Mapping[Any, Any], key: Callable[[], Any]) -> Any:
    """``controls`` above an ``Output`` that shows ``figures[key()]``, redrawn when a slider moves.

    The box gets the attributes ``figures``, ``sliders`` and ``displayed`` (the figure shown).
    """
    import ipywidgets as widgets

    out = widgets.Output()
    box = widgets.VBox([*controls, out])

    def redraw(change: Any = None) -> None:
        figure = figures[key()]
        box.displayed = figure  # type: ignore[attr-defined]
        _show(out, figure)

    for s in sliders.values():
        s.observe(redraw, names="value")
    box.figures = dict(figures)  # type: ignore[attr-defined]
    box.sliders = dict(sliders)  # type: ignore[attr-defined]
    redraw()
    return box


# ------------------------------------------------------------------------------ alpha


def smoothing_sweep(
    x: torch.Tensor,
    z: torch.Tensor,
    alphas: Sequence[float],
    **smoother_options: Any,
) -> dict[float, torch.Tensor]:
    """``ŝ_α(z)`` guided by ``x`` for each ``α`` in ``alphas`` (eq. 9), as a dict ``α -> signal``."""
    check_images(x, "x")
    if len(alphas) == 0:
        raise ValueError("alphas must hold at least one value, got an empty sequence")
    out = {}
    for a in alphas:
        with torch.no_grad():
            out[float(a)] = Smoother(x, float(a), **smoother_options)(z.to(x.dtype))
    return out


def _check_signals(x: torch.Tensor, signals: Any) -> None:
    if not isinstance(signals, Mapping) or len(signals) == 0:
        raise ValueError(f"signals must be a non-empty dict of name -> signal of the shape of x, got {signals!r:.80}")
    for name, z in signals.items():
        if not isinstance(z, torch.Tensor) or z.shape != x.shape:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"signals[{name!r}] must be a tensor of the shape of x {tuple(x.shape)}, got {shape}")


def _alpha_figure(guide: torch.Tensor, signals: Mapping[str, torch.Tensor], smoothed: Mapping[str, torch.Tensor], alpha: float, **fit: Any) -> Any:
    """One row per signal: the guide as it is, the signal ``z`` and ``ŝ_α(z)``, each min-max scaled on its own."""
    from smoothlab.viz._grid import comparison_grid

    rows = {name: {"guide x": guide, "signal z": z, "ŝ_α(z)": smoothed[name]} for name, z in signals.items()}
    scales = {"guide x": "none", "signal z": "minmax", "ŝ_α(z)": "minmax"}
    title = f"ŝ_α(z), eq. (9), at α = {alpha:.3g} (each signal scaled to its own range)"
    return comparison_grid(rows, scale=scales, shared="image", title=title, **fit)


def alpha_explorer(
    x: torch.Tensor,
    signals: dict[str, torch.Tensor],
    alphas: Sequence[float] = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.997),
    *,
    index: int = 0,
    cell_size: int = 200,
    width: int = FIT_WIDTH,
    height: int = FIT_HEIGHT,
    **smoother_options: Any,
):
    """A slider on ``α`` that redraws the smoothing ``ŝ_α(z)`` (eq. 9) of several signals guided by one image.

    One row per signal, side by side: the guide ``x`` (as it is), the signal ``z`` and ``ŝ_α(z)``,
    each signal mapped to its own range (min-max), so that the shape of the smoothed signal shows
    whatever its amplitude.

    Parameters
    ----------
    x : torch.Tensor
        Guide images ``(B, C, H, W)`` in ``[0, 1]``; image ``index`` is shown.
    signals : dict of str to torch.Tensor
        Name -> signal ``z`` of the shape of ``x`` (white noise, a step, a gradient...).
    alphas : sequence of float
        The values the slider offers, in ``[0, 1)``; every ``ŝ_α(z)`` is computed up front.
    index : int
        Which image of the batch to show.
    cell_size : int
        The largest side of one image in pixels.
    width, height : int
        The box the figure is fitted into (default: a laptop screen, see :data:`smoothlab.viz.FIT_WIDTH`).
    smoother_options
        Passed to :class:`smoothlab.Smoother` (``lam``, ``kernel``, ``solver``...).

    Returns
    -------
    ipywidgets.VBox
        The slider above an output area holding a Plotly :func:`~smoothlab.viz.comparison_grid`.
        Attributes: ``.figures`` maps each ``α`` to its figure, ``.sliders`` is ``{"alpha": slider}``,
        ``.displayed`` is the figure shown. The slider starts at the middle value of ``alphas``.

    Raises
    ------
    TypeError, ValueError
        Bad images, empty or mis-shaped ``signals``, an empty ``alphas`` or one with repeated
        values or values outside ``[0, 1)``, a bad ``index``.
    """
    check_images(x, "x")
    index = _check_index(x, index)
    _check_signals(x, signals)
    alpha_values = _slider_values(alphas, "alphas", 0.0, 1.0, low_open=False, high_open=True)
    guide = x[index : index + 1]
    picked = {name: z[index : index + 1] for name, z in signals.items()}
    sweeps = {name: smoothing_sweep(guide, z, alpha_values, **smoother_options) for name, z in picked.items()}
    fit = {"cell_size": cell_size, "width": width, "height": height}
    figures = {a: _alpha_figure(guide, picked, {n: s[a] for n, s in sweeps.items()}, a, **fit) for a in alpha_values}
    slider = _selection_slider("α", alpha_values, alpha_values[len(alpha_values) // 2])
    return _explorer([slider], {"alpha": slider}, figures, lambda: slider.value)


# ------------------------------------------------------------------------------ magnification

_MAG_SLIDER_OPTIONS = ("radius", "window", "global_scale", "eps")


def _check_others(x: torch.Tensor, others: Any) -> None:
    if not isinstance(others, Mapping):
        raise TypeError(f"others must be a dict of name -> images (B, C, H, W), got {type(others).__name__}")
    if len(others) == 0:
        raise ValueError("others must hold at least one name -> images entry, got an empty dict")
    for name, xa in others.items():
        if not isinstance(name, str):
            raise TypeError(f"others must have str keys (names shown as captions), got key {name!r}")
        check_images(xa, f"others[{name!r}]")
        if xa.shape != x.shape:
            raise ValueError(f"others[{name!r}] must have the shape of x {tuple(x.shape)}, got {tuple(xa.shape)}")
        if xa.dtype != x.dtype or xa.device != x.device:
            raise TypeError(
                f"others[{name!r}] must have the dtype/device of x ({x.dtype}, {x.device}), got ({xa.dtype}, {xa.device})"
            )


def _check_mag_options(mag_options: Mapping[str, Any]) -> None:
    unknown = sorted(set(mag_options) - set(_MAG_SLIDER_OPTIONS))
    if unknown:
        raise TypeError(
            f"unexpected magnification option(s) {unknown}; expected some of {list(_MAG_SLIDER_OPTIONS)} "
            "(beta, sigma_d and sigma_r are the sliders: pass betas, sigma_ds, sigma_rs)"
        )


def _magnification_figure(batch: torch.Tensor, names: list[str], setting: tuple[float, float, float], quantile: float,
                          fit: Mapping[str, Any], mag_options: Mapping[str, Any]) -> Any:
    """Figure 1 for one ``(β, σ_d, σ_r)``: the images in a row, their magnifications below, on one scale."""
    from smoothlab.magnification import magnify, to_display
    from smoothlab.viz._grid import comparison_grid

    beta, sd, sr = setting
    with torch.no_grad():  # one call per setting: the bilateral filters depend on (σ_d, σ_r), eq. (22) on β
        mags = to_display(magnify(batch, beta, sd, sr, **mag_options), quantile=quantile)
    rows = {"image": dict(zip(names, batch)), "magnified": dict(zip(names, mags))}
    title = f"mag(·), eq. (22): β = {beta:.3g}, σ_d = {sd:.3g}, σ_r = {sr:.3g} (one grey scale for the row)"
    return comparison_grid(rows, scale="none", title=title, **fit)


def magnification_explorer(
    x: torch.Tensor,
    others: Mapping[str, torch.Tensor],
    betas: Sequence[float] = (0.5, 0.8, 1.0),
    sigma_ds: Sequence[float] = (1.0, 3.0, 5.0),
    sigma_rs: Sequence[float] = (5.0 / 255.0, 0.2, 0.5),
    *,
    index: int = 0,
    quantile: float = 0.99,
    cell_size: int = 140,
    width: int = FIT_WIDTH,
    height: int = FIT_HEIGHT,
    **mag_options: Any,
):
    """Sliders on ``β``, ``σ_d`` and ``σ_r`` of the adversarial magnification (appendix A, eq. 22).

    Shows one original image and its perturbed versions (adversarial examples, noisy copies...)
    side by side in the top row and their magnifications ``mag(·)`` (:func:`smoothlab.magnify`)
    below: Figure 1 of the paper, with its parameters on sliders. Every magnification is computed
    from its own image alone, as in Fig. 1. The magnified row of each slider setting is mapped to
    ``[0, 1]`` with one scale shared by all its images (:func:`smoothlab.to_display`), so a
    stronger residual really looks stronger.

    Every combination of slider values is computed up front (one batched :func:`~smoothlab.magnify`
    call per combination, ``len(betas) * len(sigma_ds) * len(sigma_rs)`` in all): moving a slider
    only redraws. The cost grows with the window, ``(2 ceil(3 σ_d) + 1)^2`` offsets per pixel.

    Parameters
    ----------
    x : torch.Tensor
        Original images ``(B, C, H, W)`` in ``[0, 1]``; image ``index`` is shown.
    others : dict of str to torch.Tensor
        Name -> perturbed images of the shape, dtype and device of ``x`` (e.g.
        ``{"C&W": res.x_adv}``), in ``[0, 1]``; image ``index`` of each is shown.
    betas : sequence of float
        Values of ``β`` in ``[0, 1]`` (weight of the local against the global scale; Fig. 1: 0.8).
    sigma_ds : sequence of float
        Domain (spatial) standard deviations of the bilateral filters, in pixels, > 0.
    sigma_rs : sequence of float
        Range (photometric) standard deviations on the ``[0, 1]`` scale, > 0 (the authors' code:
        0.2; the paper's Fig. 1 read as 5/255, see :mod:`smoothlab.magnification`).
    index : int
        Which image of the batch to show.
    quantile : float
        Quantile of ``|mag|`` mapped to black/white by :func:`smoothlab.to_display`.
    cell_size : int
        The largest side of one image in pixels.
    width, height : int
        The box the figure is fitted into (default: a laptop screen, see :data:`smoothlab.viz.FIT_WIDTH`).
    mag_options
        Other options of :func:`smoothlab.magnify`: ``radius``, ``window``, ``global_scale``, ``eps``.

    Returns
    -------
    ipywidgets.VBox
        A row of three ``SelectionSlider`` (``β``, ``σ_d``, ``σ_r``) above an ``Output`` holding a
        Plotly :func:`~smoothlab.viz.comparison_grid`. Attributes: ``.figures`` maps each
        ``(β, σ_d, σ_r)`` (floats, as given) to its figure; ``.sliders`` maps ``"beta"``,
        ``"sigma_d"``, ``"sigma_r"`` to the sliders; ``.displayed`` is the figure shown for the
        current slider values. The sliders start at the values closest to the defaults of
        :func:`~smoothlab.magnify` (0.8, 3, 0.2).

    Raises
    ------
    TypeError, ValueError
        Bad images, an empty ``others``, an image of another shape/dtype/device than ``x``, an
        empty slider sequence or one with repeated or out-of-range values, a bad ``index`` or an
        unknown magnification option.
    """
    import itertools

    import ipywidgets as widgets

    check_images(x, "x")
    index = _check_index(x, index)
    _check_others(x, others)
    _check_mag_options(mag_options)
    values = {
        "beta": _slider_values(betas, "betas", 0.0, 1.0, low_open=False),
        "sigma_d": _slider_values(sigma_ds, "sigma_ds", 0.0, None, low_open=True),
        "sigma_r": _slider_values(sigma_rs, "sigma_rs", 0.0, None, low_open=True),
    }
    names = ["original", *others]
    batch = torch.cat([x[index : index + 1].detach()] + [xa[index : index + 1].detach() for xa in others.values()])
    fit = {"cell_size": cell_size, "width": width, "height": height}
    figures = {
        (beta, sd, sr): _magnification_figure(batch, names, (beta, sd, sr), quantile, fit, mag_options)
        for sd, sr, beta in itertools.product(values["sigma_d"], values["sigma_r"], values["beta"])
    }
    look = {"continuous_update": False, "layout": widgets.Layout(width="290px"), "style": {"description_width": "60px"}}
    sliders = {
        "beta": _selection_slider("β", values["beta"], 0.8, **look),
        "sigma_d": _selection_slider("σ_d (px)", values["sigma_d"], 3.0, **look),
        "sigma_r": _selection_slider("σ_r", values["sigma_r"], 0.2, **look),
    }

    def key() -> tuple[float, float, float]:
        return (sliders["beta"].value, sliders["sigma_d"].value, sliders["sigma_r"].value)

    return _explorer([widgets.HBox(list(sliders.values()))], sliders, figures, key)
