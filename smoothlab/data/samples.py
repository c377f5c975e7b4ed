"""Deprecated alias; import SAMPLE_IMAGES, sample_image from :mod:`smoothlab.data`."""

from __future__ import annotations

import warnings

from smoothlab.data._samples import SAMPLE_IMAGES, sample_image

__all__ = ["SAMPLE_IMAGES", "sample_image"]

warnings.warn(
    "smoothlab.data.samples is deprecated; import SAMPLE_IMAGES, sample_image from smoothlab.data",
    DeprecationWarning,
    stacklevel=2,
)
