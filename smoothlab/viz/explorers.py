"""Interactive explorers (ipywidgets + Plotly) for the notebooks.

Both libraries are optional (``pip install smoothlab[viz]``) and imported when an explorer is
built. An explorer precomputes what its sliders can show, so moving a slider only redraws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from smoothlab._validation import check_images
from smoothlab.smoothing import Smoother


def _show(out: Any, figure: Any) -> None:
    """Put ``figure`` in an ipywidgets ``Output`` by setting its state in the kernel.

    Capturing a ``display()`` in the Output instead makes nbclient (``nbconvert --execute``) send
    on the shell channel while it waits there for the cell's reply, which intermittently hangs it
    (nbclient issue 312). The bundle is what ``display(figure)`` would show.
    """
    bundle = figure._repr_mimebundle_()
    out.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)


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


def alpha_explorer(
    x: torch.Tensor,
    signals: dict[str, torch.Tensor],
    alphas: Sequence[float] = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.997),
    *,
    index: int = 0,
    cell_size: int = 200,
    **smoother_options: Any,
):
    """A slider on ``α`` that redraws the smoothing of several signals guided by one image.

    Parameters
    ----------
    x : torch.Tensor
        Guide images ``(B, C, H, W)`` in ``[0, 1]``; image ``index`` is shown.
    signals : dict of str to torch.Tensor
        Name -> signal ``z`` of the shape of ``x`` (white noise, a step, a gradient...).
    alphas : sequence of float
        The values the slider offers; every ``ŝ_α(z)`` is computed up front.
    smoother_options
        Passed to :class:`smoothlab.Smoother` (``lam``, ``kernel``, ``solver``...).

    Returns
    -------
    ipywidgets.VBox
        The slider above an output area holding a Plotly :func:`~smoothlab.viz.image_grid`.
        Its ``.figures`` attribute maps each ``α`` to the figure shown for it.
    """
    import ipywidgets as widgets

    from smoothlab.viz.figures import image_grid

    sweeps = {name: smoothing_sweep(x[index : index + 1], z[index : index + 1], alphas, **smoother_options) for name, z in signals.items()}
    figures = {}
    for a in alphas:
        rows = {"guide x": x[index : index + 1]}
        scales = {"guide x": "none"}
        for name, z in signals.items():
            rows[f"{name}"] = z[index : index + 1]
            rows[f"ŝ_α({name})"] = sweeps[name][float(a)]
            scales[name] = scales[f"ŝ_α({name})"] = "minmax"
        # one column per row entry: lay them out side by side by stacking as a batch per row
        figures[float(a)] = image_grid(rows, scale=scales, cell_size=cell_size, title=f"α = {a}")
    slider = widgets.SelectionSlider(options=[float(a) for a in alphas], value=float(alphas[len(alphas) // 2]), description="α")
    out = widgets.Output()

    def redraw(change: Any = None) -> None:
        box.displayed = figures[slider.value]  # type: ignore[attr-defined]
        _show(out, figures[slider.value])

    box = widgets.VBox([slider, out])
    slider.observe(redraw, names="value")
    redraw()
    box.figures = figures  # type: ignore[attr-defined]
    return box


_MAG_SLIDER_OPTIONS = ("radius", "window", "global_scale", "eps")


def _slider_values(values: Any, name: str, low: float, high: float | None, *, low_open: bool) -> list[float]:
    """A non-empty sequence of distinct numbers in range, as floats (the options of one slider)."""
    from smoothlab._validation import check_range

    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    values = list(values)
    if len(values) == 0:
        raise ValueError(f"{name} must hold at least one value, got an empty sequence")
    out = [check_range(v, f"{name}[{i}]", low, high, low_open=low_open) for i, v in enumerate(values)]
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must hold distinct values, got {list(values)!r}")
    return out


def _slider_labels(values: list[float]) -> list[tuple[str, float]]:
    labels = [f"{v:.3g}" for v in values]
    if len(set(labels)) != len(labels):  # values too close for 3 digits: show them in full
        labels = [repr(v) for v in values]
    return list(zip(labels, values))


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
    **mag_options: Any,
):
    """Sliders on ``β``, ``σ_d`` and ``σ_r`` of the adversarial magnification (appendix A, eq. 22).

    Shows one original image and its perturbed versions (adversarial examples, noisy copies...)
    in the top row and their magnifications ``mag(·)`` (:func:`smoothlab.magnify`) below: Figure 1
    of the paper, with its parameters on sliders. Every magnification is computed from its own
    image alone, as in Fig. 1. The magnified row of each slider setting is mapped to ``[0, 1]``
    with one scale shared by all its images (:func:`smoothlab.to_display`), so a stronger residual
    really looks stronger.

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
        Approximate size of one image in pixels.
    mag_options
        Other options of :func:`smoothlab.magnify`: ``radius``, ``window``, ``global_scale``, ``eps``.

    Returns
    -------
    ipywidgets.VBox
        Three ``SelectionSlider`` (``β``, ``σ_d``, ``σ_r``) above an ``Output`` holding a Plotly
        :func:`~smoothlab.viz.image_grid`. Attributes: ``.figures`` maps each
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
    from smoothlab._validation import check_int
    from smoothlab.magnification import magnify, to_display

    check_images(x, "x")
    index = check_int(index, "index", minimum=0)
    if index >= x.shape[0]:
        raise ValueError(f"index must be in [0, {x.shape[0]}) for x of batch size {x.shape[0]}, got {index}")
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
    unknown = sorted(set(mag_options) - set(_MAG_SLIDER_OPTIONS))
    if unknown:
        raise TypeError(
            f"unexpected magnification option(s) {unknown}; expected some of {list(_MAG_SLIDER_OPTIONS)} "
            "(beta, sigma_d and sigma_r are the sliders: pass betas, sigma_ds, sigma_rs)"
        )
    beta_values = _slider_values(betas, "betas", 0.0, 1.0, low_open=False)
    sd_values = _slider_values(sigma_ds, "sigma_ds", 0.0, None, low_open=True)
    sr_values = _slider_values(sigma_rs, "sigma_rs", 0.0, None, low_open=True)

    import ipywidgets as widgets

    from smoothlab.viz.figures import image_grid

    names = ["original", *others]
    batch = torch.cat([x[index : index + 1].detach()] + [xa[index : index + 1].detach() for xa in others.values()])
    figures = {}
    with torch.no_grad():
        for sd in sd_values:
            for sr in sr_values:
                for beta in beta_values:
                    # one call per setting: the bilateral filters depend on (σ_d, σ_r), eq. (22) on β
                    mags = to_display(magnify(batch, beta, sd, sr, **mag_options), quantile=quantile)
                    figures[(beta, sd, sr)] = image_grid(
                        {"image": batch, "magnified": mags},
                        captions={"image": names},
                        scale="none",
                        max_images=None,
                        cell_size=cell_size,
                        title=f"mag(·), eq. (22): β = {beta:.3g}, σ_d = {sd:.3g}, σ_r = {sr:.3g}",
                    )

    def slider(description: str, values: list[float], default: float) -> Any:
        start = min(values, key=lambda v: abs(v - default))
        return widgets.SelectionSlider(
            options=_slider_labels(values), value=start, description=description, continuous_update=False
        )

    sliders = {
        "beta": slider("β", beta_values, 0.8),
        "sigma_d": slider("σ_d (px)", sd_values, 3.0),
        "sigma_r": slider("σ_r", sr_values, 0.2),
    }
    out = widgets.Output()
    box = widgets.VBox([*sliders.values(), out])

    def redraw(change: Any = None) -> None:
        key = (sliders["beta"].value, sliders["sigma_d"].value, sliders["sigma_r"].value)
        box.displayed = figures[key]  # type: ignore[attr-defined]
        _show(out, figures[key])

    for s in sliders.values():
        s.observe(redraw, names="value")
    box.figures = figures  # type: ignore[attr-defined]
    box.sliders = sliders  # type: ignore[attr-defined]
    redraw()
    return box
