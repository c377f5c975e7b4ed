"""torch's threads on a busy machine (issue 19): C&W on 100 digits, quiet and beside processes that spin.

Usage::

    python benchmarks/bench_threads.py [--n 100] [--spinners 2]

For each of 1 thread and every available CPU (``smoothlab.available_cpus()``), times C&W (the paper's MNIST settings)
on ``--n`` digits of the embedded sample, first on a quiet machine, then with ``--spinners`` busy processes running
(each a Python loop on one CPU). Prints ms per digit, the slowdown against quiet, and the fair share: with ``k``
spinners on ``c`` CPUs, a process of ``t`` threads gets about ``c / (k + t) * t`` CPUs, so its ideal slowdown is the
quiet time at ``t`` threads against that share. Prints the machine and the load with every number.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import time

import torch


def _spin(stop: "mp.synchronize.Event") -> None:
    x = 0
    while not stop.is_set():
        x += 1


def _time_cw(n: int, threads: int) -> float:
    from smoothlab.attacks import cw, paper_settings
    from smoothlab.data import mnist
    from smoothlab.models import c4

    torch.set_num_threads(threads)
    x, y = mnist("test")
    model = c4(pretrained=True)
    kwargs = paper_settings("cw", "mnist")
    cw(model, x[:10], y[:10], **kwargs)  # warm-up
    t0 = time.perf_counter()
    cw(model, x[:n], y[:n], **kwargs)
    return (time.perf_counter() - t0) / n * 1e3


def main() -> None:
    from smoothlab import available_cpus

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--spinners", type=int, default=2)
    args = p.parse_args()
    cpus = available_cpus()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {cpus} available, torch {torch.__version__}, "
          f"load {os.getloadavg()[0]:.1f}; C&W on {args.n} digits, {args.spinners} spinning processes")
    counts = sorted({1, cpus})
    quiet = {t: _time_cw(args.n, t) for t in counts}
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.spinners)]
    for s in spinners:
        s.start()
    try:
        time.sleep(1.0)
        busy = {t: _time_cw(args.n, t) for t in counts}
    finally:
        stop.set()
        for s in spinners:
            s.join()
    for t in counts:
        share = min(t, cpus / (args.spinners + t) * t)
        fair = t / share
        print(f"{t} thread(s): quiet {quiet[t]:.1f} ms/digit, busy {busy[t]:.1f} ms/digit, slowdown {busy[t] / quiet[t]:.2f}x "
              f"(fair share {fair:.2f}x); against 1 quiet thread {busy[t] / quiet[1]:.2f}x")
    print(f"end load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
