"""What every attack returns: :class:`AttackResult`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from smoothlab._repr import html_table, one_line

__all__ = ["AttackResult"]


@dataclass(eq=False)
class AttackResult:
    """What an attack returns, one entry per image of the batch.

    Attributes
    ----------
    x_adv : torch.Tensor
        ``(B, C, H, W)`` adversarial images; the original image where the attack failed.
    success : torch.Tensor
        ``(B,)`` bool: ``pred_adv != y`` (untargeted) or ``pred_adv == target``.
    distortion : torch.Tensor
        ``(B,)`` ``||x_adv - x||_2`` over all pixels and channels (0 where it failed).
    pred_clean, pred_adv : torch.Tensor
        ``(B,)`` long: the model's predictions on ``x`` and on ``x_adv``.
    forward_passes, backward_passes : torch.Tensor
        ``(B,)`` long: model forward / backward passes spent on each image (the input check and
        the final prediction included).
    attack : str
        ``"fgsm"``, ``"ifgsm"``, ``"pgd2"``, ``"cw"``, ``"ddn"``, ``"fmn"`` or, with a smoother,
        ``"sfgsm"``, ``"sifgsm"``, ``"spgd2"``, ``"scw"``, ``"sddn"``, ``"sfmn"``; for a foreign attack,
        its name, with an ``"s"`` in front when :func:`~smoothlab.attacks.smoothed` smooths it.
    params : dict
        Hyper-parameters actually used (budgets included), as plain Python values.
    seconds : float
        Wall time of the call.
    extra : dict
        Attack-specific tensors, e.g. for C&W ``"c"`` (the constant ``1/λ`` of the best iterate),
        for sC&W, sDDN and sFMN ``"latent"`` (the latent ``z`` of eq. 18 with
        ``x_adv = c(x + ŝ_α(z))``), for C&W and sC&W ``"aborted_at_first_success"`` (the
        images the early abort stopped at the first check after their first success,
        counted by :attr:`first_success_aborts`), and with ``quantise=True`` ``"quantise_scale"`` (the stretch of
        the perturbation that survived rounding to 8 bits, NaN where none did).

    Notes
    -----
    ``repr(result)`` (and a notebook's display) is a short summary: attack, ``N`` images, the
    fraction ``P_suc`` that succeeded, the mean distortion ``D̄`` of the successes, the key
    parameters and the time. These are batch statistics: the protocol of section 5.1 (eq. 20)
    also leaves out the images misclassified from the start, see
    :func:`smoothlab.metrics.summary`. Results compare by identity (``==`` is ``is``).
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    distortion: torch.Tensor
    pred_clean: torch.Tensor
    pred_adv: torch.Tensor
    forward_passes: torch.Tensor
    backward_passes: torch.Tensor
    attack: str
    params: dict[str, Any]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x_adv.shape[0])

    @property
    def first_success_aborts(self) -> int:
        """How many images C&W's early abort stopped at the first check after their first successful
        iterate (``extra["aborted_at_first_success"]``; 0 for attacks without an early abort): their
        ``x_adv`` is close to where the attack first crossed the boundary, not a minimum."""
        flags = self.extra.get("aborted_at_first_success")
        return 0 if flags is None else int(flags.sum())

    def _summary(self) -> dict[str, Any]:
        n = len(self)
        success = self.success.detach()
        n_success = int(success.sum())
        fields: dict[str, Any] = {
            "attack": self.attack,
            "N": n,
            "P_suc": n_success / n if n else math.nan,
            "D̄": float(self.distortion.detach()[success].mean()) if n_success else math.nan,
        }
        fields.update((k, v) for k, v in self.params.items() if k not in ("smoother", "norm", "targeted"))
        if self.params.get("targeted"):
            fields["targeted"] = True
        smoother = self.params.get("smoother")
        if isinstance(smoother, dict):
            fields["smoother"] = {k: smoother[k] for k in ("type", "kernel", "lam", "alpha") if k in smoother}
        if self.first_success_aborts:
            fields["first_success_aborts"] = self.first_success_aborts
        fields["seconds"] = self.seconds
        return fields

    def __repr__(self) -> str:
        return one_line("AttackResult", self._summary())

    def _repr_html_(self) -> str:
        return html_table("AttackResult", self._summary())
