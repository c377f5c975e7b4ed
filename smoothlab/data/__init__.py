"""Data: the embedded MNIST sample, full MNIST / Fashion-MNIST from IDX files.

- :func:`mnist` -- ``(x, y)`` as float32 ``(N, 1, 28, 28)`` in ``[0, 1]`` and int64 ``(N,)``;
  ``source="embedded"`` (default, no download) or a directory of IDX files;
- :func:`read_idx`, :func:`write_idx` -- the IDX file format;
- :func:`sample_image` -- scikit-image's bundled photos as ``(1, 3, H, W)`` tensors;
- :func:`imagenet` -- natural images with ImageNet-1k labels, loaded lazily from a flat
  ``<wnid>_<name>.JPEG`` folder, an ImageNet validation tree or the NIPS 2017 DEV set;
  :func:`imagenet_samples` finds (or downloads) the 1,000-image sample; :data:`IMAGENET_CLASSES`
  names the classes;
- :func:`embedded_split`, :func:`stratified_split` -- the fixed 4,000 / 1,000 split;
- :data:`DATASETS`, :func:`register_dataset`, :func:`unregister_dataset`, :func:`dataset_entry`,
  :func:`dataset_names`, :func:`dataset_entries`, :func:`dataset_version`, :class:`DatasetEntry`
  -- the data sets a benchmark can name (``BenchSpec(dataset=...)``).

Implementation modules are private: ``_mnist``, ``_idx``, ``_samples``, ``_imagenet``, ``_registry``.
"""

from __future__ import annotations

from smoothlab.data._imagenet import (
    IMAGENET_CLASSES,
    IMAGENET_SAMPLES_REPO,
    IMAGENET_WNIDS,
    ImageFolderDataset,
    imagenet,
    imagenet_class_name,
    imagenet_samples,
    imagenet_transform,
    load_image,
)
from smoothlab.data._idx import IDX_DTYPES, read_idx, write_idx
from smoothlab.data._mnist import (
    EMBEDDED_SPLIT_SEED,
    EMBEDDED_TEST_SIZE,
    FILES,
    MD5,
    MIRRORS,
    embedded_split,
    mnist,
    stratified_split,
)
from smoothlab.data._registry import (
    DATASETS,
    DatasetEntry,
    dataset_entries,
    dataset_entry,
    dataset_names,
    dataset_version,
    register_dataset,
    unregister_dataset,
)
from smoothlab.data._samples import SAMPLE_IMAGES, sample_image

__all__ = [
    "DATASETS",
    "DatasetEntry",
    "dataset_entries",
    "dataset_entry",
    "dataset_names",
    "dataset_version",
    "register_dataset",
    "unregister_dataset",
    "EMBEDDED_SPLIT_SEED",
    "EMBEDDED_TEST_SIZE",
    "FILES",
    "IDX_DTYPES",
    "IMAGENET_CLASSES",
    "IMAGENET_SAMPLES_REPO",
    "IMAGENET_WNIDS",
    "ImageFolderDataset",
    "imagenet",
    "imagenet_class_name",
    "imagenet_samples",
    "imagenet_transform",
    "load_image",
    "MD5",
    "MIRRORS",
    "embedded_split",
    "mnist",
    "SAMPLE_IMAGES",
    "read_idx",
    "sample_image",
    "stratified_split",
    "write_idx",
]
