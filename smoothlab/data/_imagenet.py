"""Natural images: ImageNet-style folders, read lazily (the paper's sec. 5.2, ImageNet).

The paper evaluates on the 1,000 images of the NIPS 2017 adversarial competition (DEV set).
:func:`imagenet` reads that layout and two more, all into the same labels (the position of
the WordNet id in the sorted list of the 1,000 ImageNet-1k wnids, :data:`IMAGENET_WNIDS`):

- a flat folder of ``<wnid>_<name>.JPEG`` files (the one-image-per-class sample that
  :func:`imagenet_samples` finds or downloads);
- the ImageNet validation tree ``root/<wnid>/*.JPEG``;
- the NIPS 2017 DEV set: ``images/*.png`` and ``images.csv`` whose ``TrueLabel`` counts from 1
  (TF-slim's 1001 classes, 0 being "background"), so label = ``TrueLabel - 1``.

Images are converted to RGB (grey and RGBA too), resized with a bicubic filter so that the
short side is ``round(size * 256 / 224)``, and centre-cropped to ``size x size``: the usual
evaluation transform of ImageNet classifiers.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smoothlab._validation import check_int

__all__ = [
    "IMAGENET_CLASSES",
    "IMAGENET_SAMPLES_REPO",
    "IMAGENET_SAMPLES_SHA256",
    "IMAGENET_WNIDS",
    "ImageFolderDataset",
    "imagenet",
    "imagenet_class_name",
    "imagenet_samples",
    "imagenet_transform",
    "load_image",
]

#: The public repository of the 1,000-image sample (one image per class) and its commit.
IMAGENET_SAMPLES_REPO = "EliSchwartz/imagenet-sample-images"
IMAGENET_SAMPLES_COMMIT = "bc69043e2862758a1906c6a24a792bb28c6bb2ff"
#: SHA-256 over the 1,000 files' bytes, concatenated in sorted name order.
IMAGENET_SAMPLES_SHA256 = "a229e291708b24a9e95b188c7867d460f219df62a1dffe90bc9cd151a2117177"

_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_WNID = re.compile(r"^n\d{8}$")
_FLAT_NAME = re.compile(r"^(n\d{8})_.+$")
#: The smallest ``size`` :func:`imagenet` accepts (an ImageNet network downsamples 32 times).
MIN_SIZE = 32


@functools.lru_cache(maxsize=1)
def _class_table() -> tuple[tuple[str, ...], tuple[str, ...]]:
    path = Path(__file__).resolve().parent / "imagenet_classes.tsv"
    wnids, names = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            wnid, name = line.split("\t")
            wnids.append(wnid)
            names.append(name)
    return tuple(wnids), tuple(names)


#: The 1,000 ImageNet-1k WordNet ids in the standard (sorted) order: label ``i`` is ``IMAGENET_WNIDS[i]``.
IMAGENET_WNIDS: tuple[str, ...] = _class_table()[0]
#: Short English names of the 1,000 classes, in label order (shipped as data with the package).
IMAGENET_CLASSES: tuple[str, ...] = _class_table()[1]


def imagenet_class_name(label: int) -> str:
    """The short English name of ImageNet-1k class ``label`` (``967 -> "espresso"``)."""
    label = check_int(label, "label", minimum=0)
    names = _class_table()[1]
    if label >= len(names):
        raise ValueError(f"label must be in [0, {len(names) - 1}], got {label}")
    return names[label]


@functools.lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(_class_table()[0])}


def imagenet_transform(image: Any, size: int = 224) -> torch.Tensor:
    """The evaluation transform of ImageNet classifiers, as a float32 ``(3, size, size)`` tensor in ``[0, 1]``.

    RGB conversion, bicubic resize so that the short side is ``round(size * 256 / 224)``,
    centre crop to ``size x size``.

    Parameters
    ----------
    image : PIL.Image.Image or numpy.ndarray
        A PIL image, or a ``uint8`` array ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` (e.g. a
        scikit-image photo: ``imagenet_transform(skimage.data.chelsea())``).
    size : int
        Side of the output (>= 32).
    """
    from PIL import Image

    size = check_int(size, "size", minimum=MIN_SIZE)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise TypeError(f"image array must be uint8 (H, W) or (H, W, C), got {image.dtype} {image.shape}")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image or a uint8 numpy array, got {type(image).__name__}")
    im = image.convert("RGB")
    w, h = im.size
    short = round(size * 256 / 224)
    scale = short / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    im = im.crop((left, top, left + size, top + size))
    arr = np.asarray(im, dtype=np.float32) / np.float32(255.0)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def load_image(path: str | os.PathLike[str], size: int = 224) -> torch.Tensor:
    """Read one image file through :func:`imagenet_transform`: float32 ``(3, size, size)`` in ``[0, 1]``.

    Grey, palette and RGBA images are converted to RGB.

    Raises
    ------
    ValueError
        The file cannot be decoded (the message names the file).
    """
    from PIL import Image, UnidentifiedImageError

    size = check_int(size, "size", minimum=MIN_SIZE)
    try:
        with Image.open(path) as im:
            im.load()
            return imagenet_transform(im, size)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image {os.fspath(path)!r}: {err}") from None


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith(".")


def _label_of_wnid(wnid: str, where: Path) -> int:
    index = _wnid_index().get(wnid)
    if index is None:
        raise ValueError(f"{where}: {wnid!r} is not one of the 1,000 ImageNet-1k WordNet ids")
    return index


def _scan_flat(root: Path, files: list[Path]) -> tuple[list[Path], list[int]]:
    labels = []
    for p in files:
        m = _FLAT_NAME.match(p.stem)
        if m is None:
            raise ValueError(
                f"{p}: in a flat ImageNet folder every file must be named <wnid>_<name>.JPEG "
                "(e.g. n01440764_tench.JPEG), so that its label is known"
            )
        labels.append(_label_of_wnid(m.group(1), p))
    return files, labels


def _scan_tree(root: Path, dirs: list[Path]) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for d in dirs:
        label = _label_of_wnid(d.name, d)
        for p in sorted(d.iterdir()):
            if _is_image(p):
                paths.append(p)
                labels.append(label)
    return paths, labels


def _scan_nips2017(root: Path) -> tuple[list[Path], list[int]]:
    csv_path, images = root / "images.csv", root / "images"
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "ImageId" not in rows[0] or "TrueLabel" not in rows[0]:
        raise ValueError(f"{csv_path}: expected the NIPS 2017 columns 'ImageId' and 'TrueLabel'")
    paths, labels = [], []
    for row in rows:
        p = images / f"{row['ImageId']}.png"
        if not p.is_file():
            raise ValueError(f"{csv_path}: image {row['ImageId']!r} has no file {p}")
        true = int(row["TrueLabel"])
        if not 1 <= true <= 1000:
            raise ValueError(f"{csv_path}: TrueLabel of {row['ImageId']!r} must be in [1, 1000] (1-based), got {true}")
        paths.append(p)
        labels.append(true - 1)  # TF-slim's 1001 classes: 0 is "background"
    order = np.argsort([p.name for p in paths], kind="stable")
    return [paths[i] for i in order], [labels[i] for i in order]


def scan_folder(root: str | os.PathLike[str]) -> tuple[str, list[Path], list[int]]:
    """Find the layout of ``root`` and its images and labels: ``(layout, paths, labels)``.

    ``layout`` is ``"flat"``, ``"tree"`` or ``"nips2017"``; paths are sorted by name.

    Raises
    ------
    FileNotFoundError
        ``root`` is not a directory.
    ValueError
        No image, or a folder that mixes layouts, or names that do not give a label.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root must be a directory of images, got {os.fspath(root)!r}")
    if (root / "images.csv").is_file() and (root / "images").is_dir():
        layout, (paths, labels) = "nips2017", _scan_nips2017(root)
    else:
        entries = sorted(root.iterdir())
        files = [p for p in entries if _is_image(p)]
        dirs = [p for p in entries if p.is_dir() and _WNID.match(p.name)]
        if files and dirs:
            raise ValueError(
                f"{root} mixes layouts: {len(files)} images at the top (flat <wnid>_<name>.JPEG) and "
                f"{len(dirs)} <wnid>/ folders (ImageNet tree); keep one"
            )
        if files:
            layout, (paths, labels) = "flat", _scan_flat(root, files)
        else:
            layout, (paths, labels) = "tree", _scan_tree(root, dirs)
    if not paths:
        raise ValueError(
            f"no image found in {root}: expected <wnid>_<name>.JPEG files, <wnid>/ folders of images, "
            "or the NIPS 2017 layout (images.csv and images/*.png)"
        )
    return layout, paths, labels


class ImageFolderDataset(torch.utils.data.Dataset):
    """Lazily loaded natural images: ``dataset[i] -> (image (3, size, size) in [0, 1], label)``.

    Made by :func:`imagenet`. Attributes: ``root``, ``layout``, ``paths``, ``labels`` (int64
    tensor), ``size``; :meth:`class_name` and :meth:`batch` (a stacked batch).
    """

    def __init__(self, root: str | os.PathLike[str], *, size: int = 224) -> None:
        self.size = check_int(size, "size", minimum=MIN_SIZE)
        self.root = Path(root)
        self.layout, self.paths, labels = scan_folder(self.root)
        self.labels = torch.tensor(labels, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = check_int(index, "index")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return load_image(self.paths[index], self.size), int(self.labels[index])

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(B, 3, size, size)`` and labels ``(B,)`` of ``indices``."""
        idx = [check_int(i, "indices[i]", minimum=0) for i in indices]
        if any(i >= len(self) for i in idx):
            raise IndexError(f"indices must be < {len(self)}, got max {max(idx)}")
        if not idx:
            return torch.empty(0, 3, self.size, self.size), torch.empty(0, dtype=torch.int64)
        return torch.stack([load_image(self.paths[i], self.size) for i in idx]), self.labels[idx].clone()

    def class_name(self, label: int) -> str:
        """The ImageNet class name of ``label``."""
        return imagenet_class_name(label)

    def __repr__(self) -> str:
        return f"ImageFolderDataset({len(self)} images, layout={self.layout!r}, size={self.size}, root={os.fspath(self.root)!r})"


def imagenet(root: str | os.PathLike[str] | None = None, *, size: int = 224) -> ImageFolderDataset:
    """Natural images with ImageNet-1k labels, loaded lazily (sec. 5.2).

    Parameters
    ----------
    root : path, optional
        A flat ``<wnid>_<name>.JPEG`` folder, an ImageNet validation tree ``<wnid>/*.JPEG``, or
        the NIPS 2017 DEV set (``images.csv`` + ``images/*.png``). Default:
        :func:`imagenet_samples` (the 1,000-image sample).
    size : int
        Side of the square images (>= 32): bicubic resize of the short side to
        ``round(size * 256 / 224)``, then centre crop.

    Returns
    -------
    ImageFolderDataset
        ``dataset[i] = (image float32 (3, size, size) in [0, 1], label int)``.

    Examples
    --------
    >>> import smoothlab.data as sd
    >>> ds = sd.imagenet(sd.imagenet_samples(download=False))   # doctest: +SKIP
    >>> x, y = ds[0]; sd.imagenet_class_name(y)                 # doctest: +SKIP
    'tench'
    """
    return ImageFolderDataset(imagenet_samples() if root is None else root, size=size)


# --------------------------------------------------------------------------- the sample


def _cache_root() -> Path:
    root = os.environ.get("SMOOTHLAB_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "smoothlab"
    )
    return Path(root)


def _folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(q for q in folder.iterdir() if _is_image(q)):
        h.update(p.read_bytes())
    return h.hexdigest()


def _holds_sample(folder: Path) -> bool:
    return folder.is_dir() and sum(1 for p in folder.iterdir() if _is_image(p)) >= 1000


def imagenet_samples(*, download: bool = True, verify: bool = False) -> Path:
    """The folder of the 1,000-image ImageNet sample (one ``<wnid>_<name>.JPEG`` per class).

    Looked for, in order, in ``$SMOOTHLAB_DATA/imagenet-samples``, then in the user cache
    (``$SMOOTHLAB_CACHE_DIR`` or ``~/.cache/smoothlab``)``/imagenet-samples``; otherwise downloaded
    from the public GitHub repository :data:`IMAGENET_SAMPLES_REPO` (a pinned commit, about
    100 MB) into the cache, with a progress bar, and checked against
    :data:`IMAGENET_SAMPLES_SHA256`. smoothlab never ships these images (ImageNet's terms:
    non-commercial research and teaching).

    Parameters
    ----------
    download : bool
        Allow the download when no local copy exists.
    verify : bool
        Check the SHA-256 of a local copy too (reads 100 MB).

    Raises
    ------
    FileNotFoundError
        No local copy and ``download=False``.
    ConnectionError
        The download failed (offline): the message says where to put the folder.
    ValueError
        A copy whose checksum differs.
    """
    candidates = []
    if os.environ.get("SMOOTHLAB_DATA"):
        candidates.append(Path(os.environ["SMOOTHLAB_DATA"]) / "imagenet-samples")
    cached = _cache_root() / "imagenet-samples"
    candidates.append(cached)
    for folder in candidates:
        if _holds_sample(folder):
            if verify and _folder_digest(folder) != IMAGENET_SAMPLES_SHA256:
                raise ValueError(f"{folder}: the images differ from the ImageNet sample (SHA-256 mismatch)")
            return folder
    where = " or ".join(os.fspath(c) for c in candidates)
    if not download:
        raise FileNotFoundError(
            f"the 1,000-image ImageNet sample was not found in {where}. Put the folder of "
            f"<wnid>_<name>.JPEG files there (set SMOOTHLAB_DATA=DIR for DIR/imagenet-samples), "
            "or allow the download"
        )
    return _download_samples(cached, where)


def samples_url() -> str:
    """The address of the pinned archive of :data:`IMAGENET_SAMPLES_REPO`."""
    return f"https://github.com/{IMAGENET_SAMPLES_REPO}/archive/{IMAGENET_SAMPLES_COMMIT}.zip"


def _download_samples(target: Path, where: str) -> Path:
    url = samples_url()
    try:
        payload = _fetch(url)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise ConnectionError(
            f"could not download the ImageNet sample from {url}: {err}. Offline, put the folder of 1,000 "
            f"<wnid>_<name>.JPEG files into {where} (SMOOTHLAB_DATA=DIR reads DIR/imagenet-samples)"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix="imagenet-samples.", suffix=".part"))
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as zf:
            for info in zf.infolist():
                name = Path(info.filename).name
                if not info.is_dir() and _FLAT_NAME.match(Path(name).stem) and name.lower().endswith(_IMAGE_SUFFIXES):
                    (tmp / name).write_bytes(zf.read(info))
        digest = _folder_digest(tmp)
        expected = IMAGENET_SAMPLES_SHA256
        if digest != expected:
            raise ValueError(f"downloaded ImageNet sample from {url} has SHA-256 {digest}, expected {expected}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _fetch(url: str) -> bytes:
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        chunks = []
        with tqdm(total=total, unit="B", unit_scale=True, desc="ImageNet sample") as bar:
            while chunk := response.read(1 << 20):
                chunks.append(chunk)
                bar.update(len(chunk))
    return b"".join(chunks)
