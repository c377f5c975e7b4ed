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
