"""Any attack of another library, smoothed by the paper's reparametrisation (eqs. 17-19): :func:`smoothed`.

The foreign attack never sees the images it attacks. It is handed a model of a free variable ``u``,

    f_u(u) = f(c(x_o + ŝ_α(u - x_o))),        c = clamp to [0, 1],

starts at ``u = x_o`` (the images it is given) and returns ``u*``; the adversarial image is
``x_a = c(x_o + ŝ_α(u* - x_o))``. With ``z = u - x_o`` this is the latent variable of eq. (18),
``r = ŝ_α(z)`` (eq. 17), and the gradient the foreign attack follows is the adjoint ``ŝ_αᵀ g``
(eq. 19), computed by :class:`smoothlab.Smoother`. The smoother is built once per batch on
``x_o``, exactly as the ``smoother=`` option of smoothlab's own attacks.

Three kinds of attacks are recognised (:data:`PEER_KINDS`):

- ``"function"``: a plain function ``attack(model, x, y, **kwargs) -> x_adv`` (adv-lib's
  convention; smoothlab's own attacks, which return an :class:`AttackResult`, also fit);
- ``"foolbox"``: a foolbox 3 attack object, called as ``attack(fmodel, x, y, epsilons=eps)``;
- ``"art"``: an ART evasion attack *class*, or a ``functools.partial`` of one with its
  settings. ART attacks are built around a classifier, and the classifier must be the one of the
  free variable, so :func:`smoothed` builds a ``PyTorchClassifier`` of ``f_u`` for each batch and
  then the attack on it, ``factory(classifier, **kwargs)``.

foolbox and ART are imported only when such an attack is given (``pip install smoothlab[peers]``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from typing import Any

import torch

from smoothlab._repr import one_line
from smoothlab.attacks._base import l2, per_image
from smoothlab.attacks._common import (
    attack_run, batch_param, check_quantise, describe_smoother, finish, smoothing_option,
)
from smoothlab.attacks._result import AttackResult

__all__ = ["PEER_KINDS", "SmoothedAttack", "SubBatchError", "smoothed"]

#: The kinds of foreign attacks :func:`smoothed` recognises.
PEER_KINDS: tuple[str, ...] = ("function", "foolbox", "art")
_TOLERANCE = 1e-5  # how far outside [0, 1] a returned image may be (float rounding) before it is refused
_UNSET: Any = object()


class SubBatchError(ValueError):
    """A foreign attack called the model of the free variable on a part of the batch it was given.

    Told by the shape of the batch: an attack that called the model on a batch of the same shape
    holding other images (or the same ones in another order) cannot be told apart, and would be wrong.
    """


# ---------------------------------------------------------------------------- the model of u
class FreeVariableModel(torch.nn.Module):
    """``u -> f(c(x_o + ŝ_α(u - x_o)))`` for one batch ``x_o`` (the model a foreign attack attacks).

    Counts its forward passes and the backward passes through it (one per call / gradient).
    """

    def __init__(self, model: Any, x: torch.Tensor, S: Any, name: str, per_image: bool) -> None:
        super().__init__()
        self.model = model  # a submodule when an nn.Module: ART and foolbox move and switch it
        self.x, self.S, self.name, self.per_image = x, S, name, per_image
        self.forwards = self.backwards = 0

    def adversarial(self, u: torch.Tensor) -> torch.Tensor:
        """``x_a = c(x_o + ŝ_α(u - x_o))`` (eqs. 17-18)."""
        z = u - self.x
        r = z if self.S is None else self.S(z, check_finite=False)
        return (self.x + r).clamp(0.0, 1.0)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if not isinstance(u, torch.Tensor):
            raise TypeError(f"{self.name}: the model was called on a {type(u).__name__}, expected a torch.Tensor")
        if tuple(u.shape) != tuple(self.x.shape):
            fix = (
                "" if self.per_image else
                " Pass per_image=True to smoothed() to run the attack one image at a time (slow but always right)."
            )
            raise SubBatchError(
                f"{self.name} called the model on a batch of shape {tuple(u.shape)}, not on the whole batch of shape "
                f"{tuple(self.x.shape)} it was given: an attack that works on sub-batches (e.g. only the images still "
                f"standing) breaks the mapping from u back to its original x_o.{fix}"
            )
        out = self.model(self.adversarial(u.to(device=self.x.device, dtype=self.x.dtype)))
        self.forwards += 1
        if out.requires_grad:
            out.register_hook(self._count_backward)
        return out

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.backwards += 1


@contextlib.contextmanager
def frozen(model: Any) -> Iterator[None]:
    """Stop gradients to ``model``'s parameters (foreign attacks call ``backward()``), restored after."""
    params = [p for p in model.parameters() if p.requires_grad] if isinstance(model, torch.nn.Module) else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


# ---------------------------------------------------------------------------- kinds of attacks
def _art_class(attack: Any) -> Any:
    """The ART evasion attack class of ``attack`` (a class or a partial of one), else ``None``."""
    cls = attack.func if isinstance(attack, functools.partial) else attack
    if not isinstance(cls, type) or not cls.__module__.startswith("art."):
        return None
    from art.attacks import EvasionAttack

    return cls if issubclass(cls, EvasionAttack) else None


def peer_kind(attack: Any) -> str:
    """Which kind of foreign attack ``attack`` is (:data:`PEER_KINDS`).

    Raises
    ------
    TypeError
        ``attack`` is none of them (an ART attack object, a class, a model, a non-callable...).
    """
    module = type(attack).__module__ or ""
    if module.startswith("foolbox."):
        from foolbox.attacks.base import Attack

        if isinstance(attack, Attack):
            return "foolbox"
    if _art_class(attack) is not None:
        return "art"
    if module.startswith("art."):
        raise TypeError(
            f"attack: an ART attack object ({type(attack).__name__}) is built on its own classifier; pass its class, "
            f"or functools.partial(ArtAttackClass, **settings): smoothed() builds it on the classifier of the "
            "free variable u"
        )
    if isinstance(attack, type):
        raise TypeError(
            f"attack must be an attack, got the class {attack.__module__}.{attack.__qualname__} (instantiate it; "
            "only ART attacks are given as classes)"
        )
    if isinstance(attack, torch.nn.Module):
        raise TypeError(f"attack must be an attack, got a torch.nn.Module ({type(attack).__name__}): a model?")
    if callable(attack) and not isinstance(attack, SmoothedAttack):
        return "function"
    raise TypeError(
        "attack must be a function attack(model, x, y, **kwargs) -> x_adv, a foolbox 3 attack or an ART evasion "
        f"attack class, got {type(attack).__name__}: {attack!r:.80}"
    )


def _attack_name(attack: Any, kind: str) -> str:
    if kind == "art":
        return _art_class(attack).__name__
    if kind == "foolbox":
        return type(attack).__name__
    return getattr(attack, "__name__", type(attack).__name__)


def _plain(value: Any) -> Any:
    """``value`` if plain Python (for ``AttackResult.params``), else its repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
        return list(value)
    return repr(value)


# ---------------------------------------------------------------------------- adapters: one call on one group
def _run_function(attack: Any, free: FreeVariableModel, y: torch.Tensor, target: Any, eps: Any,
                  kwargs: dict[str, Any]) -> Any:
    """adv-lib's convention: ``attack(model, x, labels, **kwargs)``, ``targeted=True`` for a target."""
    kw = dict(kwargs)
    if eps is not None:
        kw["eps"] = eps
    if target is not None:
        kw["targeted"] = True
    out = attack(free, free.x, y if target is None else target, **kw)
    return out.x_adv if isinstance(out, AttackResult) else out


def _run_foolbox(attack: Any, free: FreeVariableModel, y: torch.Tensor, target: Any, eps: Any,
                 kwargs: dict[str, Any]) -> Any:
    """``attack(fmodel, x, criterion, epsilons=eps)``; its clipped answer (inside its own bound)."""
    import foolbox
    from foolbox.attacks.base import FixedEpsilonAttack

    if eps is None and isinstance(attack, FixedEpsilonAttack):
        raise ValueError(f"eps: the foolbox attack {type(attack).__name__} needs a budget, got eps=None")
    fmodel = foolbox.PyTorchModel(free, bounds=(0.0, 1.0), device=free.x.device)
    criterion = y if target is None else foolbox.criteria.TargetedMisclassification(target)
    _, clipped, _ = attack(fmodel, free.x, criterion, epsilons=eps, **kwargs)
    return clipped


def _run_art(attack: Any, free: FreeVariableModel, y: torch.Tensor, target: Any, eps: Any,
             kwargs: dict[str, Any], num_classes: int) -> Any:
    """``factory(PyTorchClassifier(f_u), **kwargs).generate(x=x_o, y=labels)``; the whole group in one
    batch (``batch_size``) and quiet (``verbose=False``) unless the attack's settings say otherwise."""
    from art.estimators.classification import PyTorchClassifier

    x = free.x
    clf = PyTorchClassifier(
        free, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=num_classes,
        clip_values=(0.0, 1.0), device_type="gpu" if x.is_cuda else "cpu",
    )
    fixed = attack.keywords if isinstance(attack, functools.partial) else {}
    accepted = inspect.signature(_art_class(attack).__init__).parameters
    kw = dict(kwargs)
    for key, value in (("batch_size", x.shape[0]), ("verbose", False)):
        if key in accepted and key not in fixed:
            kw.setdefault(key, value)
    if eps is not None:
        kw["eps"] = eps
    if target is not None:
        kw["targeted"] = True
    labels = (y if target is None else target).cpu().numpy()
    return attack(clf, **kw).generate(x=x.detach().cpu().numpy(), y=labels)


def _check_answer(u: Any, x: torch.Tensor, name: str) -> torch.Tensor:
    """The foreign attack's ``u*`` as a tensor like ``x``: same shape, values in ``[0, 1]``."""
    if not isinstance(u, torch.Tensor):
        import numpy as np

        if not isinstance(u, np.ndarray):
            raise TypeError(f"{name} must return adversarial images as a tensor or an array, got {type(u).__name__}")
        u = torch.from_numpy(u)
    if tuple(u.shape) != tuple(x.shape):
        raise ValueError(f"{name} returned images of shape {tuple(u.shape)}, expected the shape of x {tuple(x.shape)}")
    u = u.detach().to(device=x.device, dtype=x.dtype)
    finite = u[torch.isfinite(u)]
    if finite.numel() and (float(finite.min()) < -_TOLERANCE or float(finite.max()) > 1.0 + _TOLERANCE):
        raise ValueError(
            f"{name} returned images with values in [{float(finite.min()):.4g}, {float(finite.max()):.4g}], expected "
            "values in [0, 1]"
        )
    return u.clamp(0.0, 1.0)  # NaN stays NaN: finish() counts those images as failures, with a warning


def _norm(attack: Any, kind: str, kwargs: dict[str, Any]) -> Any:
    """The foreign attack's own norm, where it says (``"l2"``, ``"linf"``, ``"l1"``), else ``None``."""
    if kind == "foolbox":
        p = getattr(getattr(attack, "distance", None), "p", None)
    else:
        fixed = attack.keywords if isinstance(attack, functools.partial) else {}
        p = kwargs.get("norm", fixed.get("norm"))
    names = {1: "l1", 2: "l2", float("inf"): "linf", "inf": "linf", "l1": "l1", "l2": "l2", "linf": "linf"}
    return names.get(p) if isinstance(p, (int, float, str)) else None


def _groups(eps: Any, x: torch.Tensor, per_image: bool) -> tuple[list[tuple[Any, Any]], Any]:
    """The calls of the foreign attack: ``[(indices or None for the whole batch, eps as a float or None)]``
    (one per image with ``per_image``, one per distinct budget of a per-image ``eps``), and ``eps`` described."""
    b = x.shape[0]
    if eps is None:
        budgets, desc = [None] * b, None
    else:
        values, desc = batch_param(eps, "eps", x)
        budgets = values.tolist()
    if per_image:
        return [(torch.tensor([i], device=x.device), budgets[i]) for i in range(b)], desc
    distinct = list(dict.fromkeys(budgets))
    if len(distinct) == 1:
        return [(None, distinct[0])], desc
    groups = []
    for e in distinct:
        idx = torch.tensor([i for i in range(b) if budgets[i] == e], device=x.device)
        groups.append((idx, e))
    return groups, desc


# ---------------------------------------------------------------------------- the smoothed attack
class SmoothedAttack:
    """A foreign attack smoothed by the reparametrisation of eqs. (17-19); made by :func:`smoothed`.

    Called as smoothlab's attacks are, ``attack(model, x, y, *, eps=None, target=None, quantise=False,
    **kwargs) -> AttackResult``; ``smoother=`` at the call replaces the one given to :func:`smoothed`
    (the benchmark shares one smoother per batch this way). ``kwargs`` go to the foreign attack: to
    the function, to the foolbox attack's call, to the ART attack's constructor. ``eps``, a float or
    a ``(B,)`` tensor (one call per distinct budget), is passed as ``eps=`` to a function and an ART
    attack, as ``epsilons=`` to a foolbox attack.

    Attributes
    ----------
    attack : object
        The foreign attack as given.
    kind : str
        One of :data:`PEER_KINDS`.
    name : str
        Its name; the results' ``attack`` is ``"s" + name`` when it smooths.
    smoother : object
        The ``smoother=`` option (``None``: no smoothing, the adapter alone).
    per_image : bool
        Run the foreign attack one image at a time.
    """

    def __init__(self, attack: Any, kind: str, name: str, smoother: Any, per_image: bool) -> None:
        self.attack, self.kind, self.name, self.smoother, self.per_image = attack, kind, name, smoother, per_image
        self.__name__ = self.__qualname__ = ("s" if smoother is not None else "") + name

    def __repr__(self) -> str:
        sm = describe_smoother(self.smoother)
        fields = {"attack": self.name, "kind": self.kind, "smoother": sm if not isinstance(sm, dict) else
                  {k: sm[k] for k in ("type", "alpha") if k in sm}, "per_image": self.per_image}
        return one_line("SmoothedAttack", fields)

    def __call__(self, model: Any, x: Any, y: Any, *, eps: Any = None, target: Any = None, smoother: Any = _UNSET,
                 quantise: bool = False, **kwargs: Any) -> AttackResult:
        smoother = self.smoother if smoother is _UNSET else smoother
        with attack_run(model, x, y, target) as run:
            prep, x = run.prep, run.prep.x
            quantise = check_quantise(quantise)
            groups, eps_desc = _groups(eps, x, self.per_image)
            S = run.resolve_smoother(smoother)
            u = torch.empty_like(x)
            forwards = torch.ones(x.shape[0], dtype=torch.long, device=x.device)  # the input check
            backwards = torch.zeros_like(forwards)
            with frozen(model):
                for idx, e in groups:
                    sel = slice(None) if idx is None else idx
                    u[sel], f, b = self._attack_group(model, prep, S, idx, e, kwargs)
                    forwards[sel] += f
                    backwards[sel] += b
            with torch.no_grad():
                xa = FreeVariableModel(model, x, S, self.name, self.per_image).adversarial(u)
            params = {"peer": self.kind, **({} if eps is None else {"eps": eps_desc}),
                      "norm": _norm(self.attack, self.kind, kwargs), "smoother": describe_smoother(smoother),
                      **{k: _plain(v) for k, v in kwargs.items()}, **({"per_image": True} if self.per_image else {})}
            res = finish(model, prep, xa, forwards, backwards, attack=run.name(self.name), params=params, t0=run.t0,
                         quantise=quantise)
            res.extra["latent"] = torch.where(per_image(res.success), u - x, 0.0)  # z = u* - x_o, eq. (18)
            return res

    def _attack_group(self, model: Any, prep: Any, S: Any, idx: Any, eps: Any,
                      kwargs: dict[str, Any]) -> tuple[torch.Tensor, int, int]:
        """One call of the foreign attack on the images ``idx`` (``None``: all): ``(u*, forwards, backwards)``."""
        x, y, target = prep.x, prep.y, prep.target
        if idx is not None:
            x, y = x[idx], y[idx]
            target = None if target is None else target[idx]
            S = None if S is None else S[idx]
        free = FreeVariableModel(model, x, S, self.name, self.per_image).eval()
        if self.kind == "art":
            raw = _run_art(self.attack, free, y, target, eps, kwargs, prep.num_classes)
        elif self.kind == "foolbox":
            raw = _run_foolbox(self.attack, free, y, target, eps, kwargs)
        else:
            raw = _run_function(self.attack, free, y, target, eps, kwargs)
        return _check_answer(raw, x, self.name), free.forwards, free.backwards


def smoothed(attack: Any, *, smoother: Any = "mnist", per_image: bool = False, name: str | None = None) -> SmoothedAttack:
    """Any attack, smoothed by the paper's reparametrisation (eqs. 17-19).

    For a batch ``x_o`` the smoother ``ŝ_α`` is built once (as the ``smoother=`` option of smoothlab's
    attacks), and the foreign attack is handed a model of a free variable ``u``,
    ``u -> f(c(x_o + ŝ_α(u - x_o)))``, starting at ``u = x_o``. Its answer ``u*`` gives the adversarial
    image ``x_a = c(x_o + ŝ_α(u* - x_o))``: ``z = u* - x_o`` is the latent of eq. (18), the
    perturbation ``r = ŝ_α(z)`` (eq. 17) is smooth like ``x_o``, and the attack follows the
    gradient ``ŝ_αᵀ g`` (eq. 19). The result's distortion, success and visibility are measured on
    ``x_a``, never on ``u*``; ``extra["latent"]`` holds ``z`` (zeros where the attack failed).

    **What it means.** The foreign attack's own norm bound (``eps``) or its minimisation applies to
    ``u - x_o``, not to the smoothed perturbation ``r``: ``ŝ_α`` is a low-pass, so ``||r||`` is
    usually much smaller than ``||u* - x_o||``, and an ``eps`` does not bound the distortion of
    ``x_a`` (see ``benchmarks/README.md`` for how far they are apart). A foolbox attack's random start
    and an ART attack's ``num_random_init`` start near ``x_o`` in ``u``, as they would in ``x``.

    Parameters
    ----------
    attack : callable or foolbox attack or ART attack class
        - a function ``attack(model, x, y, **kwargs) -> x_adv`` (adv-lib's convention: with a target it
          is called as ``attack(model, x, target, targeted=True, ...)``; one returning an
          :class:`AttackResult` also fits);
        - a foolbox 3 attack object (``foolbox.attacks.L2PGD(steps=10)``), called as
          ``attack(fmodel, x, y, epsilons=eps)``; its clipped answer is used;
        - an ART evasion attack class, or ``functools.partial(ArtClass, **settings)``: smoothed builds
          a ``PyTorchClassifier`` of the free variable for each batch and the attack on it, and calls
          ``generate(x=x_o, y=labels)``; ``batch_size`` defaults to the whole batch, ``verbose`` to
          ``False``. An ART attack object is refused: it is tied to another classifier.

        torchattacks attacks are built on a model too: wrap one as a function,
        ``lambda model, x, y, **kw: torchattacks.PGDL2(model, **kw)(x, y)``; so are adv-lib's
        (``lambda model, x, y, eps: adv_lib.attacks.pgd(model, x, y, ε=eps, norm=2)``).
    smoother : str, SmoothingSpec, Smoother, callable or None
        What smoothlab's attacks take: ``"mnist"`` (default), ``"imagenet"``, ``"imagenet-exact"``, a
        :class:`smoothlab.SmoothingSpec`, ... ``None``: no smoothing (the adapter alone, ``x_a = u*``).
    per_image : bool
        Run the attack one image at a time. Needed for an attack that calls the model on a part of
        its batch (e.g. only the images still standing, as AutoAttack does): that breaks the mapping
        from ``u`` back to its ``x_o``, and is refused with a :class:`SubBatchError` that says so.
    name : str, optional
        The attack's name in results (default: the function's or the class's name).

    Returns
    -------
    SmoothedAttack
        ``fn(model, x, y, *, eps=None, target=None, quantise=False, **kwargs) -> AttackResult``, the
        signature of smoothlab's attacks: it goes to :func:`register` and ``smoothlab bench``.

    Raises
    ------
    TypeError
        ``attack`` is not an attack of a known kind; a bad ``per_image`` or ``name``.
    ValueError
        At the call: the foreign attack returned images outside ``[0, 1]`` or not of the shape of ``x``;
        it called the model on a sub-batch (:class:`SubBatchError`).

    Examples
    --------
    >>> import foolbox, torch
    >>> from smoothlab.attacks import smoothed
    >>> from smoothlab.smoothing import SmoothingSpec
    >>> from smoothlab.data import mnist
    >>> from smoothlab.models import c4
    >>> x, y = mnist("test")
    >>> x, y, model = x[:4], y[:4], c4(pretrained=True)
    >>> spgd = smoothed(foolbox.attacks.L2PGD(steps=10, abs_stepsize=3.0, random_start=False), smoother="mnist")
    >>> res = spgd(model, x, y, eps=5.0)
    >>> res.attack, res.params["peer"], res.params["norm"]
    ('sL2ProjectedGradientDescentAttack', 'foolbox', 'l2')
    >>> z = res.extra["latent"]                       # u* - x_o, bounded by eps = 5 (foolbox's L2 ball)
    >>> S = SmoothingSpec.mnist()(x)                  # x_a = clamp(x_o + ŝ_α(z), 0, 1), eqs. (17-18)
    >>> bool(torch.allclose((x + S(z)).clamp(0, 1)[res.success], res.x_adv[res.success], atol=1e-5))
    True
    """
    kind = peer_kind(attack)
    if not isinstance(per_image, bool):
        raise TypeError(f"per_image must be a bool, got {per_image!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"name must be a non-empty str or None, got {name!r}")
    smoothing_option(smoother)  # a preset name is checked now
    if smoother is not None and not callable(smoothing_option(smoother)):
        raise TypeError(
            f"smoother must be None, a preset name, a SmoothingSpec, a Smoother or a callable, got {type(smoother).__name__}"
        )
    return SmoothedAttack(attack, kind, name or _attack_name(attack, kind), smoother, per_image)
