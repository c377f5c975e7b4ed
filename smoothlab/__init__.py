"""smoothlab: smooth adversarial examples, from the paper to notebooks and Dask clusters.

Zhang, Avrithis, Furon, Amsaleg, *Smooth Adversarial Examples*. The public API:

- :func:`image_graph` -- the image-guided graph of eq. (5), matrix-free;
- :class:`Smoother` -- Laplacian smoothing ``s_alpha`` (eq. 8) and its normalised,
  differentiable version ``ŝ_alpha`` (eq. 9); :class:`SmoothingSpec` builds one per batch;
- :mod:`smoothlab.attacks` -- FGSM, I-FGSM, PGD2, C&W and their smooth versions;
- :mod:`smoothlab.records`, :mod:`smoothlab.metrics` -- the evaluation protocol of section 5.1: per-image
  records, and the statistics built on them (eqs. 20-21);
- :mod:`smoothlab.perturbations` -- is a perturbation smooth like its image (contrast across edges)?
- :func:`magnify`, :func:`visibility`, :class:`Magnifier` -- adversarial magnification (appendix A), in
  :mod:`smoothlab.magnification`; :func:`bilateral` -- the bilateral filter, in :mod:`smoothlab.filters`;
- :mod:`smoothlab.models`, :mod:`smoothlab.data`, :mod:`smoothlab.bench`, :mod:`smoothlab.viz`.

Submodules and names are imported lazily so that ``import smoothlab`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY_NAMES = {
    "image_graph": "smoothlab.graph",
    "ImageGraph": "smoothlab.graph",
    "Smoother": "smoothlab.smoothing",
    "SmoothingSpec": "smoothlab.smoothing",
    "CGInfo": "smoothlab.smoothing",
    "magnify": "smoothlab.magnification",
    "Magnifier": "smoothlab.magnification",
    "bilateral": "smoothlab.filters",
    "to_display": "smoothlab.magnification",
    "visibility": "smoothlab.magnification",
    "MAGNIFY_PAPER": "smoothlab.magnification",
    "MAGNIFY_AUTHORS_CODE": "smoothlab.magnification",
    "available_cpus": "smoothlab._threads",
    "free_cpus": "smoothlab._threads",
}
_SUBMODULES = {
    "graph",
    "smoothing",
    "attacks",
    "records",
    "metrics",
    "perturbations",
    "magnification",
    "filters",
    "models",
    "data",
    "bench",
    "viz",
    "cli",
}

__all__ = sorted(_LAZY_NAMES) + sorted(_SUBMODULES) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"smoothlab.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'smoothlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
