"""Natural images: Lite0's accuracy on the ImageNet sample, Table 1 on photos, and visibility per photo.

Usage (needs the 1,000-image sample: SMOOTHLAB_DATA=DIR with DIR/imagenet-samples, or the user cache)::

    python benchmarks/bench_natural.py accuracy              # top-1 of EfficientNet-Lite0 on all 1,000 photos
    python benchmarks/bench_natural.py table --n 100         # smoothlab bench --dataset imagenet, 2 workers
    python benchmarks/bench_natural.py visibility OUT        # per-photo V of sC&W against C&W from OUT/records.parquet

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("accuracy")
    t = sub.add_parser("table")
    t.add_argument("--n", type=int, default=100)
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--out", type=Path, default=Path("benchmarks/out/natural"))
    v = sub.add_parser("visibility")
    v.add_argument("out", type=Path)
    args = p.parse_args()
    if args.what == "accuracy":
        accuracy()
    elif args.what == "table":
        table(args.n, args.workers, args.out)
    else:
        visibility(args.out)


if __name__ == "__main__":
    main()
