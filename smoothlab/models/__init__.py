"""Models: the paper's MNIST network C4, its training and shipped weights (sec. 5.2).

- :func:`c4` -- C4, random or with the shipped weights (``pretrained=True``; the FGSM
  adversarially trained ones with ``adversarial=True``, Table 2);
- :func:`train_c4` -- the authors' training recipe, deterministic given a seed;
- :func:`predict`, :func:`accuracy` -- batched evaluation;
- :func:`load_c4_weights` -- load a weights file after checking its SHA-256.

Defences (``BilateralDefence``, in :mod:`smoothlab.models.defences`) are imported lazily.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from smoothlab.models.c4 import (
    C4,
    WEIGHT_FILES,
    WEIGHTS_DIR,
    accuracy,
    c4,
    load_c4_weights,
    predict,
    same_padding,
    train_c4,
)

# name -> module, imported on first access (keeps `import smoothlab.models` light)
_LAZY_NAMES = {"BilateralDefence": "smoothlab.models.defences"}

__all__ = [
    "C4",
    "c4",
    "train_c4",
    "accuracy",
    "predict",
    "load_c4_weights",
    "same_padding",
    "WEIGHTS_DIR",
    "WEIGHT_FILES",
] + [name for name, mod in _LAZY_NAMES.items() if importlib.util.find_spec(mod) is not None]


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'smoothlab.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
