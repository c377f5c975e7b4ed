"""Images side by side for comparison: a grid with row and column titles that fits a laptop screen.

:func:`comparison_grid` is the layout of the explorers (:mod:`smoothlab.viz.explorers`) and of the
figures of the notebooks that compare images: one row per signal (or per kind of image), one column
per stage (or per attack), a title on every row and column, optionally one colour scale shared by a
row or by the whole grid, and a figure sized to fit a given box.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

__all__ = ["FIT_HEIGHT", "FIT_WIDTH", "comparison_grid"]

#: The box a figure is fitted into by default, in CSS pixels. On a 1366x768 laptop screen the output
#: area of a JupyterLab notebook (file browser open) is about 940 px wide, and about 530 px of it are
#: visible at once below the browser's and JupyterLab's bars: an explorer (its sliders included)
#: must fit that to be used without scrolling.
FIT_WIDTH = 900
#: The height in pixels an explorer must fit (see :data:`FIT_WIDTH`).
FIT_HEIGHT = 440

_SHARED = ("image", "row", "all")
_SCALES = ("auto", "none", "minmax", "symmetric")
_GAP = 6  # pixels between two cells
_TITLE_H = 36  # pixels for the figure title
_LINE_H = 15  # pixels per line of the column titles
_ROW_W = 28  # pixels for the (rotated) row titles


def _image(value: Any, name: str) -> np.ndarray:
    """One image ``(C, H, W)`` or ``(1, C, H, W)``, tensor or array -> float64 ``(C, H, W)``."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array (C, H, W), got {type(value).__name__}")
    arr = np.asarray(value, dtype="float64")
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3) or min(arr.shape[1:]) < 1:
        raise ValueError(f"{name} must be one image of shape (C, H, W) or (1, C, H, W) with C in {{1, 3}}, got shape {value.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got NaN or Inf values")
    return arr


def _map(values: list[np.ndarray], scale: str) -> list[np.ndarray]:
    """Map images to ``[0, 1]`` with one scale for all of them (``scale`` as in :func:`to_rgb`)."""
    lo = min(float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    if scale == "auto":
        scale = "none" if lo >= 0.0 and hi <= 1.0 else "minmax"
    if scale == "minmax":
        span = hi - lo
        return [(v - lo) / span if span > 0 else np.full_like(v, 0.5) for v in values]
    if scale == "symmetric":
        m = max(abs(lo), abs(hi))
        return [0.5 + v / (2.0 * m) if m > 0 else np.full_like(v, 0.5) for v in values]
    return values


def _rgb(values: list[np.ndarray], scale: str, shared: bool) -> list[np.ndarray]:
    """uint8 RGB ``(H, W, 3)`` of each image, on one colour scale if ``shared``, else each on its own."""
    from smoothlab.viz.figures import to_rgb

    if not shared:  # to_rgb's own per-image mapping (minmax: per image and per channel, as in Fig. 4)
        return [to_rgb(v[None], scale)[0] for v in values]
    return [to_rgb(v[None], "none")[0] for v in _map(values, scale)]


def _check_rows(rows: Any) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """Validate ``rows``; return them as arrays, and the column titles in order of first appearance."""
    if not isinstance(rows, Mapping) or len(rows) == 0:
        raise ValueError(f"rows must be a non-empty mapping of row title -> {{column title: image}}, got {rows!r:.80}")
    out: dict[str, dict[str, np.ndarray]] = {}
    columns: list[str] = []
    for r, cells in rows.items():
        if not isinstance(cells, Mapping) or len(cells) == 0:
            raise ValueError(f"rows[{r!r}] must be a non-empty mapping of column title -> image, got {cells!r:.80}")
        out[str(r)] = {str(c): _image(v, f"rows[{r!r}][{c!r}]") for c, v in cells.items()}
        columns += [c for c in out[str(r)] if c not in columns]
    return out, columns


def _cell_scales(cells: dict[str, dict[str, np.ndarray]], columns: list[str], scale: Any) -> dict[tuple[str, str], str]:
    """The scale of every cell: ``scale`` itself, or looked up by (row, column), then row, then column."""
    from smoothlab._validation import check_choice

    if not isinstance(scale, Mapping):
        check_choice(scale, "scale", _SCALES)
        return {(r, c): scale for r, row in cells.items() for c in row}
    for k, v in scale.items():
        if not (k in cells or k in columns or (isinstance(k, tuple) and len(k) == 2 and k[0] in cells and k[1] in cells[k[0]])):
            raise ValueError(f"scale names {k!r}, which is not a row {list(cells)}, a column {columns} or a (row, column) cell")
        check_choice(v, f"scale[{k!r}]", _SCALES)
    return {(r, c): scale.get((r, c), scale.get(r, scale.get(c, "auto"))) for r, row in cells.items() for c in row}


def _check_box(width: Any, height: Any, cell_size: Any) -> None:
    from smoothlab._validation import check_int

    check_int(width, "width", minimum=100)
    check_int(height, "height", minimum=100)
    check_int(cell_size, "cell_size", minimum=8)


def comparison_grid(
    rows: Mapping[str, Mapping[str, Any]],
    *,
    scale: str | Mapping[str, str] = "auto",
    shared: str = "image",
    width: int = FIT_WIDTH,
    height: int = FIT_HEIGHT,
    cell_size: int = 260,
    title: str | None = None,
) -> go.Figure:
    """Images side by side: one row per signal, one column per stage, titles on both, fitted to a box.

    ``comparison_grid({"noise": {"z": z, "ŝ_α(z)": S(z)}, "step": {"z": step, "ŝ_α(z)": S(step)}})``
    shows a signal per row and the smoothing of eq. (9) of each next to it;
    ``comparison_grid({"image": {"original": x, "C&W": x_cw}, "magnified": {...}}, shared="row")``
    shows Figure 1 with one colour scale for each row.

    Parameters
    ----------
    rows : mapping of str to mapping of str to image
        Row title -> (column title -> image); a title may hold line breaks (``"<br>"``). An image
        is a tensor or array ``(C, H, W)`` or ``(1, C, H, W)``, C in {1, 3}. The columns are the
        column titles in order of first appearance; a row that lacks a column leaves that cell
        empty. Images may differ in size: each is drawn in a cell of the largest aspect ratio,
        keeping its own.
    scale : str or mapping
        How values are mapped to grey/colour levels, as in :func:`smoothlab.viz.to_rgb`:
        ``"none"`` (images in ``[0, 1]``), ``"minmax"``, ``"symmetric"`` (zero is mid-grey),
        ``"auto"``. One for every cell, or a mapping whose keys are ``(row, column)`` pairs, row
        titles or column titles, looked up in that order (cells not named use ``"auto"``).
    shared : {"image", "row", "all"}
        Over which images one colour scale is computed: each image on its own (``"minmax"`` is
        then per image and per channel, the paper's convention for perturbations in Fig. 4), the
        images of a row that have the same ``scale`` (comparable in amplitude), or all images of
        the grid that have the same ``scale``.
    width, height : int
        The box the figure must fit, in pixels (default: an explorer's figure on a 1366x768
        laptop screen, :data:`FIT_WIDTH` x :data:`FIT_HEIGHT`). Cells shrink to fit it.
    cell_size : int
        The largest side of a cell in pixels, reached when the box allows it.
    title : str, optional
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Image`` trace per filled cell, row-major, holding the uint8 RGB values shown and
        named ``"row / column"``; column titles as annotations above the first row, row titles as
        y-axis titles of the first column. ``layout.width`` <= ``width`` and ``layout.height`` <=
        ``height``, unless that would make the cells smaller than 8 pixels.

    Raises
    ------
    TypeError, ValueError
        An image that is not one ``(C, H, W)`` image, non-finite values, an unknown scale or
        ``shared``, a scale naming no row, column or cell, a box smaller than 100 pixels.
    """
    from smoothlab.viz.figures import _plotly

    go = _plotly()
    from plotly.subplots import make_subplots

    from smoothlab._validation import check_choice

    cells, columns = _check_rows(rows)
    scales = _cell_scales(cells, columns, scale)
    check_choice(shared, "shared", _SHARED)
    _check_box(width, height, cell_size)
    rgb = _grid_rgb(cells, scales, shared)
    n_rows, n_cols = len(cells), len(columns)
    aspect = max(v.shape[1] / v.shape[2] for row in cells.values() for v in row.values())  # H / W of a cell
    lines = max(c.count("<br>") + 1 for c in columns)
    fig_w, fig_h, margin = _fit(n_rows, n_cols, aspect, width, height, cell_size, title is not None, lines)
    fig = make_subplots(
        rows=n_rows,
        cols=n_cols,
        horizontal_spacing=_GAP / max(fig_w - margin["l"] - margin["r"], 1),
        vertical_spacing=_GAP / max(fig_h - margin["t"] - margin["b"], 1),
    )
    for i, (r, row) in enumerate(rgb.items(), start=1):
        for j, c in enumerate(columns, start=1):
            if c in row:
                fig.add_trace(
                    go.Image(z=row[c], name=f"{r} / {c}", hovertemplate=f"{r} / {c}<br>x %{{x}}, y %{{y}}<extra></extra>"),
                    row=i,
                    col=j,
                )
        fig.update_yaxes(title_text=r, title_standoff=2, title_font_size=12, row=i, col=1)
    for j, c in enumerate(columns, start=1):
        domain = fig.get_subplot(1, j).xaxis.domain
        fig.add_annotation(text=c, x=(domain[0] + domain[1]) / 2, y=1.0, xref="paper", yref="paper",
                           xanchor="center", yanchor="bottom", yshift=2, showarrow=False, font_size=12)
    # a thin frame around every cell: an image that is white at its border stays visible on the page
    frame = {"showticklabels": False, "showgrid": False, "zeroline": False, "showline": True, "mirror": True, "linecolor": "#c8c8c8"}
    fig.update_xaxes(**frame)
    fig.update_yaxes(**frame)
    fig.update_layout(width=fig_w, height=fig_h, margin=margin, plot_bgcolor="white")
    if title is not None:  # left-aligned, clear of Plotly's tool bar (top right, shown on hover)
        fig.update_layout(title={"text": title, "font_size": 14, "x": 0, "xref": "paper", "xanchor": "left", "y": 1 - 6 / fig_h, "yanchor": "top"})
    return fig


def _grid_rgb(cells: dict[str, dict[str, np.ndarray]], scales: dict[tuple[str, str], str], shared: str) -> dict[str, dict[str, np.ndarray]]:
    """uint8 RGB of every cell; one colour scale per group of cells that ``shared`` puts together."""
    groups: dict[tuple[Any, ...], list[tuple[str, str]]] = {}
    for r, row in cells.items():
        for c in row:
            group = {"image": (r, c), "row": (r,), "all": ()}[shared]
            groups.setdefault((*group, scales[(r, c)]), []).append((r, c))
    out: dict[str, dict[str, np.ndarray]] = {r: {} for r in cells}
    for keys in groups.values():
        mapped = _rgb([cells[r][c] for r, c in keys], scales[keys[0]], shared=shared != "image")
        for (r, c), v in zip(keys, mapped):
            out[r][c] = v
    return {r: {c: out[r][c] for c in row} for r, row in cells.items()}


def _fit(n_rows: int, n_cols: int, aspect: float, width: int, height: int, cell_size: int, titled: bool, lines: int) -> tuple[int, int, dict[str, int]]:
    """Figure size and margins so that ``n_rows x n_cols`` cells of ``aspect`` fit ``width x height``,
    below the title and ``lines`` lines of column titles."""
    margin = {"l": _ROW_W + 4, "r": 4, "t": 8 + _LINE_H * lines + (_TITLE_H if titled else 0), "b": 4}
    room_w = width - margin["l"] - margin["r"] - _GAP * (n_cols - 1)
    room_h = height - margin["t"] - margin["b"] - _GAP * (n_rows - 1)
    side = min(float(cell_size) / max(aspect, 1.0), room_w / n_cols, room_h / (n_rows * aspect))
    side = max(side, 8.0)  # very many cells: keep something visible (the figure then exceeds the box)
    fig_w = int(margin["l"] + margin["r"] + n_cols * side + _GAP * (n_cols - 1))
    fig_h = int(margin["t"] + margin["b"] + n_rows * side * aspect + _GAP * (n_rows - 1))
    return fig_w, fig_h, margin
