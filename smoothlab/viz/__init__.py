"""Interactive figures (Plotly) for smoothlab: image grids, operating characteristics, tables.

Plotly is an optional dependency (``pip install smoothlab[viz]``); it is imported only when a
figure is built, so ``import smoothlab.viz`` is cheap.

- :func:`image_grid` -- originals / adversarial images / perturbations side by side;
- :func:`operating_characteristic_figure` -- ``P(D)`` per attack (eq. 21, Figure 2 of the paper);
- :func:`summary_table` -- the per-attack statistics of eq. (20) as a Plotly table.
"""

from __future__ import annotations

from smoothlab.viz.figures import image_grid, operating_characteristic_figure, summary_table, to_rgb

__all__ = ["image_grid", "operating_characteristic_figure", "summary_table", "to_rgb"]
