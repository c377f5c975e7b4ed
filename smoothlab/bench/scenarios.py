"""The paper's scenarios as named specs, and several runs in one call.

- :func:`paper_scenarios` -- the specs of Tables 1, 2 and 3 (one per Table 3 target), by name;
- :func:`run_all` -- run several specs one after the other on the same client, each in its own
  folder, and return their results by name.

``run_all(paper_scenarios((2, 3)), client=client, out="results")`` runs Table 2 and both Table 3
targets; :func:`smoothlab.metrics.side_by_side` puts their summaries next to each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from smoothlab.bench.runner import BenchResult, run
from smoothlab.bench.spec import IMAGENET_TABLE3_TARGETS, TABLE3_TARGETS, BenchSpec

__all__ = ["paper_scenarios", "run_all"]


def paper_scenarios(
    tables: Iterable[int] = (1, 2, 3), *, quick: bool = False, dataset: str = "mnist", **changes: Any
) -> dict[str, BenchSpec]:
    """The specs of the paper's tables, by name.

    Parameters
    ----------
    tables : iterable of {1, 2, 3}
        Which tables. Table 3 (transferability) gives one spec per target model
        (:data:`~smoothlab.bench.TABLE3_TARGETS` on MNIST: the bilateral-filter defence and the
        adversarially trained C4).
    quick : bool
        The smoke-run versions (:meth:`BenchSpec.paper` with ``quick=True``).
    dataset : {"mnist", "imagenet"}
        Digits or natural images.
    **changes
        Other fields of every spec (``n_images``, ``batch_size``, ``device``, ...).

    Returns
    -------
    dict
        ``"table1"``, ``"table2"``, ``"table3-<target>"`` -> :class:`BenchSpec`, in that order.

    Examples
    --------
    >>> from smoothlab.bench.scenarios import paper_scenarios
    >>> specs = paper_scenarios((2, 3), quick=True, n_images=4)
    >>> list(specs)
    ['table2', 'table3-c4-bilateral', 'table3-c4-adv']
    >>> specs["table3-c4-adv"].scenario
    'transfer c4 -> c4-adv'
    """
    tables = list(tables)
    bad = [t for t in tables if isinstance(t, bool) or t not in (1, 2, 3)]
    if bad or not tables:
        raise ValueError(f"tables must be a non-empty list of 1, 2 and 3, got {tables!r}")
    out: dict[str, BenchSpec] = {}
    for table in sorted(set(tables)):
        if table == 3:
            targets = TABLE3_TARGETS if dataset == "mnist" else IMAGENET_TABLE3_TARGETS
            for target in targets:
                out[f"table3-{target}"] = BenchSpec.paper(3, target=target, quick=quick, dataset=dataset, **changes)
        else:
            out[f"table{table}"] = BenchSpec.paper(table, quick=quick, dataset=dataset, **changes)
    return out


def run_all(
    specs: Mapping[str, BenchSpec], *, out: str | os.PathLike[str] | None = None, **run_kwargs: Any
) -> dict[str, BenchResult]:
    """Run several specs one after the other, each in its own folder ``out/<name>``.

    Parameters
    ----------
    specs : mapping of str to BenchSpec
        Name -> spec (e.g. :func:`paper_scenarios`). A name is a folder name.
    out : path, optional
        Parent folder; each run resumes from, and writes to, ``out/<name>``.
    **run_kwargs
        Passed to every :func:`~smoothlab.bench.run` call (``client=``, ``workers=``,
        ``progress=``, ...). With ``client=None`` and no ``workers=0`` each run starts and stops
        its own local cluster: pass one client to share it.

    Returns
    -------
    dict
        Name -> :class:`BenchResult`, in the order of ``specs``.
    """
    if not isinstance(specs, Mapping) or not specs:
        raise TypeError(f"specs must be a non-empty mapping of name -> BenchSpec, got {type(specs).__name__}")
    for name, spec in specs.items():
        if not isinstance(spec, BenchSpec):
            raise TypeError(f"specs[{name!r}] must be a BenchSpec, got {type(spec).__name__}")
        if not isinstance(name, str) or not name or os.sep in name or name in (".", ".."):
            raise ValueError(f"spec names must be folder names, got {name!r}")
    return {name: run(spec, out=None if out is None else Path(out) / name, **run_kwargs) for name, spec in specs.items()}
