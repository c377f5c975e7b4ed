"""C&W-L2 (section 2.1, eqs. 3-4) and its smooth version sC&W (section 4.2, eq. 18).

C&W [1] minimises, per image, ``J(w, λ) = λ ||σ(w) - x_o||² + ℓ(f(σ(w)), t)`` (eq. 4) with Adam,
where ``σ`` is the element-wise sigmoid (the change of variable that removes the box
constraint) and ``ℓ`` is the margin loss of eq. (3). sC&W minimises over a latent ``z``
``λ ||ŝ_α(z)||² + ℓ(f(c(x_o + ŝ_α(z))), t)`` (eq. 18) with ``c(x) = min([x]_+, 1)`` and
``z_0 = 0``: every iterate of the perturbation ``r = ŝ_α(z)`` is smooth like ``x_o``.

Both keep, per image, the successful iterate with the least distortion seen at any
iteration of any line-search step, where, as in [1], an iterate succeeds only when it is
adversarial by the margin ``m`` of eq. (3) (logit gap at least ``m``); the constant ``c = 1/λ`` is searched per image by bisection
over ``search_steps`` restarts. Everything per image (constants, bounds, best distortion, abort
flags, Adam moments) is a tensor; images whose loss stopped decreasing are dropped from the
batch (and from the smoother) at the next check, so that they stop costing passes, with one
host synchronisation per check and none in between.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import torch

from smoothlab._validation import check_choice, check_int, check_range
from smoothlab.attacks._base import Model, Prepared, per_image
from smoothlab.attacks._common import AttackRun, attack_run, batch_param, smooth_attack_option
from smoothlab.attacks._losses import is_adversarial, logit_difference, margin_loss
from smoothlab.attacks._result import AttackResult

__all__ = ["FirstSuccessAbortWarning", "cw", "scw"]

# Step parity: ``lr`` is in pixel units for both attacks. sC&W's variable z is in pixel units and
# ŝ_α averages (its rows are non-negative and sum to 1), so a step of η on z moves no pixel of r by
# more than η. C&W's variable w moves x = σ(w) by σ'(w) ≤ 1/4 per unit, so its Adam runs with step
# 4η: then no pixel moves by more than η either (Adam is invariant to the gradient's scale, so this
# is Adam on w/4 with x = σ(4·w/4)). The authors' code has the same parity: cleverhans' tanh variable
# on their [-1, 1] box moves a pixel by at most η, as their sC&W's z does.
_VARIABLE_STEP = {"cw": 4.0, "scw": 1.0}
# C&W starts from w_0 = σ^-1(clamp(x_o, δ, 1 - δ)). Pixels at exactly 0 or 1 (most of an MNIST
# digit) sit where σ is flat: Adam moves w by about 4η per iteration, so from σ^-1(δ) a pixel
# needs (ln(1/δ) - 3)/(4η) iterations before it can change by a few percent. With Carlini's
# δ ≈ 1e-6 that is ~27 iterations at η = 0.1, ~110 at η = 0.025; δ = 1e-3 frees them ~2.5x sooner
# for a start offset of at most δ per pixel (0.03 in L2 on MNIST), which is measured in the distortion.
_BOX_DELTA = 1e-3
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_ABORT_FACTOR = 0.9999  # abort when loss > 0.9999 x loss at the previous check (as in [1])
# A first step of lr moves a pixel by up to lr: at 0.5 or more, one step can take a mid-grey
# pixel to the edge of the box [0, 1]
_SATURATING_LR = 0.5


class FirstSuccessAbortWarning(RuntimeWarning):
    """The early abort stopped images at the first check after their first success (see :func:`cw`)."""


@dataclass(frozen=True)
class _Settings:
    """The checked hyper-parameters of one :func:`cw` call."""

    margin: float
    lr: float
    iterations: int
    search_steps: int
    abort_early: bool
    penalty: str
    targeted: bool
    tiny: float  # smallest positive float of the images' dtype (the "l2" penalty's floor)
    variable_step: float  # Adam's step on the variable per unit of lr (step parity, _VARIABLE_STEP)

    @property
    def check_every(self) -> int:
        """Iterations between two early-abort checks."""
        return max(1, self.iterations // 10)


def _check_settings(
    prep: Prepared, margin: Any, lr: Any, iterations: Any, search_steps: Any, abort_early: Any, penalty: Any,
    smoothed: bool,
) -> _Settings:
    margin = check_range(margin, "margin", 0.0, None)
    lr = check_range(lr, "lr", 0.0, None, low_open=True)
    iterations = check_int(iterations, "iterations", minimum=1)
    search_steps = check_int(search_steps, "search_steps", minimum=1)
    if not isinstance(abort_early, bool):
        raise TypeError(f"abort_early must be a bool, got {abort_early!r}")
    penalty = check_choice(penalty, "penalty", ("squared", "l2"))
    tiny = torch.finfo(prep.x.dtype).tiny
    if lr >= _SATURATING_LR:
        warnings.warn(
            f"lr={lr:g} is a pixel step: the first Adam step can move a pixel by up to {lr:g}, which takes a mid-grey "
            f"pixel to the edge of the box [0, 1]; the paper's settings use 0.1 on MNIST and 0.005 on ImageNet "
            f"(smoothlab.attacks.paper_settings)",
            RuntimeWarning,
            stacklevel=4,
        )
    step = _VARIABLE_STEP["scw" if smoothed else "cw"]
    return _Settings(margin, lr, iterations, search_steps, abort_early, penalty, prep.targeted, tiny, step)


class _Best:
    """The least-distorted successful iterate of each image, over every iteration and search step."""

    def __init__(self, prep: Prepared, smoothed: bool) -> None:
        x = prep.x
        b, dt = x.shape[0], x.dtype
        # x_o itself (already checked by the input forward pass) is the first candidate: an image
        # that is adversarial from the start keeps distortion 0
        self.d2 = torch.where(is_adversarial(prep.pred_clean, prep.labels, prep.targeted), 0.0, math.inf).to(dt)
        self.x = x.clone()  # stays x_o where no iterate succeeds
        self.c = torch.full((b,), math.nan, dtype=dt, device=x.device)
        self.z = torch.zeros_like(x) if smoothed else None
        self.step = torch.full((b,), -1, dtype=torch.long, device=x.device)  # search step of the best iterate
        self.trapped = torch.zeros(b, dtype=torch.bool, device=x.device)  # see _optimise

    def update(self, idx: torch.Tensor, succ: torch.Tensor, d2: torch.Tensor, xa: torch.Tensor, active: "_Active",
               step: int) -> None:
        """Keep the iterates ``xa`` (images ``idx``) that succeed with a smaller distortion ``d2``."""
        better = succ & (d2 < self.d2[idx])
        self.d2[idx] = torch.where(better, d2, self.d2[idx])
        self.step[idx] = torch.where(better, step, self.step[idx])
        self.x[idx] = torch.where(per_image(better), xa, self.x[idx])
        self.c[idx] = torch.where(better, active.cst, self.c[idx])
        if self.z is not None:
            self.z[idx] = torch.where(per_image(better), active.var, self.z[idx])


class _Active:
    """The images still optimised in one search step and their Adam state; stalled ones are dropped."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor, const: torch.Tensor, S: Any, w0: torch.Tensor | None) -> None:
        self.idx = torch.arange(x.shape[0], device=x.device)  # global index of each active image
        self.xo, self.lab, self.cst, self.S = x, labels, const, S
        self.var = w0.clone() if w0 is not None else torch.zeros_like(x)  # w_0 = σ^-1(x_o), z_0 = 0
        self.m1 = torch.zeros_like(self.var)
        self.m2 = torch.zeros_like(self.var)
        self.prev = const.new_full((x.shape[0],), math.inf)  # the loss at the previous check
        # iteration of the image's first successful iterate in this step (-1: none yet)
        self.first = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)

    def drop_stalled(self, cur: torch.Tensor, since: int, trapped: torch.Tensor) -> bool:
        """Early abort: keep the images whose loss ``cur`` fell below 0.9999 x the previous check's.
        A dropped image whose first success in this step came after the previous check (iteration
        ``since``) is marked in ``trapped`` (global indices): the abort stopped it at the first check
        after its first success, before a whole check interval could refine it.

        Returns False when none is left.
        """
        keep = cur <= self.prev * _ABORT_FACTOR
        trapped[self.idx] = ~keep & (self.first > since)
        self.prev = cur
        kept = keep.nonzero().squeeze(1)  # the one host sync of this check
        if kept.numel() < self.idx.numel():
            if kept.numel() == 0:
                self.idx = self.idx[:0]
                return False
            self.idx, self.xo, self.lab, self.cst, self.prev, self.first = (
                self.idx[kept], self.xo[kept], self.lab[kept], self.cst[kept], self.prev[kept], self.first[kept]
            )
            self.var, self.m1, self.m2 = self.var[kept], self.m1[kept], self.m2[kept]
            if self.S is not None:
                self.S = self.S[kept]
        return True


class _Trace:
    """Per-iteration values of every image (``trace=True``): ``(search_steps, iterations, B)`` tensors."""

    def __init__(self, x: torch.Tensor, cfg: _Settings) -> None:
        shape = (cfg.search_steps, cfg.iterations, x.shape[0])
        nan = torch.full(shape, math.nan, dtype=x.dtype, device=x.device)
        self.values = {"objective": nan, "loss": nan.clone(), "distortion": nan.clone(), "c": nan.clone()}
        self.success = torch.zeros(shape, dtype=torch.bool, device=x.device)

    def record(self, step: int, it: int, act: _Active, objective: torch.Tensor, logits: torch.Tensor, d2: torch.Tensor,
               succ: torch.Tensor, cfg: _Settings) -> None:
        loss = margin_loss(logits, act.lab, cfg.margin, cfg.targeted)
        for name, value in (("objective", objective), ("loss", loss), ("distortion", d2.sqrt()), ("c", act.cst)):
            self.values[name][step, it, act.idx] = value.detach().to(self.values[name].dtype)
        self.success[step, it, act.idx] = succ

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {**self.values, "success": self.success}


def _loss_and_gradient(model: Model, act: _Active, cfg: _Settings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss of eq. (4) (C&W, ``r = σ(w) - x_o``) or eq. (18) (sC&W, ``r = ŝ_α(z)``) per image and
    its gradient w.r.t. the variable; returns ``(loss, logits, x_a, gradient)``."""
    with torch.enable_grad():
        v = act.var.requires_grad_(True)
        if act.S is None:
            xa = torch.sigmoid(v)
            r = xa - act.xo
        else:
            r = act.S(v, check_finite=False)  # r = ŝ_α(z), eq. (17)
            xa = (act.xo + r).clamp(0.0, 1.0)  # c(x_o + r), section 4.2
        logits = model(xa)
        sq = r.flatten(1).pow(2).sum(1)
        pen = sq if cfg.penalty == "squared" else sq.clamp_min(cfg.tiny).sqrt()
        loss = margin_loss(logits, act.lab, cfg.margin, cfg.targeted) + pen / act.cst  # eq. (4) / (18)
        (grad,) = torch.autograd.grad(loss.sum(), v)
    act.var = act.var.detach()
    return loss, logits, xa.detach(), grad


def _adam_update(act: _Active, grad: torch.Tensor, t: int, lr: float) -> None:
    """One Adam step (iteration ``t >= 1``), element-wise on the per-image variables."""
    b1, b2 = _ADAM_BETAS
    act.m1.mul_(b1).add_(grad, alpha=1.0 - b1)
    act.m2.mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
    denom = (act.m2 / (1.0 - b2**t)).sqrt_().add_(_ADAM_EPS)
    act.var.addcdiv_(act.m1, denom, value=-lr / (1.0 - b1**t))


def _optimise(
    model: Model, act: _Active, best: _Best, found: torch.Tensor, iters_run: torch.Tensor, cfg: _Settings,
    trace: _Trace | None = None, step: int = 0,
) -> None:
    """One line-search step: ``cfg.iterations`` Adam iterations, tracking the best success of each
    image (``found``: some iterate succeeded) and counting its iterations in ``iters_run``
    (and recording every iterate in ``trace`` when given)."""
    last = 0
    trapped = torch.zeros_like(found)  # stopped by the abort at the first check after their first success
    for it in range(cfg.iterations):
        loss, logits, xa, grad = _loss_and_gradient(model, act, cfg)
        with torch.no_grad():
            # keep the least-distorted success among all iterates; a success is
            # adversarial by the margin m (the confidence κ of [1])
            succ = is_adversarial(logits.argmax(1), act.lab, cfg.targeted) & (
                logit_difference(logits, act.lab, cfg.targeted) >= cfg.margin
            )
            d2 = (xa - act.xo).flatten(1).pow(2).sum(1)
            best.update(act.idx, succ, d2, xa, act, step)
            found[act.idx] |= succ
            act.first = torch.where(succ & (act.first < 0), it, act.first)
            if trace is not None:
                trace.record(step, it, act, loss, logits, d2, succ, cfg)
            _adam_update(act, grad, it + 1, cfg.lr * cfg.variable_step)
        if cfg.abort_early and it % cfg.check_every == 0 and it + 1 < cfg.iterations:
            if it == 0:  # nothing to compare with yet
                act.prev = loss.detach()
                continue
            iters_run[act.idx] += it + 1 - last
            last = it + 1
            since = it - cfg.check_every if it > cfg.check_every else -1  # the previous check (iteration 0 counts)
            if not act.drop_stalled(loss.detach(), since, trapped):
                break
    iters_run[act.idx] += cfg.iterations - last
    best.trapped = torch.where(best.step == step, trapped, best.trapped)


def _bisect(
    found: torch.Tensor, const: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image bisection on ``c``: a step that found a success bounds ``c`` from above, else from
    below; the next ``c`` is the midpoint, or ``10 c`` while no upper bound is known."""
    upper = torch.where(found, torch.minimum(upper, const), upper)
    lower = torch.where(found, lower, torch.maximum(lower, const))
    const = torch.where(torch.isfinite(upper), (lower + upper) / 2, const * 10)
    return const, lower, upper


def _result(
    run: AttackRun, best: _Best, iters_run: torch.Tensor, params: dict[str, Any], quantise: Any
) -> AttackResult:
    """The :class:`AttackResult` of the best iterates, with ``extra["c"]`` (and ``"latent"``)."""
    extra: dict[str, Any] = {"c": best.c}
    if best.z is not None:
        extra["latent"] = best.z
    res = run.finish(best.x, iters_run, attack="cw", norm="l2", params=params, extra=extra, quantise=quantise)
    kept_best = res.success & torch.isfinite(best.d2)
    res.extra["c"] = torch.where(kept_best, best.c, math.nan)
    res.extra["aborted_at_first_success"] = best.trapped & kept_best
    n = res.first_success_aborts
    if n:
        warnings.warn(
            f"{res.attack}: the early abort stopped {n} of {len(res)} images at the first check after their first "
            "successful iterate, before a whole check interval could lower their distortion: their x_adv is close to "
            "where the attack first crossed the boundary, not a minimum "
            "(result.extra['aborted_at_first_success'] says which). abort_early=False lets it converge (more passes); "
            "a step lr too large for the number of pixels makes it worse (sec. 5.2's eta = 0.1 on photos)",
            FirstSuccessAbortWarning,
            stacklevel=4,
        )
    if best.z is not None:
        res.extra["latent"] = torch.where(per_image(kept_best), best.z, 0.0)
    return res


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
    quantise: bool = False,
    target: torch.Tensor | None = None,
    trace: bool = False,
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
        Margin ``m >= 0`` of the loss (3) (paper, MNIST: 1). As in [1], an iterate counts as a
        success (for ``x_adv`` and for the line search) only when it is adversarial by this
        margin: ``max_{i≠t} y_i - y_t >= m`` (targeted: ``y_u - max_{i≠u} y_i >= m``).
    lr : float
        Adam learning rate ``η`` (0.1), in pixel units for C&W and sC&W alike (step parity): a
        first step moves no pixel by more than ``η`` (C&W's Adam steps ``4η`` on the sigmoid
        variable ``w``, whose pixels move by at most ``1/4`` per unit; sC&W's steps ``η`` on ``z``,
        which ŝ_α averages). A warning says when ``η >= 0.5``, where a first step can take a pixel
        to the edge of the box. Photos have ~190x MNIST's pixels: a first step of ``η = 0.1`` on
        150,528 values lands at ``D`` up to ~39 (the paper's ImageNet ``η``; see
        :func:`~smoothlab.attacks.paper_settings`).
    iterations : int
        Adam iterations per line-search step (100).
    search_steps : int
        Line-search steps on ``c``, per image: after a step where some iterate succeeded the
        upper bound becomes ``c``, otherwise the lower bound does; the next ``c`` is the midpoint,
        or ``10 c`` while no upper bound is known. Each step restarts from ``x_o``.
    abort_early : bool
        Check every ``iterations // 10`` iterations and stop an image whose objective is above
        0.9999 times its objective at the previous check (the rule of [1] and of the authors' code,
        which checks every tenth of the iterations with the same factor; theirs, at batch 1 on
        ImageNet, is per image as here). The first-success trap: when an image succeeds and the
        objective then rises (typically a step ``lr`` large for the number of pixels: with sec.
        5.2's ``η = 0.1`` the first step on a photo is already adversarial), the abort stops it at
        the first check after that first success, and ``x_adv`` is close to where the attack first
        crossed the boundary, not a minimum:
        ``extra["aborted_at_first_success"]`` flags those images, ``result.first_success_aborts``
        counts them and a :class:`FirstSuccessAbortWarning` says so.
    smoother : None, "mnist", Smoother, SmoothingSpec or callable
        ``None`` (default): no smoothing. Otherwise smoothing guided by ``x``: sC&W (eq. 18)
        optimises a latent ``z``, ``z_0 = 0``, with ``x_a = c(x_o + ŝ_α(z))``; attack ``"scw"``.
        ``"mnist"`` is ``SmoothingSpec.mnist()``; see :func:`~smoothlab.attacks.fgsm`.
    penalty : {"squared", "l2"}
        Distortion penalty ``λ ||r||²`` (paper, eqs. 4 and 18) or ``λ ||r||`` (the authors' sC&W
        code). ``r = σ(w) - x_o`` for C&W, ``r = ŝ_α(z)`` for sC&W.
    quantise : bool
        Return 8-bit adversarial images (multiples of 1/255), checked and refined where rounding
        undid the attack (see :func:`~smoothlab.attacks.quantise`; ``extra["latent"]`` stays that
        of the unrounded iterate); default ``False``.
    target : torch.Tensor, optional
        Target labels for a targeted attack (loss (3) towards the target).
    trace : bool
        Record every iterate (default ``False``): ``extra["trace"]`` is then a dict of tensors of
        shape ``(search_steps, iterations, B)``: ``"objective"`` (eq. 4 or 18), ``"loss"`` (the
        margin loss ℓ of eq. 3), ``"distortion"`` (``D = ||x_a - x_o||`` of the iterate), ``"c"``
        (the constant of the step) -- NaN where the image was no longer optimised (early abort) --
        and ``"success"`` (adversarial by the margin ``m``). It shows the oscillation of sec. 2.1
        around the margin: ℓ reaches 0, the penalty pulls ``D`` back, ℓ rises again.

    Returns
    -------
    AttackResult
        ``x_adv`` is the least-distorted successful iterate; ``extra["c"]`` the constant of the
        step that found it (NaN where none did); with a smoother ``extra["latent"]`` its ``z``
        (zeros where none), so that ``x_adv = clamp(x + ŝ_α(z), 0, 1)`` where the attack
        succeeded; with ``trace=True`` ``extra["trace"]``.

    Examples
    --------
    >>> from smoothlab.attacks import cw
    >>> from smoothlab.data import mnist
    >>> from smoothlab.models import c4
    >>> x, y = mnist("test")
    >>> x, y, model = x[:4], y[:4], c4(pretrained=True)
    >>> res = cw(model, x, y)                         # the paper's MNIST settings
    >>> res
    AttackResult(attack='cw', N=4, P_suc=..., D̄=..., c=15, margin=1, lr=0.1, iterations=100, search_steps=1, abort_early=True, penalty='squared', seconds=...)
    >>> res.extra["c"].shape                        # the constant 1/λ that found each x_adv
    torch.Size([4])
    """
    with attack_run(model, x, y, target) as run:
        prep = run.prep
        x = prep.x
        const, c_p = batch_param(c, "c", x, positive=True)
        S = run.resolve_smoother(smoother)
        cfg = _check_settings(prep, margin, lr, iterations, search_steps, abort_early, penalty, S is not None)
        best = _Best(prep, smoothed=S is not None)
        iters_run = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        w0 = torch.logit(x.clamp(_BOX_DELTA, 1.0 - _BOX_DELTA)) if S is None else None
        lower, upper = torch.zeros_like(const), torch.full_like(const, math.inf)
        if not isinstance(trace, bool):
            raise TypeError(f"trace must be a bool, got {trace!r}")
        record = _Trace(x, cfg) if trace else None
        for _step in range(cfg.search_steps):
            found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
            _optimise(model, _Active(x, prep.labels, const, S, w0), best, found, iters_run, cfg, record, _step)
            const, lower, upper = _bisect(found, const, lower, upper)
        params: dict[str, Any] = {
            "c": c_p,
            "margin": cfg.margin,
            "lr": cfg.lr,
            "iterations": cfg.iterations,
            "search_steps": cfg.search_steps,
            "abort_early": cfg.abort_early,
            "penalty": cfg.penalty,
        }
        res = _result(run, best, iters_run, params, quantise)
        if record is not None:
            res.extra["trace"] = record.as_dict()
        return res


def scw(model: Model, x: torch.Tensor, y: torch.Tensor, *, smoother: Any = "mnist", **kwargs: Any) -> AttackResult:
    """sC&W (section 4.2, eq. 18): :func:`cw` that always smooths; other keyword arguments go to it.

    ``smoother`` takes what :func:`cw` takes but ``None``, and defaults to ``"mnist"``, the paper's
    MNIST smoothing (``SmoothingSpec.mnist()``: Laplacian kernel, ``λ = 10``, ``α = 0.95``). For no
    smoothing call :func:`cw`: ``scw(smoother=None)`` raises a ``ValueError`` saying so.

    Examples
    --------
    >>> import torch
    >>> from smoothlab.attacks import scw
    >>> from smoothlab.smoothing import SmoothingSpec
    >>> from smoothlab.data import mnist
    >>> from smoothlab.models import c4
    >>> x, y = mnist("test")
    >>> x, y, model = x[:4], y[:4], c4(pretrained=True)
    >>> res = scw(model, x, y)                        # smoother="mnist"
    >>> res.attack, res.params["smoother"]["kernel"]
    ('scw', 'laplacian')
    >>> z = res.extra["latent"]                     # x_adv = clamp(x + ŝ_α(z), 0, 1), eq. (18)
    >>> S = SmoothingSpec.mnist()(x)
    >>> bool(torch.allclose((x + S(z)).clamp(0, 1)[res.success], res.x_adv[res.success], atol=1e-5))
    True
    """
    return cw(model, x, y, smoother=smooth_attack_option(smoother, "scw"), **kwargs)
