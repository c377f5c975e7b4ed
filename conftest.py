"""Repository-wide pytest set-up.

- Notebooks run in quick mode under the test suite (``SMOOTHLAB_QUICK=1``).
- The docstring examples of the package run too (``--doctest-modules``, ``testpaths`` in
  pyproject.toml), except in the modules of :data:`collect_ignore`.
- Where the project's development data sit beside the checkout (``../shared/data``, holding the
  1,000-image ImageNet sample), ``SMOOTHLAB_DATA`` points there, so the natural-image tests that
  need real photos run; elsewhere they skip and say why. The package never vendors these images.
"""

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("SMOOTHLAB_QUICK", "1")

_SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"
if "SMOOTHLAB_DATA" not in os.environ and (_SHARED_DATA / "imagenet-samples").is_dir():
    os.environ["SMOOTHLAB_DATA"] = str(_SHARED_DATA)

# Modules that doctest collection must not import: deprecated aliases (they warn on import),
# the ``python -m smoothlab`` entry point, and modules needing an optional dependency that is
# not installed.
collect_ignore = [
    "smoothlab/__main__.py",
    "smoothlab/attacks/gradient.py",
    "smoothlab/bench/models.py",
    "smoothlab/data/idx.py",
    "smoothlab/data/samples.py",
    "smoothlab/models/defences.py",
]
_OPTIONAL = {"distributed": ["smoothlab/bench/_dask.py"], "plotly": ["smoothlab/viz"], "ipywidgets": ["smoothlab/viz"]}
for _module, _paths in _OPTIONAL.items():
    if importlib.util.find_spec(_module) is None:
        collect_ignore += [p for p in _paths if p not in collect_ignore]


# ------------------------------------------------------------------------------ the site reuses nbval's execution
# With SMOOTHLAB_DOCS_CACHE naming a folder (`.ci/run` sets docs/_build/.jupyter_cache), each notebook whose cells
# all passed under nbval, in quick mode, is stored there with its outputs as a jupyter-cache record: the cache that
# myst-nb reads in `make -C docs html` (docs/conf.py), which then renders the notebook without running it again.
_DOCS_CACHE = os.environ.get("SMOOTHLAB_DOCS_CACHE")
_EXECUTED: dict[str, dict] = {}


def _nbval_cell(item):
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "test_outputs") and hasattr(item.parent, "nb")


if _DOCS_CACHE:
    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        outcome = yield
        if call.when != "call" or not _nbval_cell(item):
            return
        book = _EXECUTED.setdefault(str(item.fspath), {"nb": item.parent.nb, "outputs": {}, "failed": False})
        if outcome.get_result().passed and item.test_outputs is not None:
            book["outputs"][item.cell_num] = list(item.test_outputs)
        else:
            book["failed"] = True

    def pytest_sessionfinish(session, exitstatus):
        stored = _store_executed_notebooks(Path(_DOCS_CACHE))
        if stored:
            print(f"\nnbval's executions stored for the documentation site ({_DOCS_CACHE}): {', '.join(stored)}")


def _store_executed_notebooks(cache_path: Path) -> list[str]:
    """Store each fully passed notebook of this session, outputs included, in the jupyter-cache at ``cache_path``."""
    if os.environ.get("SMOOTHLAB_QUICK") != "1" or not _EXECUTED:
        return []
    import copy

    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache, stored = get_cache(cache_path), []
    for path, book in sorted(_EXECUTED.items()):
        nb = copy.deepcopy(book["nb"])
        code = [c for c in nb.cells if c.cell_type == "code"]
        if book["failed"] or sorted(book["outputs"]) != list(range(len(code))):
            continue  # a cell failed or did not run: not stored, the site build executes it
        for i, cell in enumerate(code):
            cell.outputs = book["outputs"][i]
            cell.execution_count = i + 1
            for out in cell.outputs:
                if "execution_count" in out:
                    out["execution_count"] = i + 1
        cache.cache_notebook_bundle(CacheBundleIn(nb, uri=path, data={"executed_by": "nbval", "quick": True}),
                                    check_validity=False, overwrite=True)
        stored.append(Path(path).name)
    return stored
