"""torch's threads on a busy machine (issue 19): C&W on 100 digits, quiet and beside processes that spin.

Usage::

    python benchmarks/bench_threads.py [--n 100] [--spinners 2]

For each of 1 thread and every available CPU (``smoothlab.available_cpus()``), held fixed (``SMOOTHLAB_THREADS=keep``),
and the automatic choice (``SMOOTHLAB_THREADS`` unset: ``smoothlab.free_cpus()``, torch starting at every available
CPU), times C&W (the paper's MNIST settings) on ``--n`` digits of the embedded sample, first on a quiet machine, then
with ``--spinners`` busy processes running (each a Python loop on one CPU). Prints ms per digit, the slowdown against
quiet, and the fair share: with ``k`` spinners on ``c`` CPUs, a process of ``t`` threads gets about
``c / (k + t) * t`` CPUs, so its ideal slowdown is the quiet time at ``t`` threads against that share. The automatic
choice is held to the fair share of the count it chose when quiet. Prints the machine, the load and the thread count
the automatic choice used with every number.
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


class _Counted(torch.nn.Module):
    """A model recording torch's thread count at each forward pass."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.seen: set[int] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.add(torch.get_num_threads())
        return self.net(x)


def _time_cw(n: int, threads: int | str) -> tuple[float, str]:
    """ms per digit of C&W at a fixed thread count, or ``"auto"`` (free_cpus, from every available CPU); the counts used."""
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
    cw(model, x[:10], y[:10], **kwargs)  # warm-up
    time.sleep(1.1)  # free_cpus() keeps its answer for a second: read the load afresh
    model.seen.clear()
    t0 = time.perf_counter()
    cw(model, x[:n], y[:n], **kwargs)
    return (time.perf_counter() - t0) / n * 1e3, "/".join(map(str, sorted(model.seen)))


def main() -> None:
    from smoothlab import available_cpus

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--spinners", type=int, default=2)
    args = p.parse_args()
    cpus = available_cpus()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {cpus} available, torch {torch.__version__}, "
          f"load {os.getloadavg()[0]:.1f}; C&W on {args.n} digits, {args.spinners} spinning processes")
    counts: list[int | str] = [*sorted({1, cpus}), "auto"]
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
        used = int(quiet[t][1].split("/")[-1]) if t == "auto" else t
        fair = used / min(used, cpus / (args.spinners + used) * used)
        (q, q_used), (b, b_used) = quiet[t], busy[t]
        print(f"{t} thread(s) (quiet {q_used}, busy {b_used}): quiet {q:.1f} ms/digit, busy {b:.1f} ms/digit, "
              f"slowdown {b / q:.2f}x (fair share {fair:.2f}x); against 1 quiet thread {b / quiet[1][0]:.2f}x")
    print(f"end load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
