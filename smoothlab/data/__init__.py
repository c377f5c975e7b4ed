"""Data: the embedded MNIST sample, full MNIST / Fashion-MNIST from IDX files.

- :func:`mnist` -- ``(x, y)`` as float32 ``(N, 1, 28, 28)`` in ``[0, 1]`` and int64 ``(N,)``;
  ``source="embedded"`` (default, no download) or a directory of IDX files;
- :func:`read_idx`, :func:`write_idx` -- the IDX file format;
- :func:`sample_image` -- scikit-image's bundled photos as ``(1, 3, H, W)`` tensors;
- :func:`embedded_split`, :func:`stratified_split` -- the fixed 4,000 / 1,000 split.
"""

from __future__ import annotations

from smoothlab.data.idx import IDX_DTYPES, read_idx, write_idx
from smoothlab.data.samples import SAMPLE_IMAGES, sample_image
from smoothlab.data.mnist import (
    EMBEDDED_SPLIT_SEED,
    EMBEDDED_TEST_SIZE,
    FILES,
    MD5,
    MIRRORS,
    embedded_split,
    mnist,
    stratified_split,
)

__all__ = [
    "EMBEDDED_SPLIT_SEED",
    "EMBEDDED_TEST_SIZE",
    "FILES",
    "IDX_DTYPES",
    "MD5",
    "MIRRORS",
    "embedded_split",
    "mnist",
    "read_idx",
    "stratified_split",
    "write_idx",
]
