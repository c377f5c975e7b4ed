"""The lowest floor of :mod:`smoothlab.attacks`: the model's mode, the checked inputs, per-image maths.

What :mod:`._common` (the start-up and wrap-up of an attack) and :mod:`._quantise` (8-bit
results) both need, so that neither imports the other's floor:

- :func:`eval_mode` puts the model in eval mode for the attack and restores every submodule's
  mode afterwards;
- :func:`prepare` validates an attack's input before computing anything (``ValueError`` /
  ``TypeError`` naming the argument), including the model's output shape ``(B, k)``, and
  predicts on the clean images;
- :func:`l2` and :func:`per_image` are the per-image norm and broadcast of every attack.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from smoothlab._validation import check_images, check_labels

__all__ = ["Model", "Prepared", "eval_mode", "forward_checked", "l2", "per_image", "prepare"]

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


def forward_checked(model: Model, x: torch.Tensor, *, stacklevel: int = 3) -> torch.Tensor:
    """Run ``model`` on ``x`` once (no gradient) and check it returns finite logits ``(B, k)``.

    ``stacklevel``: that of the warning about probabilities (default: the caller's caller).
    """
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
            stacklevel=stacklevel,
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


def prepare(model: Any, x: Any, y: Any, target: Any = None, *, stacklevel: int = 2) -> Prepared:
    """Validate the attack's inputs and compute the clean predictions (one forward pass).

    ``stacklevel``: the frame a warning about the model's outputs points at, as for
    ``warnings.warn`` called here (default: the caller).
    """
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
    logits = forward_checked(model, x, stacklevel=stacklevel + 1)
    k = logits.shape[1]
    check_labels(y, b, "y", num_classes=k)
    if target is not None:
        check_labels(target, b, "target", num_classes=k)
        if bool((target == y).any()):
            raise ValueError("target must differ from the true label y for every image, got target == y")
    return Prepared(x=x, y=y, target=target, pred_clean=logits.argmax(1), num_classes=k)


# ---------------------------------------------------------------------------- maths
def l2(v: torch.Tensor) -> torch.Tensor:
    """Per-image L2 norm over all pixels and channels, shape ``(B,)``."""
    return v.flatten(1).norm(dim=1)


def per_image(v: torch.Tensor) -> torch.Tensor:
    """Reshape a ``(B,)`` tensor to broadcast against images ``(B, C, H, W)``."""
    return v.view(-1, 1, 1, 1)
