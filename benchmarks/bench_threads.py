"""torch's threads on a busy machine (issue 19): C&W on 100 digits, quiet and beside processes that spin.

Usage::

    python benchmarks/bench_threads.py [--n 100] [--spinners 2] [--repeat 1] [--limit 30]

For each of 1 thread and every available CPU (``smoothlab.available_cpus()``), held fixed (``SMOOTHLAB_THREADS=keep``),
and the automatic choice (``SMOOTHLAB_THREADS`` unset: ``smoothlab.free_cpus()``, torch starting at every available
CPU), times C&W (the paper's MNIST settings) on ``--n`` digits of the embedded sample (in calls of 10, the next call not started after ``--limit`` seconds), first on a quiet machine, then
with ``--spinners`` busy processes running (each a Python loop on one CPU). Prints ms per digit, the slowdown against
quiet, and the fair share: with ``k`` spinners on ``c`` CPUs, a process of ``t`` threads gets about
``c / (k + t) * t`` CPUs, so its ideal slowdown is the quiet time at ``t`` threads against that share; the automatic
choice is held to the fair share of a process of ``c`` threads (``c / (k + c)`` of the machine). ``--repeat`` runs
quiet and busy in turn and reports medians, since a shared machine is rarely quiet: each run prints the thread
counts it used and the other processes' runnable tasks just before (``smoothlab._threads.other_runnable``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import time

import torch


def _spin(stop: "mp.synchronize.Event") -> None:
    x = 0
    while not stop.is_set():
        x += 1


class _Counted(torch.nn.Module):
    """A model recording torch's thread count at each forward pass."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.seen: set[int] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.add(torch.get_num_threads())
        return self.net(x)


def _time_cw(n: int, threads: int | str, limit: float) -> tuple[float, str]:
    """ms per digit of C&W at a fixed thread count, or ``"auto"`` (free_cpus, from every available CPU); the counts used.

    The digits run in calls of 10, and no call starts after ``limit`` seconds (a collapsed count takes minutes).
    """
    from smoothlab import available_cpus
    from smoothlab.attacks import cw, paper_settings
    from smoothlab.data import mnist
    from smoothlab.models import c4

    auto = threads == "auto"
    os.environ["SMOOTHLAB_THREADS"] = "free" if auto else "keep"
    torch.set_num_threads(available_cpus() if auto else int(threads))
    x, y = mnist("test")
    model = _Counted(c4(pretrained=True))
    kwargs = paper_settings("cw", "mnist")
    cw(model, x[:2], y[:2], **kwargs)  # warm-up
    done, elapsed = 0, 0.0
    while done < n and elapsed < limit:
        if auto:
            time.sleep(1.1)  # free_cpus() keeps its answer for a second: each call reads the load afresh
        t0 = time.perf_counter()
        cw(model, x[done : done + 10], y[done : done + 10], **kwargs)
        elapsed += time.perf_counter() - t0
        done = min(n, done + 10)
    return elapsed / done * 1e3, "/".join(map(str, sorted(model.seen)))


def _phase(n: int, counts: list, spinners: int, limit: float) -> dict:
    """{count: (ms per digit, thread counts used, other runnable tasks just before)}, beside ``spinners`` spinning processes."""
    from smoothlab._threads import other_runnable

    stop = mp.Event()
    procs = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(spinners)]
    for proc in procs:
        proc.start()
    try:
        time.sleep(1.0 if procs else 0.0)
        out = {}
        for t in counts:
            others = other_runnable()
            out[t] = (*_time_cw(n, t, limit), others)
        return out
    finally:
        stop.set()
        for proc in procs:
            proc.join()


def main() -> None:
    from smoothlab import available_cpus

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--spinners", type=int, default=2)
    p.add_argument("--limit", type=float, default=30.0, help="seconds after which a run starts no more calls of 10 digits")
    p.add_argument("--repeat", type=int, default=1, help="quiet and busy in turn, this many times; medians")
    args = p.parse_args()
    cpus = available_cpus()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {cpus} available, torch {torch.__version__}, "
          f"load {os.getloadavg()[0]:.1f}; C&W on {args.n} digits, {args.spinners} spinning processes")
    counts: list[int | str] = [*sorted({1, cpus}), "auto"]
    runs = {"quiet": [], "busy": []}
    for _ in range(args.repeat):
        for phase, k in (("quiet", 0), ("busy", args.spinners)):
            runs[phase].append(_phase(args.n, counts, k, args.limit))
            print(f"  {phase}: " + ", ".join(f"{t}: {ms:.1f} ms/digit on {used} (others {o})"
                                           for t, (ms, used, o) in runs[phase][-1].items()), flush=True)
    quiet = {t: statistics.median(r[t][0] for r in runs["quiet"]) for t in counts}
    busy = {t: statistics.median(r[t][0] for r in runs["busy"]) for t in counts}
    for t in counts:
        used = cpus if t == "auto" else t  # auto is held to the fair share of all the CPUs
        fair = used / min(used, cpus / (args.spinners + used) * used)
        print(f"{t} thread(s): median quiet {quiet[t]:.1f} ms/digit, busy {busy[t]:.1f} ms/digit, slowdown "
              f"{busy[t] / quiet[t]:.2f}x (fair share {fair:.2f}x); against the best quiet {busy[t] / min(quiet.values()):.2f}x")
    print(f"end load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
