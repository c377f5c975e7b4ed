"""The documentation site's sources (issue 22): the API reference lists every public name, the notebooks carry
the Colab cell, and the build fails on a public name without a docstring.

The built site itself (pages, math, Plotly, search, links) is checked in a browser by ``tests/test_site.py``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"
pytest.importorskip("sphinx")
sys.path.insert(0, str(DOCS / "_ext"))
import smoothlab_docs  # noqa: E402  (docs/_ext: the site's Sphinx glue, which holds the list of public modules)

# ------------------------------------------------------------------------------ the API reference


def public_modules() -> list[str]:
    """Every public module of smoothlab: no ``_`` in any part of its name (``__main__`` aside)."""
    import smoothlab

    names = ["smoothlab"]
    for info in pkgutil.walk_packages(smoothlab.__path__, "smoothlab."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def referenced_names(sources: dict[str, str]) -> tuple[set[str], dict[str, str]]:
    """The full names a set of reference pages documents, and its "also exported here" entries (name -> target).

    Documented: each ``.. automodule::``, and each entry of an ``.. autosummary::`` under the current
    ``.. currentmodule::``. Listed: each line ``- ``smoothlab.x.name``: :obj:`target``` (or ``:mod:``).
    """
    documented, aliases = set(), {}
    for text in sources.values():
        module, in_summary = None, False
        for line in text.splitlines():
            if m := re.match(r"\.\. (?:currentmodule|automodule):: ([\w.]+)", line):
                module, in_summary = m.group(1), False
                if line.startswith(".. automodule::"):
                    documented.add(module)
            elif line.startswith(".. autosummary::"):
                in_summary = True
            elif in_summary and (m := re.fullmatch(r"   (\w+)", line)):
                documented.add(f"{module}.{m.group(1)}")
            elif in_summary and line and not line.startswith("   "):
                in_summary = False
            if m := re.match(r"- ``(smoothlab[\w.]*)``: (?::(?:obj|mod):`([\w.]+)`)?", line):
                aliases[m.group(1)] = m.group(2) or ""
    return documented, aliases


def missing_from_reference(sources: dict[str, str], modules: list[str]) -> list[str]:
    """The ``module.name`` of each name of the modules' ``__all__`` that the reference pages neither document nor list,
    and each listed name whose link points nowhere in the reference."""
    documented, aliases = referenced_names(sources)
    missing = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        if module_name not in documented:
            missing.append(f"{module_name} (no automodule)")
        for name in module.__all__:
            full = f"{module_name}.{name}"
            if full not in documented and full not in aliases:
                missing.append(full)
    for full, target in aliases.items():
        if target and target not in documented:
            missing.append(f"{full} -> {target} (the link's target is not documented)")
    return missing


def _reference() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(API.glob("*.rst"))}


def test_every_public_module_is_in_the_reference() -> None:
    assert sorted(smoothlab_docs.PUBLIC_MODULES) == public_modules(), "add a new public module to docs/_ext and docs/api"


def test_every_public_name_is_in_the_reference() -> None:
    missing = missing_from_reference(_reference(), public_modules())
    assert not missing, "public names missing from docs/api/*.rst (add a line to the autosummary of their module):\n" + "\n".join(missing)


def test_a_name_dropped_from_the_reference_is_reported() -> None:
    sources = _reference()
    planted = {k: v.replace("\n   scw\n", "\n", 1) for k, v in sources.items()}
    assert planted != sources
    assert missing_from_reference(planted, ["smoothlab.attacks"]) == ["smoothlab.attacks.scw"]
    dropped_alias = {k: v.replace("- ``smoothlab.Smoother``: :obj:`smoothlab.smoothing.Smoother`\n", "") for k, v in sources.items()}
    assert missing_from_reference(dropped_alias, ["smoothlab"]) == ["smoothlab.Smoother"]


def test_each_group_of_the_map_has_its_page() -> None:
    groups = ["smoothing", "attacks", "metrics", "magnification", "models", "data", "bench", "viz"]
    index = (API / "index.rst").read_text()
    for group in groups:
        assert (API / f"{group}.rst").is_file() and f"\n   {group}\n" in index, group


# ------------------------------------------------------------------------------ the course's Colab cell

nbformat = pytest.importorskip("nbformat")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _repository() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"].rstrip("/")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_first_code_cell_installs_smoothlab_on_colab_only(path: Path) -> None:
    cells = nbformat.read(path, as_version=4).cells
    first = next(c for c in cells if c.cell_type == "code")
    assert first is cells[1], "the Colab cell comes right after the title"
    assert 'importlib.util.find_spec("smoothlab") is None' in first.source
    assert f"smoothlab[notebooks] @ git+{_repository()}" in first.source, "installs from pyproject's [project.urls] Repository"
    # where smoothlab is importable it is a no-op: it runs here, with no network, and installs nothing
    out = subprocess.run([sys.executable, "-c", first.source], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_solutions_are_collapsed_on_the_site(path: Path) -> None:
    for cell in nbformat.read(path, as_version=4).cells:
        if "solution" in cell.metadata.get("tags", []):
            assert "hide-cell" in cell.metadata["tags"], "myst-nb collapses a cell tagged hide-cell"


# ------------------------------------------------------------------------------ a missing docstring fails the build


@pytest.mark.slow
def test_the_build_fails_on_a_public_name_without_a_docstring(tmp_path: Path) -> None:
    """The site's checks (numpydoc's GL08 for functions and classes, smoothlab_docs for constants) on a small
    package: with ``-W`` the build fails on each undocumented public name, and passes once they are documented."""
    pytest.importorskip("sphinx")
    pkg = tmp_path / "src" / "planted"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""A package."""\n__all__ = ["f", "g", "K"]\n\ndef f():\n    """Documented."""\n\n\n'
                                     "def g():\n    pass\n\n\nK = {1: 2}\n")
    src = tmp_path / "docs"
    src.mkdir()
    conf = (DOCS / "conf.py").read_text()
    numpydoc = conf[conf.index("numpydoc_validation_checks"):conf.index("}\n", conf.index("numpydoc_validation_exclude")) + 2]
    numpydoc = numpydoc.replace('__import__("smoothlab_docs").public_constants()', '["planted.K"]')
    (src / "conf.py").write_text(
        f"import sys, re\nsys.path[:0] = [{str(pkg.parent)!r}, {str(DOCS / '_ext')!r}]\n"
        f"extensions = ['sphinx.ext.autodoc', 'sphinx.ext.autosummary', 'numpydoc', 'smoothlab_docs']\n"
        f"html_context = {{'repository': 'https://github.com/o/n'}}\n{numpydoc}"
    )
    (src / "index.rst").write_text("API\n===\n\n.. currentmodule:: planted\n\n.. autosummary::\n   :toctree: generated\n\n   f\n   g\n   K\n")

    def build() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sphinx", "-W", "-E", "-q", "-b", "html", str(src), str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=300)

    failed = build()
    assert failed.returncode != 0 and "planted.g" in failed.stderr and "GL08" in failed.stderr, failed.stderr
    (pkg / "__init__.py").write_text((pkg / "__init__.py").read_text().replace("def g():\n    pass", 'def g():\n    """Now documented."""'))
    failed = build()
    assert failed.returncode != 0 and "planted.K has no docstring" in failed.stderr, failed.stderr
    (pkg / "__init__.py").write_text((pkg / "__init__.py").read_text().replace("K = {1: 2}", "#: A documented constant.\nK = {1: 2}"))
    passed = build()
    assert passed.returncode == 0, passed.stderr
