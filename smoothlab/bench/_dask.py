"""Dask pieces of the runner: the worker plugin, cluster start-up and connection.

Imported only when a run uses Dask (``distributed`` is an optional dependency).
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Mapping
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from smoothlab.bench.spec import BenchSpec

__all__ = [
    "BenchWorkerPlugin",
    "start_local_cluster",
    "connect",
    "shard_task",
    "machine_workers",
    "has_bokeh",
    "worker_gpu",
]

log = logging.getLogger("smoothlab.bench")


class BenchWorkerPlugin(WorkerPlugin):
    """Prepares each worker once: torch threads, GPU choice, dataset and models in the cache.

    The models and the images are built in the worker process (never pickled per task) and
    kept in the process-local cache of :mod:`smoothlab.bench.shard`; the plugin only warms
    that cache when the worker starts, including workers restarted after a crash. Models and data
    sets the client registered with :func:`smoothlab.models.register_model` /
    :func:`smoothlab.data.register_dataset` travel with the plugin (their factories and entries,
    pickled once) and are registered in each worker, and so do the attacks registered with
    :func:`smoothlab.attacks.register` that the spec runs.
    """

    name = "smoothlab-bench"

    def __init__(self, spec: BenchSpec, threads: int = 1, warm: bool = True, pin_by_name: bool | None = None) -> None:
        from smoothlab.attacks import attack_payload
        from smoothlab.data import dataset_entries
        from smoothlab.models import model_factories

        self.spec = spec
        self.threads = threads
        self.warm = warm
        self.pin_by_name = pin_by_name  # see worker_gpu
        self.factories = model_factories((spec.model, spec.target_model))
        self.attacks = attack_payload(a.name for a in spec.attacks)
        self.datasets = dataset_entries((spec.dataset,))

    def setup(self, worker: Any) -> None:
        import torch

        from smoothlab.attacks import restore_attacks
        from smoothlab.bench import shard
        from smoothlab.data import register_dataset
        from smoothlab.models import register_model

        for name, factory in self.factories.items():
            register_model(name, factory, overwrite=True)
        restore_attacks(self.attacks)
        for name, entry in self.datasets.items():
            register_dataset(name, entry.loader, **entry.options(), overwrite=True)
        torch.set_num_threads(self.threads)
        if self.spec.device.startswith("cuda") and torch.cuda.is_available():
            if self.spec.device == "cuda":
                idx = worker_gpu(worker.name, torch.cuda.device_count(), pin_by_name=self.pin_by_name, env=os.environ)
                if idx is not None:
                    shard.set_process_device(f"cuda:{idx}")
            else:  # "cuda:k": the GPU the spec names
                idx = int(self.spec.device.split(":", 1)[1])
            # the current device too, so that anything allocating on "cuda" (CuPy, torch's
            # current stream) lands on this worker's GPU
            torch.cuda.set_device(idx or 0)
        if self.warm:
            shard.cached_dataset(self.spec)
            shard.cached_model(self.spec)
            if self.spec.target_model is not None:
                shard.cached_model(self.spec, self.spec.target_model)


def worker_gpu(name: Any, n_gpus: int, *, pin_by_name: bool | None = None, env: Mapping[str, str] | None = None) -> int | None:
    """The GPU (``cuda:<index>``) a benchmark worker named ``name`` should use on a machine with ``n_gpus``.

    - A ``dask_cuda.LocalCUDACluster`` (``pin_by_name=False``) gives each worker its own
      ``CUDA_VISIBLE_DEVICES`` with its GPU first: ``0``.
    - A plain ``LocalCluster`` that smoothlab started with one worker per GPU (``pin_by_name=True``):
      worker ``k`` takes GPU ``k mod n_gpus`` (a non-integer name by a stable CRC-32 of the name,
      never Python's per-process salted ``hash``).
    - A cluster of unknown kind (``None``): by name where ``CUDA_VISIBLE_DEVICES`` is unset in
      ``env`` (dask_cuda always sets it), else ``0``.

    Returns ``None`` where there is nothing to choose (one GPU or none).
    """
    if n_gpus <= 1:
        return None
    if pin_by_name is None:
        pin_by_name = "CUDA_VISIBLE_DEVICES" not in (os.environ if env is None else env)
    if not pin_by_name:
        return 0
    try:
        return int(name) % n_gpus
    except (TypeError, ValueError):
        return zlib.crc32(str(name).encode()) % n_gpus


def shard_task(spec: BenchSpec, index: int, image_ids: list[int], threads: int, adversarials: bool = False) -> Any:
    """Dask task: one shard's records, with ``adversarials`` also its adversarial images (the same
    function as the in-process path)."""
    from smoothlab.bench.shard import run_shard, torch_threads

    with torch_threads(threads):
        return run_shard(spec, index, image_ids, adversarials=adversarials)


def machine_workers() -> int:
    """CPUs available to this process: its affinity, capped by its cgroup quota (:func:`smoothlab.available_cpus`)."""
    from smoothlab._threads import available_cpus

    return available_cpus()


def start_local_cluster(spec: BenchSpec, workers: int | None, n_tasks: int) -> tuple[Any, Any]:
    """Start a local cluster sized to the machine and return ``(cluster, client)``.

    CPU: ``workers`` processes (default: one per core, at most one per shard), one thread
    each. CUDA (``spec.device == "cuda"``): one worker per GPU, with ``dask_cuda`` when it is
    installed, else a plain LocalCluster whose workers pick a GPU each by name
    (:func:`worker_gpu`). ``"cuda:k"``: one worker (default) on GPU ``k``, plain LocalCluster.
    """
    import dask
    from distributed import Client, LocalCluster

    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers (against memory
    # fragmentation of dataframe workloads); with the many small tensor allocations of the
    # attacks it cost about 10 % CPU time here, so our own workers keep glibc's default.
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return _start_local_cluster(spec, workers, n_tasks)


def _start_local_cluster(spec: BenchSpec, workers: int | None, n_tasks: int) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    # a free port (several clusters may run at once); the HTTP server runs with or without bokeh
    common = dict(threads_per_worker=1, dashboard_address=":0", silence_logs=logging.ERROR)
    if spec.device.startswith("cuda:"):  # one named GPU: dask_cuda would renumber it per worker
        cluster = LocalCluster(n_workers=workers or 1, processes=True, **common)
    elif spec.device == "cuda":
        import torch

        n_gpu = torch.cuda.device_count()
        n = workers or max(1, n_gpu)
        try:
            from dask_cuda import LocalCUDACluster

            cluster = LocalCUDACluster(n_workers=n, **common)
        except ImportError:
            cluster = LocalCluster(n_workers=n, processes=True, **common)
    else:
        n = workers or max(1, min(machine_workers(), n_tasks))
        cluster = LocalCluster(n_workers=n, processes=True, **common)
    try:
        client = Client(cluster)
    except BaseException:
        cluster.close()
        raise
    return cluster, client


def connect(address: str, timeout: float) -> Any:
    """Client of an existing scheduler; a clear ``ConnectionError`` within ``timeout`` seconds."""
    from distributed import Client

    try:
        return Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConnectionError(
            f"could not reach the Dask scheduler at {address!r} within {timeout:g} s ({type(exc).__name__}: {exc}); "
            "check the address (tcp://HOST:PORT) and that the scheduler is running, or run without --scheduler "
            "to start a local cluster"
        ) from None


def has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True
