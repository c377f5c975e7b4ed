"""Shared machinery of the attacks: input checks, model handling, building the result.

Every attack is a plain function ``attack(model, x, y, *, ...) -> AttackResult`` working on a
whole batch at once, on the device of ``x``. The helpers here make sure that all of them

- validate their input before computing anything (``ValueError``/``TypeError`` naming the
  argument), including the model's output shape ``(B, k)``;
- put the model in eval mode for the attack and restore every submodule's mode afterwards;
- take gradients with ``torch.autograd.grad`` w.r.t. the input only, so that the model's
  parameters' ``.grad`` are never touched;
- report the same :class:`~smoothlab.attacks.AttackResult` (in :mod:`._result`; the losses are
  in :mod:`._losses`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from smoothlab._validation import check_choice, check_images, check_labels, check_range, check_tensor
from smoothlab.attacks._losses import is_adversarial
from smoothlab.attacks._result import AttackResult

Model = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------- model handling
@contextlib.contextmanager
def eval_mode(model: Model) -> Iterator[None]:
    """Put ``model`` (if an ``nn.Module``) in eval mode, restoring each submodule's mode after."""
    if not isinstance(model, torch.nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def forward_checked(model: Model, x: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on ``x`` once (no gradient) and check it returns finite logits ``(B, k)``."""
    if isinstance(model, torch.nn.Module):
        p = next(model.parameters(), None)
        if p is not None and p.device != x.device:
            raise ValueError(
                f"model has its parameters on {p.device} but x is on {x.device}; the attacks run on the "
                "device of x, move the model there (model.to(x.device))"
            )
    with torch.no_grad():
        out = model(x)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"model must return a torch.Tensor of logits of shape (B, k), got {type(out).__name__}")
    b = x.shape[0]
    if out.dim() != 2 or out.shape[0] != b or out.shape[1] < 2:
        raise ValueError(
            f"model must return logits of shape ({b}, k) with k >= 2 classes, got shape {tuple(out.shape)}"
        )
    if not out.dtype.is_floating_point:
        raise TypeError(f"model must return floating-point logits, got dtype {out.dtype}")
    if not bool(torch.isfinite(out).all()):
        raise ValueError("model returned NaN or Inf logits on the clean images")
    if out.device != x.device:
        raise ValueError(f"model returned logits on {out.device} for images on {x.device}")
    # probabilities instead of logits: every row in [0, 1] and summing to 1
    if bool(((out >= 0) & (out <= 1)).all()) and bool(
        torch.allclose(out.sum(1), torch.ones_like(out[:, 0]), atol=1e-3)
    ):
        warnings.warn(
            "the model's outputs look like probabilities (every row in [0, 1] and summing to 1); the "
            "attacks expect logits (eq. 3) and their gradients vanish through a softmax. Remove the "
            "final softmax (log-probabilities are fine).",
            UserWarning,
            stacklevel=3,
        )
    return out


@dataclass
class Prepared:
    """Checked inputs of an attack."""

    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor | None
    pred_clean: torch.Tensor
    num_classes: int

    @property
    def labels(self) -> torch.Tensor:
        """The labels the loss is computed against: the target if any, else the true label."""
        return self.y if self.target is None else self.target

    @property
    def targeted(self) -> bool:
        return self.target is not None


def prepare(model: Any, x: Any, y: Any, target: Any = None) -> Prepared:
    """Validate the attack's inputs and compute the clean predictions (one forward pass)."""
    if not callable(model):
        raise TypeError(f"model must be callable (e.g. a torch.nn.Module), got {type(model).__name__}")
    check_images(x, "x")
    x = x.detach()
    b = x.shape[0]
    check_labels(y, b, "y")
    y = y.detach().to(device=x.device, dtype=torch.long)
    if target is not None:
        check_labels(target, b, "target")
        target = target.detach().to(device=x.device, dtype=torch.long)
    logits = forward_checked(model, x)
    k = logits.shape[1]
    check_labels(y, b, "y", num_classes=k)
    if target is not None:
        check_labels(target, b, "target", num_classes=k)
        if bool((target == y).any()):
            raise ValueError("target must differ from the true label y for every image, got target == y")
    return Prepared(x=x, y=y, target=target, pred_clean=logits.argmax(1), num_classes=k)


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


# ---------------------------------------------------------------------------- maths
def l2(v: torch.Tensor) -> torch.Tensor:
    """Per-image L2 norm over all pixels and channels, shape ``(B,)``."""
    return v.flatten(1).norm(dim=1)


def per_image(v: torch.Tensor) -> torch.Tensor:
    """Reshape a ``(B,)`` tensor to broadcast against images ``(B, C, H, W)``."""
    return v.view(-1, 1, 1, 1)


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
) -> AttackResult:
    """Predict on the candidate adversarial images (one forward pass) and build the result.

    Where the candidate is not adversarial, the original image is returned with its clean
    prediction (so ``pred_adv`` is always the model's prediction on ``x_adv``). ``quantise``:
    put the adversarial candidates on the 8-bit grid first (:mod:`._quantise`; more passes).
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
                stacklevel=3,
            )
        candidate = torch.where(per_image(finite), candidate.detach(), x).clamp(0.0, 1.0)
        pred_cand = model(candidate).argmax(1)
        ok = is_adversarial(pred_cand, prep.labels, prep.targeted) & finite
        if quantise:
            from smoothlab.attacks._quantise import quantise_candidates

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

