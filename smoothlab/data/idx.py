"""Deprecated alias; import IDX_DTYPES, read_idx, write_idx from :mod:`smoothlab.data`."""

from __future__ import annotations

import warnings

from smoothlab.data._idx import IDX_DTYPES, read_idx, write_idx

__all__ = ["IDX_DTYPES", "read_idx", "write_idx"]

warnings.warn(
    "smoothlab.data.idx is deprecated; import IDX_DTYPES, read_idx, write_idx from smoothlab.data",
    DeprecationWarning,
    stacklevel=2,
)
