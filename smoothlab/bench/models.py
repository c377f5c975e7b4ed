"""Deprecated alias of the model-name registry, now :mod:`smoothlab.models` (also re-exported by
:mod:`smoothlab.bench`)."""

from __future__ import annotations

import warnings

from smoothlab.models._registry import (
    MODELS,
    build_model,
    model_factories,
    model_names,
    model_version,
    register_model,
    unregister_model,
)

__all__ = [
    "MODELS",
    "build_model",
    "model_factories",
    "model_names",
    "model_version",
    "register_model",
    "unregister_model",
]

warnings.warn(
    "smoothlab.bench.models is deprecated; import MODELS, register_model, build_model, ... from "
    "smoothlab.models (or smoothlab.bench)",
    DeprecationWarning,
    stacklevel=2,
)
