"""Natural sample images bundled with scikit-image (no download), in the package conventions."""

from __future__ import annotations

import numpy as np
import torch

from smoothlab._validation import check_choice, check_int

__all__ = ["SAMPLE_IMAGES", "sample_image"]

#: Colour images that scikit-image ships inside its wheel.
SAMPLE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "camera")


def sample_image(name: str = "astronaut", size: int | None = 128) -> torch.Tensor:
    """One of scikit-image's bundled sample images as a float32 ``(1, 3, H, W)`` tensor in ``[0, 1]``.

    Parameters
    ----------
    name : str
        One of :data:`SAMPLE_IMAGES` (``camera`` is grey, repeated on 3 channels).
    size : int or None
        Side of the square centre crop, resized with anti-aliasing; ``None`` keeps the full image.
    """
    check_choice(name, "name", SAMPLE_IMAGES)
    try:
        from skimage import data, transform
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("sample images need scikit-image: pip install 'smoothlab[images]'") from exc
    img = np.asarray(getattr(data, name)(), dtype=np.float64) / 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    if size is not None:
        size = check_int(size, "size", minimum=1)
        h, w = img.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        img = transform.resize(img[top : top + side, left : left + side], (size, size), anti_aliasing=True)
    return torch.from_numpy(np.clip(img, 0.0, 1.0)).permute(2, 0, 1).unsqueeze(0).float().contiguous()
