"""Interactive explorers (ipywidgets + Plotly) for the notebooks.

Both libraries are optional (``pip install smoothlab[viz]``) and imported when an explorer is
built. An explorer precomputes what its sliders can show, so moving a slider only redraws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from smoothlab._validation import check_images
from smoothlab.smoothing import Smoother


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
    from IPython.display import display

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
        out.clear_output(wait=True)
        with out:
            display(figures[slider.value])

    slider.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([slider, out])
    box.figures = figures  # type: ignore[attr-defined]
    return box
