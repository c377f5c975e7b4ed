"""Other libraries' attacks smoothed by ``smoothlab.attacks.smoothed`` (issue 21), next to our own.

The foreign attack's norm bound or minimisation applies to ``z = u* - x_o``, not to the smoothed
perturbation ``r`` of ``x_a = c(x_o + ŝ_α(z))``: this prints how far the distortion ``||x_a - x_o||`` is
from ``||z||``, for foolbox's L2 PGD and DDN at the paper's MNIST settings (sec. 5.2: PGD2 ε = 5, step 3,
10 iterations; DDN 100 steps) on embedded test digits with the shipped C4, smoothed and not, beside
smoothlab's PGD2, sPGD2, DDN and sDDN at the same settings.

    python benchmarks/bench_peers.py [--n 200] [--batch 100] [--threads 1]

Statistics over the digits C4 classifies correctly (sec. 5.1): P_suc; D̄ and the mean ``||z||`` over the
successes; the median of ``D / ||z||`` per success; the mean graph energy of ``r`` (eq. 6,
``ImageGraph.smoothness``: 0 for a perturbation smooth like the digit); the wall time of the whole run.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import torch


def attacks() -> dict[str, Callable[..., Any]]:
    """``label -> fn(model, x, y) -> AttackResult`` at the paper's MNIST settings."""
    import foolbox

    from smoothlab.attacks import ddn, paper_settings, pgd2, sddn, smoothed, spgd2

    pgd = paper_settings("pgd2")  # step 3, 10 iterations, eps 5
    fb_pgd = foolbox.attacks.L2PGD(abs_stepsize=pgd["step"], steps=pgd["iterations"], random_start=False)
    fb_ddn = foolbox.attacks.DDNAttack(steps=paper_settings("ddn")["steps"])  # init_epsilon 1, gamma 0.05: ours
    return {
        "foolbox L2PGD": lambda m, x, y: smoothed(fb_pgd, smoother=None)(m, x, y, eps=pgd["eps"]),
        "smoothed(foolbox L2PGD)": lambda m, x, y: smoothed(fb_pgd, smoother="mnist")(m, x, y, eps=pgd["eps"]),
        "PGD2 (ours)": lambda m, x, y: pgd2(m, x, y, **pgd),
        "sPGD2 (ours)": lambda m, x, y: spgd2(m, x, y, **paper_settings("spgd2")),
        "foolbox DDN": lambda m, x, y: smoothed(fb_ddn, smoother=None)(m, x, y),
        "smoothed(foolbox DDN)": lambda m, x, y: smoothed(fb_ddn, smoother="mnist")(m, x, y),
        "DDN (ours)": lambda m, x, y: ddn(m, x, y, **paper_settings("ddn")),
        "sDDN (ours)": lambda m, x, y: sddn(m, x, y, **paper_settings("sddn")),
    }


def measure(label: str, fn: Callable[..., Any], model: Any, x: torch.Tensor, y: torch.Tensor,
            batch: int) -> dict[str, Any]:
    from smoothlab.graph import image_graph

    ok, d, z, energy, seconds = [], [], [], [], 0.0
    for s in range(0, x.shape[0], batch):
        xb, yb = x[s : s + batch], y[s : s + batch]
        t0 = time.perf_counter()
        res = fn(model, xb, yb)
        seconds += time.perf_counter() - t0
        keep = res.pred_clean == yb
        ok.append(res.success[keep])
        d.append(res.distortion[keep])
        # z: the foreign attack's u* - x_o (and sDDN's latent); the perturbation itself for the plain attacks
        lat = res.extra.get("latent")
        if lat is None:
            lat = torch.full_like(xb, float("nan")) if label.startswith("sPGD2") else res.x_adv - xb
        z.append(lat[keep].flatten(1).norm(dim=1))
        g = image_graph(xb, kernel="laplacian", lam=10.0)  # the graph of SmoothingSpec.mnist()
        energy.append(g.smoothness(res.x_adv - xb)[keep])
    ok, d, z, energy = (torch.cat(t) for t in (ok, d, z, energy))
    return {
        "attack": label, "N": int(ok.numel()), "P_suc": float(ok.float().mean()), "D": float(d[ok].mean()),
        "z": float(z[ok].mean()), "ratio": float((d[ok] / z[ok]).median()), "energy": float(energy[ok].mean()),
        "seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import art
    import foolbox

    from smoothlab.data import mnist
    from smoothlab.models import c4

    print(f"platform : {platform.platform()}, {platform.processor() or platform.machine()}")
    print(f"python   : {platform.python_version()}, torch {torch.__version__}, foolbox {foolbox.__version__}, "
          f"ART {art.__version__}")
    print(f"cpus     : {os.cpu_count()} logical, torch threads {torch.get_num_threads()}")
    print("load %.2f %.2f %.2f" % os.getloadavg())
    x, y = mnist("test")
    x, y, model = x[: args.n], y[: args.n], c4(pretrained=True)
    rows = [measure(label, fn, model, x, y, args.batch) for label, fn in attacks().items()]
    print("load %.2f %.2f %.2f" % os.getloadavg())
    print(f"\n{args.n} embedded test digits, shipped C4, the N it classifies correctly\n")
    print("| attack | N | P_suc | D̄ = mean ‖x_a − x_o‖ | mean ‖z‖ = ‖u* − x_o‖ | median D / ‖z‖ | graph energy of r | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        z = "—" if r["z"] != r["z"] else f"{r['z']:.3f}"
        ratio = "—" if r["ratio"] != r["ratio"] else f"{r['ratio']:.3f}"
        print(f"| {r['attack']} | {r['N']} | {r['P_suc']:.3f} | {r['D']:.3f} | {z} | {ratio} | {r['energy']:.3f} | "
              f"{r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
