"""Build the static HTML copies of the notebooks, executed at full size, for readers who only want to read.

    python scripts/build_notebook_html.py                    # every notebook, full size, into docs/notebooks/
    python scripts/build_notebook_html.py 02 04 --timeout 3600
    python scripts/build_notebook_html.py --quick --out /tmp/html   # a quick-mode smoke build

Each notebook is executed in a fresh kernel (``SMOOTHLAB_QUICK=0``, or ``1`` with ``--quick``) from the
``notebooks/`` folder, with the ipywidgets state stored (a static page shows the explorers at their start
values) and Plotly figures rendered to HTML that loads plotly.js from its CDN, then exported with nbconvert's
``lab`` template to ``<out>/<name>.html``. The stored notebooks are never modified. ``<out>/index.html`` lists
what was built, in which mode, when and how long it took; a notebook that fails or runs past ``--timeout`` is
listed as not built (an older HTML copy of it is left in place and marked as such). Pages over ``--max-mb``
are not kept (``--max-mb 0`` keeps none, ``--max-mb 1000`` keeps them all). ``docs/`` is what GitHub Pages publishes (Settings, Pages, "Deploy from a
branch", folder ``/docs``).

The natural-image notebook needs the ImageNet sample at full size: set ``SMOOTHLAB_DATA`` to a folder holding
``imagenet-samples/`` where it cannot be downloaded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_OUT = ROOT / "docs" / "notebooks"
STATUS = "build-status.json"


def _select(names: list[str]) -> list[Path]:
    books = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return books
    chosen = [b for b in books if any(b.stem == n or b.stem.startswith(n + "_") or b.name == n for n in names)]
    unknown = [n for n in names if not any(b.stem == n or b.stem.startswith(n + "_") or b.name == n for b in books)]
    if unknown:
        raise SystemExit(f"unknown notebook(s) {unknown}; expected numbers or names among {[b.stem for b in books]}")
    return chosen


def build_one(book: Path, out: Path, *, quick: bool, timeout: int, kernel: str, max_mb: float = 10.0) -> dict:
    """Execute ``book`` and write ``out/<stem>.html``; return its status entry.

    A page larger than ``max_mb`` megabytes is not kept (too large to commit): the entry says so.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    from nbconvert import HTMLExporter

    env_before = {k: os.environ.get(k) for k in ("SMOOTHLAB_QUICK", "PLOTLY_RENDERER")}
    os.environ["SMOOTHLAB_QUICK"] = "1" if quick else "0"
    os.environ["PLOTLY_RENDERER"] = "notebook_connected"  # plotly.js from its CDN: small pages
    nb = nbformat.read(book, as_version=4)
    entry = {"notebook": book.name, "mode": "quick" if quick else "full size",
             "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    t0 = time.perf_counter()
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name=kernel, store_widget_state=True,
                                resources={"metadata": {"path": str(NOTEBOOKS)}})
        client.execute()
    except CellTimeoutError:
        entry.update(built=False, reason=f"a cell ran past --timeout={timeout} s")
    except CellExecutionError as exc:
        entry.update(built=False, reason=f"a cell failed: {str(exc).strip().splitlines()[-1][:200]}")
    else:
        body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
        megabytes = round(len(body.encode("utf-8")) / 2**20, 2)
        if megabytes > max_mb:
            entry.update(built=False, megabytes=megabytes,
                         reason=f"executed, but the page ({megabytes} MB) is over --max-mb={max_mb:g}: not kept")
        else:
            (out / f"{book.stem}.html").write_text(body, encoding="utf-8")
            entry.update(built=True, megabytes=megabytes)
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    entry["seconds"] = round(time.perf_counter() - t0, 1)
    return entry


def write_index(out: Path, status: dict) -> None:
    rows = []
    for name in sorted(status):
        e = status[name]
        stem = Path(name).stem
        if e.get("built"):
            cell = f'<a href="{stem}.html">{html.escape(stem)}</a>'
            what = f"{e['mode']}, executed {e['date']} in {e['seconds']:.0f} s, {e['megabytes']} MB"
        else:
            old = (out / f"{stem}.html").exists()
            cell = f'<a href="{stem}.html">{html.escape(stem)}</a> (older copy)' if old else html.escape(stem)
            what = f"no page from the {e['mode']} run of {e['date']}: {html.escape(e.get('reason', ''))}"
        rows.append(f"<tr><td>{cell}</td><td>{what}</td></tr>")
    (out / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>smoothlab notebooks</title>"
        "<h1>smoothlab notebooks, rendered with their outputs</h1>"
        "<p>Static copies: the sliders of the explorers show their start values. To run them, open the notebooks "
        "in JupyterLab (see the README).</p><table>" + "".join(rows) + "</table>\n",
        encoding="utf-8",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="numbers (02) or names; default: all")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: docs/notebooks)")
    parser.add_argument("--quick", action="store_true", help="quick mode (SMOOTHLAB_QUICK=1): a smoke build")
    parser.add_argument("--timeout", type=int, default=7200, help="seconds per cell before giving up on a notebook")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    parser.add_argument("--max-mb", type=float, default=10.0, help="do not keep pages larger than this (MB)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    status_file = args.out / STATUS
    status = json.loads(status_file.read_text()) if status_file.exists() else {}
    failed = 0
    for book in _select(args.notebooks):
        print(f"{book.name}: executing ({'quick' if args.quick else 'full size'}) ...", flush=True)
        entry = build_one(book, args.out, quick=args.quick, timeout=args.timeout, kernel=args.kernel, max_mb=args.max_mb)
        status[book.name] = entry
        if entry["built"]:
            print(f"  wrote {args.out / (book.stem + '.html')} ({entry['megabytes']} MB, {entry['seconds']:.0f} s)")
        else:
            failed += 1
            print(f"  NOT BUILT: {entry['reason']} ({entry['seconds']:.0f} s)")
        status_file.write_text(json.dumps(status, indent=1, sort_keys=True) + "\n")
        write_index(args.out, status)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
