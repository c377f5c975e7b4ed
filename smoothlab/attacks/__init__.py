"""Adversarial attacks of the paper, with and without smoothing (sections 2.1 and 4).

Plain functions ``attack(model, x, y, *, smoother=..., ...) -> AttackResult`` on whole
batches, on the device of ``x``; defaults are the paper's MNIST settings (section 5.2).
``smoother=None`` is no smoothing; ``smoother="mnist"`` is the paper's MNIST smoothing
(``SmoothingSpec.mnist()``), the default of ``spgd2`` and ``scw``, which always smooth.

- :func:`fgsm`, :func:`ifgsm` -- L∞, targeting a distortion ``eps``;
- :func:`pgd2` -- L2 I-FGSM targeting a distortion; :func:`spgd2` = ``pgd2`` with smoothing
  (eq. 12);
- :func:`cw` -- C&W-L2 targeting optimality (eqs. 3-4); :func:`scw` = ``cw`` with smoothing
  (sC&W, eq. 18).

``ATTACKS`` maps each name to its function; :class:`AttackResult` is what they return;
:func:`margin_loss` (eq. 3) and :func:`is_adversarial` are the loss and the success test.

Implementation modules are private: ``_distortion`` (FGSM, I-FGSM, PGD2, sPGD2), ``_cw``
(C&W, sC&W), ``_result``, ``_losses``, ``_common`` (input checks, model handling).
"""

from __future__ import annotations

from collections.abc import Callable

from smoothlab.attacks._cw import cw, scw
from smoothlab.attacks._distortion import fgsm, ifgsm, pgd2, spgd2
from smoothlab.attacks._losses import is_adversarial, margin_loss
from smoothlab.attacks._result import AttackResult

ATTACKS: dict[str, Callable[..., AttackResult]] = {
    "fgsm": fgsm,
    "ifgsm": ifgsm,
    "pgd2": pgd2,
    "cw": cw,
    "spgd2": spgd2,
    "scw": scw,
}

__all__ = [
    "ATTACKS",
    "AttackResult",
    "cw",
    "fgsm",
    "ifgsm",
    "is_adversarial",
    "margin_loss",
    "pgd2",
    "scw",
    "spgd2",
]
