"""Interactive figures (Plotly) for smoothlab: image grids, operating characteristics, tables.

Plotly is an optional dependency (``pip install smoothlab[viz]``); it is imported only when a
figure is built, so ``import smoothlab.viz`` is cheap.

- :func:`image_grid` -- originals / adversarial images / perturbations side by side;
- :func:`comparison_grid` -- images side by side for comparison, a title on every row and column,
  optional shared colour scales, fitted to a laptop screen (:data:`FIT_WIDTH` x :data:`FIT_HEIGHT`);
- :func:`operating_characteristic_figure` -- ``P(D)`` per attack (eq. 21, Figure 2 of the paper);
- :func:`summary_table` -- the per-attack statistics of eq. (20) as a Plotly table;
- :func:`trace_figure` -- the iterations of a C&W run on one image (``cw(..., trace=True)``): the
  loss oscillating around the margin and the distortion (sec. 2.1);
- :func:`attack_panel`, :func:`attack_explorer` -- one attacked image as the paper's Fig. 4 and
  Fig. 1 show it (original, adversarial, scaled perturbation, both magnified), and dropdowns to pick
  the image and the attack.
"""

from __future__ import annotations

from smoothlab.viz._attack_explorer import attack_explorer, attack_panel
from smoothlab.viz._grid import FIT_HEIGHT, FIT_WIDTH, comparison_grid
from smoothlab.viz.figures import image_grid, operating_characteristic_figure, summary_table, to_rgb, trace_figure

__all__ = [
    "FIT_HEIGHT",
    "FIT_WIDTH",
    "attack_explorer",
    "attack_panel",
    "comparison_grid",
    "image_grid",
    "operating_characteristic_figure",
    "summary_table",
    "to_rgb",
    "trace_figure",
]
