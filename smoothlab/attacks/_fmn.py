"""FMN, Fast Minimum-Norm attack (Pintor et al., NeurIPS 2021), L2, and its smooth version sFMN.

A minimal-norm L2 attack: normalised gradient steps on the logit difference
``max_{i≠t} y_i - y_t`` (the loss (3) at ``m = 0``, without its ``[.]_+``) inside an L2 ball of
radius ``ε`` adapted per image. Before the first adversarial iterate ``ε`` is the current norm plus
the linearised distance to the boundary, ``|loss| / ||∇ loss||``; afterwards it shrinks by
``1 - γ`` (and never above the best norm found) while the iterate is adversarial and grows by
``1 + γ`` while it is not, with ``γ`` and the step cosine-annealed. For an affine model the first
estimate is exact and FMN lands next to the minimal L2 adversarial at once; the annealed ``γ``
then pins it within ``γ_final``.

Two deviations from the published algorithm, both measured (tests/test_minimal_norm.py and
``_minimal_norm``): (1) before the first adversarial iterate, ``ε`` is the estimate times
``1 + γ``. For an affine model the estimate is exact, so the published rule puts the iterate *on*
the boundary, where the two logits tie and ``argmax`` keeps the true class; it then stays there
(not adversarial, estimate 0) for every step, and the attack fails. (2) The gradient's components
that push a pixel at 0 or 1 out of the box are dropped (see ``_minimal_norm``).

Smoothness is the ``smoother=`` option, as for C&W (eq. 18) and :func:`~smoothlab.attacks.ddn`:
the perturbation is ``r = ŝ_α(z)`` of a latent ``z``, the step is taken in ``z`` along the adjoint
gradient (eq. 19) and ``ε`` bounds ``||r||``. The distance estimate is then measured along the
step's direction in the image, ``ŝ_α(u)`` for a unit step ``u`` in ``z`` (one more solve per
iteration), so that it stays exact for an affine model. This smooth version is ours.
"""

from __future__ import annotations

from typing import Any

import torch

from smoothlab._validation import check_int, check_range
from smoothlab.attacks._base import Model, l2
from smoothlab.attacks._common import attack_run, check_quantise
from smoothlab.attacks._losses import is_adversarial
from smoothlab.attacks._minimal_norm import Best, Perturbation, cosine_schedule, required_smoother, unit
from smoothlab.attacks._result import AttackResult

__all__ = ["fmn", "sfmn"]


def fmn(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 100,
    step: float = 1.0,
    step_final: float | None = None,
    gamma: float = 0.05,
    gamma_final: float = 0.001,
    smoother: Any = None,
    quantise: bool = False,
    target: torch.Tensor | None = None,
) -> AttackResult:
    """Fast Minimum-Norm attack [Pintor et al. 2021], L2; with ``smoother``, sFMN.

    Iteration ``k`` (``δ_0 = 0``): at ``x_a = x_o + δ_k``, keep ``x_a`` if it is adversarial and
    the least distorted so far; with ``ℓ`` the logit difference and ``g = ∇ℓ``,
    ``ε ← min((1 - γ_k) ε, best norm)`` if ``x_a`` is adversarial, else ``(1 + γ_k) ε`` once some
    iterate was, else ``(1 + γ_k)(||δ_k|| + |ℓ| / ||g||)``; then ``δ ← δ_k + α_k g/||g||``, projected onto the
    ball ``||δ|| <= ε`` and clipped to the box. ``α_k`` and ``γ_k`` are cosine-annealed from
    ``step`` to ``step_final`` and from ``gamma`` to ``gamma_final``.

    Parameters
    ----------
    model, x, y, target
        As in :func:`~smoothlab.attacks.ddn`.
    steps : int
        Iterations (100).
    step, step_final : float
        L2 length of the first and the last gradient step (1, and ``step / 100`` by default).
    gamma, gamma_final : float
        First and last factor ``γ ∈ (0, 1)`` of the norm update (0.05 and 0.001, as in the original).
    smoother : None, "mnist", "imagenet", "imagenet-exact", Smoother, SmoothingSpec or callable
        ``None`` (default): none. Otherwise sFMN (latent ``z`` of eq. 18, see :func:`ddn`).
    quantise : bool
        8-bit adversarial images, as in :func:`~smoothlab.attacks.ddn`.

    Returns
    -------
    AttackResult
        Attack ``"fmn"`` or ``"sfmn"``; ``x_adv`` the least-distorted adversarial iterate; with a
        smoother ``extra["latent"]`` its ``z``.

    Examples
    --------
    >>> from smoothlab.attacks import fmn
    >>> from smoothlab.data import mnist
    >>> from smoothlab.models import c4
    >>> x, y = mnist("test")
    >>> x, y, model = x[:4], y[:4], c4(pretrained=True)
    >>> res = fmn(model, x, y, steps=50)
    >>> res.attack, res.params["gamma_final"]
    ('fmn', 0.001)
    """
    with attack_run(model, x, y, target) as run:
        prep = run.prep
        x = prep.x
        steps = check_int(steps, "steps", minimum=1)
        step = check_range(step, "step", 0.0, None, low_open=True)
        step_final = step / 100.0 if step_final is None else check_range(step_final, "step_final", 0.0, None)
        gamma = check_range(gamma, "gamma", 0.0, 1.0, low_open=True, high_open=True)
        gamma_final = check_range(gamma_final, "gamma_final", 0.0, 1.0, high_open=True)
        quantise = check_quantise(quantise)
        S = run.resolve_smoother(smoother)
        P = Perturbation(x, S)
        best = Best(prep, smooth=S is not None)
        worst = l2(torch.maximum(x, 1.0 - x))  # the largest distortion the box allows
        eps = torch.full_like(worst, float("inf"))
        tiny = torch.finfo(x.dtype).tiny
        for k in range(steps):
            a = cosine_schedule(k, steps, step, step_final)
            gm = cosine_schedule(k, steps, gamma, gamma_final)
            xa, logits, loss, g = P.evaluate(model, prep, "logit-difference")
            with torch.no_grad():
                adv = is_adversarial(logits.argmax(1), prep.labels, prep.targeted)
                norm = l2(P.r)
                best.update(adv, xa, x, P.v, P.r)
                u, gn = unit(g)
                d = P.direction(u)  # the step's direction in the image (u itself when plain)
                distance = loss.abs() * l2(d) / gn.clamp_min(tiny)  # linearised, along d
                eps = torch.where(
                    adv,
                    torch.minimum(eps * (1.0 - gm), best.norm),
                    torch.where(best.found, eps * (1.0 + gm), (norm + distance) * (1.0 + gm)),
                ).minimum(worst)
                P.step(u, a, d)
                P.rescale(eps, ball=True)
        params = {"steps": steps, "step": step, "step_final": step_final, "gamma": gamma, "gamma_final": gamma_final}
        res = run.finish(best.x, steps, attack="fmn", norm="l2", params=params, quantise=quantise)
        res.extra.update(best.extra(res.success))
        return res


def sfmn(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    smoother: Any = "mnist",
    **kwargs: Any,
) -> AttackResult:
    """sFMN: :func:`fmn` with a smoother, by default the paper's MNIST one (``SmoothingSpec.mnist()``).

    ``smoother`` accepts what :func:`fmn` accepts but ``None`` (a ``ValueError``: for no smoothing
    call :func:`fmn`). Other keyword arguments go to :func:`fmn`.

    Examples
    --------
    >>> from smoothlab.attacks import sfmn
    >>> from smoothlab.data import mnist
    >>> from smoothlab.models import c4
    >>> x, y = mnist("test")
    >>> x, y, model = x[:4], y[:4], c4(pretrained=True)
    >>> res = sfmn(model, x, y, steps=50)
    >>> res.attack, res.params["smoother"]["alpha"]
    ('sfmn', 0.95)
    """
    return fmn(model, x, y, smoother=required_smoother(smoother, "sfmn"), **kwargs)
