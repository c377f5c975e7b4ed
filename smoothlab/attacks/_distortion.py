"""Attacks targeting a distortion (section 2.1): FGSM, I-FGSM (L∞) and PGD2 (L2 I-FGSM).

All follow the prototype of eqs. (10)-(11): ``g = ∇_x ℓ(f(x_a^(k)), t)`` and
``x_a^(k+1) = c(x_a^(k) + n(g))`` with a normalisation ``n`` and a clipping ``c`` that depend on
the attack. The classification loss ``ℓ`` is the ``loss=`` option: ``"cross-entropy"`` (default,
ascended for an untargeted attack, descended towards ``target`` otherwise), as in the cleverhans
implementations the paper used, or ``"margin"``, the loss (3) with margin ``m = 0``, descended
(its gradient vanishes once the image is adversarial, so the iterate stops moving there).

Smoothness (section 4.1) is the ``smoother=`` option. With the paper's "quick and dirty"
integration, eq. (12), the gradient is smoothed before it is normalised: ``n(ŝ_α(g))``.
``pgd2(..., smooth="perturbation")`` smooths the accumulated perturbation instead. Where the
gradient is taken is the ``grad_at=`` option of ``pgd2``: at the clipped iterate (default, eq. 11)
or at the unclipped ``x + η`` of cleverhans' iterative methods. The authors' sPGD2 loop (their
modified cleverhans BIM, DESIGN.md section 4) is ``smooth="perturbation", grad_at="unclipped",
projection="sphere"`` together; it is not eq. (12).

A zero gradient (a flat loss) leaves the image unchanged rather than dividing by zero.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from smoothlab._validation import check_choice, check_int
from smoothlab.attacks._base import Model, Prepared, eval_mode, l2, per_image, prepare
from smoothlab.attacks._common import attack_run, batch_param, check_quantise, smooth_attack_option
from smoothlab.attacks._losses import margin_loss
from smoothlab.attacks._result import AttackResult

__all__ = ["fgsm", "ifgsm", "pgd2", "spgd2", "loss_gradient", "LOSSES", "GRAD_AT"]

#: The classification losses the distortion-targeting attacks can ascend (the ``loss=`` option).
LOSSES: tuple[str, ...] = ("cross-entropy", "margin")
#: Where :func:`pgd2` takes the gradient (the ``grad_at=`` option).
GRAD_AT: tuple[str, ...] = ("clipped", "unclipped")


def _ascent_direction(model: Model, x_in: torch.Tensor, prep: Prepared, loss: str = "cross-entropy") -> torch.Tensor:
    """Gradient w.r.t. the input of the attacker's objective (to be ascended), per image.

    ``"cross-entropy"``: untargeted ``+CE(f(x), y)``, targeted ``-CE(f(x), target)``.
    ``"margin"``: ``-ℓ`` with ``ℓ`` the loss (3) at margin 0 (untargeted
    ``[y_t - max_{i≠t} y_i]_+``, targeted ``[max_{i≠u} y_i - y_u]_+``). Only the input gets a
    gradient (``torch.autograd.grad``), never the model's parameters.
    """
    with torch.enable_grad():
        xv = x_in.detach().requires_grad_(True)
        logits = model(xv)
        if loss == "margin":
            objective = -margin_loss(logits, prep.labels, 0.0, prep.targeted).sum()
        else:
            objective = F.cross_entropy(logits, prep.labels, reduction="sum")
            if prep.targeted:
                objective = -objective
        (g,) = torch.autograd.grad(objective, xv)
    return g


def _unit_l2(g: torch.Tensor) -> torch.Tensor:
    """``g / ||g||_2`` per image; an all-zero ``g`` stays zero (no 0/0)."""
    n = l2(g)
    tiny = torch.finfo(g.dtype).tiny
    scale = torch.where(n > tiny, 1.0 / n.clamp_min(tiny), torch.zeros_like(n))
    return g * per_image(scale)


def _sign(g: torch.Tensor) -> torch.Tensor:
    """``sign(g)`` that keeps NaN/Inf as NaN (``torch.sign(nan) = 0`` would hide a broken gradient)."""
    return torch.where(torch.isfinite(g), g.sign(), torch.full_like(g, float("nan")))


def _smooth(S: Any, v: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return S(v, check_finite=False)


def _loss_option(loss: str) -> dict[str, str]:
    """``params["loss"]``, shown only where it is not the default cross-entropy."""
    return {"loss": loss} if loss != "cross-entropy" else {}


def fgsm(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | torch.Tensor = 0.3,
    smoother: Any = None,
    loss: Literal["cross-entropy", "margin"] = "cross-entropy",
    quantise: bool = False,
    target: torch.Tensor | None = None,
) -> AttackResult:
    """Fast Gradient Sign Method [6]: ``x_a = clip_[0,1](x + ε · sign(g))`` (L∞ budget ``ε``).

    Parameters
    ----------
    model : callable
        Maps images ``(B, C, H, W)`` in ``[0, 1]`` to logits ``(B, k)``. Put in eval mode for the
        attack and restored afterwards; its parameters' gradients are not touched.
    x : torch.Tensor
        Original images ``x_o``, ``(B, C, H, W)`` in ``[0, 1]``.
    y : torch.Tensor
        True labels ``(B,)``.
    eps : float or torch.Tensor
        L∞ budget (paper, MNIST: 0.3), or a ``(B,)`` tensor of per-image budgets.
    smoother : None, "mnist", Smoother, SmoothingSpec or callable
        ``None`` (default): no smoothing. Otherwise the gradient is smoothed first,
        ``sign(ŝ_α(g))`` (eq. 12), attack ``"sfgsm"``: ``"mnist"`` is ``SmoothingSpec.mnist()``,
        a ``SmoothingSpec`` or callable ``x -> Smoother`` is built on ``x``, a ``Smoother`` must
        have been built on ``x``.
    loss : {"cross-entropy", "margin"}
        The loss whose gradient ``g`` is taken: the cross-entropy (default, as in cleverhans,
        which the paper used) or the margin loss (3) with ``m = 0`` (descended).
    quantise : bool
        Return 8-bit adversarial images (multiples of 1/255), checked and refined where rounding
        undid the attack (see :func:`~smoothlab.attacks.quantise`); default ``False``.
    target : torch.Tensor, optional
        Target labels ``(B,)`` for a targeted attack.

    Examples
    --------
    >>> from smoothlab.attacks import fgsm
    >>> from smoothlab.data import mnist
    >>> from smoothlab.models import c4
    >>> x, y = mnist("test")
    >>> x, y, model = x[:4], y[:4], c4(pretrained=True)
    >>> res = fgsm(model, x, y, eps=0.3)
    >>> res                                         # attack, N images, P_suc, D̄ (L2), parameters
    AttackResult(attack='fgsm', N=4, P_suc=..., D̄=..., eps=0.3, seconds=...)
    >>> float((res.x_adv - x).abs().max()) <= 0.3 + 1e-6   # the L∞ budget
    True
    """
    with attack_run(model, x, y, target) as run:
        prep = run.prep
        x = prep.x
        eps_t, eps_p = batch_param(eps, "eps", x)
        loss = check_choice(loss, "loss", LOSSES)
        quantise = check_quantise(quantise)
        S = run.resolve_smoother(smoother)
        g = _ascent_direction(model, x, prep, loss)
        if S is not None:
            g = _smooth(S, g)
        cand = (x + per_image(eps_t) * _sign(g)).clamp(0.0, 1.0)
        return run.finish(
            cand, 1, attack="fgsm", norm="linf", params={"eps": eps_p}, options=_loss_option(loss), quantise=quantise
        )


def ifgsm(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | torch.Tensor = 0.3,
    step: float | torch.Tensor = 0.08,
    iterations: int = 10,
    smoother: Any = None,
    loss: Literal["cross-entropy", "margin"] = "cross-entropy",
    quantise: bool = False,
    target: torch.Tensor | None = None,
) -> AttackResult:
    """Iterative FGSM [15] (L∞): ``x ← clip_[0,1](clip_{x_o ± ε}(x + step · sign(g)))``.

    Parameters
    ----------
    eps : float or torch.Tensor
        L∞ budget (paper, MNIST: 0.3), or ``(B,)`` per-image budgets.
    step : float or torch.Tensor
        Step size ``α`` of each iteration (paper: 0.08).
    iterations : int
        Number of iterations (10).
    smoother
        If given, ``sign(ŝ_α(g))`` (eq. 12); attack ``"sifgsm"``.
    loss : {"cross-entropy", "margin"}
        As in :func:`fgsm`.
    quantise : bool
        As in :func:`fgsm`.

    The other parameters are those of :func:`fgsm`. The last iterate is returned (where it is
    adversarial). The gradient is taken at the clipped iterate; taking it at the unclipped
    ``x + η`` as cleverhans does would change nothing here: its L∞ clipping of ``η`` keeps
    ``x + η`` in the box.

    Examples
    --------
    >>> from smoothlab.attacks import ifgsm
    >>> from smoothlab.data import mnist
    >>> from smoothlab.models import c4
    >>> x, y = mnist("test")
    >>> x, y, model = x[:4], y[:4], c4(pretrained=True)
    >>> res = ifgsm(model, x, y, eps=0.3, step=0.08, iterations=10)
    >>> res.attack, len(res), res.forward_passes.tolist()  # the input check, 10 iterations, the final prediction
    ('ifgsm', 4, [12, 12, 12, 12])
    >>> float((res.x_adv - x).abs().max()) <= 0.3 + 1e-6
    True
    """
    with attack_run(model, x, y, target) as run:
        prep = run.prep
        x = prep.x
        eps_t, eps_p = batch_param(eps, "eps", x)
        step_t, step_p = batch_param(step, "step", x)
        iterations = check_int(iterations, "iterations", minimum=1)
        loss = check_choice(loss, "loss", LOSSES)
        quantise = check_quantise(quantise)
        S = run.resolve_smoother(smoother)
        lo = (x - per_image(eps_t)).clamp_min(0.0)
        hi = (x + per_image(eps_t)).clamp_max(1.0)
        xa = x.clone()
        for _ in range(iterations):
            g = _ascent_direction(model, xa, prep, loss)
            if S is not None:
                g = _smooth(S, g)
            xa = torch.minimum(torch.maximum(xa + per_image(step_t) * _sign(g), lo), hi)
        params = {"eps": eps_p, "step": step_p, "iterations": iterations}
        return run.finish(
            xa, iterations, attack="ifgsm", norm="linf", params=params, options=_loss_option(loss), quantise=quantise
        )


def _project(r: torch.Tensor, eps: torch.Tensor, projection: str) -> torch.Tensor:
    """Onto the L2 ball of radius ``eps`` per image, or rescaled onto its sphere."""
    n = l2(r)
    tiny = torch.finfo(r.dtype).tiny
    if projection == "ball":
        scale = torch.where(n > eps, eps / n.clamp_min(tiny), torch.ones_like(n))
    else:
        scale = torch.where(n > tiny, eps / n.clamp_min(tiny), torch.ones_like(n))
    return r * per_image(scale)


def pgd2(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | torch.Tensor = 5.0,
    step: float | torch.Tensor = 3.0,
    iterations: int = 10,
    projection: Literal["ball", "sphere"] = "ball",
    smoother: Any = None,
    smooth: Literal["gradient", "perturbation"] = "gradient",
    grad_at: Literal["clipped", "unclipped"] = "clipped",
    loss: Literal["cross-entropy", "margin"] = "cross-entropy",
    quantise: bool = False,
    target: torch.Tensor | None = None,
) -> AttackResult:
    """PGD2, the L2 version of I-FGSM [26]; with ``smoother``, sPGD2 (section 4.1, eq. 12).

    Each iteration (defaults): ``g`` at ``x_a``, ``u = g / ||g||`` (``ŝ_α(g) / ||ŝ_α(g)||`` with a
    smoother, eq. 12), the perturbation ``r ← P(r + step · u)`` with ``P`` the projection onto the
    L2 ball of radius ``ε``, then ``x_a = clip_[0,1](x_o + r)`` and ``r ← x_a - x_o``.

    The authors' sPGD2 loop (DESIGN.md section 4) is
    ``smooth="perturbation", grad_at="unclipped", projection="sphere"``: ``g`` at the unclipped
    ``x_o + η``, ``η ← P(ŝ_α(clip_[0,1](x_o + η + step · g/||g||) - x_o))``, ``η`` never clipped
    again, ``x_a = clip_[0,1](x_o + η)`` at the end. Eq. (12) stays the default: it is what the
    paper defines.

    Parameters
    ----------
    eps : float or torch.Tensor
        L2 budget (paper, MNIST: 5), or a ``(B,)`` tensor of per-image budgets (several budgets
        stacked in one batch).
    step : float or torch.Tensor
        L2 length of each step (paper: 3).
    iterations : int
        Number of iterations (10).
    projection : {"ball", "sphere"}
        ``"ball"``: Euclidean projection onto ``||r|| <= ε`` (default). ``"sphere"``: the
        authors' code, which rescales ``r`` onto ``||r|| = ε`` at every iteration.
    smoother : None, "mnist", Smoother, SmoothingSpec or callable
        Smoothing guided by ``x`` (attack ``"spgd2"``); ``None`` (default): none. See :func:`fgsm`.
    smooth : {"gradient", "perturbation"}
        With a smoother: smooth the gradient before normalising (eq. 12, the paper; default), or
        smooth the accumulated perturbation after each step, ``r ← P(ŝ_α(r + step · g/||g||))``
        (with ``grad_at="unclipped"`` and ``projection="sphere"``, the authors' loop).
    grad_at : {"clipped", "unclipped"}
        ``"clipped"`` (default, eq. 11): the state is the clipped iterate
        ``x_a = clip_[0,1](x_o + P(r + step · u))`` and ``g`` is taken there. ``"unclipped"``
        (cleverhans' iterative methods, which the authors modified): each step is clipped,
        ``η ← P(clip_[0,1](x_o + η + step · u) - x_o)`` (smoothed before ``P`` with
        ``smooth="perturbation"``), ``η`` is not clipped again and ``g`` is taken at ``x_o + η``,
        which may leave ``[0, 1]``; ``x_a = clip_[0,1](x_o + η)``. So the two also clip in
        different places: eq. (11) projects then clips, cleverhans clips the step then projects.
        With the ball projection and no perturbation smoothing ``x_o + η`` stays in the box (``P``
        only shrinks ``η``) and only that order differs.
    loss : {"cross-entropy", "margin"}
        The loss whose gradient is taken: cross-entropy (default, cleverhans) or the margin loss
        (3) with ``m = 0`` (see :func:`fgsm`).
    quantise : bool
        Return 8-bit adversarial images (multiples of 1/255), checked and refined where rounding
        undid the attack (see :func:`~smoothlab.attacks.quantise`); default ``False``.
    target : torch.Tensor, optional
        Target labels for a targeted attack.

    The last iterate is returned (where it is adversarial). A zero gradient leaves the image
    unchanged.

    Examples
    --------
    Several budgets in one call: a ``(B,)`` tensor of ``eps``, one per image.

    >>> import torch
    >>> from smoothlab.attacks import pgd2
    >>> from smoothlab.data import mnist
    >>> from smoothlab.models import c4
    >>> x, y = mnist("test")
    >>> x, y, model = x[:4], y[:4], c4(pretrained=True)
    >>> eps = torch.tensor([1.0, 2.0, 3.0, 5.0])
    >>> res = pgd2(model, x, y, eps=eps)
    >>> bool((res.distortion <= eps + 1e-4).all())  # within each image's L2 budget
    True
    >>> res.params["eps"], res.params["smoother"]
    ([1.0, 2.0, 3.0, 5.0], None)
    """
    with attack_run(model, x, y, target) as run:
        prep = run.prep
        x = prep.x
        eps_t, eps_p = batch_param(eps, "eps", x)
        step_t, step_p = batch_param(step, "step", x)
        iterations = check_int(iterations, "iterations", minimum=1)
        projection = check_choice(projection, "projection", ("ball", "sphere"))
        smooth = check_choice(smooth, "smooth", ("gradient", "perturbation"))
        grad_at = check_choice(grad_at, "grad_at", GRAD_AT)
        loss = check_choice(loss, "loss", LOSSES)
        quantise = check_quantise(quantise)
        S = run.resolve_smoother(smoother)
        r = torch.zeros_like(x)
        xa = x  # the point where the gradient is taken
        for _ in range(iterations):
            g = _ascent_direction(model, xa, prep, loss)
            if S is not None and smooth == "gradient":
                g = _smooth(S, g)  # eq. (12)
            r = r + per_image(step_t) * _unit_l2(g)
            if grad_at == "unclipped":
                r = (x + r).clamp(0.0, 1.0) - x  # cleverhans: the FGM step is clipped ...
            if S is not None and smooth == "perturbation":
                r = _smooth(S, r)
            r = _project(r, eps_t, projection)
            if grad_at == "clipped":
                xa = (x + r).clamp(0.0, 1.0)
                r = xa - x  # the perturbation actually applied
            else:
                xa = x + r  # ... but η is not clipped again: x + η may leave [0, 1]
        xa = xa.clamp(0.0, 1.0)  # only the final image is clipped (a no-op for "clipped")
        params = {"eps": eps_p, "step": step_p, "iterations": iterations, "projection": projection}
        options: dict[str, Any] = {"smooth": smooth} if S is not None else {}
        if grad_at != "clipped":
            options["grad_at"] = grad_at
        options.update(_loss_option(loss))
        return run.finish(xa, iterations, attack="pgd2", norm="l2", params=params, options=options, quantise=quantise)


def spgd2(model: Model, x: torch.Tensor, y: torch.Tensor, *, smoother: Any = "mnist", **kwargs: Any) -> AttackResult:
    """sPGD2 (section 4.1, eq. 12): :func:`pgd2` smoothing the gradient, as :func:`scw` smooths :func:`cw`.

    The same ``smoother=`` (default ``"mnist"``, never ``None``: that is :func:`pgd2`); other keyword
    arguments go to :func:`pgd2`. The authors' loop instead of eq. (12) is
    ``spgd2(..., smooth="perturbation", grad_at="unclipped", projection="sphere")`` (the bench attack
    ``"spgd2-authors"``).

    Examples
    --------
    >>> from smoothlab.attacks import spgd2
    >>> from smoothlab.data import mnist
    >>> from smoothlab.models import c4
    >>> x, y = mnist("test")
    >>> x, y, model = x[:4], y[:4], c4(pretrained=True)
    >>> res = spgd2(model, x, y, eps=5.0)            # smoother="mnist": the paper's MNIST smoothing
    >>> res.attack, res.params["smoother"]["alpha"], res.params["smoother"]["lam"]
    ('spgd2', 0.95, 10.0)
    """
    return pgd2(model, x, y, smoother=smooth_attack_option(smoother, "spgd2"), **kwargs)


def loss_gradient(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: Literal["cross-entropy", "margin"] = "cross-entropy",
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """The gradient ``g`` that FGSM, I-FGSM and PGD2 follow (eqs. 10-11), and sPGD2 smooths (eq. 12).

    The gradient, with respect to the input only, of the objective the attacks that target a
    distortion *ascend*: the cross-entropy of the true class (``loss="cross-entropy"``, the
    default of :func:`fgsm`, :func:`ifgsm` and :func:`pgd2`), or minus the margin loss (3) at
    ``m = 0`` (``loss="margin"``). Targeted (``target`` given): minus the cross-entropy of the
    target, or minus the targeted margin loss. It is exactly what an attack step starting from
    ``x`` uses, so ``ŝ_α(g)`` is the direction of a first sPGD2 step.

    Parameters
    ----------
    model : callable
        Images ``(B, C, H, W)`` in ``[0, 1]`` -> logits ``(B, k)``; put in eval mode for the call.
    x : torch.Tensor
        Images ``(B, C, H, W)`` in ``[0, 1]``.
    y : torch.Tensor
        True labels ``(B,)``.
    loss : {"cross-entropy", "margin"}
        The loss (the ``loss=`` option of the attacks, :data:`LOSSES`).
    target : torch.Tensor, optional
        Target labels ``(B,)`` for a targeted attack.

    Returns
    -------
    torch.Tensor
        ``g``, shape of ``x``, detached.

    Examples
    --------
    >>> import torch
    >>> from smoothlab.attacks import loss_gradient
    >>> from smoothlab.data import mnist
    >>> from smoothlab.models import c4
    >>> x, y = mnist("test")
    >>> g = loss_gradient(c4(pretrained=True), x[:4], y[:4])
    >>> g.shape, bool(g.abs().sum() > 0)
    (torch.Size([4, 1, 28, 28]), True)
    """
    loss = check_choice(loss, "loss", LOSSES)
    with eval_mode(model):
        prep = prepare(model, x, y, target)
        return _ascent_direction(model, prep.x, prep, loss).detach()
