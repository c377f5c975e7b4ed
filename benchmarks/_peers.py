"""What the benchmarks against other libraries share: P_suc / D̄ of a result, and adv-lib's attack functions
imported without the rest of adv-lib (its other attacks pull torchvision and visdom, which do not load here)."""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Callable

import torch

from smoothlab.models import predict


def stats(x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, model: torch.nn.Module) -> tuple[float, float]:
    """P_suc and D̄ over the images the model classifies correctly (eq. 20)."""
    correct = predict(model, x) == y
    success = (predict(model, x_adv) != y) & correct
    dist = (x_adv - x).flatten(1).norm(dim=1)
    return float(success.sum() / correct.sum()), float(dist[success].mean())


def adv_lib_attack(module: str, name: str) -> Callable[..., torch.Tensor] | None:
    """``adv_lib.attacks.<module>.<name>`` without importing adv-lib's other attacks, or ``None`` when
    adv-lib is not installed."""
    try:
        import adv_lib
    except ImportError:
        return None
    sys.modules.setdefault("visdom", types.ModuleType("visdom"))
    if "adv_lib.attacks" not in sys.modules:
        pkg = types.ModuleType("adv_lib.attacks")
        pkg.__path__ = [os.path.join(os.path.dirname(adv_lib.__file__), "attacks")]
        sys.modules["adv_lib.attacks"] = pkg
    return getattr(importlib.import_module(f"adv_lib.attacks.{module}"), name)
