"""Natural images: Lite0's accuracy on the ImageNet sample, Table 1 on photos, and visibility per photo.

Usage (needs the 1,000-image sample: SMOOTHLAB_DATA=DIR with DIR/imagenet-samples, or the user cache)::

    python benchmarks/bench_natural.py accuracy              # top-1 of EfficientNet-Lite0 on all 1,000 photos
    python benchmarks/bench_natural.py table --n 100         # smoothlab bench --dataset imagenet, 2 workers
    python benchmarks/bench_natural.py visibility OUT        # per-photo V of sC&W against C&W from OUT/records.parquet
    python benchmarks/bench_natural.py cw --images 0,251,500,750   # C&W / sC&W presets per photo (and the default
                                                             # without its early abort): D, passes, traps
    python benchmarks/bench_natural.py floor --n 40          # PGD2 / sPGD2 least successful budget per photo (a fine grid)
    python benchmarks/bench_natural.py cost --n 4            # seconds per photo: the protocol before / after issue 19's speed work
    python benchmarks/bench_natural.py passes                # one Lite0 forward + backward per photo: plain against fused layers
    python benchmarks/bench_natural.py smoothing --n 4       # sPGD2 / sC&W: the paper's 50 CG iterations against the exact ŝ_α

Prints the machine, the load and the wall time with every number.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, load {os.getloadavg()[0]:.1f}"


def accuracy(batch: int = 50) -> None:
    import smoothlab.data as data
    from smoothlab.models import imagenet

    torch.set_num_threads(2)
    ds = data.imagenet(data.imagenet_samples(download=False))
    net = imagenet()
    t0, correct = time.perf_counter(), 0
    with torch.no_grad():
        for s in range(0, len(ds), batch):
            x, y = ds.batch(range(s, min(s + batch, len(ds))))
            correct += int((net(x).argmax(1) == y).sum())
    print(f"EfficientNet-Lite0 top-1 on {len(ds)} photos: {correct / len(ds):.3f} ({correct}), "
          f"{time.perf_counter() - t0:.0f} s; {machine()}")


def table(n: int, workers: int, out: Path) -> None:
    from smoothlab.bench import BenchSpec, run

    spec = BenchSpec(dataset="imagenet", n_images=n)
    print(f"start: {machine()}")
    result = run(spec, out=out, workers=workers, progress=False)
    print(f"## {spec.scenario}, {n} photos, {result.mode} with {result.n_workers} workers: {result.seconds:.0f} s; end: {machine()}\n")
    print(result.table("markdown"))
    print("\nBudget grids:\n" + spec.grids())
    visibility(out)


def visibility(out: Path) -> None:
    """How much and how often sC&W is less visible than C&W, over the photos where both succeed."""
    import pandas as pd

    from smoothlab.metrics import union_over_budgets

    rec = union_over_budgets(pd.read_parquet(out / "records.parquet"))  # one row per photo and attack (sec. 5.1)
    ok = rec[rec["correct"] & rec["success"]]
    v = ok.pivot_table(index="image_id", columns="attack", values="visibility")
    d = ok.pivot_table(index="image_id", columns="attack", values="distortion")
    both = v[["cw", "scw"]].dropna()
    less = (both["scw"] < both["cw"]).mean()
    ratio = (both["scw"] / both["cw"]).median()
    print(f"\nvisibility over the {len(both)} photos where C&W and sC&W both succeed: mean V {both['cw'].mean():.3f} (C&W) "
          f"vs {both['scw'].mean():.3f} (sC&W); sC&W less visible on {less:.0%} of them; median V(sC&W)/V(C&W) {ratio:.2f}; "
          f"mean D {d.loc[both.index, 'cw'].mean():.2f} (C&W) vs {d.loc[both.index, 'scw'].mean():.2f} (sC&W)")
    for plain, smooth in (("pgd2", "spgd2"),):
        pair = v[[plain, smooth]].dropna()
        if len(pair):
            print(f"{smooth} less visible than {plain} on {(pair[smooth] < pair[plain]).mean():.0%} of {len(pair)} photos "
                  f"(least successful budget each; mean V {pair[plain].mean():.3f} vs {pair[smooth].mean():.3f})")


def _photos(ids: list[int]):
    import smoothlab.data as data
    from smoothlab.models import imagenet

    ds = data.imagenet(data.imagenet_samples(download=False))
    x, y = ds.batch(ids)
    net = imagenet()
    with torch.no_grad():
        keep = net(x).argmax(1) == y
    return x[keep], y[keep], net, [i for i, k in zip(ids, keep.tolist()) if k]


def cw_presets(ids: list[int], threads: int = 1, attacks: tuple[str, ...] = ("cw", "scw")) -> None:
    """C&W and sC&W with the ImageNet presets (default: c searched per image; literal: sec. 5.2's one
    constant), the default without its early abort, and the literal preset's first Adam step alone, per photo."""
    import warnings

    from smoothlab.attacks import cw, paper_settings, scw

    torch.set_num_threads(threads)
    x, y, net, kept = _photos(ids)
    print(f"photos {kept} (Lite0 classifies them correctly); {machine()}")
    rows = []
    for attack, fn in (("cw", cw), ("scw", scw)):
        if attack not in attacks:
            continue
        for preset in ("default", "default, abort_early=False", "literal", "first step"):
            kw = paper_settings(attack, "imagenet", preset="default" if preset.startswith("default") else "literal")
            if preset == "first step":
                kw.update(iterations=2, abort_early=False)  # iterate 0 is x_o (or z = 0), iterate 1 the first step
            elif preset.endswith("abort_early=False"):
                kw.update(abort_early=False)  # every iteration of every search step (the authors' code aborts)
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = fn(net, x, y, **kw)
            secs = time.perf_counter() - t0
            d = ", ".join(f"{v:.3f}" if s else "fail" for v, s in zip(res.distortion.tolist(), res.success.tolist()))
            rows.append(f"| {attack} | {preset} | {d} | {res.distortion[res.success].mean():.3f} | "
                        f"{res.forward_passes.float().mean():.0f} | {res.first_success_aborts} | {secs / len(x):.1f} |")
            print(rows[-1], flush=True)
            for w in caught:
                print(f"    warning: {str(w.message)[:100]}...")
    print("\n| attack | preset | D per photo | D̄ | forward passes / photo | stopped at the first check after the first success | s / photo |")
    print("|---|---|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"end: {machine()}")


def floor(n: int, threads: int = 2) -> None:
    """The least successful PGD2 / sPGD2 budget per photo on a fine grid (every 5th photo of the sample),
    to choose ImageNet grids whose smallest budget succeeds on few photos."""
    import numpy as np

    from smoothlab.attacks import paper_settings, pgd2, spgd2

    torch.set_num_threads(threads)
    fine = (0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
    x, y, net, kept = _photos(list(range(0, 5 * n, 5)))
    print(f"{len(kept)} of {n} photos classified correctly; fine grid {fine}; {machine()}")
    for name, fn in (("pgd2", pgd2), ("spgd2", spgd2)):
        kw = paper_settings(name, "imagenet", eps=False)
        least = np.full(len(x), np.inf)
        t0 = time.perf_counter()
        for b in range(0, len(x), 4):
            xb, yb = x[b:b + 4], y[b:b + 4]
            for eps in fine:
                todo = np.isinf(least[b:b + 4])
                if not todo.any():
                    break
                sel = torch.from_numpy(todo)
                res = fn(net, xb[sel], yb[sel], eps=eps, **kw)
                idx = np.flatnonzero(todo)[res.success.numpy()]
                least[b + idx] = eps
        q = {p: float(np.quantile(least[np.isfinite(least)], p)) for p in (0.02, 0.05, 0.1, 0.5)}
        print(f"{name}: least successful eps per photo: quantiles {q}; failed at 5: {int(np.isinf(least).sum())}; "
              f"share at or below 0.25: {float((least <= 0.25).mean()):.2f}; {time.perf_counter() - t0:.0f} s")
        print(f"  values: {sorted(least.tolist())}")


def passes(batch: int = 8, rounds: int = 5, threads: int = 1) -> None:
    """Lite0 forward + input gradient per photo, the plain layers and the fused ones (batch norm folded,
    channels-last) in turn on the same photos; the median of ``rounds``, and the ratio."""
    import statistics

    import torch.nn.functional as F

    torch.set_num_threads(threads)
    x, y, net, _ = _photos(list(range(batch)))
    for p in net.parameters():
        p.requires_grad_(False)

    def step() -> None:
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(net(xi), y), xi)

    times: dict[bool, list[float]] = {False: [], True: []}
    for fused in (False, True):
        net.fused = fused
        step()  # warm-up
    for _ in range(rounds):
        for fused in (False, True):
            net.fused = fused
            t0 = time.perf_counter()
            step()
            times[fused].append(time.perf_counter() - t0)
    plain, fused = (statistics.median(times[k]) / len(y) * 1e3 for k in (False, True))
    print(f"Lite0 forward + backward, {len(y)} photos per batch, {threads} thread(s), median of {rounds}: plain "
          f"{plain:.1f} ms/photo, fused {fused:.1f} ms/photo, ratio {fused / plain:.2f}; {machine()}")


def cost(n: int, rounds: int = 1) -> None:
    """Seconds of one core per photo for Table 1's ImageNet protocol (six attacks, faithful C&W / sC&W),
    in one process on one thread, the variants in turn on the same photos (A B A B with ``rounds``):
    "before" = Lite0's plain layers and every budget on every photo; "after" = the defaults (batch norm
    folded, channels-last, the budget sweep stopped at the first success). Prints each variant's table."""
    import dataclasses

    from smoothlab.bench import BenchSpec, clear_cache, run
    from smoothlab.metrics import summary
    from smoothlab.models import EfficientNetLite0

    torch.set_num_threads(1)
    spec = BenchSpec(dataset="imagenet", n_images=n, shard_size=20, batch_size=5)
    variants = {"before (plain layers, full sweep)": (False, "full"), "after (fused, first-success sweep)": (True, "first-success")}
    seconds: dict[str, list[float]] = {k: [] for k in variants}
    tables = {}
    print(f"start: {machine()}; {n} photos, 1 thread, in-process")
    for _ in range(rounds):
        for name, (fused, sweep) in variants.items():
            EfficientNetLite0.fused = fused
            clear_cache()
            t0 = time.perf_counter()
            res = run(dataclasses.replace(spec, sweep=sweep), workers=0, progress=False)
            seconds[name].append(time.perf_counter() - t0)
            tables[name] = summary(res.records)
            print(f"  {name}: {seconds[name][-1]:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    EfficientNetLite0.fused = True
    base = min(seconds[next(iter(variants))])
    for name in variants:
        t = min(seconds[name])
        print(f"\n## {name}: {t / n:.1f} s of one core per photo (best of {rounds}), {t / base:.2f}x the first")
        print(tables[name][["n_correct", "p_success", "mean_distortion", "mean_visibility", "floor", "forward_passes", "seconds"]]
              .round(3).to_string())
    print(f"end: {machine()}")


def smoothing(n: int, attacks: tuple[str, ...] = ("spgd2", "scw")) -> None:
    """sPGD2 and sC&W on the first ``n`` photos with ŝ_α truncated at sec. 5.2's 50 CG iterations and
    solved exactly (the default: a factorisation on the CPU), in turn, in-process, 1 thread: seconds per
    photo, the table, and each photo's least successful distortion under both."""
    import dataclasses

    import pandas as pd

    from smoothlab.attacks import paper_settings
    from smoothlab.bench import BenchSpec, clear_cache, run
    from smoothlab.bench.spec import default_attacks
    from smoothlab.metrics import summary

    torch.set_num_threads(1)
    base = default_attacks(list(attacks), dataset="imagenet")

    def smoother(preset: str) -> dict:
        return dataclasses.asdict(paper_settings("scw", "imagenet", preset=preset)["smoother"])

    fields = ("alpha", "kernel", "lam", "solver", "tol", "max_iter")
    variants = {name: tuple(dataclasses.replace(a, params={**a.params, "smoother": {k: smoother(p)[k] for k in fields}})
                            for a in base) for name, p in (("50 CG iterations", "literal"), ("exact", "default"))}
    print(f"start: {machine()}; {n} photos, 1 thread, in-process")
    best = {}
    for name, atk in variants.items():
        clear_cache()
        t0 = time.perf_counter()
        res = run(BenchSpec(dataset="imagenet", n_images=n, shard_size=20, batch_size=5, attacks=atk), workers=0,
                  progress=False)
        dt = time.perf_counter() - t0
        print(f"\n## {name}: {dt / n:.1f} s per photo, load {os.getloadavg()[0]:.1f}")
        print(summary(res.records)[["n_correct", "p_success", "mean_distortion", "mean_visibility", "forward_passes",
                                    "seconds"]].round(4).to_string())
        ok = res.records[res.records.success]
        best[name] = ok.groupby(["attack", "image_id"]).distortion.min()
    print("\nleast successful distortion per photo:\n" + pd.concat(best, axis=1).round(4).to_string())
    print(f"end: {machine()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("accuracy")
    t = sub.add_parser("table")
    t.add_argument("--n", type=int, default=100)
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--out", type=Path, default=Path("benchmarks/out/natural"))
    c = sub.add_parser("cw")
    c.add_argument("--images", default="0,251,500,750")
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--attacks", default="cw,scw")
    f = sub.add_parser("floor")
    f.add_argument("--n", type=int, default=40)
    sub.add_parser("passes")
    k = sub.add_parser("cost")
    k.add_argument("--n", type=int, default=4)
    k.add_argument("--rounds", type=int, default=1)
    m = sub.add_parser("smoothing")
    m.add_argument("--n", type=int, default=4)
    v = sub.add_parser("visibility")
    v.add_argument("out", type=Path)
    args = p.parse_args()
    if args.what == "accuracy":
        accuracy()
    elif args.what == "table":
        table(args.n, args.workers, args.out)
    elif args.what == "cw":
        cw_presets([int(i) for i in args.images.split(",")], args.threads, tuple(args.attacks.split(",")))
    elif args.what == "floor":
        floor(args.n)
    elif args.what == "passes":
        passes()
    elif args.what == "cost":
        cost(args.n, args.rounds)
    elif args.what == "smoothing":
        smoothing(args.n)
    else:
        visibility(args.out)


if __name__ == "__main__":
    main()
