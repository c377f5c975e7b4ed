"""The classification losses and success test of the attacks (section 2.1, eq. 3)."""

from __future__ import annotations

import math

import torch

__all__ = ["is_adversarial", "margin_loss"]


def margin_loss(logits: torch.Tensor, labels: torch.Tensor, margin: float, targeted: bool) -> torch.Tensor:
    """Eq. (3) per image: ``[y_t - max_{i≠t} y_i + m]_+`` (untargeted, ``t`` the true label).

    Targeted (``labels`` = target ``u``): ``[max_{i≠u} y_i - y_u + m]_+``. Both vanish once the
    attack has succeeded by a margin ``m``.
    """
    own = logits.gather(1, labels[:, None]).squeeze(1)
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, labels[:, None], True)
    other = logits.masked_fill(mask, -math.inf).amax(1)
    diff = other - own if targeted else own - other
    return (diff + margin).clamp_min(0.0)


def is_adversarial(pred: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """``pred != y`` (untargeted) or ``pred == target``."""
    return pred == labels if targeted else pred != labels
