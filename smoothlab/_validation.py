"""Argument checks shared by the whole package.

Every public function validates its input here so that bad input fails early with a
``ValueError``/``TypeError`` that names the argument, what was expected and what was
received -- never a shape error from deep inside torch, never a silent NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return repr(value)


def check_tensor(x: Any, name: str) -> torch.Tensor:
    """Raise ``TypeError`` unless ``x`` is a ``torch.Tensor``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_float_tensor(x: Any, name: str) -> torch.Tensor:
    """Raise unless ``x`` is a floating-point tensor with only finite values."""
    check_tensor(x, name)
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite, got NaN or Inf values")
    return x


def check_images(x: Any, name: str = "x", *, allow_empty: bool = False) -> torch.Tensor:
    """Check a batch of images: float tensor ``(B, C, H, W)``, finite, values in ``[0, 1]``."""
    check_tensor(x, name)
    if x.dim() != 4:
        raise ValueError(
            f"{name} must have shape (B, C, H, W), got a {x.dim()}-D tensor of shape {tuple(x.shape)}"
        )
    if not allow_empty and x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one image, got an empty batch of shape {tuple(x.shape)}")
    if min(x.shape[1:]) < 1:
        raise ValueError(f"{name} must have C, H, W >= 1, got shape {tuple(x.shape)}")
    check_float_tensor(x, name)
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name} must have values in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return x


def check_labels(y: Any, batch: int, name: str = "y", *, num_classes: int | None = None) -> torch.Tensor:
    """Check integer labels of shape ``(batch,)``, each in ``[0, num_classes)`` when given."""
    check_tensor(y, name)
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
        raise TypeError(f"{name} must have an integer dtype, got {y.dtype}")
    if y.dim() != 1 or y.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},), got shape {tuple(y.shape)}")
    if num_classes is not None and y.numel():
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} must hold labels in [0, {num_classes}), got values in [{lo}, {hi}]")
    return y


def check_number(value: Any, name: str) -> float:
    """Return ``value`` as a finite float, or raise ``TypeError``/``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not (
        isinstance(value, torch.Tensor) and value.numel() == 1
    ):
        try:
            import numpy as np

            if isinstance(value, np.generic) and np.issubdtype(type(value), np.number):
                value = float(value)
            else:
                raise TypeError
        except TypeError:
            raise TypeError(f"{name} must be a real number, got {_describe(value)}") from None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_range(
    value: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Check ``low <= value <= high`` (open ends where asked) and return it as a float."""
    v = check_number(value, name)
    lo_ok = low is None or (v > low if low_open else v >= low)
    hi_ok = high is None or (v < high if high_open else v <= high)
    if not (lo_ok and hi_ok):
        left = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
        right = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise ValueError(f"{name} must be in {left}, {right}, got {v:g}")
    return v


def check_positive(value: Any, name: str) -> float:
    """Check ``value > 0``."""
    return check_range(value, name, 0.0, None, low_open=True)


def check_int(value: Any, name: str, minimum: int | None = None) -> int:
    """Check an integer (not a bool), at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise TypeError(f"{name} must be an int, got {_describe(value)}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value
