"""How many CPUs this process may really use, and torch's thread count held to it (issue 19).

torch sizes its OpenMP pool from the host's cores. In a container with a CPU quota (Binder,
Kubernetes: cgroup ``cpu.max`` / ``cpu.cfs_quota_us``) or a restricted affinity (``taskset``,
Dask workers pinned to cores), that is more threads than CPUs: the threads then wait for each
other at every barrier and a parallel region can take several times longer than with one thread.
:func:`available_cpus` reads what the process may use (the affinity mask and the cgroup quota,
v2 and v1, as ``loky.cpu_count`` does).

The same happens without a quota on a busy machine (a notebook on a shared VM): beside other
processes that keep the cores busy, one descheduled OpenMP thread stalls all the others.
:func:`free_cpus` takes off the CPUs that other runnable tasks hold (the kernel's count of
runnable tasks, ``/proc/loadavg``, less this process's own running threads; the least of a few
samples, so only lasting work counts). Every attack runs inside :func:`held_threads`, which holds
torch's thread count to :func:`free_cpus` by default; the environment variable
``SMOOTHLAB_THREADS`` chooses otherwise (``available``: :func:`available_cpus` only, ``keep``:
torch's count untouched). Where the files are absent (macOS, Windows) nothing changes.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "THREAD_POLICIES",
    "available_cpus",
    "cgroup_cpu_quota",
    "free_cpus",
    "held_threads",
    "kept_threads",
    "other_runnable",
]

_CGROUP = Path("/sys/fs/cgroup")
_LOADAVG = Path("/proc/loadavg")
_TASKS = Path("/proc/self/task")
#: The values of the environment variable ``SMOOTHLAB_THREADS`` (unset is ``"free"``).
THREAD_POLICIES = ("free", "available", "keep")
#: How long (s) :func:`free_cpus` keeps its answer, and its last (time, answer).
_CACHE_S = 1.0
_cache: list[tuple[float, int]] = []
#: Set by :func:`kept_threads`: :func:`held_threads` then leaves torch's count alone in this context.
_KEEP: contextvars.ContextVar[bool] = contextvars.ContextVar("smoothlab_keep_threads", default=False)


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


def _own_running(tasks: Path) -> int:
    """How many threads of this process are running or runnable (state ``R`` in ``/proc/self/task/*/stat``)."""
    n = 0
    for task in tasks.iterdir():
        try:
            stat = (task / "stat").read_bytes()
        except OSError:  # the thread ended meanwhile
            continue
        end = stat.rfind(b")")
        n += stat[end + 2 : end + 3] == b"R"
    return n


def other_runnable(
    loadavg: str | os.PathLike[str] | None = None, tasks: str | os.PathLike[str] | None = None, samples: int = 5
) -> int | None:
    """How many tasks of other processes are runnable now, or ``None`` where the kernel does not say.

    The kernel's count of runnable tasks (the 4th field of ``/proc/loadavg``, ``running/total``) less
    this process's threads in state ``R`` (``/proc/self/task``, the calling thread among them); the
    least of ``samples`` readings back to back (about 60 µs each on a 2-CPU VM), so that a task woken for a moment
    is not counted. ``None`` on macOS and Windows, or where the files cannot be read.
    """
    loadavg = _LOADAVG if loadavg is None else Path(loadavg)
    tasks = _TASKS if tasks is None else Path(tasks)
    least = None
    try:
        for _ in range(max(1, samples)):
            running = int(loadavg.read_text().split()[3].split("/")[0])
            others = max(0, running - _own_running(tasks))
            least = others if least is None else min(least, others)
    except (OSError, ValueError, IndexError):
        return None
    return least


def free_cpus() -> int:
    """The CPUs this process may use (:func:`available_cpus`) less those that other processes keep busy (>= 1).

    Other processes' runnable tasks (:func:`other_runnable`) are the host's: where the affinity mask
    holds only part of the host's CPUs, the share of them on those CPUs is taken off. The answer is
    kept for one second (an attack call costs one reading a second at most: 0.3 ms on a 2-CPU VM); where the
    count is unknown (macOS, Windows) it is :func:`available_cpus`.

    Examples
    --------
    >>> from smoothlab import available_cpus, free_cpus
    >>> 1 <= free_cpus() <= available_cpus()
    True
    """
    now = time.monotonic()
    if _cache and now - _cache[0][0] < _CACHE_S:
        return _cache[0][1]
    n = available_cpus()
    others = other_runnable()
    if others:
        try:
            mine = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            mine = os.cpu_count() or 1
        host = max(mine, os.cpu_count() or 1)
        n = max(1, min(n, mine - others * mine // host))
    _cache[:] = [(now, n)]
    return n


def thread_policy() -> str:
    """The environment variable ``SMOOTHLAB_THREADS`` (one of :data:`THREAD_POLICIES`; unset or empty is ``"free"``)."""
    policy = os.environ.get("SMOOTHLAB_THREADS", "").strip().lower() or "free"
    if policy not in THREAD_POLICIES:
        raise ValueError(
            f"the environment variable SMOOTHLAB_THREADS must be one of {', '.join(THREAD_POLICIES)} (or unset), "
            f"got {os.environ['SMOOTHLAB_THREADS']!r}"
        )
    return policy


@contextlib.contextmanager
def held_threads(limit: int | None = None) -> Iterator[int]:
    """Run the block with ``torch.get_num_threads()`` at most ``limit``, restored afterwards; yields the count used.

    A count already below the limit is left alone (a user's ``torch.set_num_threads(1)`` stays).
    ``limit=None`` follows ``SMOOTHLAB_THREADS`` (:func:`thread_policy`): :func:`free_cpus` (unset
    or ``free``), :func:`available_cpus` (``available``) or torch's count untouched (``keep``), and
    inside :func:`kept_threads` torch's count untouched whatever the variable says.
    """
    import torch

    before = torch.get_num_threads()
    if limit is None and _KEEP.get():
        yield before
        return
    if limit is None:
        policy = thread_policy()
        limit = {"free": free_cpus, "available": available_cpus}.get(policy, lambda: before)()
    n = min(before, max(1, int(limit)))
    if n == before:
        yield n
        return
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def kept_threads() -> Iterator[None]:
    """Inside the block, :func:`held_threads` (``limit=None``) leaves torch's thread count as the caller set it.

    For work whose results must not depend on the machine's load: the thread count can change the
    rounding of parallel reductions, and :func:`free_cpus` changes with the load. The benchmark's
    shards run inside it (:func:`smoothlab.bench.run_shard`), at the count their runner sets (1 by
    default). Per context (thread, task), not process-wide.

    Examples
    --------
    >>> import torch
    >>> from smoothlab._threads import held_threads, kept_threads
    >>> with kept_threads(), held_threads() as n:
    ...     n == torch.get_num_threads()
    True
    """
    token = _KEEP.set(True)
    try:
        yield
    finally:
        _KEEP.reset(token)
