"""Where each default setting of the paper's six attacks comes from: the paper, the authors' code, or us.

:func:`settings_provenance` reads the settings actually in force (:func:`paper_settings` and the
attack functions' own defaults) and compares each with the value the paper states (sec. 5.2, and
sec. 5 for the loss) and the value in the authors' code (DESIGN.md section 4). A setting equal to
the paper's is "paper"; otherwise equal to the authors' is "authors' code"; otherwise "ours". The
values are read, never written here, so the table stays true when a default changes.
"""

from __future__ import annotations

import inspect
from typing import Any

from smoothlab._validation import check_choice
from smoothlab.attacks._presets import PAPER_DATASETS, paper_settings
from smoothlab.attacks._registry import (
    ATTACKS,
    AUTHORS_OPTIONS,
    PAPER_ATTACKS,
    PAPER_OPTIONS,
    AttackEntry,
    attack_entry,
)

__all__ = ["settings_provenance"]

_MISSING = object()


# Why a setting is what it is, when the paper does not say it all: (dataset or "*", setting) -> note.
_NOTES: dict[tuple[str, str], str] = {
    ("*", "iterations"): "the paper gives no iteration count",
    ("*", "search_steps"): "the paper searches c = 1/λ per image (sec. 2.1, 5.3) but gives no number of steps",
    ("*", "abort_early"): "C&W's own early abort (Carlini & Wagner), kept by the authors",
    ("mnist", "smoother.lam"): "the paper gives no kernel bandwidth γ",
    ("imagenet", "smoother.lam"): "the paper gives no kernel bandwidth γ; the authors' 300 is for their Gaussian kernel",
    ("*", "loss"): "the paper: all attacks use loss (3); cleverhans, which the authors used, ascends the cross-entropy",
    ("mnist", "smoother.solver"): "the paper precomputes L_α^-1: any exact solver is the same operator",
    ("imagenet", "smoother.tol"): "tol = 0 runs exactly max_iter CG iterations",
    ("imagenet", "smoother.solver"): "eq. (17) solved exactly, where sec. 5.2 truncates CG at 50 iterations (3.5 % off); "
    "on the CPU a factorisation costs a fifth of those iterations; the truncation is preset='literal'",
    ("*", "penalty"): "eqs. (4), (18) penalise ||r||²; the authors' sC&W code penalises ||r||",
    ("imagenet", "lr"): "the authors' ImageNet scripts: 0.01 on a [-1, 1] box, 0.005 in [0, 1] pixel units; the paper's "
    "0.1 stops photos at their first step (paper_settings(..., preset='literal'))",
    ("imagenet", "c"): "the authors' initial c = 1 in [-1, 1] units, searched per image as sec. 5.3 says",
    ("imagenet", "search_steps"): "sec. 5.3: c is optimised per image; the authors' scripts: 9 search steps",
    ("*", "projection"): "the authors' code rescales r onto the sphere ||r|| = ε",
    ("*", "grad_at"): "eq. (11) takes the gradient at the clipped iterate; cleverhans at the unclipped one",
    ("*", "smooth"): "eq. (12) smooths the gradient; the authors' loop smooths the perturbation",
    ("imagenet", "eps"): "Table 3's budgeted attacks all land at D ≈ 5 on [0, 1] pixels: L2 5 as written, L∞ the "
    "FGSM step of norm 5 on 224x224x3, 5 / sqrt(150528); sec. 5.2's ε∞ is the NIPS 2017 kit's 2·16/255 on "
    "[-1, 1] pixels, an FGSM D near 48 on our photos "
    "(paper_settings(..., preset='literal'))",
}

def _lookup(values: Any, options: Any, dataset: str, setting: str) -> Any:
    """The value of ``setting`` in an entry's ``paper``/``authors`` table (``dataset`` before
    ``"*"``), else in the table of function options shared by all attacks."""
    for key in (dataset, "*"):
        if setting in values.get(key, {}):
            return values[key][setting]
    return options.get(setting, _MISSING)


def _defaults(attack: str) -> dict[str, Any]:
    """Keyword defaults of the attack function (spgd2 / scw forward to pgd2 / cw)."""
    base = {"spgd2": "pgd2", "scw": "cw"}.get(attack, attack)
    params = inspect.signature(ATTACKS[base]).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(b)))
    return a == b


def settings_provenance(dataset: str = "mnist", attacks: tuple[str, ...] = PAPER_ATTACKS) -> Any:
    """The settings the paper's attacks run with by default, and where each comes from.

    Parameters
    ----------
    dataset : {"mnist", "imagenet"}
        Which preset (:func:`paper_settings`).
    attacks : tuple of str
        Attacks among the paper's six.

    Returns
    -------
    pandas.DataFrame
        One row per (attack, setting): ``value`` (in force now: :func:`paper_settings`, or the
        function's default for the options ``loss``, ``projection``, ``grad_at``, ``smooth``,
        ``search_steps``, ``abort_early``, ``penalty``), ``source`` (``"paper"``, ``"authors' code"``
        or ``"ours"``), ``paper`` and ``authors' code`` (their values, empty where they state none)
        and ``note``. Smoothing settings are named ``smoother.<field>``; an exact smoother's solver
        is reported as ``"exact"``.

    Examples
    --------
    >>> from smoothlab.attacks import settings_provenance
    >>> t = settings_provenance("mnist")
    >>> t.loc[("cw", "c"), "source"], t.loc[("cw", "iterations"), "source"]
    ('paper', "authors' code")
    """
    import pandas as pd

    check_choice(dataset, "dataset", PAPER_DATASETS)
    for a in attacks:
        check_choice(a, "attack", PAPER_ATTACKS)
    rows = []
    for attack in attacks:
        values: dict[str, Any] = {}
        for key, value in paper_settings(attack, dataset).items():
            if key == "smoother":
                spec = value
                values["smoother.kernel"] = spec.kernel
                values["smoother.lam"] = spec.lam
                values["smoother.alpha"] = spec.alpha
                exact = spec.solver != "cg" or spec.tol > 0
                values["smoother.solver"] = "exact" if exact else "cg"
                if not exact:
                    values["smoother.max_iter"] = spec.max_iter
                    values["smoother.tol"] = spec.tol
            else:
                values[key] = value
        entry: AttackEntry = attack_entry(attack)
        defaults = _defaults(attack)
        for option in entry.options:
            if option in defaults and option not in values:
                values[option] = defaults[option]
        for setting, value in values.items():
            paper = _lookup(entry.paper, PAPER_OPTIONS, dataset, setting)
            authors = _lookup(entry.authors, AUTHORS_OPTIONS, dataset, setting)
            if paper is not _MISSING and _same(value, paper):
                source = "paper"
            elif authors is not _MISSING and _same(value, authors):
                source = "authors' code"
            else:
                source = "ours"
            rows.append(
                {
                    "attack": attack,
                    "setting": setting,
                    "value": value,
                    "source": source,
                    "paper": "" if paper is _MISSING else paper,
                    "authors' code": "" if authors is _MISSING else authors,
                    "note": _NOTES.get((dataset, setting), _NOTES.get(("*", setting), "")),
                }
            )
    return pd.DataFrame(rows).set_index(["attack", "setting"])
