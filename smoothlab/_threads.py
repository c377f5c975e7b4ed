"""How many CPUs this process may really use, and torch's thread count held to it (issue 19).

torch sizes its OpenMP pool from the host's cores. In a container with a CPU quota (Binder,
Kubernetes: cgroup ``cpu.max`` / ``cpu.cfs_quota_us``) or a restricted affinity (``taskset``,
Dask workers pinned to cores), that is more threads than CPUs: the threads then wait for each
other at every barrier and a parallel region can take several times longer than with one thread.
:func:`available_cpus` reads what the process may use (the affinity mask and the cgroup quota,
v2 and v1, as ``loky.cpu_count`` does), and :func:`held_threads` runs a block with torch's
thread count at most that. Every attack runs inside :func:`held_threads`, so an attack in a
notebook on Binder uses the quota it has, not the host's 64 cores; where the quota and affinity
allow all cores (a laptop, this VM) nothing changes.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["available_cpus", "cgroup_cpu_quota", "held_threads"]

_CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: str | os.PathLike[str] | None = None) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. ``1.5``), or ``None`` where there is none.

    Reads cgroup v2's ``cpu.max`` (``"max 100000"`` is no quota, ``"150000 100000"`` is 1.5 CPUs),
    else cgroup v1's ``cpu/cpu.cfs_quota_us`` and ``cpu/cpu.cfs_period_us`` (a quota of ``-1`` is none).
    """
    root = _CGROUP if root is None else Path(root)
    try:
        text = (root / "cpu.max").read_text().split()
        if len(text) == 2 and text[0] != "max":
            return int(text[0]) / int(text[1])
        if text:
            return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def available_cpus(root: str | os.PathLike[str] | None = None) -> int:
    """The number of CPUs this process may use: its affinity mask, capped by its cgroup quota (rounded up, >= 1).

    ``root`` is the cgroup file system (default ``/sys/fs/cgroup``).

    Examples
    --------
    >>> import os
    >>> from smoothlab import available_cpus
    >>> 1 <= available_cpus() <= (os.cpu_count() or 1)
    True
    """
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


@contextlib.contextmanager
def held_threads(limit: int | None = None) -> Iterator[int]:
    """Run the block with ``torch.get_num_threads()`` at most ``limit`` (default :func:`available_cpus`),
    restored afterwards; yields the count used. A count already below the limit is left alone."""
    import torch

    before = torch.get_num_threads()
    n = min(before, available_cpus() if limit is None else max(1, int(limit)))
    if n == before:
        yield n
        return
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
