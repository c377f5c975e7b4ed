"""C&W-L2 (section 2.1, eqs. 3-4) and its smooth version sC&W (section 4.2, eq. 18).

C&W [1] minimises, per image, ``J(w, λ) = λ ||σ(w) - x_o||² + ℓ(f(σ(w)), t)`` (eq. 4) with Adam,
where ``σ`` is the element-wise sigmoid (the change of variable that removes the box
constraint) and ``ℓ`` is the margin loss of eq. (3). sC&W minimises over a latent ``z``
``λ ||ŝ_α(z)||² + ℓ(f(c(x_o + ŝ_α(z))), t)`` (eq. 18) with ``c(x) = min([x]_+, 1)`` and
``z_0 = 0``: every iterate of the perturbation ``r = ŝ_α(z)`` is smooth like ``x_o``.

Both keep, per image, the successful iterate with the least distortion seen at any
iteration of any line-search step; the constant ``c = 1/λ`` is searched per image by bisection
over ``search_steps`` restarts. Everything per image (constants, bounds, best distortion, abort
flags, Adam moments) is a tensor; images whose loss stopped decreasing are dropped from the
batch (and from the smoother) at the next check, so that they stop costing passes, with one
host synchronisation per check and none in between.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from smoothlab._validation import check_choice, check_int, check_range
from smoothlab.attacks._common import (
    mnist_smoothing_if_none,
    AttackResult,
    Model,
    batch_param,
    describe_smoother,
    eval_mode,
    finish,
    is_adversarial,
    margin_loss,
    per_image,
    prepare,
    sync_time,
)

__all__ = ["cw", "scw"]

# C&W starts from w_0 = σ^-1(clamp(x_o, δ, 1 - δ)). Pixels at exactly 0 or 1 (most of an MNIST
# digit) sit where σ is flat: Adam moves w by about η per iteration, so from σ^-1(δ) a pixel
# needs (ln(1/δ) - 3)/η iterations before it can change by a few percent. With Carlini's
# δ ≈ 1e-6 that is ~110 iterations at η = 0.1, more than the paper's 100 (and an early abort
# sees a plateau): such pixels are stuck. δ = 1e-3 frees them in ~40 iterations for a start
# offset of at most δ per pixel (0.03 in L2 on MNIST), which is measured in the distortion.
_BOX_DELTA = 1e-3
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_ABORT_FACTOR = 0.9999  # abort when loss > 0.9999 x loss at the previous check (as in [1])


def cw(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    c: float | torch.Tensor = 15.0,
    margin: float = 1.0,
    lr: float = 0.1,
    iterations: int = 100,
    search_steps: int = 1,
    abort_early: bool = True,
    smoother: Any = None,
    penalty: Literal["squared", "l2"] = "squared",
    target: torch.Tensor | None = None,
) -> AttackResult:
    """Carlini & Wagner L2 attack [1] (eq. 4); with ``smoother``, sC&W (eq. 18).

    Parameters
    ----------
    model : callable
        Images ``(B, C, H, W)`` in ``[0, 1]`` to logits ``(B, k)``; put in eval mode for the
        attack and restored after; its parameters' gradients are not touched.
    x : torch.Tensor
        Original images ``x_o``, ``(B, C, H, W)`` in ``[0, 1]``.
    y : torch.Tensor
        True labels ``(B,)``.
    c : float or torch.Tensor
        Initial constant ``c = 1/λ`` (paper, MNIST: 15), or ``(B,)`` per-image constants.
    margin : float
        Margin ``m >= 0`` of the loss (3) (paper, MNIST: 1).
    lr : float
        Adam learning rate ``η`` (0.1).
    iterations : int
        Adam iterations per line-search step (100).
    search_steps : int
        Line-search steps on ``c``, per image: after a step where some iterate succeeded the
        upper bound becomes ``c``, otherwise the lower bound does; the next ``c`` is the midpoint,
        or ``10 c`` while no upper bound is known. Each step restarts from ``x_o``.
    abort_early : bool
        Check every ``iterations // 10`` iterations and stop an image whose loss is above
        0.9999 times its loss at the previous check.
    smoother : None, Smoother, SmoothingSpec or callable
        Smoothing guided by ``x``: sC&W (eq. 18) optimises a latent ``z``, ``z_0 = 0``, with
        ``x_a = c(x_o + ŝ_α(z))``; attack ``"scw"``.
    penalty : {"squared", "l2"}
        Distortion penalty ``λ ||r||²`` (paper, eqs. 4 and 18) or ``λ ||r||`` (the authors' sC&W
        code). ``r = σ(w) - x_o`` for C&W, ``r = ŝ_α(z)`` for sC&W.
    target : torch.Tensor, optional
        Target labels for a targeted attack (loss (3) towards the target).

    Returns
    -------
    AttackResult
        ``x_adv`` is the least-distorted successful iterate; ``extra["c"]`` the constant of the
        step that found it (NaN where none did); with a smoother ``extra["latent"]`` its ``z``
        (zeros where none), so that ``x_adv = clamp(x + ŝ_α(z), 0, 1)`` where the attack
        succeeded.
    """
    t0 = sync_time(x) if isinstance(x, torch.Tensor) else 0.0
    with eval_mode(model):
        prep = prepare(model, x, y, target)
        x = prep.x
        const, c_p = batch_param(c, "c", x, positive=True)
        margin = check_range(margin, "margin", 0.0, None)
        lr = check_range(lr, "lr", 0.0, None, low_open=True)
        iterations = check_int(iterations, "iterations", minimum=1)
        search_steps = check_int(search_steps, "search_steps", minimum=1)
        if not isinstance(abort_early, bool):
            raise TypeError(f"abort_early must be a bool, got {abort_early!r}")
        penalty = check_choice(penalty, "penalty", ("squared", "l2"))
        S = None
        if smoother is not None:
            from smoothlab.smoothing import resolve_smoother

            S = resolve_smoother(smoother, x)

        b = x.shape[0]
        dev, dt = x.device, x.dtype
        labels, targeted = prep.labels, prep.targeted
        lower = torch.zeros(b, dtype=dt, device=dev)
        upper = torch.full((b,), math.inf, dtype=dt, device=dev)
        # x_o itself (already checked by the input forward pass) is the first candidate: an image
        # that is adversarial from the start keeps distortion 0
        best_d2 = torch.where(is_adversarial(prep.pred_clean, labels, targeted), 0.0, math.inf).to(dt)
        best_x = x.clone()
        best_c = torch.full((b,), math.nan, dtype=dt, device=dev)
        best_z = torch.zeros_like(x) if S is not None else None
        iters_run = torch.zeros(b, dtype=torch.long, device=dev)
        w0 = torch.logit(x.clamp(_BOX_DELTA, 1.0 - _BOX_DELTA)) if S is None else None
        check_every = max(1, iterations // 10)
        b1, b2 = _ADAM_BETAS
        tiny = torch.finfo(dt).tiny

        for _step in range(search_steps):
            found = torch.zeros(b, dtype=torch.bool, device=dev)
            idx = torch.arange(b, device=dev)  # global index of each active image
            xo, lab, cst, S_a = x, labels, const, S
            var = w0.clone() if w0 is not None else torch.zeros_like(x)  # w_0 = σ^-1(x_o), z_0 = 0
            m1 = torch.zeros_like(var)
            m2 = torch.zeros_like(var)
            prev = const.new_full((b,), math.inf)
            last = 0
            for it in range(iterations):
                with torch.enable_grad():
                    v = var.requires_grad_(True)
                    if S_a is None:
                        xa = torch.sigmoid(v)
                        r = xa - xo
                    else:
                        r = S_a(v, check_finite=False)  # r = ŝ_α(z), eq. (17)
                        xa = (xo + r).clamp(0.0, 1.0)  # c(x_o + r), section 4.2
                    logits = model(xa)
                    sq = r.flatten(1).pow(2).sum(1)
                    pen = sq if penalty == "squared" else sq.clamp_min(tiny).sqrt()
                    loss = margin_loss(logits, lab, margin, targeted) + pen / cst  # eq. (4) / (18)
                    (grad,) = torch.autograd.grad(loss.sum(), v)
                with torch.no_grad():
                    var = var.detach()
                    xa = xa.detach()
                    # keep the least-distorted success among all iterates
                    succ = is_adversarial(logits.argmax(1), lab, targeted)
                    d2 = (xa - xo).flatten(1).pow(2).sum(1)
                    better = succ & (d2 < best_d2[idx])
                    best_d2[idx] = torch.where(better, d2, best_d2[idx])
                    best_x[idx] = torch.where(per_image(better), xa, best_x[idx])
                    best_c[idx] = torch.where(better, cst, best_c[idx])
                    if best_z is not None:
                        best_z[idx] = torch.where(per_image(better), var, best_z[idx])
                    found[idx] |= succ
                    # Adam, element-wise on the per-image variables
                    t = it + 1
                    m1.mul_(b1).add_(grad, alpha=1.0 - b1)
                    m2.mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
                    denom = (m2 / (1.0 - b2**t)).sqrt_().add_(_ADAM_EPS)
                    var.addcdiv_(m1, denom, value=-lr / (1.0 - b1**t))
                if abort_early and it % check_every == 0 and it + 1 < iterations:
                    cur = loss.detach()  # the loss at iterate ``it``
                    if it == 0:  # nothing to compare with yet
                        prev = cur
                        continue
                    keep = cur <= prev * _ABORT_FACTOR
                    prev = cur
                    iters_run[idx] += it + 1 - last
                    last = it + 1
                    kept = keep.nonzero().squeeze(1)  # the one host sync of this check
                    if kept.numel() < idx.numel():
                        if kept.numel() == 0:
                            idx = idx[:0]
                            break
                        idx, xo, lab, cst, prev = idx[kept], xo[kept], lab[kept], cst[kept], prev[kept]
                        var, m1, m2 = var[kept], m1[kept], m2[kept]
                        if S_a is not None:
                            S_a = S_a[kept]
            iters_run[idx] += iterations - last
            # per-image bisection on c
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            const = torch.where(torch.isfinite(upper), (lower + upper) / 2, const * 10)

        cand = torch.where(per_image(torch.isfinite(best_d2)), best_x, x)
        fwd = 1 + iters_run
        bwd = iters_run.clone()
        params: dict[str, Any] = {
            "c": c_p,
            "margin": margin,
            "lr": lr,
            "iterations": iterations,
            "search_steps": search_steps,
            "abort_early": abort_early,
            "penalty": penalty,
            "norm": "l2",
            "smoother": describe_smoother(smoother),
        }
        extra: dict[str, Any] = {"c": best_c}
        if best_z is not None:
            extra["latent"] = best_z
        res = finish(
            model, prep, cand, fwd, bwd, attack="scw" if S is not None else "cw", params=params, t0=t0, extra=extra
        )
        kept_best = res.success & torch.isfinite(best_d2)
        res.extra["c"] = torch.where(kept_best, best_c, math.nan)
        if best_z is not None:
            res.extra["latent"] = torch.where(per_image(kept_best), best_z, 0.0)
        return res


def scw(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    smoother: Any = None,
    **kwargs: Any,
) -> AttackResult:
    """sC&W (section 4.2, eq. 18): :func:`cw` with a smoother, by default ``SmoothingSpec.mnist()``.

    ``smoother=None`` here means the default MNIST smoothing (Laplacian kernel, ``λ = 10``,
    ``α = 0.95``), never "no smoothing". Other keyword arguments go to :func:`cw`.
    """
    return cw(model, x, y, smoother=mnist_smoothing_if_none(smoother), **kwargs)
