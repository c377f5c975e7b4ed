"""Deprecated alias of the distortion-targeting attacks; import them from :mod:`smoothlab.attacks`."""

from __future__ import annotations

import warnings

from smoothlab.attacks._distortion import fgsm, ifgsm, pgd2, spgd2

__all__ = ["fgsm", "ifgsm", "pgd2", "spgd2"]

warnings.warn(
    "smoothlab.attacks.gradient is deprecated; import fgsm, ifgsm, pgd2, spgd2 from smoothlab.attacks",
    DeprecationWarning,
    stacklevel=2,
)
