"""Deprecated alias; import :class:`BilateralDefence` from :mod:`smoothlab.models`."""

from __future__ import annotations

import warnings

from smoothlab.models._defences import BilateralDefence

__all__ = ["BilateralDefence"]

warnings.warn(
    "smoothlab.models.defences is deprecated; import BilateralDefence from smoothlab.models",
    DeprecationWarning,
    stacklevel=2,
)
