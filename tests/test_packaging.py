"""The README's commands, CI, Binder and pyproject stay in step; `import smoothlab` stays light."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    test_cmd = next(b.strip() for b in _bash_blocks(readme) if "pytest" in b)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_cmd in ci_lines


def test_torch_pin_is_the_same_everywhere() -> None:
    pins = {
        "README": re.findall(r"torch==([\w.+]+)", (ROOT / "README.md").read_text()),
        "ci": re.findall(r"torch==([\w.+]+)", (ROOT / ".ci" / "run").read_text()),
        "binder": re.findall(r"torch==([\w.+]+)", (ROOT / "binder" / "requirements.txt").read_text()),
    }
    versions = {v for found in pins.values() for v in found}
    assert all(pins.values()) and len(versions) == 1, pins


def test_extras_and_binder_install_the_package() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = meta["project"]["optional-dependencies"]
    for name in ("dask", "viz", "notebooks", "test", "all"):
        assert name in extras
    assert meta["project"]["scripts"]["smoothlab"] == "smoothlab.cli:main"
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert 'pip install --no-cache-dir -e ".[notebooks]"' in post_build


def test_import_is_light() -> None:
    code = (
        "import sys, smoothlab; heavy = [m for m in ('dask', 'distributed', 'plotly', 'ipywidgets', 'skimage', 'scipy', 'pandas') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import smoothlab pulled in {out}"


def test_notebooks_are_stored_without_outputs() -> None:
    import nbformat

    books = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert [b.name[:2] for b in books] == [f"{i:02d}" for i in range(len(books))]  # 00_overview first
    for book in books:
        nb = nbformat.read(book, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, book.name


def test_magnify_stays_a_function_after_its_module_is_imported() -> None:
    code = (
        "import smoothlab, smoothlab.models._defences, smoothlab.magnification; "
        "print(callable(smoothlab.magnify) and smoothlab.magnify is smoothlab.magnification.magnify)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "True"
