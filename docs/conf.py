"""Sphinx configuration of smoothlab's documentation site (issue 22).

``make -C docs html`` builds it into ``docs/_build/html``: the API reference from the docstrings (numpydoc,
autosummary), the course (``notebooks/00-05``, copied into ``course/`` and executed in quick mode by myst-nb),
and the pages of ``docs/*.md``. The site carries everything it loads: MathJax (``sphinx-mathjax-offline``) and
plotly.js (from the ``plotly`` package) are copied into ``_static``; no page loads anything from a CDN.

The notebooks' execution is cached in ``docs/_build/.jupyter_cache`` (jupyter-cache, keyed by the code cells): a
notebook is executed only when its code changed. The test suite's nbval run fills that cache (``conftest.py``,
``SMOOTHLAB_DOCS_CACHE``), so CI builds the site from the execution it already made.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import sys
import tomllib
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the checkout's smoothlab, whatever is installed
sys.path.insert(0, str(DOCS / "_ext"))
os.environ["SMOOTHLAB_QUICK"] = "1"  # the course in quick mode (the kernels inherit it)
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

import smoothlab  # noqa: E402

_PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
REPOSITORY = _PROJECT["urls"]["Repository"].rstrip("/").removesuffix(".git")  # the one place (pyproject)
_OWNER_NAME = REPOSITORY.removeprefix("https://github.com/")

project = "smoothlab"
author = "the smoothlab developers"
copyright = "the smoothlab developers"
release = version = smoothlab.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_nb",
    "smoothlab_docs",
]

# ------------------------------------------------------------------------------------------------- the course
COURSE = DOCS / "course"


def _copy_notebooks() -> list[str]:
    """Copy ``notebooks/*.ipynb`` into ``course/`` (only those that changed, so that Sphinx rebuilds only them)."""
    names = []
    for book in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        target = COURSE / book.name
        if not target.exists() or not filecmp.cmp(book, target, shallow=False):
            shutil.copyfile(book, target)
        names.append(book.stem)
    for stale in COURSE.glob("*.ipynb"):
        if stale.stem not in names:
            stale.unlink()
    return names


COURSE_NOTEBOOKS = _copy_notebooks()

nb_execution_mode = os.environ.get("SMOOTHLAB_DOCS_EXECUTE", "cache")
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_timeout = 900
nb_execution_raise_on_error = True  # a failing cell fails the build
nb_execution_show_tb = True
nb_ipywidgets_js = {}  # no widget manager from a CDN: an explorer needs a kernel (a note says so, smoothlab_docs)
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# ------------------------------------------------------------------------------------------------- the API
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False}
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
numpydoc_show_class_members = True
numpydoc_class_members_toctree = False
numpydoc_show_inherited_class_members = False
numpydoc_xref_param_type = False
# A public function or class without a docstring is a warning (an error under -W): numpydoc's GL08, on the names
# of the modules' __all__ (a class's members are not checked); constants are checked by smoothlab_docs.
numpydoc_validation_checks = {"GL08"}
numpydoc_validation_exclude = {r"\.[A-Z]\w*\.\w+$"} | {
    rf"^{re.escape(name)}$" for name in __import__("smoothlab_docs").public_constants()
}
intersphinx_mapping = {}  # no network here or in CI: external names stay plain text

# ------------------------------------------------------------------------------------------------- the site
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
html_theme = "pydata_sphinx_theme"
html_title = f"smoothlab {version}"
html_static_path = ["_static"]
html_css_files = ["smoothlab.css"]
html_show_sourcelink = False
html_context = {"default_mode": "light", "repository": REPOSITORY, "owner_name": _OWNER_NAME, "course": COURSE_NOTEBOOKS}
html_theme_options = {
    "github_url": REPOSITORY,
    "navbar_align": "left",
    "header_links_before_dropdown": 7,
    "article_header_end": ["launch-buttons"],
    "secondary_sidebar_items": ["page-toc"],
    "show_prev_next": True,
    "navigation_with_keys": False,
}
html_sidebars = {page: [] for page in ("index", "getting-started", "how-it-works", "reproducing", "scaling-out", "changelog")}
# MathJax from the site itself (sphinx-mathjax-offline's copy of MathJax 3), never from a CDN
mathjax_path = "mathjax/tex-chtml.js"

# README and benchmarks links that point outside the site go to the repository
REPOSITORY_FILES = re.compile(r"\]\((?!https?://|#)((?:\.\./)*(?:benchmarks|notebooks|scripts|tests|smoothlab|binder)/[^)\s]*|(?:\.\./)*[A-Z]+\w*\.md)\)")
