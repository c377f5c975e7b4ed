"""A perceptual measure next to the distortion ``D`` and the visibility ``V``: SSIM.

:func:`ssim` is the structural similarity index of Wang et al. (2004) between an original and an
adversarial image, in torch (batched, on the images' device), computed exactly as scikit-image's
``skimage.metrics.structural_similarity(x, y, data_range=1, channel_axis=0)`` with its defaults:
a uniform 7x7 window, sample (co)variances (``N/(N-1)``), ``K1 = 0.01``, ``K2 = 0.03``, the mean
of the SSIM map over the pixels whose window lies inside the image, then over the channels. The
tests check it against scikit-image. 1 means identical; smaller is more different.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from smoothlab._validation import check_images, check_int

__all__ = ["ssim", "SSIM_WINDOW"]

#: Side of the uniform window (scikit-image's default ``win_size``).
SSIM_WINDOW = 7
_K1, _K2 = 0.01, 0.03


def ssim(x: torch.Tensor, y: torch.Tensor, *, window: int = SSIM_WINDOW) -> torch.Tensor:
    """Structural similarity of each pair of images ``(x[i], y[i])``, shape ``(B,)`` (float64).

    Parameters
    ----------
    x, y : torch.Tensor
        Images ``(B, C, H, W)`` in ``[0, 1]`` (data range 1), same shape, dtype and device.
    window : int
        Odd side of the uniform window, ``>= 3`` and at most ``min(H, W)`` (7).

    Raises
    ------
    ValueError
        Shapes differ, values outside ``[0, 1]``, an even or too small window, or images smaller
        than the window.

    Examples
    --------
    >>> import torch
    >>> from smoothlab.similarity import ssim
    >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> ssim(x, x).tolist()
    [1.0, 1.0]
    >>> bool((ssim(x, (x + 0.1 * torch.rand_like(x)).clamp(0, 1)) < 1).all())
    True
    """
    check_images(x, "x")
    check_images(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    window = check_int(window, "window", minimum=3)
    if window % 2 == 0:
        raise ValueError(f"window must be odd, got {window}")
    h, w = x.shape[-2:]
    if min(h, w) < window:
        raise ValueError(
            f"SSIM needs images at least as large as its {window}x{window} window, got images of {h}x{w}"
        )
    a = x.detach().to(torch.float64)
    b = y.detach().to(torch.float64)
    n = window * window
    cov_norm = n / (n - 1.0)

    def mean(v: torch.Tensor) -> torch.Tensor:  # window means over the valid region
        return F.avg_pool2d(v, window, stride=1)

    ux, uy = mean(a), mean(b)
    vx = cov_norm * (mean(a * a) - ux * ux)
    vy = cov_norm * (mean(b * b) - uy * uy)
    vxy = cov_norm * (mean(a * b) - ux * uy)
    c1, c2 = _K1**2, _K2**2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)
