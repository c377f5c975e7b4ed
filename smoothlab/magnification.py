"""Adversarial magnification (appendix A, eq. 22) and the bilateral filter behind it.

Public API
----------
- :func:`bilateral` -- bilateral filter [Tomasi & Manduchi 1998], plain or guided (joint), batched,
  differentiable, pure torch on the device of its input;
- :func:`magnify` -- ``mag(x)`` of eq. (22), a local normalisation that makes a perturbation that is
  not "smooth like x" stand out;
- :func:`to_display` -- map a *set* of magnified images to ``[0, 1]`` with one shared scale;
- :func:`visibility` -- a per-image number saying how much a perturbation shows under magnification;
- :data:`MAGNIFY_PAPER`, :data:`MAGNIFY_AUTHORS_CODE` -- the two parameter sets we know of.

Parameters and their reading
----------------------------
Appendix A, Fig. 1: ``beta = 0.8`` and "the standard deviation of both the domain and range Gaussian
kernels is 5". We read the domain sigma as 5 pixels and the range sigma as 5 on the 0-255 scale of
8-bit images, i.e. ``5/255`` on our ``[0, 1]`` scale (on ``[0, 1]`` a range sigma of 5 would give every
pixel pair a range weight above ``exp(-3/50) = 0.94``: a plain Gaussian blur, not the edge-preserving
filter the appendix describes). That reading is :data:`MAGNIFY_PAPER`. The authors' code (DESIGN.md
section 4) used a domain sigma of 3 pixels, a range sigma of 0.2 on ``[0, 1]`` RGB, a 15 x 15 window
and the global RMS of ``x - b(x)`` for ``sigma_Omega``: :data:`MAGNIFY_AUTHORS_CODE`.

Defaults of :func:`magnify`: ``beta = 0.8`` and ``sigma_Omega`` = global standard deviation of ``x``
(the paper's text), with the authors' kernels, ``sigma_d = 3`` px and ``sigma_r = 0.2``, and the window
radius ``ceil(3 sigma_d) = 9`` of :func:`bilateral`. Why not the paper's ``5, 5/255``: the unit of the
range sigma is our guess, and with it the range kernel leaves almost every detail in ``b(x)``, so
``x - b(x)`` is little more than the image's own grain/JPEG noise and the magnified original and its
noisy adversarial look alike (tried on ``skimage.data.astronaut``); it also needs a 31 x 31 window
(about 4x the time). Pass ``**MAGNIFY_PAPER`` or ``**MAGNIFY_AUTHORS_CODE`` to reproduce either.

On ``sigma_Omega``: the global standard deviation of a natural image (~0.2-0.3) is much larger than
the global RMS of its residual ``x - b(x)`` (~0.01-0.03), so with ``beta = 0.8`` the paper's choice
magnifies flat regions less (the constant ``(1 - beta) sigma_Omega`` dominates the denominator wherever
``sigma_x < ~0.06``) and the authors' choice more; both reveal white-noise perturbations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from smoothlab._validation import (
    check_choice,
    check_float_tensor,
    check_images,
    check_int,
    check_positive,
    check_range,
    check_tensor,
)

__all__ = [
    "BILATERAL_WINDOWS",
    "bilateral",
    "bilateral_radius",
    "magnify",
    "to_display",
    "visibility",
    "MAGNIFY_PAPER",
    "MAGNIFY_AUTHORS_CODE",
]

#: Fig. 1 of the paper (appendix A): beta 0.8, domain sigma 5 px, range sigma 5 on 0-255 (= 5/255).
MAGNIFY_PAPER: Mapping[str, Any] = MappingProxyType(
    {"beta": 0.8, "sigma_d": 5.0, "sigma_r": 5.0 / 255.0, "global_scale": "std"}
)

#: The authors' code (DESIGN.md sec. 4): domain sigma 3 px, range sigma 0.2, 15 x 15 window
#: (radius 7), sigma_Omega = global per-channel RMS of x - b(x).
MAGNIFY_AUTHORS_CODE: Mapping[str, Any] = MappingProxyType(
    {"beta": 0.8, "sigma_d": 3.0, "sigma_r": 0.2, "radius": 7, "global_scale": "residual_rms"}
)

#: Defaults of :func:`magnify` (and of :func:`visibility`'s ``**mag_options``).
_MAGNIFY_DEFAULTS: dict[str, Any] = {
    "beta": 0.8,
    "sigma_d": 3.0,
    "sigma_r": 0.2,
    "radius": None,
    "window": "square",
    "global_scale": "std",
    "eps": 1e-6,
}

#: The window shapes of :func:`bilateral`.
BILATERAL_WINDOWS = ("square", "disk")
_CHUNK_ELEMENTS = 2**18  # values of x per chunk of the batch in _filter (one 299x299x3 image ~ 2^18)
_GLOBAL_SCALES = ("std", "residual_rms")


# ----------------------------------------------------------------------------------------------
# Bilateral filter
# ----------------------------------------------------------------------------------------------


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


def _check_guide(guide: Any, x: torch.Tensor, *, check_finite: bool = True) -> torch.Tensor:
    _check_signal(guide, "guide", check_finite=check_finite)
    if guide.shape[0] != x.shape[0] or guide.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"guide must have shape ({x.shape[0]}, C_guide, {x.shape[2]}, {x.shape[3]}) to match x, "
            f"got {tuple(guide.shape)}"
        )
    if guide.dtype != x.dtype:
        raise TypeError(f"guide must have the dtype of x ({x.dtype}), got {guide.dtype}")
    if guide.device != x.device:
        raise ValueError(f"guide must be on the device of x ({x.device}), got {guide.device}")
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
    _check_signal(x, "x", check_finite=check_finite)
    sigma_d = check_positive(sigma_d, "sigma_d")
    sigma_r = check_positive(sigma_r, "sigma_r")
    radius = bilateral_radius(radius, sigma_d)
    check_choice(window, "window", BILATERAL_WINDOWS)
    if guide is not None:
        _check_guide(guide, x, check_finite=check_finite)
    return x + _filter(x, guide, sigma_d, sigma_r, radius, window, residual=True)


# ----------------------------------------------------------------------------------------------
# Magnification, eq. (22)
# ----------------------------------------------------------------------------------------------


def _magnify_parts(
    x: torch.Tensor,
    beta: float,
    sigma_d: float,
    sigma_r: float,
    radius: int,
    window: str,
    global_scale: str,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unchecked: ``(mag(x), sigma_x(x), sigma_Omega(x))``, both scales floored as ``sqrt(s^2 + eps^2)``;
    ``sigma_Omega`` has shape ``(B, C, 1, 1)``."""
    resid = -_filter(x, None, sigma_d, sigma_r, radius, window, residual=True)  # x - b(x)
    # sigma_x(x) = b_x((x - b(x))^2)^(+1/2): guided bilateral of the squared residual, guide x
    local_var = _filter(resid.square(), x, sigma_d, sigma_r, radius, window, residual=False)
    if global_scale == "std":
        global_var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    else:  # "residual_rms", the authors' code
        global_var = resid.square().mean(dim=(2, 3), keepdim=True)
    # eps floors both scales smoothly (sqrt(v + eps^2) >= eps): no 0/0, finite gradients
    e2 = eps * eps
    local_std = torch.sqrt(local_var.clamp_min(0.0) + e2)
    global_std = torch.sqrt(global_var + e2)
    return resid / (beta * local_std + (1.0 - beta) * global_std), local_std, global_std


def _check_mag_options(
    beta: Any, sigma_d: Any, sigma_r: Any, radius: Any, window: Any, global_scale: Any, eps: Any
) -> tuple[float, float, float, int, str, str, float]:
    beta = check_range(beta, "beta", 0.0, 1.0)
    sigma_d = check_positive(sigma_d, "sigma_d")
    sigma_r = check_positive(sigma_r, "sigma_r")
    radius = bilateral_radius(radius, sigma_d)
    check_choice(window, "window", BILATERAL_WINDOWS)
    check_choice(global_scale, "global_scale", _GLOBAL_SCALES)
    eps = check_positive(eps, "eps")
    return beta, sigma_d, sigma_r, radius, window, global_scale, eps


def magnify(
    x: torch.Tensor,
    beta: float = 0.8,
    sigma_d: float = 3.0,
    sigma_r: float = 0.2,
    *,
    radius: int | None = None,
    window: str = "square",
    global_scale: str = "std",
    eps: float = 1e-6,
) -> torch.Tensor:
    r"""Adversarial magnification ``mag(x)`` of eq. (22), per channel.

    .. math::
        \mathrm{mag}(x) = \frac{x - b(x)}{\beta\, \sigma_x(x) + (1 - \beta)\, \sigma_\Omega(x)},
        \qquad \sigma_x(x) = b_x\big((x - b(x))^2\big)^{+1/2}

    ``b`` is :func:`bilateral` (the local mean ``mu_x``), ``b_x`` the bilateral filter *guided by x*
    (range kernel on ``x``, applied to the squared residual), both with one photometric weight per
    pixel pair from the Euclidean distance over all channels and applied to each channel.
    **The paper prints the exponent -1/2 for sigma_x; it must be +1/2** -- a local standard deviation
    in the denominator of a local normalisation, as the authors' code computes it.

    Parameters
    ----------
    x
        Images ``(B, C, H, W)`` in ``[0, 1]``.
    beta
        In ``[0, 1]``: weight of the local scale ``sigma_x`` against the global one (Fig. 1: 0.8).
    sigma_d, sigma_r, radius, window
        Of both bilateral filters (see :func:`bilateral`). Defaults: the authors' kernels (domain
        sigma 3 px, range sigma 0.2 on ``[0, 1]``) with radius ``ceil(3 sigma_d) = 9``; the paper's
        Fig. 1 values (read as 5 px and 5/255) are :data:`MAGNIFY_PAPER`, the authors' full setting
        (radius 7, residual RMS) :data:`MAGNIFY_AUTHORS_CODE` -- see the module docstring.
    global_scale
        ``sigma_Omega``: ``"std"`` (default, the paper: global standard deviation of ``x`` over the
        image, per channel) or ``"residual_rms"`` (the authors' code: global RMS of ``x - b(x)``
        per channel).
    eps
        Floor of both scales, used as ``sqrt(s^2 + eps^2)``: a constant image gives ``mag = 0``,
        never NaN, and gradients stay finite.

    Returns
    -------
    torch.Tensor
        ``mag(x)``, same shape as ``x``, dimensionless (residual in units of local/global deviation);
        invariant to adding a constant to ``x``.

    Examples
    --------
    White noise shows under magnification; the same noise smoothed like the image (eq. 9) much less:

    >>> import torch
    >>> from smoothlab import Smoother, magnify
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.linspace(0.2, 0.8, 32).repeat(1, 1, 32, 1)            # a smooth ramp
    >>> x[..., 16:] += 0.1                                              # with one edge
    >>> noise = 0.02 * torch.randn(x.shape, generator=g)
    >>> smooth = Smoother(x, alpha=0.95)(noise)
    >>> def shows(r):                                                   # how much mag(x + r) departs from mag(x)
    ...     return float((magnify((x + r).clamp(0, 1)) - magnify(x)).abs().mean())
    >>> shows(noise) > 2 * shows(smooth)
    True
    """
    check_images(x.detach() if isinstance(x, torch.Tensor) else x, "x")
    opts = _check_mag_options(beta, sigma_d, sigma_r, radius, window, global_scale, eps)
    return _magnify_parts(x, *opts)[0]


def to_display(
    mags: torch.Tensor | Sequence[torch.Tensor],
    *,
    quantile: float = 0.99,
    scale: float | None = None,
    return_scale: bool = False,
) -> Any:
    """Map magnified images to ``[0, 1]`` with **one scale shared by the whole set**.

    ``out = clip(0.5 + 0.5 * mag / s, 0, 1)``: zero (no local detail) is mid-grey, and ``s`` is the
    ``quantile`` of ``|mag|`` over *all* values of *all* the given images (every image, channel and
    pixel), so an original and its adversarial examples are shown on the same scale and a stronger
    residual really looks stronger (per-image scaling would hide exactly that).

    Parameters
    ----------
    mags
        One tensor (a batch) or a sequence of tensors (e.g. ``[mag(x_o), mag(x_a1), ...]``), any shapes.
    quantile
        In ``(0, 1]``; values of ``|mag|`` above the quantile saturate. Ignored if ``scale`` is given.
    scale
        Explicit ``s > 0`` (e.g. to reuse the scale of another set).
    return_scale
        Also return ``s``.

    Returns
    -------
    Tensor or list of tensors (matching ``mags``) in ``[0, 1]``; ``(out, s)`` if ``return_scale``.
    """
    single = isinstance(mags, torch.Tensor)
    items = [mags] if single else list(mags)
    if not items:
        raise ValueError("mags must hold at least one tensor, got an empty sequence")
    for i, m in enumerate(items):
        name = "mags" if single else f"mags[{i}]"
        check_float_tensor(m, name)
        if m.numel() == 0:
            raise ValueError(f"{name} must not be empty, got shape {tuple(m.shape)}")
    if scale is None:
        q = check_range(quantile, "quantile", 0.0, 1.0, low_open=True)
        flat = torch.cat([m.detach().abs().reshape(-1).to(items[0].device, torch.float64) for m in items])
        k = max(1, min(flat.numel(), math.ceil(q * flat.numel())))
        s = float(torch.kthvalue(flat, k).values)  # kthvalue has no size limit (torch.quantile does)
        if s <= 0.0:  # all (or nearly all) zeros: any scale shows them as mid-grey
            s = 1.0
    else:
        s = check_positive(scale, "scale")
    out = [(0.5 + 0.5 * m / s).clamp(0.0, 1.0) for m in items]
    res: Any = out[0] if single else out
    return (res, s) if return_scale else res


def visibility(
    x_o: torch.Tensor,
    x_a: torch.Tensor,
    *,
    flat_weighting: bool = True,
    **mag_options: Any,
) -> torch.Tensor:
    r"""How visible the perturbation ``x_a - x_o`` is under magnification: one number per image.

    .. math::
        V(x_o, x_a) = \left(\frac{\sum_{c,p} w_c(p)\, \big(\mathrm{mag}(x_a)_c(p) - \mathrm{mag}(x_o)_c(p)\big)^2}
                                 {\sum_{c,p} w_c(p)}\right)^{1/2},
        \qquad w_c(p) = \frac{\sigma_{\Omega,c}(x_o)}{\sigma_{x,c}(x_o)(p) + \sigma_{\Omega,c}(x_o)}

    i.e. the (weighted) RMS change of the magnified image -- what one sees comparing ``mag(x_o)`` with
    ``mag(x_a)`` side by side with :func:`to_display`. Each magnified image is computed from that
    image alone (as in Fig. 1). The weight ``w in (0, 1]`` is the flatness of ``x_o``: close to 1
    where ``x_o`` is locally flat (local deviation ``sigma_x(x_o)`` small against the global
    ``sigma_Omega(x_o)``), 1/2 where they are equal, lower on texture and edges, where a change
    is masked by the image's own detail (both scales are the ``eps``-floored ones of :func:`magnify`,
    so a constant ``x_o`` gets ``w = 1/2`` everywhere). ``flat_weighting=False`` uses ``w = 1``
    (plain RMS).

    Properties: ``V = 0`` for a zero perturbation; ``V`` is dimensionless (units of ``mag``: local
    standard deviations), invariant to adding the same constant to ``x_o`` and ``x_a``, and grows
    with the perturbation's amplitude. It is deliberately **not** divided by the distortion
    ``D = ||x_a - x_o||``: it ranks perturbations of different norms (different attacks) by how
    visible they are; to compare shapes alone, compare at equal ``D``. A perturbation "smooth like
    ``x_o``" (low-frequency, or constant where ``x_o`` is flat) is largely absorbed by ``b(x_a)``
    and scores far lower than white noise of the same ``D``.

    Parameters
    ----------
    x_o, x_a
        Original and perturbed images, same shape ``(B, C, H, W)``, in ``[0, 1]``.
    flat_weighting
        Weight pixels by the flatness of ``x_o`` (default) or uniformly.
    **mag_options
        ``beta, sigma_d, sigma_r, radius, window, global_scale, eps`` of :func:`magnify`
        (same defaults).

    Returns
    -------
    torch.Tensor
        ``(B,)``, same dtype and device as ``x_o``.
    """
    check_images(x_o.detach() if isinstance(x_o, torch.Tensor) else x_o, "x_o")
    check_images(x_a.detach() if isinstance(x_a, torch.Tensor) else x_a, "x_a")
    if x_a.shape != x_o.shape:
        raise ValueError(f"x_a must have the shape of x_o {tuple(x_o.shape)}, got {tuple(x_a.shape)}")
    if x_a.device != x_o.device or x_a.dtype != x_o.dtype:
        raise TypeError(
            f"x_a must have the dtype/device of x_o ({x_o.dtype}, {x_o.device}), "
            f"got ({x_a.dtype}, {x_a.device})"
        )
    opts = _visibility_options(mag_options)
    # two separate calls (not one concatenated batch): identical images give bit-identical mags
    return _visibility_of_parts(_magnify_parts(x_o, *opts), _magnify_parts(x_a, *opts)[0], flat_weighting)


def _visibility_options(mag_options: dict[str, Any]) -> tuple[float, float, float, int, str, str, float]:
    """The checked magnification options of :func:`visibility`, positional for :func:`_magnify_parts`."""
    unknown = sorted(set(mag_options) - set(_MAGNIFY_DEFAULTS))
    if unknown:
        raise TypeError(f"unexpected magnify option(s) {unknown}; expected some of {list(_MAGNIFY_DEFAULTS)}")
    o: dict[str, Any] = dict(_MAGNIFY_DEFAULTS)
    o.update(mag_options)
    return _check_mag_options(o["beta"], o["sigma_d"], o["sigma_r"], o["radius"], o["window"], o["global_scale"], o["eps"])


def _visibility_of_parts(
    parts_o: tuple[torch.Tensor, torch.Tensor, torch.Tensor], mag_a: torch.Tensor, flat_weighting: bool
) -> torch.Tensor:
    """:func:`visibility` from ``_magnify_parts(x_o)`` and ``mag(x_a)`` (unchecked). The parts of an
    original depend on that image alone, so they may be computed once and reused for every
    adversarial image of it (``smoothlab.metrics.records_from_result(visibility_cache=...)``)."""
    mag_o, local_o, global_o = parts_o
    diff2 = (mag_a - mag_o).square()
    if flat_weighting:
        wgt = global_o / (local_o + global_o)  # both floored at eps: w in (0, 1], 1/2 if x_o constant
        return ((wgt * diff2).sum(dim=(1, 2, 3)) / wgt.sum(dim=(1, 2, 3))).sqrt()
    return diff2.mean(dim=(1, 2, 3)).sqrt()
