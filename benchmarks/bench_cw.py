"""C&W-L2 against sC&W and against another library's C&W-L2, same model, images and iterations.

Prints, for 100 embedded-MNIST test digits and the pretrained C4 (paper settings: c = 15,
margin 1, Adam lr 0.1, 100 iterations, no early abort so every run does the same work):

* time per image of smoothlab's C&W and sC&W (for each smoother solver) and their ratio;
* torchattacks' ``CW`` (if installed: ``pip install --no-deps torchattacks``) with the same
  c, margin (kappa), lr and steps: time per image, P_suc and D̄ on the same images.

Runs alternate (A, B, A, B, ...) and the median is reported, since the machine is shared.

    python benchmarks/bench_cw.py [--images 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from smoothlab.attacks import cw, scw
from smoothlab.data import mnist
from smoothlab.models import c4, predict
from smoothlab.smoothing import SmoothingSpec


def stats(x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, model: torch.nn.Module) -> tuple[float, float]:
    """P_suc and D̄ over the images the model classifies correctly (eq. 20)."""
    correct = predict(model, x) == y
    success = (predict(model, x_adv) != y) & correct
    dist = (x_adv - x).flatten(1).norm(dim=1)
    return float(success.sum() / correct.sum()), float(dist[success].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    x, y = mnist("test")
    x, y = x[: args.images], y[: args.images]
    model = c4(pretrained=True)
    common = dict(c=15.0, margin=1.0, lr=0.1, iterations=100, search_steps=1, abort_early=False)
    runs: dict[str, Callable[[], torch.Tensor]] = {
        "C&W (smoothlab)": lambda: cw(model, x, y, **common).x_adv,
        "sC&W direct": lambda: scw(model, x, y, smoother=SmoothingSpec.mnist(solver="direct"), **common).x_adv,
        "sC&W dense": lambda: scw(model, x, y, smoother=SmoothingSpec.mnist(solver="dense"), **common).x_adv,
    }
    try:
        import torchattacks

        ta = torchattacks.CW(model, c=15.0, kappa=1.0, steps=100, lr=0.1)
        runs["C&W (torchattacks %s)" % torchattacks.__version__] = lambda: ta(x, y)
    except ImportError:
        print("torchattacks not installed: skipping the comparison with another library")
    times: dict[str, list[float]] = {k: [] for k in runs}
    outputs: dict[str, torch.Tensor] = {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    print(
        f"machine: {platform.node()} {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; {args.images} embedded-MNIST test digits, pretrained C4, "
        f"100 iterations, c = 15, margin 1, lr 0.1, no early abort; median of {args.repeats} alternating runs\n"
    )
    base = float(np.median(times["C&W (smoothlab)"]))
    print("| attack | ms / image | time / smoothlab C&W | P_suc | D̄ |")
    print("|---|---:|---:|---:|---:|")
    for name in runs:
        t = float(np.median(times[name]))
        p, d = stats(x, outputs[name], y, model)
        print(f"| {name} | {t / args.images * 1e3:.1f} | {t / base:.2f} | {p:.2f} | {d:.2f} |")


if __name__ == "__main__":
    main()
