"""Release readiness (issue 22): the wheel and the sdist build and pass ``twine check``, the wheel carries the
shipped weights and class names, the version has one place, and the built wheel -- not the checkout -- installed
into a fresh virtual environment (with the ``dask`` extra: the bench shards over a local Dask cluster) runs
``smoothlab bench --quick``.

The wheel test builds with ``python -m build`` (an isolated build environment: setuptools from the package
registry) and installs the wheel with the torch pinned in ``.ci/run`` (the CPU build this project is tested with),
the rest of its dependencies from the package registry or pip's cache. It takes a few minutes: ``-m "not slow"``
deselects it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _version_in_source() -> str:
    found = re.findall(r'^__version__ = "([^"]+)"$', (ROOT / "smoothlab" / "__init__.py").read_text(), re.M)
    assert len(found) == 1
    return found[0]


def test_the_version_has_one_place() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in meta["project"] and "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "smoothlab.__version__"}
    import smoothlab

    assert smoothlab.__version__ == _version_in_source()


def _shipped_files() -> list[str]:
    """The package data a wheel must carry: the weights of the manifest, the manifest, the ImageNet class names."""
    manifest = json.loads((ROOT / "smoothlab" / "models" / "weights" / "manifest.json").read_text())
    weights = [f"smoothlab/models/weights/{name}" for name in manifest["weights"]]
    return weights + ["smoothlab/models/weights/manifest.json", "smoothlab/data/imagenet_classes.tsv"]


def _torch_pin() -> str:
    return re.search(r"torch==([\w.+]+)", (ROOT / ".ci" / "run").read_text()).group(1)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_wheel_and_sdist_build_and_pass_twine_check(dist: Path) -> None:
    pytest.importorskip("twine")
    version = _version_in_source()
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert [w.name for w in wheels] == [f"smoothlab-{version}-py3-none-any.whl"]
    assert [s.name for s in sdists] == [f"smoothlab-{version}.tar.gz"]
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.count("PASSED") == 2, proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_wheel_carries_the_weights_and_class_names(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for path in _shipped_files():
            assert path in names, f"{path} is not in the wheel"
            assert zf.getinfo(path).file_size == (ROOT / path).stat().st_size
        assert not any(n.startswith(("tests/", "docs/", "notebooks/")) for n in names)
        metadata = zf.read(f"smoothlab-{_version_in_source()}.dist-info/METADATA").decode()
    assert f"Version: {_version_in_source()}\n" in metadata


@pytest.mark.slow
def test_the_wheel_runs_the_quick_bench_in_a_fresh_environment(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python, smoothlab = venv / "bin" / "python", venv / "bin" / "smoothlab"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SMOOTHLAB_QUICK")}
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              f"torch=={_torch_pin()}", f"{wheel}[dask]"], capture_output=True, text=True, env=env, timeout=1800)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    where = subprocess.run([str(python), "-c", "import smoothlab; print(smoothlab.__file__, smoothlab.__version__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=True).stdout.split()
    assert Path(where[0]).is_relative_to(venv) and where[1] == _version_in_source()  # the wheel, not the checkout
    run = subprocess.run([str(smoothlab), "bench", "--quick", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "sC&W" in table and "P_suc" in table, table
