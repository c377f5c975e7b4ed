"""The Binder launch (issue 13): what it installs, quick mode by default, and the README's link to it.

- ``binder/postBuild`` installs the package with its ``notebooks`` extra and nothing else, and
  ``binder/requirements.txt`` only pins PyTorch (a core dependency) to its CPU build;
- every third-party module the notebooks import is installed by that extra (checked against the
  dependency metadata of this environment);
- ``binder/start`` makes quick mode the default and runs the server it is given;
- the README's Binder badge and link are built from the one repository URL of ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    """Normalised distribution name of a requirement string (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)).lower()


def _pip_installs(script: str) -> list[list[str]]:
    """The arguments of every ``pip install`` command of a shell script, options included."""
    commands = []
    for line in script.splitlines():
        line = line.split("#", 1)[0].strip()
        words = shlex.split(line) if line else []
        for i in range(len(words) - 1):
            if words[i] in ("pip", "pip3") and words[i + 1] == "install" or words[i : i + 3] == ["-m", "pip", "install"]:
                start = i + 2 if words[i] in ("pip", "pip3") else i + 3
                commands.append(words[start:])
                break
    return commands


def test_postbuild_installs_the_notebooks_extra_and_nothing_else() -> None:
    (command,) = _pip_installs((BINDER / "postBuild").read_text())
    targets = [w for w in command if not w.startswith("-")]
    assert targets == [".[notebooks]"] and "-e" in command, command
    assert "notebooks" in _project()["optional-dependencies"]
    # requirements.txt: PyTorch's CPU index and a pin of torch, a core dependency; nothing else
    lines = [ln.strip() for ln in (BINDER / "requirements.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    packages = [ln for ln in lines if not ln.startswith("-")]
    assert [_name(p) for p in packages] == ["torch"], packages
    assert "torch" in {_name(d) for d in _project()["dependencies"]}
    assert all(ln.startswith("--extra-index-url https://download.pytorch.org/whl/cpu") for ln in lines if ln.startswith("-"))


def _extra_requirements(extra: str) -> set[str]:
    """Distribution names the package's core dependencies and ``extra`` pull in (self-references expanded)."""
    project = _project()
    names, todo, seen = {_name(d) for d in project["dependencies"]}, [extra], set()
    while todo:
        current = todo.pop()
        seen.add(current)
        for requirement in project["optional-dependencies"][current]:
            if _name(requirement) == "smoothlab":
                todo += [e.strip() for e in re.search(r"\[(.*)\]", requirement).group(1).split(",") if e.strip() not in seen]
            else:
                names.add(_name(requirement))
    return names


def _closure(names: set[str]) -> set[str]:
    """``names`` and, for those installed here, their dependencies (without extras), transitively."""
    out, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for requirement in requires:
            marker = requirement.split(";", 1)[1] if ";" in requirement else ""
            if "extra" in marker:
                continue
            if marker and not _marker_holds(marker):
                continue
            todo.append(_name(requirement))
    return out


def _marker_holds(marker: str) -> bool:
    try:
        from packaging.markers import Marker
    except ImportError:  # pragma: no cover - packaging comes with pip's tooling
        return True
    return Marker(marker).evaluate()


def _notebook_imports(path: Path) -> set[str]:
    """Top-level modules imported by the code cells of a notebook."""
    import nbformat

    modules = set()
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def test_the_notebooks_extra_installs_what_the_notebooks_import() -> None:
    provided = _closure(_extra_requirements("notebooks"))
    to_dist = md.packages_distributions()
    missing = {}
    for book in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for module in sorted(_notebook_imports(book) - set(sys.stdlib_module_names) - {"smoothlab"}):
            dists = {_name(d) for d in to_dist.get(module, [])}
            if not dists:
                missing[f"{book.name}: {module}"] = "not installed here"
            elif not dists & provided:
                missing[f"{book.name}: {module}"] = sorted(dists)
    assert not missing, f"imported by the notebooks but not installed by smoothlab[notebooks] on Binder: {missing}"
    assert "jupyter-server-proxy" in provided  # notebook 3's dashboard link on Binder goes through it


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("0", "0")])
def test_binder_start_makes_quick_mode_the_default(preset: str | None, expected: str) -> None:
    start = BINDER / "start"
    assert os.access(start, os.X_OK), "binder/start must be executable (repo2docker runs it)"
    env = {k: v for k, v in os.environ.items() if k != "SMOOTHLAB_QUICK"}
    if preset is not None:
        env["SMOOTHLAB_QUICK"] = preset
    code = "import os, sys; print(os.environ['SMOOTHLAB_QUICK'], sys.argv[1:]); sys.exit(3)"
    out = subprocess.run([str(start), sys.executable, "-c", code, "a b", "c"], env=env, capture_output=True, text=True, timeout=60, check=False)
    # it runs the command it is given, arguments and exit status untouched
    assert (out.returncode, out.stdout.strip()) == (3, f"{expected} ['a b', 'c']"), out.stderr


def _binder_link(repository: str) -> str:
    found = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?", repository)
    if found is None:
        raise ValueError(f"[project.urls] Repository must be a GitHub URL https://github.com/OWNER/NAME, got {repository!r}")
    owner, name = found.groups()
    return f"https://mybinder.org/v2/gh/{owner}/{name}/main?urlpath=lab/tree/notebooks/00_overview.ipynb"


def test_readme_binder_badge_is_built_from_the_repository_url() -> None:
    urls = _project()["urls"]
    repository = urls["Repository"]
    link = _binder_link(repository)
    readme = (ROOT / "README.md").read_text()
    assert f"[![Binder](https://mybinder.org/badge_logo.svg)]({link})" in readme
    assert set(re.findall(r"https://mybinder\.org/v2/[^\s)`]+", readme)) == {link}
    assert "<owner>" not in readme
    # the one place: a comment at [project.urls] says so
    text = (ROOT / "pyproject.toml").read_text()
    section = text[text.index("[project.urls]") :].split("\n[", 1)[0]
    assert "publication" in section and repository in section


def test_the_binder_link_changes_with_the_repository_url() -> None:
    assert _binder_link("https://github.com/someone/fork.git") == (
        "https://mybinder.org/v2/gh/someone/fork/main?urlpath=lab/tree/notebooks/00_overview.ipynb"
    )
    with pytest.raises(ValueError, match="GitHub"):
        _binder_link("https://gitlab.com/someone/fork")  # not a GitHub URL: the Binder link needs another form
