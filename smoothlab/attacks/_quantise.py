"""8-bit adversarial examples: the ``quantise=`` option of every attack, and :func:`quantise`.

An adversarial image saved as PNG (or any 8-bit format) is rounded to multiples of 1/255, and the
rounding may undo the attack: minimal-norm attacks stop just past the decision boundary. With
``quantise=True`` an attack returns adversarial images on the 8-bit grid, checked by the model:

1. round each pixel to the nearest multiple of 1/255 and check;
2. where that is not adversarial any more, round *away* from the original instead (``ceil`` where
   the pixel went up, ``floor`` where it went down), so that no pixel's change shrinks, and
   check; then the same on ``x_o + t (x_a - x_o)`` for ``t`` in :data:`QUANTISE_SCALES`,
   i.e. a perturbation stretched by 10 %, 25 %, 50 % and 100 %;
3. where nothing worked, the attack fails on that image (the original is returned).

Each check is one forward pass on the images still to be fixed, counted in
``AttackResult.forward_passes``; ``extra["quantise_scale"]`` holds the ``t`` that worked (1 for
steps 1-2, NaN where the attack failed). The original images are assumed to be 8-bit already
(MNIST and PNG photos are), so that a quantised ``x_a`` survives a PNG save and load exactly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from smoothlab._validation import check_images
from smoothlab.attacks._base import eval_mode, l2, per_image, prepare
from smoothlab.attacks._losses import is_adversarial

__all__ = ["QUANTISE_SCALES", "LEVELS", "quantise", "quantise_candidates", "to_8bit"]

#: Number of grey levels per channel of an 8-bit image.
LEVELS = 255
#: Stretch factors of the perturbation tried, in order, when rounding undid the attack.
QUANTISE_SCALES: tuple[float, ...] = (1.0, 1.1, 1.25, 1.5, 2.0)


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    """``round(255 x) / 255``: what an 8-bit PNG of ``x`` (values in ``[0, 1]``) holds."""
    return (x * LEVELS).round() / LEVELS


def _round_away(xt: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Round ``xt`` to the 8-bit grid away from ``x`` (to the nearest level where equal)."""
    v = xt * LEVELS
    return torch.where(xt > x, v.ceil(), torch.where(xt < x, v.floor(), v.round())) / LEVELS


def quantise_candidates(
    model: Any, x: torch.Tensor, labels: torch.Tensor, targeted: bool, candidate: torch.Tensor, ok: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Put the adversarial candidates (``ok``) on the 8-bit grid, checking each try (module docstring).

    Returns
    -------
    candidate, pred, ok, forward_passes, scale
        The quantised candidates (unchanged where not ``ok``), the model's prediction on them
        (undefined where not ``ok``), which are still adversarial, the forward passes spent per
        image and the stretch ``t`` that worked (NaN elsewhere).
    """
    b = x.shape[0]
    out = candidate.clone()
    pred = torch.zeros(b, dtype=torch.long, device=x.device)
    done = torch.zeros(b, dtype=torch.bool, device=x.device)
    passes = torch.zeros(b, dtype=torch.long, device=x.device)
    scale = torch.full((b,), math.nan, dtype=x.dtype, device=x.device)
    todo = ok.clone()
    tries = [(False, 1.0)] + [(True, t) for t in QUANTISE_SCALES]
    for away, t in tries:
        idx = todo.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xi, ci = x[idx], candidate[idx]
        q = _round_away((xi + t * (ci - xi)).clamp(0.0, 1.0), xi) if away else to_8bit(ci)
        p = model(q).argmax(1)
        adv = is_adversarial(p, labels[idx], targeted)
        passes[idx] += 1
        win = idx[adv]
        out[win], pred[win], scale[win] = q[adv], p[adv], t
        done[win] = True
        todo[win] = False
    return out, pred, done, passes, scale


def quantise(model: Any, x: torch.Tensor, y: torch.Tensor, result: Any, *, target: torch.Tensor | None = None) -> Any:
    """The 8-bit version of an attack's result, as if the attack had run with ``quantise=True``.

    Parameters
    ----------
    model : callable
        The attacked model.
    x, y : torch.Tensor
        The originals ``(B, C, H, W)`` in ``[0, 1]`` and labels ``(B,)`` given to the attack.
    result : AttackResult
        What the attack returned on them.
    target : torch.Tensor, optional
        The target labels, for a targeted attack.

    Returns
    -------
    AttackResult
        ``x_adv`` on the 8-bit grid where still adversarial (the original elsewhere), with
        ``success``, ``distortion``, ``pred_adv`` and ``forward_passes`` updated,
        ``params["quantise"] = True`` and ``extra["quantise_scale"]``.

    Raises
    ------
    ValueError
        ``x`` or ``result.x_adv`` outside ``[0, 1]`` (8-bit quantisation is defined on ``[0, 1]``
        data), or shapes that do not match.
    """
    check_images(x, "x")
    x_adv = getattr(result, "x_adv", None)
    if not isinstance(x_adv, torch.Tensor):
        raise TypeError(f"result must be an AttackResult, got {type(result).__name__}")
    check_images(x_adv, "result.x_adv")
    if x_adv.shape != x.shape:
        raise ValueError(f"result.x_adv must have the shape of x {tuple(x.shape)}, got {tuple(x_adv.shape)}")
    with eval_mode(model), torch.no_grad():
        prep = prepare(model, x, y, target)
        x = prep.x
        cand = x_adv.detach().to(x.device, x.dtype)
        ok = result.success.to(x.device)
        q, pred, done, passes, scale = quantise_candidates(model, x, prep.labels, prep.targeted, cand, ok)
        x_new = torch.where(per_image(done), q, x)
        pred_adv = torch.where(done, pred, prep.pred_clean)
        success = is_adversarial(pred_adv, prep.labels, prep.targeted)
    return dataclasses.replace(
        result,
        x_adv=x_new,
        success=success,
        distortion=l2(x_new - x),
        pred_adv=pred_adv,
        forward_passes=result.forward_passes.to(x.device) + 1 + passes,
        params={**result.params, "quantise": True},
        extra={**result.extra, "quantise_scale": scale},
    )
