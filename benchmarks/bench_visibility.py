"""How visible are the six attacks under adversarial magnification? (appendix A, eq. 22)

On the first N embedded-MNIST test digits that the pretrained C4 classifies correctly (section 5.1),
runs the six attacks once each at the paper's single MNIST settings (section 5.2) and prints, per
attack:

- ``P_suc`` and ``D̄`` (mean distortion over the successes), eq. (20), from the records of
  :mod:`smoothlab.metrics`;
- the visibility score :func:`smoothlab.magnification.visibility` (mean and median over the successes):
  the flatness-weighted RMS change between ``mag(x_o)`` and ``mag(x_a)``, with the default
  magnification (beta 0.8, sigma_d 3 px, sigma_r 0.2) and, as a check, with the paper's Fig. 1
  kernels ``MAGNIFY_PAPER`` (sigma_d 5 px, sigma_r 5/255);
- the mean of ``V / D`` over the successes (visibility per unit of distortion: the shape alone);
- the mean graph-smoothness energy ``tr(r^T (I - W_n) r) / ||r||^2`` of the perturbation on the
  digit's graph (Laplacian kernel, lam 10: the graph sPGD2 and sC&W smooth with); 0 = smooth like
  ``x_o``, about 1 = white noise;
- the seconds spent attacking and scoring.

Settings (paper, section 5.2): FGSM eps 0.3; I-FGSM eps 0.3, step 0.08, 10 iterations; PGD2 and
sPGD2 eps 5, step 3, 10 iterations; C&W and sC&W c 15, margin 1, lr 0.1, 100 iterations, 1 search
step; smoothing: Laplacian kernel, lam 10, alpha 0.95. These are the defaults of the attack functions.

    python benchmarks/bench_visibility.py [--n 200] [--batch 100] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd
import torch

from smoothlab.attacks import ATTACKS
from smoothlab.magnification import MAGNIFY_PAPER, visibility
from smoothlab.metrics import ATTACK_LABELS, summary
from smoothlab.records import records_from_result
from smoothlab.smoothing import SmoothingSpec

# the timing helpers of every benchmark (this folder is on sys.path when a script here runs)
from _timing import sync


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="correctly classified test digits (default 200)")
    ap.add_argument("--batch", type=int, default=100, help="digits per attack call (default 100)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from smoothlab.data import mnist
    from smoothlab.models import c4, predict

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x, y = mnist("test")
    model = c4(pretrained=True, device=device)
    correct = predict(model, x.to(device)).cpu() == y
    ids = torch.nonzero(correct).squeeze(1)[: args.n]
    if len(ids) < args.n:
        print(f"only {len(ids)} correctly classified digits in the embedded test split")

    print(f"platform : {platform.platform()}")
    print(f"python   : {platform.python_version()}, torch {torch.__version__}")
    print(f"cpus     : {os.cpu_count()} logical, torch threads {torch.get_num_threads()}, device {device}")
    if device.type == "cuda":
        print(f"gpu      : {torch.cuda.get_device_name(device)}")
    print(f"data     : embedded MNIST test, first {len(ids)} correctly classified digits "
          f"(C4 accuracy {float(correct.float().mean()):.3f} on {len(y)})")
    print()

    spec = SmoothingSpec.mnist()
    parts = []
    seconds: dict[str, dict[str, float]] = {name: {"attack": 0.0, "score": 0.0} for name in ATTACKS}
    for start in range(0, len(ids), args.batch):
        bid = ids[start : start + args.batch]
        xb, yb = x[bid].to(device), y[bid].to(device)
        graph = spec(xb).graph  # the digit's graph, for the smoothness energy
        for name, attack in ATTACKS.items():
            sync(device)
            t0 = time.perf_counter()
            res = attack(model, xb, yb)
            sync(device)
            t1 = time.perf_counter()
            # the records' visibility column: default magnification, successes only (NaN elsewhere)
            rec = records_from_result(res, image_ids=bid.numpy(), labels=yb.cpu().numpy(), x=xb)
            with torch.no_grad():
                r = res.x_adv - xb
                rec["visibility_paper"] = visibility(xb, res.x_adv, **MAGNIFY_PAPER).cpu().numpy()
                rec["energy"] = graph.smoothness(r).cpu().numpy()
            sync(device)
            seconds[name]["attack"] += t1 - t0
            seconds[name]["score"] += time.perf_counter() - t1
            parts.append(rec)
    records = pd.concat(parts, ignore_index=True)
    table = summary(records)

    ok = records[records["success"] & records["correct"]]
    header = (
        f"{'attack':7s} {'N':>4s} {'P_suc':>6s} {'D_bar':>6s} {'V mean':>7s} {'V med':>6s} {'V/D':>6s} "
        f"{'Vpaper':>7s} {'energy':>7s} {'s att':>6s} {'s score':>7s}"
    )
    print("Per attack, over the successes: visibility V (default magnification), V/D, V with the paper's")
    print("Fig. 1 kernels (Vpaper), graph-smoothness energy of r = x_a - x_o; seconds spent attacking / scoring")
    print(header)
    print("-" * len(header))
    for name in table.index:
        part = ok[ok["attack"] == name]
        v = part["visibility"].to_numpy()
        d = part["distortion"].to_numpy()
        nan = float("nan")
        print(
            f"{ATTACK_LABELS.get(name, name):7s} {int(table.loc[name, 'n_correct']):4d} "
            f"{table.loc[name, 'p_success']:6.3f} {table.loc[name, 'mean_distortion']:6.3f} "
            f"{table.loc[name, 'mean_visibility']:7.3f} {np.median(v) if v.size else nan:6.3f} "
            f"{(v / d).mean() if v.size else nan:6.3f} "
            f"{part['visibility_paper'].mean() if v.size else nan:7.3f} "
            f"{part['energy'].mean() if v.size else nan:7.3f} "
            f"{seconds[name]['attack']:6.1f} {seconds[name]['score']:7.1f}"
        )


if __name__ == "__main__":
    main()
