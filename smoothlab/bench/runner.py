"""Dataset-wide evaluation (section 5.1), sharded over Dask workers or run in-process.

:func:`run` splits the images into shards, computes each shard (a Dask task or a plain loop,
the same function :func:`smoothlab.bench.shard.run_shard`), writes every finished shard at
once under ``out/``, and aggregates the records into the statistics of eqs. (20)-(21).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smoothlab.bench import storage
from smoothlab.bench.shard import dataset_size, plan_shards, run_shard, select_images, torch_threads
from smoothlab.bench.spec import BenchSpec

__all__ = ["BenchResult", "run"]

log = logging.getLogger("smoothlab.bench")


@dataclass
class BenchResult:
    """Outcome of :func:`run`.

    Attributes
    ----------
    spec : BenchSpec
        The spec that was run (device resolved).
    records : pandas.DataFrame
        Per-image records, sorted by ``(attack, budget, image_id)``; every column but
        ``seconds`` is bit-identical whatever the number of workers or the shard size.
    summary : pandas.DataFrame
        :func:`smoothlab.metrics.summary` of the records (P_suc and D̄, eq. 20, and the mean
        visibility V̄, per attack).
    operating_characteristics : dict
        Attack -> ``(D, P)`` of eq. (21).
    complete : bool
        All shards are done (false when ``max_shards`` stopped the run early; then the
        statistics cover the finished shards only).
    n_shards : int
        Number of shards of the spec.
    computed, reused, invalid : list of int
        Shards computed by this call, loaded from ``out/``, and found corrupt or foreign in
        ``out/`` (and therefore recomputed, so also in ``computed``).
    mode : str
        ``"in-process"``, ``"local-cluster"``, ``"client"`` or ``"scheduler"``.
    n_workers : int
        Dask workers used (1 in-process).
    seconds : float
        Wall time of the call.
    out : pathlib.Path or None
        Output folder.
    dashboard : str or None
        Dask dashboard link, when there was one.
    """

    spec: BenchSpec
    records: pd.DataFrame
    summary: pd.DataFrame
    operating_characteristics: dict[str, tuple[np.ndarray, np.ndarray]]
    complete: bool
    n_shards: int
    computed: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)
    mode: str = "in-process"
    n_workers: int = 1
    seconds: float = 0.0
    out: Path | None = None
    dashboard: str | None = None

    def table(self, fmt: str = "markdown", digits: int = 2) -> str:
        """The summary as Markdown (paper notation) or CSV."""
        from smoothlab.metrics import format_summary

        return format_summary(self.summary, fmt, digits=digits)

    def figure(self, **kwargs: Any) -> Any:
        """Operating characteristics as a Plotly figure (Figure 2 of the paper)."""
        from smoothlab.viz import operating_characteristic_figure

        title = kwargs.pop(
            "title", f"Operating characteristic — {self.spec.scenario}, {self.records['image_id'].nunique()} images"
        )
        return operating_characteristic_figure(self.operating_characteristics, title=title, **kwargs)

    def save(self, directory: str | os.PathLike[str] | None = None) -> dict[str, Path]:
        """Write records.parquet, table.md, table.csv and operating_characteristic.html.

        ``directory`` defaults to the run's ``out``. Returns the paths written.
        """
        target = Path(directory if directory is not None else self.out or ".")
        target.mkdir(parents=True, exist_ok=True)
        paths = {name: target / name for name in storage.REPORT_FILES}
        storage.write_parquet(paths["records.parquet"], self.records, {"spec_hash": self.spec.hash})
        header = (
            f"Smooth adversarial examples — section 5.1 protocol, {self.spec.scenario}, "
            f"{self.spec.dataset} {self.spec.split} ({self.spec.source}), spec {self.spec.hash[:12]}.\n\n"
        )
        paths["table.md"].write_text(header + self.table("markdown"))
        paths["table.csv"].write_text(self.table("csv"))
        try:
            self.figure().write_html(paths["operating_characteristic.html"], include_plotlyjs="cdn")
        except ImportError:  # plotly is optional
            log.warning("plotly is not installed: operating_characteristic.html not written")
            del paths["operating_characteristic.html"]
        return paths

    def __repr__(self) -> str:
        state = "complete" if self.complete else "partial"
        return (
            f"BenchResult({state}, {len(self.records)} records, attacks {list(self.summary.index)}, "
            f"shards computed={len(self.computed)} reused={len(self.reused)} of {self.n_shards}, "
            f"mode={self.mode}, workers={self.n_workers}, {self.seconds:.1f} s)"
        )


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class _Progress:
    """tqdm bar in a terminal (or notebook without Dask), silent when disabled."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="shard", file=sys.stderr)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(
    spec: BenchSpec | None = None,
    client: Any = None,
    out: str | os.PathLike[str] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    *,
    overwrite: bool = False,
    max_shards: int | None = None,
    threads: int = 1,
    connect_timeout: float = 10.0,
    on_shard: Callable[[int, pd.DataFrame], None] | None = None,
) -> BenchResult:
    """Evaluate the attacks of ``spec`` dataset-wide with the protocol of section 5.1.

    Parameters
    ----------
    spec : BenchSpec, optional
        What to run; default ``BenchSpec()``: Table 1's six attacks on the embedded MNIST
        test split against the pretrained C4. ``device="auto"`` is resolved on the calling
        machine (CUDA when it has it).
    client : distributed.Client, False or None
        An existing Dask client to use; ``False`` runs in-process without Dask; ``None``
        starts a ``LocalCluster`` (unless ``scheduler`` says otherwise) and closes it after.
    out : path, optional
        Output folder. Every finished shard is written there at once, so an interrupted run
        resumes where it stopped; finished runs also get records.parquet, table.md,
        table.csv and operating_characteristic.html.
    scheduler : str, optional
        ``"tcp://HOST:PORT"`` of a running Dask scheduler, or ``"none"`` for in-process.
    workers : int, optional
        Workers of the local cluster (default: one per core / GPU, at most one per shard);
        ``0`` runs in-process.
    progress : bool
        Show a tqdm bar (terminal) or Dask's progress widget (notebook) and the dashboard link.
    overwrite : bool
        Delete the results already in ``out`` and start afresh (required when ``out`` holds
        another spec; without it, results of the same spec are resumed).
    max_shards : int, optional
        Compute at most this many shards in this call, then return a partial result
        (``complete=False``); a later call resumes.
    threads : int
        ``torch.set_num_threads`` in each worker and in-process (1: the records are then the
        same on every path).
    connect_timeout : float
        Seconds to wait for ``scheduler`` before raising ``ConnectionError``.
    on_shard : callable, optional
        ``on_shard(index, records)`` after each shard computed by this call is written.

    Returns
    -------
    BenchResult
        Records, summary table and operating characteristics.

    Raises
    ------
    ValueError
        Image indices out of range of the split, bad arguments.
    FileExistsError
        ``out`` holds another spec and ``overwrite`` is false.
    ConnectionError
        ``scheduler`` cannot be reached within ``connect_timeout`` seconds.
    """
    from smoothlab._validation import check_int, check_positive
    from smoothlab.metrics import operating_characteristics, sort_records, summary

    t0 = time.perf_counter()
    spec = BenchSpec() if spec is None else spec
    if not isinstance(spec, BenchSpec):
        raise TypeError(f"spec must be a BenchSpec, got {type(spec).__name__}")
    spec = spec.resolve_device()
    if workers is not None:
        check_int(workers, "workers", minimum=0)
    if max_shards is not None:
        check_int(max_shards, "max_shards", minimum=1)
    check_int(threads, "threads", minimum=1)
    check_positive(connect_timeout, "connect_timeout")
    if scheduler is not None and not isinstance(scheduler, str):
        raise TypeError(f"scheduler must be an address string or 'none', got {type(scheduler).__name__}")
    if client is not None and client is not False and scheduler is not None:
        raise ValueError("give either client or scheduler, not both")
    in_process = client is False or scheduler == "none" or workers == 0
    runs_here = in_process or (client is None and scheduler is None)  # this machine's devices
    if spec.device.startswith("cuda") and runs_here:
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"device={spec.device!r} but CUDA is not available on this machine; use device='cpu' or 'auto'")

    # Images and shards (index range checked on the calling side, before any work).
    image_ids = select_images(spec, dataset_size(spec))
    shards = plan_shards(spec, image_ids)

    # Resume: reuse every valid shard in out/, note the invalid ones.
    done: dict[int, pd.DataFrame] = {}
    invalid: list[int] = []
    out_path = storage.prepare_out(Path(out), spec, overwrite) if out is not None else None
    if out_path is not None:
        for k, ids in enumerate(shards):
            df, reason = storage.read_shard(out_path, spec, k, ids)
            if df is not None:
                done[k] = df
            elif reason != "missing":
                log.warning("shard %d in %s is invalid (%s): recomputing it", k, out_path, reason)
                invalid.append(k)
                storage.shard_path(out_path, k).unlink(missing_ok=True)
    reused = sorted(done)
    todo = [k for k in range(len(shards)) if k not in done]
    if max_shards is not None:
        todo = todo[:max_shards]

    computed: list[int] = []

    def finish_shard(k: int, df: pd.DataFrame) -> None:
        if out_path is not None:
            storage.write_shard(out_path, spec, k, shards[k], df)
        done[k] = df
        computed.append(k)
        if on_shard is not None:
            on_shard(k, df)

    mode, n_workers, dashboard = "in-process", 1, None
    if todo and in_process:
        bar = _Progress(progress, len(reused) + len(todo), len(reused), "smoothlab bench")
        try:
            with torch_threads(threads):
                for k in todo:
                    finish_shard(k, run_shard(spec, k, shards[k]))
                    bar.update()
        finally:
            bar.close()
    elif todo:
        mode, n_workers, dashboard = _run_dask(
            spec, shards, todo, finish_shard, client, scheduler, workers, progress, threads, connect_timeout, len(reused)
        )

    complete = len(done) == len(shards)
    records = sort_records(pd.concat([done[k] for k in sorted(done)], ignore_index=True)) if done else None
    if records is None:
        raise RuntimeError("no shard was computed")  # unreachable: max_shards >= 1
    result = BenchResult(
        spec=spec,
        records=records,
        summary=summary(records),
        operating_characteristics=operating_characteristics(records),
        complete=complete,
        n_shards=len(shards),
        computed=sorted(computed),
        reused=reused,
        invalid=invalid,
        mode=mode,
        n_workers=n_workers,
        out=out_path,
        dashboard=dashboard,
    )
    if out_path is not None and complete:
        result.save(out_path)
    result.seconds = time.perf_counter() - t0
    return result


def _run_dask(
    spec: BenchSpec,
    shards: list[np.ndarray],
    todo: list[int],
    finish_shard: Callable[[int, pd.DataFrame], None],
    client: Any,
    scheduler: str | None,
    workers: int | None,
    progress: bool,
    threads: int,
    connect_timeout: float,
    n_reused: int,
) -> tuple[str, int, str | None]:
    """Run the shards ``todo`` as Dask tasks, writing each as it completes."""
    try:
        from distributed import as_completed
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the Dask runner needs distributed: pip install 'smoothlab[dask]' (or use workers=0)") from exc
    from smoothlab.bench._dask import BenchWorkerPlugin, connect, has_bokeh, shard_task, start_local_cluster

    cluster = own_client = None
    if client is not None:
        mode = "client"
    elif scheduler is not None:
        client = own_client = connect(scheduler, connect_timeout)
        mode = "scheduler"
    else:
        cluster, client = start_local_cluster(spec, workers, len(todo))
        own_client = client
        mode = "local-cluster"
    futures: list[Any] = []
    bar = None
    try:
        info = client.scheduler_info(**({"n_workers": -1} if _takes_n_workers(client) else {}))
        n_workers = len(info.get("workers", {}))
        # the dashboard pages need bokeh; without it the link would show an error page
        dashboard = client.dashboard_link if "dashboard" in info.get("services", {}) and has_bokeh() else None
        if progress and dashboard:
            print(f"smoothlab bench: Dask dashboard at {dashboard}", file=sys.stderr)
        elif progress and not has_bokeh():
            print("smoothlab bench: no Dask dashboard (it needs bokeh: pip install 'smoothlab[dask]')", file=sys.stderr)
        client.register_plugin(BenchWorkerPlugin(spec, threads=threads))
        token = f"{spec.hash[:10]}-{uuid.uuid4().hex[:8]}"  # unique per call: never reuse old futures
        futures = [
            client.submit(shard_task, spec, k, [int(i) for i in shards[k]], threads, key=f"smoothlab-shard-{token}-{k}")
            for k in todo
        ]
        index = {f.key: k for f, k in zip(futures, todo)}
        if progress and _in_notebook():
            from distributed import progress as dask_progress
            from IPython.display import display

            # progress() only builds the widget in a notebook; it shows when displayed
            display(dask_progress(futures, notebook=True, multi=False))
        else:
            bar = _Progress(progress, n_reused + len(todo), n_reused, "smoothlab bench")
        for fut in as_completed(futures):
            df = fut.result()
            finish_shard(index[fut.key], df)
            fut.release()
            if bar is not None:
                bar.update()
        return mode, n_workers, dashboard
    finally:
        if bar is not None:
            bar.close()
        for f in futures:
            f.cancel()
        if own_client is not None:
            own_client.close()
        if cluster is not None:
            cluster.close()


def _takes_n_workers(client: Any) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False
