"""Adversarial attacks of the paper, with and without smoothing (sections 2.1 and 4).

Plain functions ``attack(model, x, y, *, smoother=None, ...) -> AttackResult`` on whole
batches, on the device of ``x``; defaults are the paper's MNIST settings (section 5.2).

- :func:`fgsm`, :func:`ifgsm` -- L∞, targeting a distortion ``eps``;
- :func:`pgd2` -- L2 I-FGSM targeting a distortion; :func:`spgd2` = ``pgd2`` with smoothing
  (eq. 12);
- :func:`cw` -- C&W-L2 targeting optimality (eqs. 3-4); :func:`scw` = ``cw`` with smoothing
  (sC&W, eq. 18).

``ATTACKS`` maps each name to its function.
"""

from __future__ import annotations

from collections.abc import Callable

from smoothlab.attacks._common import AttackResult, margin_loss
from smoothlab.attacks.cw import cw, scw
from smoothlab.attacks.gradient import fgsm, ifgsm, pgd2, spgd2

ATTACKS: dict[str, Callable[..., AttackResult]] = {
    "fgsm": fgsm,
    "ifgsm": ifgsm,
    "pgd2": pgd2,
    "cw": cw,
    "spgd2": spgd2,
    "scw": scw,
}

__all__ = ["ATTACKS", "AttackResult", "cw", "fgsm", "ifgsm", "margin_loss", "pgd2", "scw", "spgd2"]
