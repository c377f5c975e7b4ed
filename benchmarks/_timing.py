"""Timing helpers shared by every benchmark of this folder (one copy, issue 20).

Wall times on CUDA are only meaningful after a ``torch.cuda.synchronize``: every helper here
synchronises ``device`` before it reads the clock. Times are medians (``statistics.median``: the
mean of the two middle values for an even number of runs).

A benchmark imports them with this folder on ``sys.path`` (Python puts it there for
``python benchmarks/X.py``; a script loaded another way inserts it itself, see ``gpu_check.py``)::

    from _timing import sync, timeit
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["copy_bandwidth", "sync", "timed", "timed_rounds", "timeit"]


def sync(device: torch.device | str | None) -> None:
    """Wait for the work queued on ``device`` (CUDA only; a no-op on the CPU or for ``None``)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], Any], device: torch.device | str | None, repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up run, synchronised."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timed(fn: Callable[[], Any], device: torch.device | str | None, repeats: int) -> tuple[Any, float]:
    """``fn``'s last result and the median seconds of ``repeats`` runs, no warm-up (the first run
    counts: for work that is run once in practice, e.g. one attack call with its set-up)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    times, out = [], None
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def timed_rounds(
    runs: Mapping[str, Callable[[], Any]], repeats: int, device: torch.device | str | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    """Median seconds of each run over ``repeats`` rounds that alternate the runs (so that a
    change of machine load hits them all alike), and each run's last output."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    times: dict[str, list[float]] = {k: [] for k in runs}
    outputs: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            out, seconds = timed(fn, device, 1)
            outputs[name] = out
            times[name].append(seconds)
    return {k: statistics.median(v) for k, v in times.items()}, outputs


def copy_bandwidth(device: torch.device | str, repeats: int, mib: int = 1024) -> float:
    """Bytes per second of a device-to-device tensor copy of ``mib`` MiB (read + write counted;
    at most 64 MiB on the CPU)."""
    device = torch.device(device)
    if device.type == "cpu":
        mib = min(mib, 64)
    src = torch.rand(mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    t = timeit(lambda: dst.copy_(src), device, repeats)
    return 2 * src.numel() * src.element_size() / t
