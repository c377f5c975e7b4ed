"""Plotly figures: image grids, operating characteristics (Figure 2), summary tables.

Plotly is imported inside each function (optional dependency ``smoothlab[viz]``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["image_grid", "operating_characteristic_figure", "summary_table", "to_rgb", "trace_figure"]

_SCALES = ("auto", "none", "minmax", "symmetric")


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("smoothlab.viz needs plotly: pip install 'smoothlab[viz]'") from exc
    return go


def _as_batch(value: Any, name: str) -> np.ndarray:
    """Tensor / array ``(B, C, H, W)`` (or ``(C, H, W)``) -> float64 numpy ``(B, C, H, W)``."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array of images, got {type(value).__name__}")
    arr = np.asarray(value, dtype="float64")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise ValueError(f"{name} must have shape (B, C, H, W) with B >= 1, got shape {arr.shape}")
    if arr.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels (shape (B, C, H, W)), got C = {arr.shape[1]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got NaN or Inf values")
    return arr


def to_rgb(images: Any, scale: str = "auto", *, name: str = "images") -> np.ndarray:
    """Map a batch of images or perturbations to displayable uint8 RGB ``(B, H, W, 3)``.

    Parameters
    ----------
    images : torch.Tensor or numpy.ndarray, shape (B, C, H, W), C in {1, 3}
        Images in [0, 1], or perturbations ``r = x_a - x_o`` of any range.
    scale : {"auto", "none", "minmax", "symmetric"}
        ``"none"``: values taken as they are on [0, 1] (clipped);
        ``"minmax"``: each image and each channel mapped independently onto [0, 1], the
        convention of the paper's Fig. 4 for perturbations (a constant channel -> 0.5);
        ``"symmetric"``: per image, ``0.5 + r / (2 max|r|)`` so that zero is mid-grey and the
        sign of the perturbation is kept; ``"auto"``: ``"none"`` when all values lie in
        [0, 1], else ``"minmax"``.
    name : str
        Argument name for error messages.
    """
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {', '.join(map(repr, _SCALES))}; got {scale!r}")
    arr = _as_batch(images, name)
    if scale == "auto":
        scale = "none" if arr.min() >= 0.0 and arr.max() <= 1.0 else "minmax"
    if scale == "minmax":
        lo = arr.min(axis=(2, 3), keepdims=True)
        hi = arr.max(axis=(2, 3), keepdims=True)
        span = hi - lo
        arr = np.where(span > 0, (arr - lo) / np.where(span > 0, span, 1.0), 0.5)
    elif scale == "symmetric":
        m = np.abs(arr).max(axis=(1, 2, 3), keepdims=True)
        arr = 0.5 + arr / (2.0 * np.where(m > 0, m, 1.0))
    arr = np.clip(arr, 0.0, 1.0)
    if arr.shape[1] == 1:
        arr = np.repeat(arr, 3, axis=1)
    return np.rint(arr.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)


def image_grid(
    rows: Mapping[str, Any],
    *,
    captions: Mapping[str, Sequence[str]] | None = None,
    scale: str | Mapping[str, str] = "auto",
    max_images: int | None = 8,
    cell_size: int = 120,
    title: str | None = None,
) -> go.Figure:
    """Show several batches of images as a grid: one row per batch, one column per image.

    Typical use: ``{"original": x, "adversarial": res.x_adv, "perturbation": res.x_adv - x,
    "magnified": smoothlab.magnify(res.x_adv)}``.

    Parameters
    ----------
    rows : mapping of str to torch.Tensor or numpy.ndarray
        Row title -> batch ``(B, C, H, W)``, C in {1, 3}. Every batch must hold the same
        number of images ``B`` (the columns); sizes ``H, W`` may differ between rows.
    captions : mapping of str to sequence of str, optional
        Row title -> one caption per image (e.g. predictions, distortions), shown above
        each cell of that row.
    scale : str or mapping of str to str
        Display mapping of :func:`to_rgb` for all rows, or per row title (rows not named use
        ``"auto"``): images in [0, 1] shown as they are, perturbations rescaled per image
        and channel onto [0, 1] as in the paper's Fig. 4.
    max_images : int or None
        Show at most this many columns (the first images); ``None`` for all.
    cell_size : int
        Approximate size of one cell in pixels.
    title : str, optional
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Image`` trace per cell, row-major, holding the uint8 RGB values shown.
    """
    go = _plotly()
    from plotly.subplots import make_subplots

    if not isinstance(rows, Mapping) or len(rows) == 0:
        raise ValueError(f"rows must be a non-empty mapping of row title -> images (B, C, H, W), got {rows!r:.80}")
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1):
        raise ValueError(f"max_images must be an int >= 1 or None, got {max_images!r}")
    scales = dict(scale) if isinstance(scale, Mapping) else {k: scale for k in rows}
    unknown = [k for k in scales if k not in rows]
    if unknown:
        raise ValueError(f"scale names rows {unknown} that are not in rows {list(rows)}")
    batches = {str(k): to_rgb(v, scales.get(k, "auto"), name=f"rows[{k!r}]") for k, v in rows.items()}
    sizes = {k: b.shape[0] for k, b in batches.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every row of images must hold the same number of images, got {sizes}")
    n_cols = next(iter(sizes.values()))
    if max_images is not None:
        n_cols = min(n_cols, max_images)
    captions = dict(captions or {})
    for k, caps in captions.items():
        if k not in batches:
            raise ValueError(f"captions names row {k!r} that is not in rows {list(batches)}")
        if len(caps) < n_cols:
            raise ValueError(f"captions[{k!r}] must hold one caption per image ({n_cols}), got {len(caps)}")
    titles = [str(captions[k][j]) if k in captions else "" for k in batches for j in range(n_cols)]
    n_rows = len(batches)
    fig = make_subplots(
        rows=n_rows,
        cols=n_cols,
        subplot_titles=titles if captions else None,
        horizontal_spacing=0.01,
        vertical_spacing=0.06 if captions else 0.02,
    )
    for i, (name, rgb) in enumerate(batches.items(), start=1):
        for j in range(n_cols):
            fig.add_trace(go.Image(z=rgb[j], name=f"{name} {j}"), row=i, col=j + 1)
        fig.update_yaxes(title_text=name, row=i, col=1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    if captions:
        fig.update_annotations(font_size=10)
    fig.update_layout(
        width=80 + cell_size * n_cols,
        height=(60 if title else 20) + (cell_size + (20 if captions else 0)) * n_rows,
        margin=dict(l=60, r=10, t=50 if title else 20, b=10),
        title=title,
    )
    return fig


def _oc_data(data: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import pandas as pd

    from smoothlab.metrics import operating_characteristics

    if isinstance(data, pd.DataFrame):
        return operating_characteristics(data)
    if isinstance(data, Mapping):
        out = {}
        for name, pair in data.items():
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise TypeError(f"data[{name!r}] must be a pair (D, P) of arrays, got {type(pair).__name__}")
            d, p = (np.asarray(v, dtype="float64").reshape(-1) for v in pair)
            if d.shape != p.shape or d.size == 0:
                raise ValueError(f"data[{name!r}] must be two non-empty arrays of equal length, got {d.shape} and {p.shape}")
            if np.any(np.diff(d) < 0) or np.any(np.diff(p) < 0) or p.min() < 0 or p.max() > 1:
                raise ValueError(f"data[{name!r}] must be non-decreasing D and P with P in [0, 1] (eq. 21)")
            out[str(name)] = (d, p)
        return out
    raise TypeError(
        "data must be a records DataFrame or a mapping attack -> (D, P) from "
        f"smoothlab.metrics.operating_characteristics, got {type(data).__name__}"
    )


def operating_characteristic_figure(
    data: pd.DataFrame | Mapping[str, tuple[Any, Any]],
    *,
    labels: Mapping[str, str] | None = None,
    extend: bool = False,
    title: str | None = "Operating characteristic",
) -> go.Figure:
    """Operating characteristic ``P(D)`` of each attack (eq. 21; Figure 2 of the paper).

    Parameters
    ----------
    data : pandas.DataFrame or mapping of str to (D, P)
        Per-image records (the protocol of :mod:`smoothlab.metrics` is applied: union over
        budgets, correctly classified images only), or the output of
        :func:`smoothlab.metrics.operating_characteristics`.
    labels : mapping of str to str, optional
        Display name per attack; defaults to the paper's (``"PGD2"``, ``"sC&W"``, ...).
    extend : bool
        Continue every curve flat from its own ``D_max`` up to the largest ``D_max`` of all
        attacks, which eases comparison (eq. 21 defines ``P`` on ``[0, D_max]`` only).
    title : str or None
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Scatter`` step line (``line_shape="hv"``) per attack, in Table 1 order,
        named by its display label, with ``x`` = distortions and ``y`` = ``P(D)``. Without
        any curve (no attack has a correctly classified image) the figure has no trace and
        says so in an annotation.
    """
    go = _plotly()
    from smoothlab.metrics import ATTACK_LABELS

    curves = _oc_data(data)
    names = dict(ATTACK_LABELS)
    names.update(labels or {})
    d_end = max((float(d[-1]) for d, _ in curves.values()), default=0.0)
    fig = go.Figure()
    if not curves:  # e.g. no correctly classified image: nothing to plot
        fig.add_annotation(text="no attack with a correctly classified image", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
    for attack, (d, p) in curves.items():
        if extend and d[-1] < d_end:
            d, p = np.append(d, d_end), np.append(p, p[-1])
        fig.add_trace(
            go.Scatter(
                x=d,
                y=p,
                mode="lines",
                line_shape="hv",
                name=names.get(attack, attack),
                meta=attack,
                hovertemplate="D ≤ %{x:.3f}: P = %{y:.3f}<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="distortion D",
        yaxis_title="probability of success P(D)",
        yaxis_range=[0, 1.02],
        xaxis_rangemode="tozero",
        legend_title_text="attack",
        template="plotly_white",
    )
    return fig


def summary_table(data: pd.DataFrame, *, digits: int = 2, title: str | None = None) -> go.Figure:
    """The per-attack statistics (eq. 20) as a Plotly table, in the paper's notation.

    Parameters
    ----------
    data : pandas.DataFrame
        Per-image records, or the output of :func:`smoothlab.metrics.summary`.
    digits : int
        Decimals of the floating-point columns.
    title : str, optional
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
        A single ``go.Table`` trace; header = attack, N', N, accuracy, N_suc, P_suc, D̄, ...
    """
    go = _plotly()
    import pandas as pd

    from smoothlab.metrics import ATTACK_LABELS, SUMMARY_COLUMNS, summary
    from smoothlab.records import OPTIONAL_RECORD_COLUMNS, RECORD_COLUMNS

    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a records or summary DataFrame, got {type(data).__name__}")
    if all(c in data.columns for c in RECORD_COLUMNS if c not in OPTIONAL_RECORD_COLUMNS):
        data = summary(data)
    missing = [c for c in SUMMARY_COLUMNS if c not in data.columns]
    if missing:
        raise ValueError(f"data must be records or a summary() table; columns {missing} are missing")

    def fmt(col: str, v: Any) -> str:
        if col.startswith("n_"):
            return str(int(v))
        if isinstance(v, float) and math.isnan(v):
            return "—"
        return f"{float(v):.{digits}f}"

    header = ["attack"] + [SUMMARY_COLUMNS[c] for c in SUMMARY_COLUMNS]
    cells = [[ATTACK_LABELS.get(str(a), str(a)) for a in data.index]]
    cells += [[fmt(c, v) for v in data[c].tolist()] for c in SUMMARY_COLUMNS]
    fig = go.Figure(go.Table(header=dict(values=header, align="center"), cells=dict(values=cells, align="right")))
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=40 if title else 10, b=10), height=60 + 30 * len(data))
    return fig


def trace_figure(trace: Mapping[str, Any], *, image: int = 0, title: str | None = None) -> go.Figure:
    """The iterations of one C&W / sC&W run on one image: loss ℓ and distortion ``D`` (sec. 2.1).

    Parameters
    ----------
    trace : mapping
        ``result.extra["trace"]`` of :func:`smoothlab.attacks.cw` (or ``scw``) called with
        ``trace=True``: tensors ``(search_steps, iterations, B)``.
    image : int
        Which image of the batch.
    title : str, optional
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
        Two stacked panels sharing the iteration axis (the search steps one after the other):
        the margin loss ℓ (eq. 3) above, the distortion ``D`` below, successful iterates marked.
    """
    go = _plotly()
    from plotly.subplots import make_subplots

    needed = ("loss", "distortion", "success")
    if not isinstance(trace, Mapping) or any(k not in trace for k in needed):
        raise TypeError(f"trace must be result.extra['trace'] of cw(..., trace=True), with keys {needed}")
    b = int(np.asarray(trace["loss"]).shape[-1])
    if isinstance(image, bool) or not isinstance(image, int) or not 0 <= image < b:
        raise ValueError(f"image must be an int in [0, {b}), got {image!r}")

    def series(key: str) -> np.ndarray:
        v = trace[key]
        v = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        return v[..., image].reshape(-1)

    loss, dist, succ = series("loss"), series("distortion").astype(float), series("success").astype(bool)
    it = np.arange(1, loss.size + 1)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("margin loss ℓ (eq. 3)", "distortion D = ||x_a - x_o||"))
    fig.add_trace(go.Scatter(x=it, y=loss, mode="lines", name="ℓ", line={"color": "#1f77b4"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=it, y=dist, mode="lines", name="D", line={"color": "#ff7f0e"}), row=2, col=1)
    fig.add_trace(go.Scatter(x=it[succ], y=dist[succ], mode="markers", name="adversarial by the margin",
                             marker={"color": "#2ca02c", "size": 5}), row=2, col=1)
    steps, iters = tuple(np.shape(trace["loss"])[:2])
    for s in range(1, int(steps)):
        fig.add_vline(x=s * int(iters) + 0.5, line_dash="dot", line_color="grey")
    fig.update_layout(title=title, template="plotly_white", height=420, legend={"orientation": "h", "y": -0.15})
    fig.update_xaxes(title_text="iteration", row=2, col=1)
    return fig
