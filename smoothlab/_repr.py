"""Short text and HTML summaries of result objects (``__repr__`` and ``_repr_html_``).

A summary is a title and a few ``name -> value`` fields; never a tensor's values.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["brief", "one_line", "html_table"]


def brief(value: Any) -> str:
    """A short text for one value: floats with 4 significant digits, long lists abridged,
    tensors and arrays by their shape."""
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, (int, float)):
        return f"<{type(value).__name__} {tuple(shape)}>"
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)):
        if len(value) > 4:
            return f"[{brief(value[0])}, ..., {brief(value[-1])}] ({len(value)})"
        return "[" + ", ".join(brief(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={brief(v)}" for k, v in value.items()) + "}"
    return str(value)


def one_line(title: str, fields: Mapping[str, Any]) -> str:
    """``Title(a=1, b='x')``."""
    return f"{title}(" + ", ".join(f"{k}={brief(v)}" for k, v in fields.items()) + ")"


def html_table(title: str, fields: Mapping[str, Any]) -> str:
    """A two-column HTML table (for notebooks), headed by ``title``."""
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td style='text-align:left'>"
        f"{html.escape(brief(v))}</td></tr>"
        for k, v in fields.items()
    )
    return f"<table><caption style='text-align:left'><b>{html.escape(title)}</b></caption>{rows}</table>"
