"""Speed and strength of the six attacks at the paper's MNIST settings (section 5.2).

On a batch of embedded-MNIST test digits with the pretrained C4, prints for each attack the
wall time per image, the forward/backward passes per image, and -- among the correctly
classified digits (section 5.1) -- the success probability ``P_suc`` and the mean distortion
``D̄`` over successes (eq. 20). Then the cost of smoothing in sC&W: the sC&W / C&W time ratio at
the same number of iterations (no early abort), with the smoother built inside the call (as a
user calls ``scw``) and prebuilt, and the one-off smoother set-up time.

Settings (paper, section 5.2): FGSM eps 0.3; I-FGSM eps 0.3, step 0.08, 10 iterations; PGD2 and
sPGD2 eps 5, step 3, 10 iterations; C&W and sC&W c 15, margin 1, lr 0.1, 100 iterations,
1 search step, early abort; smoothing: Laplacian kernel, lam 10, alpha 0.95, dense inverse.

    python benchmarks/bench_attacks.py [--batch 100] [--threads 2] [--device cpu] [--repeats 1]
                                       [--ratio-iterations 100] [--ratio-repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
from typing import Any, Callable

import torch

from smoothlab.attacks import cw, fgsm, ifgsm, pgd2, scw, spgd2
from smoothlab.smoothing import Smoother, SmoothingSpec

# the timing helpers of every benchmark (this folder is on sys.path when a script here runs)
from _timing import timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=100, help="digits from the embedded test split (default 100)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per attack; the median is shown")
    ap.add_argument("--ratio-iterations", type=int, default=100, help="C&W/sC&W iterations for the time ratio")
    ap.add_argument("--ratio-repeats", type=int, default=3, help="alternating C&W/sC&W runs for the time ratio")
    args = ap.parse_args()

    from smoothlab.data import mnist
    from smoothlab.models import c4

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x, y = mnist("test")
    x, y = x[: args.batch].to(device), y[: args.batch].to(device)
    model = c4(pretrained=True, device=device)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    n = int(correct.sum())

    print(f"platform : {platform.platform()}")
    print(f"python   : {platform.python_version()}, torch {torch.__version__}")
    print(f"cpus     : {os.cpu_count()} logical, torch threads {torch.get_num_threads()}, device {device}")
    if device.type == "cuda":
        print(f"gpu      : {torch.cuda.get_device_name(device)}")
    print(f"data     : embedded MNIST test, first {len(y)} digits; C4 pretrained, accuracy {n / len(y):.2f}")
    print()

    # warm-up (allocator, first-call overheads)
    fgsm(model, x[:2], y[:2])
    cw(model, x[:2], y[:2], iterations=2)

    spec = SmoothingSpec.mnist()
    runs: list[tuple[str, Callable[[], Any]]] = [
        ("FGSM", lambda: fgsm(model, x, y, eps=0.3)),
        ("I-FGSM", lambda: ifgsm(model, x, y, eps=0.3, step=0.08, iterations=10)),
        ("PGD2", lambda: pgd2(model, x, y, eps=5.0, step=3.0, iterations=10)),
        ("C&W", lambda: cw(model, x, y, c=15.0, margin=1.0, lr=0.1, iterations=100)),
        ("sPGD2", lambda: spgd2(model, x, y, eps=5.0, step=3.0, iterations=10, smoother=spec)),
        ("sC&W", lambda: scw(model, x, y, c=15.0, margin=1.0, lr=0.1, iterations=100, smoother=spec)),
    ]
    header = f"{'attack':8s} {'ms/image':>9s} {'fwd/img':>8s} {'bwd/img':>8s} {'P_suc':>6s} {'D_bar':>6s}"
    print("Paper settings (section 5.2); P_suc and D_bar over the correctly classified digits")
    print(header)
    print("-" * len(header))
    for name, fn in runs:
        res, sec = timed(fn, device, args.repeats)
        ok = res.success & correct
        p_suc = int(ok.sum()) / max(n, 1)
        d_bar = float(res.distortion[ok].mean()) if bool(ok.any()) else float("nan")
        print(
            f"{name:8s} {1e3 * sec / len(y):9.2f} {res.forward_passes.float().mean():8.1f} "
            f"{res.backward_passes.float().mean():8.1f} {p_suc:6.2f} {d_bar:6.2f}"
        )
    print()

    # cost of smoothing in sC&W at the same iterations (no early abort)
    S, setup = timed(lambda: Smoother(x, alpha=0.95, lam=10.0, kernel="laplacian"), device, max(args.repeats, 3))
    # alternate the runs so that a noisy (shared) machine slows all of them alike
    kw = dict(c=15.0, margin=1.0, lr=0.1, iterations=args.ratio_iterations, abort_early=False)
    variants = {
        "C&W": lambda: cw(model, x, y, **kw),
        "sC&W, smoother built inside": lambda: cw(model, x, y, smoother=spec, **kw),
        "sC&W, smoother prebuilt": lambda: cw(model, x, y, smoother=S, **kw),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.ratio_repeats):
        for k, fn in variants.items():
            times[k].append(timed(fn, device, 1)[1])
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    ratios = [s / c for s, c in zip(times["sC&W, smoother prebuilt"], times["C&W"])]
    print(
        f"sC&W vs C&W, {args.ratio_iterations} iterations each, no early abort, {args.ratio_repeats} alternating runs "
        f"(smoother: {S.backend})"
    )
    for k, v in med.items():
        ratio = "" if k == "C&W" else f"   ratio of medians {v / med['C&W']:.2f}"
        print(f"  {k:28s} {1e3 * v / len(y):8.2f} ms/image{ratio}")
    print(f"  per-run ratios (prebuilt)    {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"  smoother set-up              {1e3 * setup / len(y):8.2f} ms/image (once per batch)")


if __name__ == "__main__":
    main()
