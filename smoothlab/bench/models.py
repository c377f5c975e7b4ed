"""The models a benchmark can attack or evaluate on, by name.

A :class:`~smoothlab.bench.BenchSpec` names its models (``model``: the one the attacks are
crafted on; ``target_model``: the one they are evaluated on under transferability, sec. 5.4)
so that a spec stays a small JSON document and every worker builds the model itself.

Built-in names (:data:`MODELS`):

- ``"c4"`` -- the pretrained C4 (sec. 5.2, Table 1);
- ``"c4-adv"`` -- C4 adversarially trained against FGSM (sec. 5.3, Table 2);
- ``"c4-bilateral"`` -- the pretrained C4 behind a bilateral filter with domain / range standard
  deviations 0.5 / 0.2 (:class:`smoothlab.models.BilateralDefence`; the first variant of Table 3).

Other models are added with :func:`register_model` (a factory ``device -> nn.Module``). A Dask
run sends the factories of the spec's registered models to its workers with the worker plugin,
so the factory must be picklable (a module-level function, or anything cloudpickle handles).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["MODELS", "register_model", "unregister_model", "build_model", "model_names", "model_factories"]

#: Built-in model names -> how they are built (keyword arguments of :func:`smoothlab.models.c4`,
#: plus ``"bilateral"``: keyword arguments of :class:`smoothlab.models.BilateralDefence`).
MODELS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "c4": MappingProxyType({"pretrained": True, "adversarial": False}),
        "c4-adv": MappingProxyType({"pretrained": True, "adversarial": True}),
        # sec. 5.4: "a bilateral filter (with standard deviation 0.5 and 0.2 in the domain and
        # range kernel respectively) before feeding the network"
        "c4-bilateral": MappingProxyType(
            {"pretrained": True, "adversarial": False, "bilateral": MappingProxyType({"sigma_d": 0.5, "sigma_r": 0.2})}
        ),
    }
)

_REGISTRY: dict[str, Callable[[Any], Any]] = {}
_LOCK = threading.Lock()


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
    from smoothlab.bench import shard

    shard.forget_model(name)  # a cached instance of an earlier factory must not be reused


def unregister_model(name: str) -> None:
    """Forget a registered model (built-in names cannot be removed)."""
    if name in MODELS:
        raise ValueError(f"model name {name!r} is built in and cannot be unregistered")
    with _LOCK:
        if name not in _REGISTRY:
            raise ValueError(f"model {name!r} is not registered; registered: {sorted(_REGISTRY)}")
        del _REGISTRY[name]
    from smoothlab.bench import shard

    shard.forget_model(name)


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
        from smoothlab.models import c4

        how = dict(MODELS[name])
        bilateral = how.pop("bilateral", None)
        model = c4(**how, device=device)
        if bilateral is not None:
            from smoothlab.models import BilateralDefence

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
