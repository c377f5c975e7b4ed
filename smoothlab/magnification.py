"""Adversarial magnification (appendix A, eq. 22), built on the bilateral filters of :mod:`smoothlab.filters`.

Public API
----------
- :func:`magnify` -- ``mag(x)`` of eq. (22), a local normalisation that makes a perturbation that is
  not "smooth like x" stand out;
- :func:`to_display` -- map a *set* of magnified images to ``[0, 1]`` with one shared scale;
- :func:`visibility` -- a per-image number saying how much a perturbation shows under magnification;
- :class:`Magnifier` -- the magnification of a batch of originals computed once, then the
  visibility of any number of perturbed versions of them (what :func:`visibility` and the records'
  ``visibility`` column use);
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
radius ``ceil(3 sigma_d) = 9`` of :func:`~smoothlab.filters.bilateral`. Why not the paper's ``5, 5/255``:
the unit of the range sigma is our guess, and with it the range kernel leaves almost every detail in ``b(x)``, so
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

from smoothlab._validation import check_choice, check_float_tensor, check_images, check_positive, check_range
from smoothlab.filters import BILATERAL_WINDOWS, bilateral_mean, bilateral_radius

__all__ = [
    "Magnifier",
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

#: Defaults of :func:`magnify` (and of :class:`Magnifier`, :func:`visibility`'s ``**mag_options``).
_MAGNIFY_DEFAULTS: dict[str, Any] = {
    "beta": 0.8,
    "sigma_d": 3.0,
    "sigma_r": 0.2,
    "radius": None,
    "window": "square",
    "global_scale": "std",
    "eps": 1e-6,
}

_GLOBAL_SCALES = ("std", "residual_rms")


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
    # x - b(x), and sigma_x(x) = b_x((x - b(x))^2)^(+1/2): guided bilateral of the squared residual, guide x
    resid = -bilateral_mean(x, sigma_d, sigma_r, radius=radius, window=window, residual=True, check_finite=False)
    local_var = bilateral_mean(resid.square(), sigma_d, sigma_r, guide=x,
                               radius=radius, window=window, check_finite=False)
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

    ``b`` is :func:`~smoothlab.filters.bilateral` (the local mean ``mu_x``), ``b_x`` the bilateral filter
    *guided by x* (range kernel on ``x``, applied to the squared residual), both with one photometric weight per
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
        Of both bilateral filters (see :func:`~smoothlab.filters.bilateral`). Defaults: the authors' kernels (domain
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

    Notes
    -----
    ``visibility(x_o, x_a, **options)`` is ``Magnifier(x_o, **options).visibility(x_a)``: build the
    :class:`Magnifier` once to score several perturbed versions of the same originals.
    """
    unknown = sorted(set(mag_options) - set(_MAGNIFY_DEFAULTS))
    if unknown:
        raise TypeError(f"unexpected magnify option(s) {unknown}; expected some of {list(_MAGNIFY_DEFAULTS)}")
    return Magnifier(x_o, **mag_options).visibility(x_a, flat_weighting=flat_weighting)


#: The names of :class:`Magnifier`'s checked options, in the order of :func:`_magnify_parts`.
_OPTION_NAMES = ("beta", "sigma_d", "sigma_r", "radius", "window", "global_scale", "eps")


class Magnifier:
    r"""The adversarial magnification of a batch of originals, computed once (appendix A, eq. 22).

    Holds ``mag(x_o)`` and both scales of eq. (22), ``sigma_x(x_o)`` and ``sigma_Omega(x_o)``: all that
    :func:`visibility` needs of the originals. :meth:`visibility` then magnifies only the perturbed
    images, so the originals are magnified once for any number of attacks and budgets. Each part of
    an image depends on that image alone, so a magnifier can be indexed (:meth:`select`) and joined
    (:meth:`cat`) without computing anything again (the ``visibility_cache`` of
    :func:`smoothlab.records.records_from_result`). Results are bit-identical to :func:`magnify`
    and :func:`visibility` with the same options (which :func:`visibility` is: one code path).

    Parameters
    ----------
    x_o
        Original images ``(B, C, H, W)`` in ``[0, 1]``.
    beta, sigma_d, sigma_r, radius, window, global_scale, eps
        The options of :func:`magnify` (same defaults).

    Attributes
    ----------
    x_o : torch.Tensor
        The originals, as given.
    mag : torch.Tensor
        ``mag(x_o)``, ``(B, C, H, W)``.
    sigma_x, sigma_omega : torch.Tensor
        The local scale ``(B, C, H, W)`` and the global scale ``(B, C, 1, 1)`` of ``x_o``, both floored
        as ``sqrt(s^2 + eps^2)``.
    options : dict
        The checked options (``radius`` resolved).

    Examples
    --------
    >>> import torch
    >>> from smoothlab.magnification import Magnifier, magnify, visibility
    >>> g = torch.Generator().manual_seed(0)
    >>> x_o = torch.rand(3, 1, 16, 16, generator=g)
    >>> x_a = (x_o + 0.05 * torch.randn(x_o.shape, generator=g)).clamp(0, 1)
    >>> m = Magnifier(x_o, sigma_d=2.0)
    >>> torch.equal(m.visibility(x_a), visibility(x_o, x_a, sigma_d=2.0))
    True
    >>> torch.equal(m.mag, magnify(x_o, sigma_d=2.0)), torch.equal(m.magnify(x_a), magnify(x_a, sigma_d=2.0))
    (True, True)
    >>> two = Magnifier.cat([m.select(2), m.select(0)])        # originals 2 and 0, nothing recomputed
    >>> torch.equal(two.visibility(x_a[[2, 0]]), visibility(x_o[[2, 0]], x_a[[2, 0]], sigma_d=2.0))
    True
    """

    x_o: torch.Tensor
    mag: torch.Tensor
    sigma_x: torch.Tensor
    sigma_omega: torch.Tensor

    def __init__(
        self,
        x_o: torch.Tensor,
        *,
        beta: float = 0.8,
        sigma_d: float = 3.0,
        sigma_r: float = 0.2,
        radius: int | None = None,
        window: str = "square",
        global_scale: str = "std",
        eps: float = 1e-6,
    ) -> None:
        check_images(x_o.detach() if isinstance(x_o, torch.Tensor) else x_o, "x_o")
        opts = _check_mag_options(beta, sigma_d, sigma_r, radius, window, global_scale, eps)
        self._set(x_o, opts, _magnify_parts(x_o, *opts))

    def _set(self, x_o: torch.Tensor, opts: tuple[Any, ...], parts: tuple[torch.Tensor, ...]) -> None:
        self.x_o, self._opts = x_o, opts
        self.mag, self.sigma_x, self.sigma_omega = parts

    @classmethod
    def _of_parts(cls, x_o: torch.Tensor, opts: tuple[Any, ...], parts: tuple[torch.Tensor, ...]) -> Magnifier:
        new = cls.__new__(cls)
        new._set(x_o, opts, parts)
        return new

    @property
    def options(self) -> dict[str, Any]:
        """The checked magnification options, ``radius`` resolved (keyword arguments of :func:`magnify`)."""
        return dict(zip(_OPTION_NAMES, self._opts))

    def __len__(self) -> int:
        return int(self.x_o.shape[0])

    def __repr__(self) -> str:
        from smoothlab._repr import one_line

        return one_line("Magnifier", {"x_o": self.x_o, **self.options})

    def magnify(self, x: torch.Tensor) -> torch.Tensor:
        """``mag(x)`` (eq. 22) with this magnifier's options: :func:`magnify` ``(x, **self.options)``."""
        check_images(x.detach() if isinstance(x, torch.Tensor) else x, "x")
        return _magnify_parts(x, *self._opts)[0]

    def visibility(self, x_a: torch.Tensor, *, flat_weighting: bool = True) -> torch.Tensor:
        """:func:`visibility` ``(x_o, x_a, flat_weighting=..., **self.options)``, ``(B,)``; only ``x_a`` is magnified.

        ``x_a`` must have the shape, dtype and device of :attr:`x_o` (image ``i`` of ``x_a`` is a
        perturbed version of image ``i`` of ``x_o``).
        """
        check_images(x_a.detach() if isinstance(x_a, torch.Tensor) else x_a, "x_a")
        x_o = self.x_o
        if x_a.shape != x_o.shape:
            raise ValueError(f"x_a must have the shape of x_o {tuple(x_o.shape)}, got {tuple(x_a.shape)}")
        if x_a.device != x_o.device or x_a.dtype != x_o.dtype:
            raise TypeError(
                f"x_a must have the dtype/device of x_o ({x_o.dtype}, {x_o.device}), "
                f"got ({x_a.dtype}, {x_a.device})"
            )
        # x_a magnified in a call of its own (not concatenated with x_o): identical images, identical mags
        parts_o = (self.mag, self.sigma_x, self.sigma_omega)
        return _visibility_of_parts(parts_o, _magnify_parts(x_a, *self._opts)[0], flat_weighting)

    def select(self, index: int | slice | Sequence[int] | torch.Tensor) -> Magnifier:
        """The magnifier of some of the originals (an ``int`` gives a batch of one), nothing recomputed."""
        if isinstance(index, bool) or not isinstance(index, (int, slice, Sequence, torch.Tensor)):
            raise TypeError(f"index must be an int, a slice, a sequence of ints or a tensor, got {type(index).__name__}")
        if isinstance(index, int):
            if not -len(self) <= index < len(self):
                raise IndexError(f"index must be in [-{len(self)}, {len(self)}), got {index}")
            index = slice(index, index + 1 or None)
        parts = (self.mag[index], self.sigma_x[index], self.sigma_omega[index])
        return Magnifier._of_parts(self.x_o[index], self._opts, parts)

    @classmethod
    def cat(cls, magnifiers: Sequence[Magnifier]) -> Magnifier:
        """One magnifier of the originals of several (same options, dtype and device), in order."""
        items = list(magnifiers) if isinstance(magnifiers, Sequence) else []
        if not items or not all(isinstance(m, Magnifier) for m in items):
            raise TypeError(f"magnifiers must be a non-empty sequence of Magnifier, got {magnifiers!r:.80}")
        if any(m._opts != items[0]._opts for m in items):
            raise ValueError(f"magnifiers must share their options, got {[m.options for m in items]}")
        kinds = {(m.x_o.dtype, m.x_o.device) for m in items}
        if len(kinds) > 1:
            raise TypeError(f"magnifiers must share one dtype and device, got {sorted(map(str, kinds))}")
        parts = tuple(torch.cat([getattr(m, a) for m in items]) for a in ("mag", "sigma_x", "sigma_omega"))
        return cls._of_parts(torch.cat([m.x_o for m in items]), items[0]._opts, parts)


def _visibility_of_parts(
    parts_o: tuple[torch.Tensor, torch.Tensor, torch.Tensor], mag_a: torch.Tensor, flat_weighting: bool
) -> torch.Tensor:
    """:func:`visibility` from the parts of ``x_o`` (:func:`_magnify_parts`) and ``mag(x_a)`` (unchecked)."""
    mag_o, local_o, global_o = parts_o
    diff2 = (mag_a - mag_o).square()
    if flat_weighting:
        wgt = global_o / (local_o + global_o)  # both floored at eps: w in (0, 1], 1/2 if x_o constant
        return ((wgt * diff2).sum(dim=(1, 2, 3)) / wgt.sum(dim=(1, 2, 3))).sqrt()
    return diff2.mean(dim=(1, 2, 3)).sqrt()
