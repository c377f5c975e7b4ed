"""Adversarial attacks of the paper, with and without smoothing (sections 2.1 and 4).

Plain functions ``attack(model, x, y, *, smoother=..., ...) -> AttackResult`` on whole
batches, on the device of ``x``; defaults are the paper's MNIST settings (section 5.2).
``smoother=None`` is no smoothing; ``smoother="mnist"`` is the paper's MNIST smoothing
(``SmoothingSpec.mnist()``), the default of ``spgd2`` and ``scw``, which always smooth.

- :func:`fgsm`, :func:`ifgsm` -- L∞, targeting a distortion ``eps``;
- :func:`pgd2` -- L2 I-FGSM targeting a distortion; :func:`spgd2` = ``pgd2`` with smoothing
  (eq. 12);
- :func:`cw` -- C&W-L2 targeting optimality (eqs. 3-4); :func:`scw` = ``cw`` with smoothing
  (sC&W, eq. 18);
- :func:`ddn`, :func:`fmn` -- two later minimal-norm L2 attacks (DDN, Rony et al. 2019; FMN,
  Pintor et al. 2021), with the same ``smoother=`` option (a latent ``z``, as in eq. 18);
  :func:`sddn`, :func:`sfmn` are them with smoothing (not in the paper).

:func:`smoothed` smooths any other library's attack (a foolbox 3 attack, an ART evasion attack class, a
function ``attack(model, x, y) -> x_adv``) by the same reparametrisation (eqs. 17-19), as a
:class:`SmoothedAttack` with the signature of ours; :class:`SubBatchError` is what an attack that calls the
model on part of its batch meets (``per_image=True`` is the fix).

:func:`paper_settings` gives the paper's settings of each attack for MNIST or ImageNet (sec. 5.2):
``pgd2(model, x, y, **paper_settings("spgd2", "imagenet"))``.
:func:`settings_provenance` says where each default setting comes from (the paper, the authors'
code, or us); :data:`PAPER_ATTACKS` names the paper's six attacks in Table 1 order.

Every attack takes ``quantise=True`` to return 8-bit adversarial images (rounded to 1/255,
checked, and refined where rounding undid the attack); :func:`quantise` does the same to a
result afterwards.

The attack registry (``_registry``) is the one home of each attack's function, label, settings
per dataset with their provenance, budget grids and smooth counterpart: :func:`attack_entry`
reads a record, :func:`register` adds a user's attack in one call (it then runs in
``smoothlab bench``, on Dask workers too), :func:`budget_grids` gives a dataset's grids.
``ATTACKS`` maps each name to its function (a live view of the registry); :class:`AttackResult` is what they return;
:func:`margin_loss` (eq. 3), :func:`logit_difference` and :func:`is_adversarial` are the loss, the
logit gap it is made of and the success test; :func:`loss_gradient` is the gradient ``g`` that the
attacks targeting a distortion follow (eqs. 10-12).

Implementation modules are private: ``_distortion`` (FGSM, I-FGSM, PGD2, sPGD2), ``_cw``
(C&W, sC&W), ``_ddn``, ``_fmn`` and ``_minimal_norm`` (DDN, FMN and their shared loop), ``_result``,
``_losses``, ``_presets`` (the paper's settings), ``_peers`` (:func:`smoothed`), ``_base`` (model handling, input checks), ``_common``
(the start-up and wrap-up every attack shares, ``AttackRun``), ``_quantise``.
"""

from __future__ import annotations

from smoothlab.attacks._cw import FirstSuccessAbortWarning, cw, scw
from smoothlab.attacks._ddn import ddn, sddn
from smoothlab.attacks._distortion import GRAD_AT, LOSSES, fgsm, ifgsm, loss_gradient, pgd2, spgd2
from smoothlab.attacks._fmn import fmn, sfmn
from smoothlab.attacks._losses import is_adversarial, logit_difference, margin_loss
from smoothlab.attacks._peers import PEER_KINDS, SmoothedAttack, SubBatchError, smoothed
from smoothlab.attacks._quantise import QUANTISE_SCALES, quantise
from smoothlab.attacks._presets import IMAGENET_PARAMS, MNIST_PARAMS, paper_settings
from smoothlab.attacks._provenance import settings_provenance
from smoothlab.attacks._registry import (
    ATTACK_LABELS,
    ATTACKS,
    PAPER_ATTACKS,
    AttackEntry,
    attack_entry,
    attack_names,
    attack_payload,
    budget_grids,
    check_grid,
    register,
    restore_attacks,
    unregister,
)
from smoothlab.attacks._result import AttackResult

__all__ = [
    "ATTACKS",
    "ATTACK_LABELS",
    "AttackEntry",
    "AttackResult",
    "FirstSuccessAbortWarning",
    "attack_entry",
    "attack_names",
    "attack_payload",
    "budget_grids",
    "check_grid",
    "register",
    "restore_attacks",
    "unregister",
    "GRAD_AT",
    "LOSSES",
    "IMAGENET_PARAMS",
    "MNIST_PARAMS",
    "PAPER_ATTACKS",
    "PEER_KINDS",
    "SmoothedAttack",
    "SubBatchError",
    "cw",
    "ddn",
    "fgsm",
    "fmn",
    "ifgsm",
    "is_adversarial",
    "logit_difference",
    "loss_gradient",
    "margin_loss",
    "paper_settings",
    "pgd2",
    "quantise",
    "QUANTISE_SCALES",
    "scw",
    "sddn",
    "settings_provenance",
    "sfmn",
    "smoothed",
    "spgd2",
]
