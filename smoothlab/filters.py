"""The bilateral filter (Tomasi & Manduchi [35]), plain or guided (joint): appendix A and sec. 5.4.

Public API
----------
- :func:`bilateral` -- the filter ``b(x)`` (or ``b_g(x)`` guided by ``g``), batched, differentiable,
  pure torch on the device of its input;
- :func:`bilateral_mean` -- the weighted mean the filter is made of, on any signal ``v`` with the weights
  of a guide (the local mean ``mu_x`` and the local variance ``sigma_x^2`` of eq. 22 are two of them);
- :func:`bilateral_radius`, :data:`BILATERAL_WINDOWS` -- the window the filter uses.

Two users: the adversarial magnification of eq. (22) (:mod:`smoothlab.magnification`, two filters per
image) and the defence of sec. 5.4 (:class:`smoothlab.models.BilateralDefence`, a filter in front of
the network). Neither owns the filter, so it lives here, on the floor below both.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from smoothlab._validation import check_choice, check_float_tensor, check_int, check_positive, check_tensor

__all__ = ["BILATERAL_WINDOWS", "bilateral", "bilateral_mean", "bilateral_radius"]

#: The window shapes of :func:`bilateral`.
BILATERAL_WINDOWS = ("square", "disk")
_CHUNK_ELEMENTS = 2**18  # values of x per chunk of the batch in _filter (one 299x299x3 image ~ 2^18)


def _default_radius(sigma_d: float) -> int:
    # 3 sigma covers all but exp(-4.5) ~ 1 % of the domain kernel's peak
    return max(int(math.ceil(3.0 * sigma_d - 1e-9)), 0)


def bilateral_radius(radius: int | None, sigma_d: float) -> int:
    """The window half-width :func:`bilateral` uses: ``radius`` checked, or ``ceil(3 sigma_d)`` if ``None``."""
    if radius is None:
        return _default_radius(sigma_d)
    return check_int(radius, "radius", minimum=0)


def _row_sums(
    xp: torch.Tensor,
    gp: torch.Tensor,
    x: torch.Tensor,
    g: torch.Tensor,
    row_bias: torch.Tensor,
    col_bias: torch.Tensor,
    dy: int,
    dxs: tuple[int, ...],
    ry: int,
    rx: int,
    inv_two_var_r: float,
    residual: bool,
    self_guided: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Numerator and denominator of one row ``dy`` of window offsets (see :func:`_filter`)."""
    _, _, h, w = x.shape
    num = torch.zeros_like(x)
    den = torch.zeros((x.shape[0], 1, h, w), dtype=x.dtype, device=x.device)
    for dx in dxs:
        ys, xs = slice(ry + dy, ry + dy + h), slice(rx + dx, rx + dx + w)
        xq = xp[:, :, ys, xs]
        dsig = xq - x if residual else xq
        if self_guided:
            gdiff = dsig if residual else xq - x
        else:
            gdiff = gp[:, :, ys, xs] - g
        d2 = gdiff.square().sum(dim=1, keepdim=True)  # one scalar per pixel pair (all channels)
        # log of domain kernel x validity mask (-inf outside the image), separable in dy, dx
        bias = row_bias[dy + ry] + col_bias[dx + rx]
        wgt = torch.exp(torch.add(bias, d2, alpha=-inv_two_var_r))
        num = torch.addcmul(num, wgt, dsig)
        den = den + wgt
    return num, den


def _filter(
    x: torch.Tensor,
    guide: torch.Tensor | None,
    sigma_d: float,
    sigma_r: float,
    radius: int,
    window: str,
    *,
    residual: bool,
) -> torch.Tensor:
    """Unchecked core: ``sum_q w_pq v_q / sum_q w_pq`` with ``v_q = x_q - x_p`` if ``residual`` else ``x_q``.

    ``w_pq = exp(-|p-q|^2 / (2 sigma_d^2)) exp(-||g_p - g_q||^2 / (2 sigma_r^2))`` for in-image ``q``
    in the window around ``p``, 0 otherwise; ``g`` is ``guide`` (``x`` when ``None``).
    The offsets are visited one at a time (numerator/denominator accumulated), so memory is a few
    images, whatever the window; with autograd on, each row of offsets is checkpointed.
    """
    b, c, h, w = x.shape
    per_chunk = max(1, _CHUNK_ELEMENTS // (c * h * w))
    if b > per_chunk and x.device.type == "cpu":  # CPU: chunks of the batch stay in cache (~1.5-2x faster)
        return torch.cat(
            [
                _filter(x[i : i + per_chunk], None if guide is None else guide[i : i + per_chunk],
                        sigma_d, sigma_r, radius, window, residual=residual)
                for i in range(0, b, per_chunk)
            ]
        )
    self_guided = guide is None
    g = x if self_guided else guide
    assert g is not None
    ry, rx = min(radius, h - 1), min(radius, w - 1)  # offsets further out never hit the image
    pad = (rx, rx, ry, ry)
    xp = torch.nn.functional.pad(x, pad, mode="replicate") if (rx or ry) else x
    gp = xp if self_guided else (torch.nn.functional.pad(g, pad, mode="replicate") if (rx or ry) else g)

    inv_two_var_d = 1.0 / (2.0 * sigma_d * sigma_d)
    inv_two_var_r = 1.0 / (2.0 * sigma_r * sigma_r)

    def axis_bias(r: int, n: int) -> torch.Tensor:
        # (2r+1, n) then shaped for broadcasting: -d^2/(2 sigma_d^2) where p+d is inside, -inf outside
        d = torch.arange(-r, r + 1, device=x.device)
        p = torch.arange(n, device=x.device)
        inside = ((p[None, :] + d[:, None]) >= 0) & ((p[None, :] + d[:, None]) < n)
        val = (-(d.to(x.dtype) ** 2) * inv_two_var_d)[:, None].expand(-1, n)
        return torch.where(inside, val, torch.full_like(val, -math.inf))

    row_bias = axis_bias(ry, h)[:, :, None]  # (2ry+1, H, 1)
    col_bias = axis_bias(rx, w)[:, None, :]  # (2rx+1, 1, W)

    use_ckpt = torch.is_grad_enabled() and (x.requires_grad or (not self_guided and g.requires_grad))
    num = torch.zeros_like(x)
    den = torch.zeros((b, 1, h, w), dtype=x.dtype, device=x.device)
    r2 = radius * radius
    for dy in range(-ry, ry + 1):
        dxs = tuple(dx for dx in range(-rx, rx + 1) if window == "square" or dy * dy + dx * dx <= r2)
        if not dxs:
            continue
        args = (xp, gp, x, g, row_bias, col_bias, dy, dxs, ry, rx, inv_two_var_r, residual, self_guided)
        if use_ckpt:
            n_row, d_row = checkpoint(_row_sums, *args, use_reentrant=False)
        else:
            n_row, d_row = _row_sums(*args)
        num = num + n_row
        den = den + d_row
    # den >= 1: the centre pixel always has weight exp(0) * exp(0) = 1
    return num / den


def _check_signal(x: Any, name: str, *, check_finite: bool = True) -> torch.Tensor:
    check_tensor(x, name)
    if x.dim() != 4:
        raise ValueError(
            f"{name} must have shape (B, C, H, W), got a {x.dim()}-D tensor of shape {tuple(x.shape)}"
        )
    if min(x.shape) < 1:
        raise ValueError(f"{name} must have B, C, H, W >= 1, got shape {tuple(x.shape)}")
    if not check_finite:
        if not x.dtype.is_floating_point:
            raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
        return x
    return check_float_tensor(x, name)


def _check_guide(guide: Any, x: torch.Tensor, *, check_finite: bool = True, name: str = "x") -> torch.Tensor:
    _check_signal(guide, "guide", check_finite=check_finite)
    if guide.shape[0] != x.shape[0] or guide.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"guide must have shape ({x.shape[0]}, C_guide, {x.shape[2]}, {x.shape[3]}) to match {name}, "
            f"got {tuple(guide.shape)}"
        )
    if guide.dtype != x.dtype:
        raise TypeError(f"guide must have the dtype of {name} ({x.dtype}), got {guide.dtype}")
    if guide.device != x.device:
        raise ValueError(f"guide must be on the device of {name} ({x.device}), got {guide.device}")
    return guide


def bilateral(
    x: torch.Tensor,
    sigma_d: float = 3.0,
    sigma_r: float = 0.2,
    *,
    guide: torch.Tensor | None = None,
    radius: int | None = None,
    window: str = "square",
    check_finite: bool = True,
) -> torch.Tensor:
    r"""Bilateral filter (Tomasi & Manduchi [35]), plain or guided, as used in appendix A.

    .. math::
        b_g(x)_c(p) = \frac{\sum_{q \in N(p)} k_d(p, q)\, k_r(p, q)\, x_c(q)}{\sum_{q \in N(p)} k_d(p, q)\, k_r(p, q)},
        \quad k_d = e^{-\|p - q\|^2 / 2\sigma_d^2},
        \quad k_r = e^{-\|g(p) - g(q)\|^2 / 2\sigma_r^2}

    The photometric similarity ``k_r`` is **one scalar per pixel pair**, from the Euclidean distance
    over *all* channels of the guide ``g`` (appendix A, last paragraph); every channel ``c`` of ``x``
    is averaged with those same weights. ``N(p)`` is the window of the given ``radius`` around ``p``
    restricted to pixels inside the image: at the border, only in-image neighbours count and the
    weights are normalised by their own sum (no padding values enter the result).

    Parameters
    ----------
    x
        Signal to filter, float ``(B, C, H, W)``, finite; any range (``sigma_r`` is on the guide's scale).
    sigma_d
        Standard deviation of the domain (spatial) Gaussian, in pixels, > 0.
    sigma_r
        Standard deviation of the range (photometric) Gaussian, on the guide's scale (``[0, 1]``
        images: 0.2 is the authors' value), > 0.
    guide
        Image that defines the range kernel, float ``(B, C_g, H, W)``; ``None`` (default) uses ``x``
        itself (plain bilateral filter). ``guide=g`` gives the joint / guided filter ``b_g``.
    radius
        Window half-width: offsets ``|dy|, |dx| <= radius``; default ``ceil(3 * sigma_d)``.
    window
        ``"square"`` (default, the authors' 15 x 15 window) or ``"disk"`` (offsets with
        ``dy^2 + dx^2 <= radius^2``, the window of OpenCV's ``cv2.bilateralFilter``).
    check_finite
        Check that ``x`` (and ``guide``) hold no NaN/Inf; ``False`` skips that host
        synchronisation (inside attack loops, as :class:`~smoothlab.models.BilateralDefence` does).

    Returns
    -------
    torch.Tensor
        Filtered ``x``, same shape, dtype and device; differentiable in ``x`` and ``guide``.

    Notes
    -----
    The filter is computed as ``x + sum_q w_pq (x_q - x_p) / sum_q w_pq`` (the same quantity), so a
    constant image is returned exactly. The window offsets are visited in a loop, accumulating
    numerator and denominator: memory is a few copies of the batch whatever the radius (no
    ``unfold`` of ``(2r+1)^2`` copies); under autograd each row of offsets is recomputed in the
    backward pass (gradient checkpointing) instead of being stored.

    Checked against independent implementations (``tests/test_magnify.py``):

    - OpenCV ``cv2.bilateralFilter`` (``d = 2 radius + 1``, ``sigmaSpace = sigma_d``,
      ``sigmaColor = sigma_r``, float32) with ``window="disk"`` on grey images (camera crop, MNIST
      digit): away from the border the largest difference measured is below ``1e-6`` (float32
      rounding; OpenCV tabulates the range Gaussian and interpolates it linearly); the test
      tolerance is ``1e-5``. Within ``radius`` of the border OpenCV counts mirrored pixels
      (``BORDER_REFLECT_101``) where we count only in-image ones (differences up to ~0.02). On colour
      images OpenCV measures the colour distance with the L1 norm, we with the Euclidean norm of the
      paper, so colour images are not compared with it.
    - scikit-image ``denoise_bilateral`` (``channel_axis=-1``) on RGB and grey images. Its range
      kernel takes the Euclidean colour distance divided by the number of channels, quantised into
      ``bins`` (so ``sigma_color = sigma_r / C``), and in version 0.26 its spatial look-up table has
      ``(win_size + 1)^2`` entries read with row stride ``win_size`` -- a sheared spatial kernel. We
      therefore compare with a flat spatial kernel (``sigma_d = sigma_spatial = 1e4``), which checks
      the Euclidean colour distance on RGB (astronaut crop) and grey images: away from the border
      the largest difference measured is below ``2e-6`` with ``bins = 10**6`` (below ``2e-4`` with
      the default ``10**4`` bins: the quantised range kernel); the test tolerance is ``1e-5``.
    - A pixel-by-pixel textbook implementation (guided, both windows, windows larger than the
      image): ``1e-12`` in float64.
    """
    sigma_d, sigma_r, radius = _check_arguments(x, "x", guide, sigma_d, sigma_r, radius, window, check_finite)
    return x + _filter(x, guide, sigma_d, sigma_r, radius, window, residual=True)


def bilateral_mean(
    v: torch.Tensor,
    sigma_d: float = 3.0,
    sigma_r: float = 0.2,
    *,
    guide: torch.Tensor | None = None,
    radius: int | None = None,
    window: str = "square",
    residual: bool = False,
    check_finite: bool = True,
) -> torch.Tensor:
    r"""The weighted mean a bilateral filter is made of, on any signal ``v``.

    .. math::
        m(v)_c(p) = \frac{\sum_{q \in N(p)} w_{pq}\, u_c(q)}{\sum_{q \in N(p)} w_{pq}},
        \qquad u_c(q) = v_c(q) - v_c(p) \text{ if residual else } v_c(q)

    with the weights ``w_pq = k_d(p, q) k_r(p, q)`` of :func:`bilateral` (range kernel on ``guide``,
    on ``v`` itself when ``None``). So ``bilateral(x) == x + bilateral_mean(x, residual=True)`` bit for
    bit (the residual form returns a constant image exactly), and the two filters of eq. (22) are
    ``b(x) - x = bilateral_mean(x, residual=True)`` and the local variance
    ``sigma_x^2 = bilateral_mean((x - b(x))^2, guide=x)`` (:func:`smoothlab.magnify`).

    Parameters
    ----------
    v
        Signal to average, float ``(B, C, H, W)``.
    sigma_d, sigma_r, guide, radius, window, check_finite
        As in :func:`bilateral` (``check_finite`` applies to ``v`` and ``guide``).
    residual
        Average ``v_q - v_p`` (``True``) or ``v_q`` (``False``, default).

    Returns
    -------
    torch.Tensor
        Same shape, dtype and device as ``v``; differentiable in ``v`` and ``guide``.

    Examples
    --------
    >>> import torch
    >>> from smoothlab.filters import bilateral, bilateral_mean
    >>> x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> torch.equal(bilateral(x, 1.0, 0.2), x + bilateral_mean(x, 1.0, 0.2, residual=True))
    True
    >>> bool((bilateral_mean(torch.ones(1, 1, 8, 8), guide=x[:1]) == 1).all())   # a mean of ones
    True
    """
    sigma_d, sigma_r, radius = _check_arguments(v, "v", guide, sigma_d, sigma_r, radius, window, check_finite)
    return _filter(v, guide, sigma_d, sigma_r, radius, window, residual=residual)


def _check_arguments(
    x: Any, name: str, guide: Any, sigma_d: Any, sigma_r: Any, radius: Any, window: Any, check_finite: bool
) -> tuple[float, float, int]:
    """The checks of :func:`bilateral` and :func:`bilateral_mean`: ``(sigma_d, sigma_r, radius)`` checked."""
    _check_signal(x, name, check_finite=check_finite)
    sigma_d = check_positive(sigma_d, "sigma_d")
    sigma_r = check_positive(sigma_r, "sigma_r")
    radius = bilateral_radius(radius, sigma_d)
    check_choice(window, "window", BILATERAL_WINDOWS)
    if guide is not None:
        _check_guide(guide, x, check_finite=check_finite, name=name)
    return sigma_d, sigma_r, radius

