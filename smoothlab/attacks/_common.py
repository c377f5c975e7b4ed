"""The start-up and wrap-up of every attack (:class:`AttackRun`), and the options they share.

Every attack is a plain function ``attack(model, x, y, *, ...) -> AttackResult`` working on a
whole batch at once, on the device of ``x``. Each runs its own loop inside
``with attack_run(model, x, y, target) as run:``, which

- starts the timer, puts the model in eval mode for the attack and restores every submodule's
  mode afterwards (:func:`~smoothlab.attacks._base.eval_mode`);
- validates the input before computing anything (``ValueError``/``TypeError`` naming the
  argument), including the model's output shape ``(B, k)``, and predicts on the clean images
  (:func:`~smoothlab.attacks._base.prepare`, one forward pass);
- builds the ``smoother=`` option on ``x`` (:meth:`AttackRun.resolve_smoother`);
- reports the same :class:`~smoothlab.attacks.AttackResult` (:meth:`AttackRun.finish`: the pass
  counts, the ``params`` with ``"norm"`` and ``"smoother"``, the name ``"s" + name`` of the
  smooth version, the final prediction and the ``quantise=`` option).

Gradients are taken with ``torch.autograd.grad`` w.r.t. the input only, so that the model's
parameters' ``.grad`` are never touched. The losses are in :mod:`._losses`, the result in
:mod:`._result`, the model handling and input checks in :mod:`._base`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from smoothlab._threads import held_threads
from smoothlab._validation import check_choice, check_range, check_tensor
from smoothlab.attacks._base import Model, Prepared, eval_mode, l2, per_image, prepare
from smoothlab.attacks._losses import is_adversarial
from smoothlab.attacks._quantise import quantise_candidates
from smoothlab.attacks._result import AttackResult


# ---------------------------------------------------------------------------- parameters
def check_quantise(quantise: Any) -> bool:
    """The ``quantise=`` option of the attacks: a bool."""
    if not isinstance(quantise, bool):
        raise TypeError(f"quantise must be a bool, got {quantise!r}")
    return quantise


def batch_param(value: Any, name: str, x: torch.Tensor, *, positive: bool = False) -> tuple[torch.Tensor, Any]:
    """A non-negative (or positive) scalar or ``(B,)`` tensor as a ``(B,)`` tensor on ``x``'s device.

    Returns the tensor and its plain-Python description (a float or a list of floats).
    """
    b = x.shape[0]
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        check_tensor(value, name)
        if value.dim() != 1 or value.shape[0] != b:
            raise ValueError(f"{name} must be a number or a tensor of shape ({b},), got shape {tuple(value.shape)}")
        if value.dtype == torch.bool or value.dtype.is_complex:
            raise TypeError(f"{name} must be a real tensor, got dtype {value.dtype}")
        v = value.detach().to(device=x.device, dtype=x.dtype)
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"{name} must be finite, got NaN or Inf values")
        lo = float(v.min())
        if lo < 0 or (positive and lo == 0):
            bound = "> 0" if positive else ">= 0"
            raise ValueError(f"{name} must be {bound}, got a minimum of {lo:g}")
        return v, v.tolist()
    f = check_range(value, name, 0.0, None, low_open=positive)
    return torch.full((b,), f, dtype=x.dtype, device=x.device), f


#: Named presets of every attack's ``smoother=`` option: ``"mnist"`` is ``SmoothingSpec.mnist()``, the
#: paper's MNIST smoothing (sec. 5.2: Laplacian kernel, ``λ = 10``, ``α = 0.95``); ``"imagenet"`` is
#: ``SmoothingSpec.imagenet()`` (``α = 0.997``, 50 CG iterations) and ``"imagenet-exact"`` the same
#: smoothing solved exactly (``SmoothingSpec.imagenet(exact=True)``).
SMOOTHING_PRESETS = ("mnist", "imagenet", "imagenet-exact")


def smoothing_option(smoother: Any) -> Any:
    """The ``smoother=`` option with a preset name (:data:`SMOOTHING_PRESETS`) replaced by its spec."""
    if not isinstance(smoother, str):
        return smoother
    check_choice(smoother, "smoother", SMOOTHING_PRESETS)
    from smoothlab.smoothing import SmoothingSpec

    if smoother == "mnist":
        return SmoothingSpec.mnist()
    return SmoothingSpec.imagenet(exact=smoother == "imagenet-exact")


def resolve_smoother(smoother: Any, x: torch.Tensor) -> Any:
    """The :class:`~smoothlab.Smoother` guided by ``x`` that ``smoother=`` asks for, or ``None``."""
    smoother = smoothing_option(smoother)
    if smoother is None:
        return None
    from smoothlab.smoothing import resolve_smoother as build

    return build(smoother, x)


def smooth_attack_option(smoother: Any, attack: str) -> Any:
    """``smoother=`` of the named smooth attacks (``spgd2``, ``scw``), which always smooth: anything but ``None``.

    Raises
    ------
    ValueError
        ``smoother`` is ``None`` (no smoothing is the plain attack, named without the ``s``).
    """
    if smoother is None:
        raise ValueError(
            f"{attack} always smooths: smoother must be a preset name ('mnist', the default), a SmoothingSpec, "
            f"a Smoother or a callable, got None; for no smoothing call {attack[1:]}()"
        )
    return smoother


def describe_smoother(smoother: Any) -> Any:
    """A plain-Python description of the ``smoother=`` option, for ``AttackResult.params``."""
    smoother = smoothing_option(smoother)
    if smoother is None:
        return None
    if dataclasses.is_dataclass(smoother) and not isinstance(smoother, type):
        d = dataclasses.asdict(smoother)
        d["type"] = type(smoother).__name__
        return d
    if type(smoother).__name__ == "Smoother":
        g = smoother.graph
        return {
            "type": "Smoother",
            "alpha": smoother.alpha,
            "solver": smoother.solver,
            "kernel": g.kernel,
            "lam": g.lam,
            "colour": g.colour,
            "neighbours": 2 * len(g.offsets),
        }
    return {"type": "callable", "name": getattr(smoother, "__qualname__", type(smoother).__name__)}


# ---------------------------------------------------------------------------- start-up and wrap-up
def sync_time(x: torch.Tensor) -> float:
    """``time.perf_counter()`` after waiting for the device of ``x``."""
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    return time.perf_counter()


def finish(
    model: Model,
    prep: Prepared,
    candidate: torch.Tensor,
    forward_passes: torch.Tensor,
    backward_passes: torch.Tensor,
    *,
    attack: str,
    params: dict[str, Any],
    t0: float,
    extra: dict[str, Any] | None = None,
    quantise: bool = False,
    stacklevel: int = 3,
) -> AttackResult:
    """Predict on the candidate adversarial images (one forward pass) and build the result.

    Where the candidate is not adversarial, the original image is returned with its clean
    prediction (so ``pred_adv`` is always the model's prediction on ``x_adv``). ``quantise``:
    put the adversarial candidates on the 8-bit grid first (:mod:`._quantise`; more passes).
    ``stacklevel``: that of the warning about non-finite candidates.
    """
    x = prep.x
    with torch.no_grad():
        finite = torch.isfinite(candidate.detach()).flatten(1).all(1)
        if not bool(finite.all()):  # never a silent NaN: say so, and count those images as failures
            bad = (~finite).nonzero().squeeze(1).tolist()
            warnings.warn(
                f"{attack}: non-finite adversarial images for batch indices {bad[:10]}"
                f"{'...' if len(bad) > 10 else ''} (NaN/Inf gradients from the model?); returned as failures",
                RuntimeWarning,
                stacklevel=stacklevel,
            )
        candidate = torch.where(per_image(finite), candidate.detach(), x).clamp(0.0, 1.0)
        pred_cand = model(candidate).argmax(1)
        ok = is_adversarial(pred_cand, prep.labels, prep.targeted) & finite
        if quantise:
            candidate, pred_cand, ok, passes, scale = quantise_candidates(
                model, x, prep.labels, prep.targeted, candidate, ok
            )
            forward_passes = forward_passes + passes
            extra = {**(extra or {}), "quantise_scale": scale}
            params = {**params, "quantise": True}
        x_adv = torch.where(per_image(ok), candidate, x)
        pred_adv = torch.where(ok, pred_cand, prep.pred_clean)
        success = is_adversarial(pred_adv, prep.labels, prep.targeted)
        distortion = l2(x_adv - x)
    forward_passes = forward_passes + 1
    params = {**params, "targeted": prep.targeted}
    return AttackResult(
        x_adv=x_adv,
        success=success,
        distortion=distortion,
        pred_clean=prep.pred_clean,
        pred_adv=pred_adv,
        forward_passes=forward_passes,
        backward_passes=backward_passes,
        attack=attack,
        params=params,
        seconds=sync_time(x) - t0,
        extra=extra or {},
    )



@dataclass
class AttackRun:
    """One call of an attack between its start-up and its wrap-up (made by :func:`attack_run`).

    Attributes
    ----------
    model : callable
        The attacked model (in eval mode during the run).
    prep : Prepared
        The checked inputs: ``prep.x``, ``prep.labels``, ``prep.targeted``, the clean predictions.
    t0 : float
        When the attack started (:func:`sync_time`).
    smoother : object
        The ``smoother=`` option as given (described in ``params["smoother"]``).
    S : Smoother or None
        The smoother built on ``x`` (:meth:`resolve_smoother`); ``None``: the plain attack.
    """

    model: Model
    prep: Prepared
    t0: float
    smoother: Any = None
    S: Any = None

    def resolve_smoother(self, smoother: Any) -> Any:
        """Build the ``smoother=`` option on ``x`` (:func:`resolve_smoother`), remembered for the result."""
        self.smoother, self.S = smoother, resolve_smoother(smoother, self.prep.x)
        return self.S

    def name(self, attack: str) -> str:
        """The attack's name: ``"s" + attack`` when it smooths (e.g. ``"spgd2"``), else ``attack``."""
        return "s" + attack if self.S is not None else attack

    def finish(
        self,
        candidate: torch.Tensor,
        steps: int | torch.Tensor,
        *,
        attack: str,
        norm: str,
        params: dict[str, Any],
        options: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        quantise: Any = False,
    ) -> AttackResult:
        """The attack's result on ``candidate`` (:func:`finish`).

        ``steps`` gradient steps, an ``int`` or a ``(B,)`` tensor, each of one forward and one
        backward pass, after the input check's forward pass: ``1 + steps`` forward and ``steps``
        backward passes (then the final prediction's and the ``quantise=`` option's). ``params``
        are reported as ``{**params, "norm": norm, "smoother": ..., **options}``, ``options``
        being those shown only where not the default; the name is :meth:`name` of ``attack``.
        """
        x = self.prep.x
        if isinstance(steps, torch.Tensor):
            forward, backward = 1 + steps, steps.clone()
        else:
            forward = torch.full((x.shape[0],), 1 + steps, dtype=torch.long, device=x.device)
            backward = torch.full((x.shape[0],), steps, dtype=torch.long, device=x.device)
        params = {**params, "norm": norm, "smoother": describe_smoother(self.smoother), **(options or {})}
        return finish(
            self.model, self.prep, candidate, forward, backward, attack=self.name(attack), params=params,
            t0=self.t0, extra=extra, quantise=check_quantise(quantise), stacklevel=4,
        )


@contextlib.contextmanager
def attack_run(model: Any, x: Any, y: Any, target: Any = None) -> Iterator[AttackRun]:
    """The start-up of an attack: start the timer, put ``model`` in eval mode, check the inputs.

    ``with attack_run(model, x, y, target) as run:`` runs the attack's body with ``model`` in eval
    mode (every submodule's mode restored after, whatever happens), torch's thread count held to the
    CPUs the process may use (:func:`smoothlab._threads.held_threads`: a cgroup quota or affinity
    below the host's cores) and ``run.prep`` the checked
    inputs (:func:`~smoothlab.attacks._base.prepare`: one forward pass); the body ends with
    ``return run.finish(...)``.
    """
    t0 = sync_time(x) if isinstance(x, torch.Tensor) else 0.0
    with eval_mode(model), held_threads():
        # the warning about probabilities points at the attack: prepare <- here <- __enter__ <- attack
        yield AttackRun(model, prepare(model, x, y, target, stacklevel=4), t0)
