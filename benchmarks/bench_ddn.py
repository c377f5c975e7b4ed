"""DDN against adv-lib's ``ddn``: same model, images, steps and norm schedule (issue 19).

Prints, for embedded-MNIST test digits and the pretrained C4, with the machine and its load: the
time per image of smoothlab's :func:`~smoothlab.attacks.ddn` and of adv-lib's ``ddn`` (``pip install
--no-deps adv-lib``; not a smoothlab dependency) at the same settings (100 steps, γ = 0.05, ε_0 = 1,
step 1 → 0.01 cosine-annealed, ``levels=None``: no 8-bit rounding of the iterates), the median over
rounds that alternate the attacks (A, B, A, B, ...: a change of load hits both), the ratio to
adv-lib's time round by round (its median and range), and P_suc and D̄ of both (eq. 20).

``--baseline REV`` adds smoothlab's DDN as it was at git revision ``REV`` (its ``attacks/_ddn.py``
and ``attacks/_minimal_norm.py`` read with ``git show`` and loaded beside the current ones; the rest of
the package is the current one), so that a speed-up is measured before/after in the same run.

    python benchmarks/bench_ddn.py [--images 200] [--steps 100] [--repeats 5] [--threads 1] [--baseline REV]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import torch

from smoothlab.attacks import ddn
from smoothlab.data import mnist
from smoothlab.models import c4

# helpers shared by the benchmarks (this folder is on sys.path when a script here runs)
from _peers import adv_lib_attack, stats  # noqa: E402
from _timing import timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def baseline_ddn(rev: str) -> Callable[..., Any]:
    """smoothlab's ``ddn`` at git revision ``rev``: its ``_minimal_norm.py`` and ``_ddn.py`` loaded
    as private modules beside the current ones (the rest of the package is the current one)."""

    def load(path: str, name: str, replace: dict[str, str]) -> types.ModuleType:
        src = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:{path}"], check=True, capture_output=True, text=True)
        text = src.stdout
        for old, new in replace.items():
            text = text.replace(old, new)
        mod = types.ModuleType(name)
        mod.__file__ = f"{rev}:{path}"
        sys.modules[name] = mod
        exec(compile(text, mod.__file__, "exec"), mod.__dict__)
        return mod

    mn = load("smoothlab/attacks/_minimal_norm.py", "_bench_base_minimal_norm", {})
    mod = load("smoothlab/attacks/_ddn.py", "_bench_base_ddn", {"smoothlab.attacks._minimal_norm": mn.__name__})
    return mod.ddn


def rounds(
    runs: dict[str, Callable[[], torch.Tensor]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, Any]]:
    """Wall and CPU seconds of each run in each of ``repeats`` rounds that alternate the runs, and
    the last outputs. On a shared machine the process's CPU time (one torch thread) leaves out the
    time it waited for a core; the wall time does not."""
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    outputs: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            c0 = time.process_time()
            outputs[name], seconds = timed(fn, None, 1)
            cpu[name].append(time.process_time() - c0)
            wall[name].append(seconds)
    return wall, cpu, outputs


def report(title: str, times: dict[str, list[float]], base: str, n: int) -> None:
    """Median time per image and the ratio to ``base``'s time, round by round (median, range)."""
    print(f"\n{title}: ratio = time / {base}, round by round\n")
    print("| attack | ms / image (median) | ratio: median | ratio: min-max |")
    print("|---|---:|---:|---:|")
    for name, t in times.items():
        r = [a / b for a, b in zip(t, times[base])]
        print(f"| {name} | {statistics.median(t) / n * 1e3:.2f} | {statistics.median(r):.3f} | {min(r):.3f}-{max(r):.3f} |")
    print("\nseconds per round: " + "; ".join(f"{k}: {' '.join(f'{v:.2f}' for v in t)}" for k, t in times.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the benchmark workers run 1)")
    parser.add_argument("--baseline", metavar="REV", help="also time smoothlab's DDN at this git revision")
    parser.add_argument("--no-adv-lib", action="store_true", help="skip the comparison with adv-lib")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = mnist("test")
    x, y = x[: args.images], y[: args.images]
    model = c4(pretrained=True)
    n, steps = args.images, args.steps
    print(
        f"machine: {platform.node()} {platform.machine()} ({cpu_name()}), {os.cpu_count()} cores, "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the start, {args.threads} torch "
        f"thread(s), torch {torch.__version__}; {n} embedded-MNIST test digits, pretrained C4, {steps} steps"
    )
    # the same settings on both sides: γ 0.05, ε_0 1, step 1 -> 0.01 (both libraries' defaults)
    runs: dict[str, Callable[[int], torch.Tensor]] = {
        "DDN (smoothlab)": lambda k: ddn(model, x, y, steps=k, gamma=0.05, init_norm=1.0).x_adv
    }
    if args.baseline:
        old = baseline_ddn(args.baseline)
        runs[f"DDN (smoothlab at {args.baseline})"] = lambda k: old(model, x, y, steps=k, gamma=0.05, init_norm=1.0).x_adv
    theirs = None if args.no_adv_lib else adv_lib_attack("decoupled_direction_norm", "ddn")
    if theirs is None:
        print("adv-lib not installed (pip install --no-deps adv-lib) or --no-adv-lib: skipping that comparison")
        base = "DDN (smoothlab)"
    else:
        import adv_lib

        base = f"ddn (adv-lib {adv_lib.__version__}, levels=None)"
        runs[base] = lambda k: theirs(model, x, y, steps=k, γ=0.05, init_norm=1.0, levels=None)
    for fn in runs.values():  # warm-up (oneDNN's kernels for these shapes), not timed
        fn(2)
    wall, cpu, outputs = rounds({k: (lambda fn=fn: fn(steps)) for k, fn in runs.items()}, args.repeats)
    print(f"\n{args.repeats} rounds alternating the attacks")
    report("wall time", wall, base, n)
    report("CPU time of the process", cpu, base, n)
    print("\n| attack | P_suc | D̄ |\n|---|---:|---:|")
    for name, out in outputs.items():
        p, d = stats(x, out, y, model)
        print(f"| {name} | {p:.3f} | {d:.4f} |")
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
