"""Dataset-wide evaluation with the protocol of section 5.1, sharded over Dask workers.

- :class:`BenchSpec`, :class:`AttackSpec` -- what to run (JSON-serialisable, stable hash);
  ``BenchSpec()`` is Table 1: six attacks on the embedded MNIST test split against C4;
- :func:`run` -- run it (local cluster, existing cluster, or in-process) with resumable
  per-shard Parquet output; returns a :class:`BenchResult` (records, summary, P(D));
- :func:`run_shard` -- the unit of work, identical on every path.

Dask (``distributed``) is imported only when a run uses it.
"""

from __future__ import annotations

from smoothlab.bench.runner import BenchResult, run
from smoothlab.bench.shard import cache_info, clear_cache, plan_shards, run_shard, select_images
from smoothlab.bench.spec import (
    DEFAULT_BUDGETS,
    MODELS,
    AttackSpec,
    BenchSpec,
    default_attacks,
    parse_budgets,
    parse_images,
    quick_attacks,
)

__all__ = [
    "AttackSpec",
    "BenchResult",
    "BenchSpec",
    "DEFAULT_BUDGETS",
    "MODELS",
    "cache_info",
    "clear_cache",
    "default_attacks",
    "parse_budgets",
    "parse_images",
    "plan_shards",
    "quick_attacks",
    "run",
    "run_shard",
    "select_images",
]
