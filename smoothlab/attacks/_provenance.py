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
from smoothlab.attacks._presets import paper_settings

__all__ = ["PAPER_ATTACKS", "settings_provenance"]

#: The six attacks of the paper's Table 1, in its order.
PAPER_ATTACKS: tuple[str, ...] = ("fgsm", "ifgsm", "pgd2", "cw", "spgd2", "scw")

_MISSING = object()

# (dataset, attack or "*", setting) -> value the paper states.
_PAPER: dict[tuple[str, str, str], Any] = {
    ("mnist", "fgsm", "eps"): 0.3,
    ("mnist", "ifgsm", "eps"): 0.3,
    ("mnist", "ifgsm", "step"): 0.08,
    ("mnist", "pgd2", "eps"): 5.0,
    ("mnist", "pgd2", "step"): 3.0,
    ("mnist", "spgd2", "eps"): 5.0,
    ("mnist", "spgd2", "step"): 3.0,
    ("mnist", "cw", "margin"): 1.0,
    ("mnist", "cw", "lr"): 0.1,
    ("mnist", "cw", "c"): 15.0,
    ("mnist", "scw", "margin"): 1.0,
    ("mnist", "scw", "lr"): 0.1,
    ("mnist", "scw", "c"): 15.0,
    ("mnist", "*", "smoother.alpha"): 0.95,
    ("mnist", "*", "smoother.kernel"): "laplacian",
    ("mnist", "*", "smoother.solver"): "exact",
    ("imagenet", "fgsm", "eps"): 0.1255,
    ("imagenet", "ifgsm", "eps"): 0.1255,
    ("imagenet", "ifgsm", "step"): 0.08,
    ("imagenet", "pgd2", "eps"): 5.0,
    ("imagenet", "pgd2", "step"): 3.0,
    ("imagenet", "spgd2", "eps"): 5.0,
    ("imagenet", "spgd2", "step"): 3.0,
    ("imagenet", "cw", "margin"): 0.0,
    ("imagenet", "cw", "lr"): 0.1,
    ("imagenet", "cw", "c"): 100.0,
    ("imagenet", "scw", "margin"): 0.0,
    ("imagenet", "scw", "lr"): 0.1,
    ("imagenet", "scw", "c"): 100.0,
    ("imagenet", "*", "smoother.alpha"): 0.997,
    ("imagenet", "*", "smoother.kernel"): "laplacian",
    ("imagenet", "*", "smoother.solver"): "cg",
    ("imagenet", "*", "smoother.max_iter"): 50,
    ("imagenet", "*", "smoother.tol"): 0.0,
    # sec. 5: "All attacks are untargetted, as defined by loss function (3)"; eq. (12) smooths the
    # gradient; PGD2 projects (sec. 5.2: "projected gradient descent") the clipped iterate (eq. 11);
    # eq. (4) / (18) penalise the squared norm
    ("*", "*", "loss"): "margin",
    ("*", "*", "smooth"): "gradient",
    ("*", "*", "projection"): "ball",
    ("*", "*", "grad_at"): "clipped",
    ("*", "*", "penalty"): "squared",
}

# (dataset, attack or "*", setting) -> value in the authors' code (DESIGN.md section 4).
_AUTHORS: dict[tuple[str, str, str], Any] = {
    ("*", "ifgsm", "iterations"): 10,
    ("*", "pgd2", "iterations"): 10,
    ("*", "spgd2", "iterations"): 10,
    ("*", "cw", "iterations"): 100,
    ("*", "scw", "iterations"): 100,
    ("mnist", "cw", "search_steps"): 1,
    ("mnist", "scw", "search_steps"): 1,
    ("imagenet", "scw", "search_steps"): 9,
    ("*", "cw", "abort_early"): True,
    ("*", "scw", "abort_early"): True,
    ("mnist", "*", "smoother.lam"): 10.0,
    ("imagenet", "*", "smoother.lam"): 300.0,
    ("imagenet", "*", "smoother.kernel"): "gaussian",
    ("*", "*", "loss"): "cross-entropy",
    ("*", "*", "smooth"): "perturbation",
    ("*", "*", "projection"): "sphere",
    ("*", "*", "grad_at"): "unclipped",
    ("*", "scw", "penalty"): "l2",
}

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
    ("*", "penalty"): "eqs. (4), (18) penalise ||r||²; the authors' sC&W code penalises ||r||",
    ("*", "projection"): "the authors' code rescales r onto the sphere ||r|| = ε",
    ("*", "grad_at"): "eq. (11) takes the gradient at the clipped iterate; cleverhans at the unclipped one",
    ("*", "smooth"): "eq. (12) smooths the gradient; the authors' loop smooths the perturbation",
}

# Keyword defaults of the attack functions that shape the algorithm (besides paper_settings).
_OPTIONS: dict[str, tuple[str, ...]] = {
    "fgsm": ("loss",),
    "ifgsm": ("loss",),
    "pgd2": ("loss", "projection", "grad_at"),
    "spgd2": ("loss", "projection", "grad_at", "smooth"),
    "cw": ("search_steps", "abort_early", "penalty"),
    "scw": ("search_steps", "abort_early", "penalty"),
}


def _lookup(table: dict[tuple[str, str, str], Any], dataset: str, attack: str, setting: str) -> Any:
    for key in ((dataset, attack, setting), (dataset, "*", setting), ("*", attack, setting), ("*", "*", setting)):
        if key in table:
            return table[key]
    return _MISSING


def _defaults(attack: str) -> dict[str, Any]:
    """Keyword defaults of the attack function (spgd2 / scw forward to pgd2 / cw)."""
    from smoothlab import attacks

    base = {"spgd2": "pgd2", "scw": "cw"}.get(attack, attack)
    params = inspect.signature(getattr(attacks, base)).parameters
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

    check_choice(dataset, "dataset", ("mnist", "imagenet"))
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
        defaults = _defaults(attack)
        for option in _OPTIONS[attack]:
            if option in defaults and option not in values:
                values[option] = defaults[option]
        for setting, value in values.items():
            paper = _lookup(_PAPER, dataset, attack, setting)
            authors = _lookup(_AUTHORS, dataset, attack, setting)
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
