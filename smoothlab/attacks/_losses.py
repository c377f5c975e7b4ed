"""The classification losses and success test of the attacks (section 2.1, eq. 3)."""

from __future__ import annotations

import math

import torch

__all__ = ["is_adversarial", "logit_difference", "margin_loss"]


def logit_difference(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """How far past the decision boundary each image is: ``max_{i≠t} y_i - y_t`` (untargeted,
    ``t`` the true label) or ``y_u - max_{i≠u} y_i`` (targeted, ``u`` the target); positive once
    the image is adversarial. The loss (3) is ``[m - logit_difference]_+``."""
    own = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], -math.inf).amax(1)
    return own - others if targeted else others - own


def margin_loss(logits: torch.Tensor, labels: torch.Tensor, margin: float, targeted: bool) -> torch.Tensor:
    """Eq. (3) per image: ``[y_t - max_{i≠t} y_i + m]_+`` (untargeted, ``t`` the true label).

    Targeted (``labels`` = target ``u``): ``[max_{i≠u} y_i - y_u + m]_+``. Both vanish once the
    attack has succeeded by a margin ``m``.
    """
    return (margin - logit_difference(logits, labels, targeted)).clamp_min(0.0)


def is_adversarial(pred: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """``pred != y`` (untargeted) or ``pred == target``."""
    return pred == labels if targeted else pred != labels
