"""DDN, Decoupled Direction and Norm (Rony et al., CVPR 2019), and its smooth version sDDN.

A minimal-norm L2 attack (it targets optimality, like C&W, eq. 4, but with no constant to
search): a normalised gradient step on the cross-entropy sets the *direction* of the
perturbation, and its *norm* ``ε`` is adapted per image, shrunk by ``1 - γ`` while the current
iterate is adversarial and grown by ``1 + γ`` while it is not. The least-distorted adversarial
iterate is kept. For an affine model every step points along the normal of the boundary and ``ε``
brackets the boundary ever more tightly (a shrink and a growth multiply it by ``1 - γ²``), so DDN
settles within about ``γ²`` (0.25 %) of the minimal L2 adversarial in some tens of steps
(tests/test_minimal_norm.py: within 0.2 % after 50 steps, 0.05 % after 100), where C&W needs a
line search on its constant.

Smoothness is the ``smoother=`` option, as for C&W (eq. 18): the perturbation is
``r = ŝ_α(z)`` of a latent ``z`` (``z_0 = 0``), the step is taken in ``z`` along the adjoint
gradient (eq. 19), ``ε`` bounds ``||r||`` and ``x_a = c(x_o + r)``. This smooth version is ours
(the paper has no minimal-norm attack but C&W).
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

__all__ = ["ddn", "sddn"]


def ddn(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 100,
    gamma: float = 0.05,
    init_norm: float = 1.0,
    step: float = 1.0,
    step_final: float = 0.01,
    smoother: Any = None,
    quantise: bool = False,
    target: torch.Tensor | None = None,
) -> AttackResult:
    """Decoupled Direction and Norm attack [Rony et al. 2019], L2; with ``smoother``, sDDN.

    Iteration ``k`` (``δ_0 = 0``, ``ε_0 = init_norm``): at ``x_a = x_o + δ_k`` keep ``x_a`` if it
    is adversarial and the least distorted so far; ``δ ← δ_k + α_k g/||g||`` with ``g`` the
    gradient of the cross-entropy (descended towards ``target`` when given) and ``α_k`` the step,
    cosine-annealed from ``step`` to ``step_final``; ``ε ← (1 - γ) ε`` if ``x_a`` was adversarial,
    else ``(1 + γ) ε`` (capped at the largest distortion the box allows); ``δ_{k+1}`` is ``δ``
    rescaled to norm ``ε`` and clipped to the box.

    Parameters
    ----------
    model : callable
        Images ``(B, C, H, W)`` in ``[0, 1]`` to logits ``(B, k)``; put in eval mode for the
        attack and restored after; its parameters' gradients are not touched.
    x : torch.Tensor
        Original images ``x_o``, ``(B, C, H, W)`` in ``[0, 1]``.
    y : torch.Tensor
        True labels ``(B,)``.
    steps : int
        Iterations (100).
    gamma : float
        Factor ``γ ∈ (0, 1)`` of the norm update (0.05, as in the original).
    init_norm : float
        Initial norm ``ε_0 > 0`` (1).
    step, step_final : float
        L2 length of the first and of the last gradient step (1 and 0.01).
    smoother : None, "mnist", "imagenet", "imagenet-exact", Smoother, SmoothingSpec or callable
        ``None`` (default): none. Otherwise sDDN: the latent ``z`` of eq. (18), ``r = ŝ_α(z)``,
        ``x_a = c(x_o + r)``, ``ε`` bounds ``||r||`` (see :func:`~smoothlab.attacks.cw`).
    quantise : bool
        Return 8-bit adversarial images (multiples of 1/255), checked and refined where rounding
        undid the attack (see :func:`~smoothlab.attacks.quantise`); default ``False``.
    target : torch.Tensor, optional
        Target labels ``(B,)`` for a targeted attack.

    Returns
    -------
    AttackResult
        Attack ``"ddn"`` or ``"sddn"``; ``x_adv`` the least-distorted adversarial iterate (the
        original where none was); with a smoother ``extra["latent"]`` its ``z`` (zeros where the
        attack failed). A zero gradient leaves the direction unchanged.

    Examples
    --------
    >>> from smoothlab.attacks import ddn
    >>> from smoothlab.data import mnist
    >>> from smoothlab.models import c4
    >>> x, y = mnist("test")
    >>> x, y, model = x[:4], y[:4], c4(pretrained=True)
    >>> res = ddn(model, x, y, steps=50)
    >>> res.attack, res.forward_passes.tolist()  # input check, 50 steps, final prediction
    ('ddn', [52, 52, 52, 52])
    """
    with attack_run(model, x, y, target) as run:
        prep = run.prep
        x = prep.x
        steps = check_int(steps, "steps", minimum=1)
        gamma = check_range(gamma, "gamma", 0.0, 1.0, low_open=True, high_open=True)
        init_norm = check_range(init_norm, "init_norm", 0.0, None, low_open=True)
        step = check_range(step, "step", 0.0, None, low_open=True)
        step_final = check_range(step_final, "step_final", 0.0, None)
        quantise = check_quantise(quantise)
        S = run.resolve_smoother(smoother)
        P = Perturbation(x, S)
        best = Best(prep, smooth=S is not None)
        worst = l2(torch.maximum(x, 1.0 - x))  # the largest distortion the box allows
        eps = torch.full_like(worst, init_norm).minimum(worst)
        for k in range(steps):
            xa, logits, _, g = P.evaluate(model, prep, "cross-entropy")
            with torch.no_grad():
                adv = is_adversarial(logits.argmax(1), prep.labels, prep.targeted)
                best.update(adv, xa, x, P.v, P.r)
                u, _ = unit(g)
                P.step(u, cosine_schedule(k + 1, steps, step, step_final))
                eps = torch.where(adv, eps * (1.0 - gamma), eps * (1.0 + gamma)).minimum(worst)
                P.rescale(eps, ball=False)
        params = {"steps": steps, "gamma": gamma, "init_norm": init_norm, "step": step, "step_final": step_final}
        res = run.finish(best.x, steps, attack="ddn", norm="l2", params=params, quantise=quantise)
        res.extra.update(best.extra(res.success))
        return res


def sddn(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    smoother: Any = "mnist",
    **kwargs: Any,
) -> AttackResult:
    """sDDN: :func:`ddn` with a smoother, by default the paper's MNIST one (``SmoothingSpec.mnist()``).

    ``smoother`` accepts what :func:`ddn` accepts but ``None`` (a ``ValueError``: for no smoothing
    call :func:`ddn`). Other keyword arguments go to :func:`ddn`.

    Examples
    --------
    >>> import torch
    >>> from smoothlab.attacks import sddn
    >>> from smoothlab.smoothing import SmoothingSpec
    >>> from smoothlab.data import mnist
    >>> from smoothlab.models import c4
    >>> x, y = mnist("test")
    >>> x, y, model = x[:4], y[:4], c4(pretrained=True)
    >>> res = sddn(model, x, y, steps=50)
    >>> z = res.extra["latent"]                     # x_adv = clamp(x + ŝ_α(z), 0, 1), eq. (18)
    >>> S = SmoothingSpec.mnist()(x)
    >>> bool(torch.allclose((x + S(z)).clamp(0, 1)[res.success], res.x_adv[res.success], atol=1e-5))
    True
    """
    return ddn(model, x, y, smoother=required_smoother(smoother, "sddn"), **kwargs)
