"""Benchmark of the Dask runner (smoothlab.bench.run): wall time, speed-up, overhead.

Measures, on one spec (default: the six attacks of Table 1 with the paper's MNIST
parameters and budgets on the first 100 images of the embedded MNIST test split, shards of
10 images; ``--full`` for the whole default run, 1,000 images):

1. in-process loop over the shards (``workers=0``, 1 torch thread);
2. Dask, an already running LocalCluster with 1 worker process (1 thread);
3. Dask, an already running LocalCluster with 2 worker processes;
4. Dask end to end with ``run()`` starting and closing its own 2-worker cluster (cold).

Reports the speed-up of 2 workers over 1 (target >= 1.7x; needs 2 free cores) and the
overhead of the Dask path over the in-process loop on the same shards (target < 10%).
The records of every path are checked to be identical (all columns but ``seconds``).

Usage::

    python benchmarks/bench_dask.py [--n-images 100] [--shard-size 10] [--full] [--attacks fgsm,pgd2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time


def machine_info() -> str:
    import dask
    import distributed
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cores = os.cpu_count()
    try:
        load = " load avg %.2f %.2f %.2f" % os.getloadavg()
    except OSError:  # pragma: no cover
        load = ""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"machine: {platform.node()} {platform.system()} {platform.release()}, CPU {cpu}, {cores} usable cores "
        f"(os.cpu_count()={os.cpu_count()}),{load}\n"
        f"GPU: {gpu}; python {platform.python_version()}, torch {torch.__version__}, dask {dask.__version__}, "
        f"distributed {distributed.__version__}"
    )


def busy(res, wall: float, workers: int) -> str:
    """Attack time inside the shards and the fraction of the workers' wall time it fills."""
    attack = float(res.records["seconds"].sum())
    return f"  attack time {attack:7.2f} s, busy {100 * attack / (wall * workers):5.1f} %"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=100)
    ap.add_argument("--shard-size", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--attacks", help="comma-separated subset of fgsm,ifgsm,pgd2,cw,spgd2,scw (default: all six)")
    ap.add_argument("--full", action="store_true", help="the default run: all 1,000 embedded test images, shards of 100")
    ap.add_argument("--skip-cold", action="store_true", help="skip the end-to-end run that starts its own cluster")
    args = ap.parse_args(argv)

    import pandas as pd
    from smoothlab.bench import BenchSpec, default_attacks, run
    from smoothlab.bench._dask import start_local_cluster
    from smoothlab.bench.shard import cached_dataset, cached_model

    names = args.attacks.split(",") if args.attacks else None
    if args.full:
        spec = BenchSpec(attacks=default_attacks(names))
        what = "default run (BenchSpec(): 1,000 images, shards of 100, batches of 50)"
    else:
        spec = BenchSpec(
            n_images=args.n_images, attacks=default_attacks(names), shard_size=args.shard_size, batch_size=args.batch_size
        )
        what = f"reduced run: first {args.n_images} images, shards of {args.shard_size}, batches of {args.batch_size}"
    spec = spec.resolve_device()
    print(machine_info())
    print(f"spec: {what}; attacks {', '.join(spec.attack_keys)}; {spec.n_records_per_image()} records per image; "
          f"device {spec.device}; hash {spec.hash[:12]}")
    sys.stdout.flush()

    # 1. in-process, caches warm (dataset and model loaded before timing, like warm workers)
    cached_dataset(spec)
    cached_model(spec)
    t = time.perf_counter()
    ref = run(spec, workers=0, progress=False)
    t_inproc = time.perf_counter() - t
    print(f"in-process loop              : {t_inproc:8.2f} s  ({ref.n_shards} shards){busy(ref, t_inproc, 1)}")
    sys.stdout.flush()
    cols = [c for c in ref.records.columns if c != "seconds"]

    times: dict[int, float] = {}
    for n in (1, 2):
        cluster, client = start_local_cluster(spec, n, n)  # what run() starts: n processes, 1 thread each
        with cluster, client:
            # warm the workers (imports, dataset, model) with a one-shard run, untimed
            run(spec.replace(n_images=spec.batch_size, image_ids=None, shard_size=spec.batch_size), client=client,
                progress=False)
            t = time.perf_counter()
            res = run(spec, client=client, progress=False)
            times[n] = time.perf_counter() - t
        pd.testing.assert_frame_equal(res.records[cols], ref.records[cols])
        print(f"Dask, warm cluster, {n} worker{'s' if n > 1 else ' '}: {times[n]:8.2f} s{busy(res, times[n], n)}; "
              "records identical to in-process")
        sys.stdout.flush()

    if not args.skip_cold:
        t = time.perf_counter()
        res = run(spec, workers=2, progress=False)
        t_cold = time.perf_counter() - t
        pd.testing.assert_frame_equal(res.records[cols], ref.records[cols])
        print(f"Dask, run() starts its own 2-worker cluster (cold, end to end): {t_cold:8.2f} s{busy(res, t_cold, 2)}")

    speedup = times[1] / times[2]
    overhead = times[1] / t_inproc - 1.0
    print(f"speed-up 2 workers / 1 worker : {speedup:5.2f}x  (target >= 1.7x)")
    print(f"Dask overhead, 1 worker vs in-process loop: {100 * overhead:+5.1f} %  (target < 10 %)")
    print("(attack time = sum of the attack calls' wall time inside the shards; busy = attack time / (wall x workers):")
    print(" the share of the workers' time spent attacking. On a loaded machine attack time itself inflates;")
    print(f" load average now {' '.join(f'{v:.2f}' for v in os.getloadavg())})")
    print()
    print(ref.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
