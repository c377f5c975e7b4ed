"""The paper's attack settings (sec. 5.2) per dataset, read from the attack registry.

:func:`paper_settings` turns a registry record's settings for a dataset into the keyword
arguments of the attack (a smoother as a :class:`smoothlab.SmoothingSpec`); :data:`MNIST_PARAMS`
and :data:`IMAGENET_PARAMS` are read-only views of the paper's six. The values themselves live in
``attacks/_registry.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from smoothlab._validation import check_choice
from smoothlab.attacks._registry import PAPER_ATTACKS, attack_entry

__all__ = ["IMAGENET_PARAMS", "MNIST_PARAMS", "PAPER_DATASETS", "paper_settings"]

#: The datasets the paper's settings cover.
PAPER_DATASETS: tuple[str, ...] = ("mnist", "imagenet")


def _params(dataset: str) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({a: MappingProxyType(dict(attack_entry(a).settings[dataset])) for a in PAPER_ATTACKS})


#: MNIST keyword arguments per attack of the paper (the distortion budget ``eps`` aside).
MNIST_PARAMS: Mapping[str, Mapping[str, Any]] = _params("mnist")
#: ImageNet keyword arguments per attack of the paper (the distortion budget ``eps`` aside).
IMAGENET_PARAMS: Mapping[str, Mapping[str, Any]] = _params("imagenet")


def paper_settings(attack: str, dataset: str = "mnist", *, eps: bool = True) -> dict[str, Any]:
    """Keyword arguments of ``attack`` with the paper's settings for ``dataset`` (sec. 5.2).

    Parameters
    ----------
    attack : str
        A registered attack with settings for ``dataset``: the paper's ``"fgsm"``, ``"ifgsm"``,
        ``"pgd2"``, ``"cw"``, ``"spgd2"``, ``"scw"``, or ``"ddn"``, ``"fmn"``, ``"sddn"``, ``"sfmn"``.
    dataset : {"mnist", "imagenet"}
        Digits or natural images.
    eps : bool
        Include the paper's single budget ``eps`` of the distortion-targeting attacks.

    Returns
    -------
    dict
        ``attack(model, x, y, **paper_settings(attack, dataset))`` runs it; a smoother comes as a
        :class:`smoothlab.SmoothingSpec`.

    Examples
    --------
    >>> from smoothlab.attacks import paper_settings
    >>> paper_settings("pgd2", "imagenet")
    {'step': 3.0, 'iterations': 10, 'eps': 5.0}
    >>> paper_settings("scw", "imagenet")["smoother"].alpha
    0.997
    """
    check_choice(dataset, "dataset", PAPER_DATASETS)
    entry = attack_entry(attack)
    if dataset not in entry.settings:
        raise ValueError(f"attack {attack!r} has no settings for dataset {dataset!r}; it has {', '.join(entry.settings)}")
    kwargs = copy.deepcopy(dict(entry.settings[dataset]))
    single = entry.grid(dataset, "single")
    if eps and single:
        kwargs["eps"] = single[0]
    if "smoother" in kwargs:
        from smoothlab.smoothing import SmoothingSpec

        kwargs["smoother"] = SmoothingSpec(**kwargs["smoother"])
    return kwargs
