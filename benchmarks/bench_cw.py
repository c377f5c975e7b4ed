"""C&W-L2 against sC&W, and against other libraries' C&W-L2: same model, images and iterations.

Prints, for embedded-MNIST test digits and the pretrained C4, with the machine's load:

1. **sC&W / C&W** at the paper's settings (c = 15, margin 1, Adam lr 0.1, 100 iterations, no early
   abort so that every run does the same work): time per image of smoothlab's C&W and of sC&W
   with each exact smoother solver, and their ratio (issue 10's target: at most 1.2);
2. **against adv-lib's** ``carlini_wagner_l2`` (``pip install --no-deps adv-lib``; not a smoothlab
   dependency), with the same budget: 5 search steps x 200 iterations, c0 = 1, margin
   (confidence) 0, early abort on, and an *equivalent* step size: Adam in the paper's sigmoid space
   moves x half as fast per unit of lr as adv-lib's tanh space (dx/dw = σ'(w) <= 1/4 against
   (1 - tanh²)/2 <= 1/2), so lr 0.02 for ours against their 0.01. Time, P_suc and D̄ of both;
3. torchattacks' ``CW`` at the settings of 1. if it is installed (``pip install --no-deps torchattacks``).

Runs alternate (A, B, A, B, ...) and the median is reported, since the machine is shared.

    python benchmarks/bench_cw.py [--images 100] [--repeats 3] [--threads 1] [--no-adv-lib]
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable
from typing import Any

import torch

from smoothlab.attacks import cw, scw
from smoothlab.data import mnist
from smoothlab.models import c4
from smoothlab.smoothing import SmoothingSpec

# helpers shared by the benchmarks (this folder is on sys.path when a script here runs)
from _peers import adv_lib_attack, stats  # noqa: E402
from _timing import timed_rounds


def table(runs: dict[str, float], outputs: dict[str, torch.Tensor], base: str, x, y, model, n: int) -> None:
    print(f"| attack | ms / image | time / {base} | P_suc | D̄ |")
    print("|---|---:|---:|---:|---:|")
    for name, t in runs.items():
        p, d = stats(x, outputs[name], y, model)
        print(f"| {name} | {t / n * 1e3:.1f} | {t / runs[base]:.2f} | {p:.2f} | {d:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the benchmark workers run 1)")
    parser.add_argument("--no-adv-lib", action="store_true", help="skip the comparison with adv-lib")
    parser.add_argument("--only", choices=("ratio", "adv-lib"), help="run one part only")
    parser.add_argument("--adv-lib-repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = mnist("test")
    x, y = x[: args.images], y[: args.images]
    model = c4(pretrained=True)
    n = args.images
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at the start, {args.threads} torch thread(s), "
        f"torch {torch.__version__}; {n} embedded-MNIST test digits, pretrained C4\n"
    )

    # 1. sC&W / C&W at the paper's settings
    if args.only != "adv-lib":
        ratio(model, x, y, n, args.repeats)
    # 2. against adv-lib, same budget and equivalent step
    if args.only != "ratio":
        cwl2 = None if args.no_adv_lib else adv_lib_attack("carlini_wagner.l2", "carlini_wagner_l2")
        against_adv_lib(model, x, y, n, cwl2, args.adv_lib_repeats)
    print(f"\nload average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def ratio(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, repeats: int) -> None:
    """sC&W / C&W at the paper's settings, per exact solver (and torchattacks' CW if installed)."""
    common = dict(c=15.0, margin=1.0, lr=0.1, iterations=100, search_steps=1, abort_early=False)
    runs: dict[str, Callable[[], torch.Tensor]] = {
        "C&W": lambda: cw(model, x, y, **common).x_adv,
        "sC&W block": lambda: scw(model, x, y, smoother=SmoothingSpec.mnist(solver="block"), **common).x_adv,
        "sC&W direct": lambda: scw(model, x, y, smoother=SmoothingSpec.mnist(solver="direct"), **common).x_adv,
        "sC&W dense": lambda: scw(model, x, y, smoother=SmoothingSpec.mnist(solver="dense"), **common).x_adv,
    }
    try:
        import torchattacks

        ta = torchattacks.CW(model, c=15.0, kappa=1.0, steps=100, lr=0.1)
        runs[f"C&W, torchattacks {torchattacks.__version__}"] = lambda: ta(x, y)
    except ImportError:
        pass
    t, out = timed_rounds(runs, repeats)
    print(f"sC&W / C&W: 100 iterations, c = 15, margin 1, lr 0.1, no early abort; median of {repeats} alternating runs\n")
    table(t, out, "C&W", x, y, model, n)


def against_adv_lib(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, cwl2: Any, repeats: int) -> None:
    """Our C&W against adv-lib's, same budget and equivalent step size."""
    if cwl2 is None:
        print("\nadv-lib not installed (pip install --no-deps adv-lib): skipping that comparison")
    else:
        import adv_lib

        budget = dict(search_steps=5, iterations=200, c=1.0, margin=0.0, abort_early=True)
        runs2 = {
            "C&W (smoothlab, lr 0.02)": lambda: cw(model, x, y, lr=0.02, **budget).x_adv,
            f"carlini_wagner_l2 (adv-lib {adv_lib.__version__}, lr 0.01)": lambda: cwl2(
                model, x, y, confidence=0.0, learning_rate=0.01, initial_const=1.0, binary_search_steps=5,
                max_iterations=200, abort_early=True
            ),
        }
        t2, out2 = timed_rounds(runs2, repeats)
        print(
            f"\nagainst adv-lib: 5 search steps x 200 iterations, c0 = 1, margin 0, early abort; "
            f"median of {repeats} alternating runs\n"
        )
        table(t2, out2, "C&W (smoothlab, lr 0.02)", x, y, model, n)


if __name__ == "__main__":
    main()
