"""Dataset-wide evaluation with the protocol of section 5.1, sharded over Dask workers.

- :class:`BenchSpec`, :class:`AttackSpec` -- what to run (JSON-serialisable, stable hash);
  ``BenchSpec()`` is Table 1: six attacks on the embedded MNIST test split against C4, with the
  authors' Table 1 budget grids (:data:`TABLE1_BUDGETS`); :data:`EXTRA_ATTACKS` names more
  (the authors' sPGD2 loop, DDN, FMN and their smooth versions);
  ``BenchSpec.paper(2)`` Table 2 (white box on the adversarially trained C4) and
  ``BenchSpec.paper(3, target="c4-bilateral")`` Table 3 (transferability, sec. 5.4);
- :func:`run` -- run it (local cluster, existing cluster, or in-process) with resumable
  per-shard Parquet output; returns a :class:`BenchResult` (records, summary, P(D));
- :func:`report` -- the statistics of the shards a stopped run finished, computing nothing;
- :func:`paper_scenarios`, :func:`run_all` -- the specs of Tables 1-3 by name, and several runs in
  one call (each in its own folder);
- :func:`run_shard` -- the unit of work, identical on every path;
- :func:`compare` -- several finished runs in one table (also LaTeX) and one figure;
- :func:`load_adversarials` -- the adversarial images a run kept (``run(..., save_adversarials=True)``),
  checked against its records;
- :func:`register_model` -- evaluate models of your own by name (:data:`MODELS` are built in;
  the registry lives in :mod:`smoothlab.models` and is re-exported here);
- :func:`register_dataset` -- evaluate on data of your own by name (:data:`DATASETS` are built
  in; the registry lives in :mod:`smoothlab.data` and is re-exported here).

Dask (``distributed``) is imported only when a run uses it.
"""

from __future__ import annotations

from smoothlab.bench.comparison import Comparison, compare
from smoothlab.bench.runner import BenchResult, report, run
from smoothlab.bench.saved import SavedAdversarials, load_adversarials
from smoothlab.bench.scenarios import paper_scenarios, run_all
from smoothlab.bench.shard import cache_info, clear_cache, plan_shards, run_shard, select_images
from smoothlab.bench.spec import (
    DEFAULT_BUDGETS,
    EXTRA_ATTACKS,
    IMAGENET_BUDGETS,
    SINGLE_BUDGETS,
    TABLE1_BUDGETS,
    TABLE2_BUDGETS,
    TABLE3_TARGETS,
    AttackSpec,
    BenchSpec,
    default_attacks,
    parse_budgets,
    parse_images,
    quick_attacks,
    single_budget_attacks,
)
from smoothlab.data import DATASETS, register_dataset, unregister_dataset
from smoothlab.models import MODELS, build_model, model_names, register_model, unregister_model

__all__ = [
    "AttackSpec",
    "BenchResult",
    "BenchSpec",
    "Comparison",
    "DATASETS",
    "DEFAULT_BUDGETS",
    "EXTRA_ATTACKS",
    "IMAGENET_BUDGETS",
    "MODELS",
    "SavedAdversarials",
    "SINGLE_BUDGETS",
    "TABLE1_BUDGETS",
    "TABLE2_BUDGETS",
    "TABLE3_TARGETS",
    "build_model",
    "cache_info",
    "clear_cache",
    "compare",
    "default_attacks",
    "load_adversarials",
    "model_names",
    "parse_budgets",
    "paper_scenarios",
    "parse_images",
    "plan_shards",
    "quick_attacks",
    "register_dataset",
    "register_model",
    "report",
    "run",
    "run_all",
    "run_shard",
    "select_images",
    "single_budget_attacks",
    "unregister_dataset",
    "unregister_model",
]
