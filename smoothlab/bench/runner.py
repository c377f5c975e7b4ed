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

__all__ = ["BenchResult", "report", "run"]

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
        ``"in-process"``, ``"local-cluster"``, ``"client"``, ``"scheduler"``, or ``"report"``
        (:func:`report`: nothing computed).
    n_workers : int
        Dask workers used (1 in-process).
    seconds : float
        Wall time of the call.
    out : pathlib.Path or None
        Output folder.
    dashboard : str or None
        Dask dashboard link, when there was one.
    n_images : int
        Number of images of the spec (of all its shards).
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
    n_images: int = 0

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
        storage.write_parquet(
            paths["records.parquet"], self.records,
            {"spec_hash": self.spec.hash, "shards": [self.shards_done, self.n_shards]},
        )
        header = (
            f"Smooth adversarial examples — section 5.1 protocol, {self.spec.scenario}, "
            f"{self.spec.dataset} {self.spec.split} ({self.spec.source}), spec {self.spec.hash[:12]}.\n\n"
        )
        if not self.complete:
            header += f"**Partial:** {self.partial_note()}.\n\n"
        paths["table.md"].write_text(header + self.table("markdown") + "\n\nBudget grids:\n\n" + self.spec.grids() + "\n")
        paths["table.csv"].write_text(self.table("csv"))
        try:
            self.figure().write_html(paths["operating_characteristic.html"], include_plotlyjs="cdn")
        except ImportError:  # plotly is optional
            log.warning("plotly is not installed: operating_characteristic.html not written")
            del paths["operating_characteristic.html"]
        return paths

    @property
    def shards_done(self) -> int:
        """Number of finished shards the result holds (computed by this call or reused from ``out``)."""
        return len(set(self.computed) | set(self.reused))

    def partial_note(self) -> str:
        """What a partial result covers: its finished shards and images, of the spec's."""
        return (
            f"{self.shards_done} of {self.n_shards} shards finished, {self.records['image_id'].nunique()} of "
            f"{self.n_images} images; the statistics cover those only"
        )

    def __repr__(self) -> str:
        state = "complete" if self.complete else "partial"
        return (
            f"BenchResult({state}, {len(self.records)} records, attacks {list(self.summary.index)}, "
            f"shards computed={len(self.computed)} reused={len(self.reused)} of {self.n_shards}, "
            f"mode={self.mode}, workers={self.n_workers}, {self.seconds:.1f} s)"
        )


class _Progress:
    """tqdm bar (``tqdm.auto``: text in a terminal, a widget in a notebook), silent when disabled."""

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
    *,
    client: Any = None,
    out: str | os.PathLike[str] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    max_shards: int | None = None,
    threads: int = 1,
    connect_timeout: float = 10.0,
    on_shard: Callable[[int, pd.DataFrame], None] | None = None,
    save_adversarials: bool = False,
) -> BenchResult:
    """Evaluate the attacks of ``spec`` dataset-wide with the protocol of section 5.1.

    Parameters
    ----------
    spec : BenchSpec, optional
        What to run; default ``BenchSpec()``: Table 1's six attacks on the embedded MNIST
        test split against the pretrained C4. ``device="auto"`` is resolved on the calling
        machine (CUDA when it has it). The other parameters are keyword-only.
    client : distributed.Client, optional
        An existing Dask client to use. ``None`` (default) starts a ``LocalCluster`` (unless
        ``scheduler`` or ``workers=0`` says otherwise) and closes it after.
    out : path, optional
        Output folder. Every finished shard is written there at once, so an interrupted run
        resumes where it stopped; finished runs also get records.parquet, table.md,
        table.csv and operating_characteristic.html.
    scheduler : str, optional
        ``"tcp://HOST:PORT"`` of a running Dask scheduler.
    workers : int, optional
        Workers of the local cluster (default: one per core / GPU, at most one per shard);
        ``0`` runs in-process, without Dask.
    progress : bool
        Show a progress bar of the shards (tqdm: text in a terminal, a widget in a notebook) and the
        Dask dashboard link.
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
    save_adversarials : bool
        Also keep, per shard in ``out/adversarials/``, each image's least distorted successful
        adversarial image for each attack, taken from the same attack calls: ``uint8`` (exact, PNG-safe)
        for attacks run with ``quantise=True`` (:meth:`BenchSpec.quantised`), ``float16`` otherwise.
        Checksummed and resumed like the records: a shard whose file is missing or invalid is
        recomputed (with bit-identical records). Read them with
        :func:`smoothlab.bench.load_adversarials`. Needs ``out``, and an ``out`` that saved
        them from its first shard.

    Returns
    -------
    BenchResult
        Records, summary table and operating characteristics.

    Raises
    ------
    ValueError
        Image indices out of range of the split, bad arguments.
    FileExistsError
        ``out`` holds another spec and ``overwrite`` is false, or ``save_adversarials`` and
        ``out`` holds shards written without it.
    ConnectionError
        ``scheduler`` cannot be reached within ``connect_timeout`` seconds.

    Examples
    --------
    Two attacks on four digits, in-process (``workers=0``), no output folder:

    >>> from smoothlab.bench import AttackSpec, BenchSpec, run
    >>> spec = BenchSpec(attacks=(AttackSpec("fgsm", budgets=(0.3,)), AttackSpec("pgd2", budgets=(2.0, 5.0))),
    ...                  n_images=4, batch_size=4, shard_size=4, visibility=False, sweep="full")
    >>> result = run(spec, workers=0, progress=False)
    >>> result.mode, result.complete, len(result.records)  # sweep="full": one record per image, attack and budget
    ('in-process', True, 12)
    >>> list(result.summary.index)
    ['fgsm', 'pgd2']
    """
    t0 = time.perf_counter()
    spec = _check_run_arguments(spec, client, scheduler, workers, max_shards, threads, connect_timeout)
    if not isinstance(save_adversarials, bool):
        raise TypeError(f"save_adversarials must be a bool, got {save_adversarials!r}")
    if save_adversarials and out is None:
        raise ValueError("save_adversarials=True needs out= (the folder the images are saved in), got out=None")
    in_process = workers == 0
    _check_device_here(spec, runs_here=in_process or (client is None and scheduler is None))

    # Images and shards (index range checked on the calling side, before any work).
    shards = plan_shards(spec, select_images(spec, dataset_size(spec)))
    state = _RunState(spec, shards, on_shard, save_adversarials)
    if out is not None:
        folder = storage.prepare_out(Path(out), spec, overwrite)
        storage.check_adversarials_folder(folder, save_adversarials)
        state.resume(folder)
    todo = state.todo(max_shards)

    mode, n_workers, dashboard = "in-process", 1, None
    if todo and in_process:
        _run_in_process(state, todo, progress, threads)
    elif todo:
        mode, n_workers, dashboard = _run_dask(
            spec, shards, todo, state.finish_shard, client, scheduler, workers, progress, threads, connect_timeout,
            len(state.reused), save_adversarials,
        )
    result = state.result(mode=mode, n_workers=n_workers, dashboard=dashboard)
    result.seconds = time.perf_counter() - t0
    return result


def report(out: str | os.PathLike[str], *, save: bool = True) -> BenchResult:
    """The statistics of the shards already finished in ``out``, computing nothing.

    For a run that was stopped (or is still running elsewhere): reads ``out/spec.json`` and
    every valid shard, and aggregates them as :func:`run` does (eqs. 20-21). A later
    :func:`run` of the same spec and ``out`` still resumes the missing shards.

    Parameters
    ----------
    out : path
        Output folder of a :func:`run` (``smoothlab bench --out``).
    save : bool
        Write records.parquet, table.md, table.csv and operating_characteristic.html into
        ``out`` (default). A partial result's table.md says which shards it covers, and its
        records.parquet stores ``shards = [finished, total]`` in its metadata.

    Returns
    -------
    BenchResult
        ``mode="report"``, ``computed=[]``; ``complete`` is true when every shard is finished.

    Raises
    ------
    FileNotFoundError
        ``out`` has no ``spec.json``.
    ValueError
        No valid shard in ``out`` (nothing to report), or ``spec.json`` of another smoothlab
        version.

    Examples
    --------
    >>> import tempfile
    >>> from smoothlab.bench import AttackSpec, BenchSpec, report, run
    >>> spec = BenchSpec(attacks=(AttackSpec("fgsm", budgets=(0.3,)),), n_images=8, batch_size=4,
    ...                  shard_size=4, visibility=False)
    >>> out = tempfile.mkdtemp()
    >>> run(spec, out=out, workers=0, progress=False, max_shards=1).complete
    False
    >>> partial = report(out)
    >>> partial.complete, partial.n_shards, partial.records["image_id"].nunique()
    (False, 2, 4)
    """
    t0 = time.perf_counter()
    if isinstance(out, bool) or not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be the path of a benchmark output folder, got {type(out).__name__}")
    if not isinstance(save, bool):
        raise TypeError(f"save must be a bool, got {save!r}")
    folder = Path(out).expanduser()
    spec = storage.read_spec(folder)
    state = _RunState(spec, plan_shards(spec, select_images(spec, dataset_size(spec))), None)
    state.resume(folder)
    if not state.done:
        raise ValueError(f"out holds no finished shard to report: {folder / storage.SHARD_DIR} has no valid shard file")
    result = state.result(mode="report", n_workers=0, dashboard=None, save=save)
    result.seconds = time.perf_counter() - t0
    return result


def _check_run_arguments(
    spec: Any,
    client: Any,
    scheduler: Any,
    workers: int | None,
    max_shards: int | None,
    threads: int,
    connect_timeout: float,
) -> BenchSpec:
    """Check :func:`run`'s arguments; return the spec (device resolved)."""
    from smoothlab._validation import check_int, check_positive

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
        raise TypeError(f"scheduler must be an address string, got {type(scheduler).__name__}")
    if isinstance(client, bool):
        raise TypeError(f"client must be a distributed.Client or None, got {client!r}; workers=0 runs in-process")
    if scheduler is not None and scheduler.strip().lower() in ("", "none"):
        raise ValueError(f"scheduler must be the address of a Dask scheduler ('tcp://HOST:PORT'), got {scheduler!r}; workers=0 runs in-process")
    if client is not None and scheduler is not None:
        raise ValueError("give either client or scheduler, not both")
    return spec


def _check_device_here(spec: BenchSpec, runs_here: bool) -> None:
    """A CUDA spec that runs on this machine (in-process or a local cluster) needs CUDA here."""
    if spec.device.startswith("cuda") and runs_here:
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"device={spec.device!r} but CUDA is not available on this machine; use device='cpu' or 'auto'")


class _RunState:
    """The shards of one :func:`run` call: those found in ``out/``, those computed, and the result."""

    def __init__(
        self,
        spec: BenchSpec,
        shards: list[np.ndarray],
        on_shard: Callable[[int, pd.DataFrame], None] | None,
        adversarials: bool = False,
    ) -> None:
        self.spec = spec
        self.adversarials = adversarials
        self.shards = shards
        self.on_shard = on_shard
        self.out: Path | None = None
        self.done: dict[int, pd.DataFrame] = {}
        self.invalid: list[int] = []
        self.reused: list[int] = []
        self.computed: list[int] = []

    def resume(self, out: Path) -> None:
        """Reuse every valid shard in ``out``; note (and delete) the invalid ones. When saving
        adversarial images, a shard is valid with a valid adversarials file only."""
        self.out = out
        for k, ids in enumerate(self.shards):
            df, reason = storage.read_shard(out, self.spec, k, ids)
            if df is not None and self.adversarials:
                df = self._adversarials_valid(k, ids, df)
                if df is None:
                    continue
            if df is not None:
                self.done[k] = df
            elif reason != "missing":
                log.warning("shard %d in %s is invalid (%s): recomputing it", k, out, reason)
                self.invalid.append(k)
                storage.shard_path(out, k).unlink(missing_ok=True)
        self.reused = sorted(self.done)

    def _adversarials_valid(self, k: int, ids: np.ndarray, df: pd.DataFrame) -> pd.DataFrame | None:
        """``df`` when shard ``k``'s adversarials file is valid; else ``None`` (the shard is recomputed)."""
        assert self.out is not None
        adv, reason = storage.read_adversarials(self.out, self.spec, k, ids, df)
        if adv is not None:
            return df
        if reason == "missing":
            log.warning("shard %d in %s has no saved adversarial images: recomputing it", k, self.out)
        else:
            log.warning("adversarial images of shard %d in %s are invalid (%s): recomputing the shard", k, self.out, reason)
            self.invalid.append(k)
            storage.adversarials_path(self.out, k).unlink(missing_ok=True)
        return None

    def todo(self, max_shards: int | None) -> list[int]:
        """The shards still to compute in this call."""
        todo = [k for k in range(len(self.shards)) if k not in self.done]
        return todo if max_shards is None else todo[:max_shards]

    def finish_shard(self, k: int, computed: pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Write shard ``k`` at once (when there is an ``out``; its adversarial images first) and
        keep its records."""
        df, adv = computed if isinstance(computed, tuple) else (computed, None)
        if self.out is not None:
            if adv is not None:
                storage.write_adversarials(self.out, self.spec, k, self.shards[k], adv, df)
            storage.write_shard(self.out, self.spec, k, self.shards[k], df)
        self.done[k] = df
        self.computed.append(k)
        if self.on_shard is not None:
            self.on_shard(k, df)

    def result(self, *, mode: str, n_workers: int, dashboard: str | None, save: bool | None = None) -> BenchResult:
        """Aggregate the records (eqs. 20-21) and write the reports to ``out``: when ``save`` says
        so, or (``save=None``) when the run is complete."""
        from smoothlab.metrics import operating_characteristics, summary
        from smoothlab.records import sort_records

        if not self.done:
            raise RuntimeError("no shard was computed")  # unreachable: max_shards >= 1
        records = sort_records(pd.concat([self.done[k] for k in sorted(self.done)], ignore_index=True))
        complete = len(self.done) == len(self.shards)
        result = BenchResult(
            spec=self.spec,
            records=records,
            summary=summary(records),
            operating_characteristics=operating_characteristics(records),
            complete=complete,
            n_shards=len(self.shards),
            computed=sorted(self.computed),
            reused=self.reused,
            invalid=self.invalid,
            mode=mode,
            n_workers=n_workers,
            out=self.out,
            dashboard=dashboard,
            n_images=sum(len(ids) for ids in self.shards),
        )
        if self.out is not None and (complete if save is None else save):
            result.save(self.out)
        return result


def _run_in_process(state: _RunState, todo: list[int], progress: bool, threads: int) -> None:
    """Compute the shards ``todo`` one after the other in this process, writing each at once."""
    bar = _Progress(progress, len(state.reused) + len(todo), len(state.reused), "smoothlab bench")
    try:
        with torch_threads(threads):
            for k in todo:
                state.finish_shard(k, run_shard(state.spec, k, state.shards[k], adversarials=state.adversarials))
                bar.update()
    finally:
        bar.close()


def _run_dask(
    spec: BenchSpec,
    shards: list[np.ndarray],
    todo: list[int],
    finish_shard: Callable[[int, Any], None],
    client: Any,
    scheduler: str | None,
    workers: int | None,
    progress: bool,
    threads: int,
    connect_timeout: float,
    n_reused: int,
    adversarials: bool = False,
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
        # a plain LocalCluster we started for the GPUs pins them by worker name; dask_cuda's by itself
        pin = None if cluster is None else type(cluster).__name__ != "LocalCUDACluster"
        client.register_plugin(BenchWorkerPlugin(spec, threads=threads, pin_by_name=pin))
        token = f"{spec.hash[:10]}-{uuid.uuid4().hex[:8]}"  # unique per call: never reuse old futures
        futures = [
            client.submit(
                shard_task, spec, k, [int(i) for i in shards[k]], threads, adversarials, key=f"smoothlab-shard-{token}-{k}"
            )
            for k in todo
        ]
        index = {f.key: k for f, k in zip(futures, todo)}
        # Our own bar, updated by this loop as shards complete (a widget in a notebook). Not Dask's
        # progress widget: in a notebook its listener runs on the kernel's event loop, i.e. only
        # after the cell has returned, when these futures are released; its scheduler-side feed then
        # waits for keys that never come back until the cluster closes, and the scheduler logs the
        # cancelled feed as an ERROR with a traceback in the user's notebook (issue 13).
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
