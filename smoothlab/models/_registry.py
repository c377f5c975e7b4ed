"""The models a benchmark can attack or evaluate on, by name.

A :class:`~smoothlab.bench.BenchSpec` names its models (``model``: the one the attacks are
crafted on; ``target_model``: the one they are evaluated on under transferability, sec. 5.4)
so that a spec stays a small JSON document and every worker builds the model itself.

Built-in names (:data:`MODELS`):

- ``"c4"`` -- the pretrained C4 (sec. 5.2, Table 1);
- ``"c4-adv"`` -- C4 adversarially trained against FGSM (sec. 5.3, Table 2);
- ``"c4-l2adv"`` -- C4 adversarially trained with L2 PGD (Madry et al.; eps 2, beyond the paper:
  ``c4(pretrained=True, adversarial="pgd2")``, recipe in ``scripts/train_c4.py``);
- ``"c4-bilateral"`` -- the pretrained C4 behind a bilateral filter with domain / range standard
  deviations 0.5 / 0.2 (:class:`smoothlab.models.BilateralDefence`; the first variant of Table 3);
- ``"efficientnet_lite0"`` -- the offline ImageNet classifier (:func:`smoothlab.models.imagenet`);
- ``"efficientnet_lite0-bilateral"`` -- the same behind the bilateral filter of Table 3;
- ``"inception_v3.tf_in1k"``, ``"inception_v3.tf_adv_in1k"``, ``"resnetv2_50.a1h_in1k"`` -- the
  paper's ImageNet networks from the timm zoo (where timm imports and the weights can be had).

An entry's ``"family"`` says which function builds it (``"c4"``: :func:`smoothlab.models.c4`,
``"imagenet"``: :func:`smoothlab.models.imagenet`); its other keys are that function's keyword
arguments, plus ``"bilateral"`` (keyword arguments of the defence).

Other models are added with :func:`register_model` (a factory ``device -> nn.Module``). A Dask
run sends the factories of the spec's registered models to its workers with the worker plugin,
so the factory must be picklable (a module-level function, or anything cloudpickle handles).

Each name has a version (:func:`model_version`), bumped by every (un)registration; model caches
(the benchmark workers' cache) key on it, so a cached instance of an earlier factory is never
reused and this registry never reaches into a cache.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "MODELS",
    "MODEL_DATASETS",
    "register_model",
    "unregister_model",
    "build_model",
    "model_names",
    "model_factories",
    "model_version",
]

_PAPER_BILATERAL = MappingProxyType({"sigma_d": 0.5, "sigma_r": 0.2})


def _entry(family: str, **kwargs: Any) -> Mapping[str, Any]:
    return MappingProxyType({"family": family, **kwargs})


#: Built-in model names -> how they are built (``"family"``: the building function; other keys:
#: its keyword arguments, plus ``"bilateral"``: keyword arguments of :class:`smoothlab.models.BilateralDefence`).
MODELS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "c4": _entry("c4", pretrained=True, adversarial=False),
        "c4-adv": _entry("c4", pretrained=True, adversarial=True),
        "c4-l2adv": _entry("c4", pretrained=True, adversarial="pgd2"),
        # sec. 5.4: "a bilateral filter (with standard deviation 0.5 and 0.2 in the domain and
        # range kernel respectively) before feeding the network"
        "c4-bilateral": _entry("c4", pretrained=True, adversarial=False, bilateral=_PAPER_BILATERAL),
        "efficientnet_lite0": _entry("imagenet", name="efficientnet_lite0"),
        "efficientnet_lite0-bilateral": _entry("imagenet", name="efficientnet_lite0", bilateral=_PAPER_BILATERAL),
        "inception_v3.tf_in1k": _entry("imagenet", name="inception_v3.tf_in1k"),
        "inception_v3.tf_adv_in1k": _entry("imagenet", name="inception_v3.tf_adv_in1k"),
        "resnetv2_50.a1h_in1k": _entry("imagenet", name="resnetv2_50.a1h_in1k"),
    }
)

#: The dataset each built-in model classifies.
MODEL_DATASETS: Mapping[str, str] = MappingProxyType({n: "mnist" if e["family"] == "c4" else "imagenet" for n, e in MODELS.items()})


_REGISTRY: dict[str, Callable[[Any], Any]] = {}
_VERSIONS: dict[str, int] = {}
_LOCK = threading.Lock()


def model_version(name: str) -> int:
    """How many times ``name`` was registered or unregistered in this process (0 for built-ins).

    A cache of built models keys on ``(name, model_version(name))``.
    """
    with _LOCK:
        return _VERSIONS.get(name, 0)


def model_names() -> tuple[str, ...]:
    """Built-in names followed by the registered ones."""
    with _LOCK:
        return tuple(MODELS) + tuple(n for n in _REGISTRY if n not in MODELS)


def register_model(name: str, factory: Callable[[Any], Any], *, overwrite: bool = False) -> None:
    """Make ``name`` usable as ``BenchSpec(model=...)`` / ``target_model=...``.

    Parameters
    ----------
    name : str
        Model name (not a built-in one).
    factory : callable
        ``factory(device: torch.device) -> torch.nn.Module``: the model in eval mode on ``device``,
        taking ``[0, 1]`` images and returning logits. Called at most once per process and
        device (the result is cached), also in each Dask worker.
    overwrite : bool
        Replace an earlier registration of ``name``.

    Notes
    -----
    The spec records only the name: results on disk are tied to it, not to the factory's code.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if name in MODELS:
        raise ValueError(f"model name {name!r} is built in; choose another name")
    if not callable(factory):
        raise TypeError(f"factory must be callable (device -> nn.Module), got {type(factory).__name__}")
    with _LOCK:
        if name in _REGISTRY and not overwrite and _REGISTRY[name] is not factory:
            raise ValueError(f"model {name!r} is already registered; pass overwrite=True to replace it")
        _REGISTRY[name] = factory
        _VERSIONS[name] = _VERSIONS.get(name, 0) + 1  # a cached instance of an earlier factory is stale


def unregister_model(name: str) -> None:
    """Forget a registered model (built-in names cannot be removed)."""
    if name in MODELS:
        raise ValueError(f"model name {name!r} is built in and cannot be unregistered")
    with _LOCK:
        if name not in _REGISTRY:
            raise ValueError(f"model {name!r} is not registered; registered: {sorted(_REGISTRY)}")
        del _REGISTRY[name]
        _VERSIONS[name] = _VERSIONS.get(name, 0) + 1


def model_factories(names: Any) -> dict[str, Callable[[Any], Any]]:
    """The registered factories among ``names`` (built-in names are skipped)."""
    with _LOCK:
        return {n: _REGISTRY[n] for n in names if n is not None and n not in MODELS and n in _REGISTRY}


def build_model(name: str, device: Any = None) -> Any:
    """Build the model called ``name`` on ``device`` (eval mode).

    Raises
    ------
    ValueError
        Unknown name.
    """
    import torch

    device = torch.device(device or "cpu")
    if name in MODELS:
        from smoothlab.models._c4 import c4
        from smoothlab.models._imagenet import imagenet

        how = dict(MODELS[name])
        bilateral = how.pop("bilateral", None)
        build = c4 if how.pop("family") == "c4" else imagenet
        model = build(**how, device=device)
        if bilateral is not None:
            from smoothlab.models._defences import BilateralDefence

            model = BilateralDefence(model, **dict(bilateral))
        return model.to(device).eval()
    with _LOCK:
        factory = _REGISTRY.get(name)
    if factory is None:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(model_names())} (or register_model() it)")
    model = factory(device)
    if not callable(model):
        raise TypeError(f"the factory of model {name!r} must return a torch.nn.Module, got {type(model).__name__}")
    if hasattr(model, "eval"):
        model.eval()
    return model
