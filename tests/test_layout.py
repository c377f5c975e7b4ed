"""The package layout a newcomer relies on (issue 14).

- every public name of every subpackage is importable, and no function or class is shadowed by a
  module of the same name (``smoothlab.attacks.cw`` stays the function whatever was imported);
- importing smoothlab and its subpackages changes no process-wide state;
- deprecated module paths still work, with a ``DeprecationWarning``;
- ``python -m smoothlab`` is the command.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SUBPACKAGES = ["smoothlab", "smoothlab.attacks", "smoothlab.bench", "smoothlab.data", "smoothlab.models", "smoothlab.viz"]


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter (a clean import state) and return its stdout."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_public_names_import_and_no_module_shadows_a_function() -> None:
    # In a fresh interpreter: read each __all__, import every submodule (the deprecated aliases
    # included, warnings silenced), then check each public name again.
    out = _run(
        f"""
        import importlib, json, pkgutil, types, warnings
        warnings.simplefilter("ignore")
        report = {{}}
        for pkg_name in {SUBPACKAGES!r}:
            pkg = importlib.import_module(pkg_name)
            before = {{name: getattr(pkg, name) for name in pkg.__all__}}
            modules = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__))
            for m in modules:
                try:
                    importlib.import_module(f"{{pkg_name}}.{{m}}")
                except ImportError as exc:  # an optional dependency
                    report.setdefault("optional", []).append(f"{{pkg_name}}.{{m}}: {{exc}}")
            for name, value in before.items():
                now = getattr(pkg, name)
                if now is not value:
                    report.setdefault("replaced", []).append(f"{{pkg_name}}.{{name}}")
                if not isinstance(value, types.ModuleType) and name in modules:
                    report.setdefault("shadowed", []).append(f"{{pkg_name}}.{{name}}")
            report.setdefault("names", []).extend(f"{{pkg_name}}.{{n}}" for n in before)
        print(json.dumps(report))
        """
    )
    report = json.loads(out)
    assert "replaced" not in report and "shadowed" not in report, report
    names = set(report["names"])
    for name in ["smoothlab.attacks.cw", "smoothlab.attacks.AttackResult", "smoothlab.attacks.margin_loss",
                 "smoothlab.data.mnist", "smoothlab.data.sample_image", "smoothlab.models.c4",
                 "smoothlab.models.BilateralDefence", "smoothlab.models.register_model", "smoothlab.bench.MODELS",
                 "smoothlab.bench.run", "smoothlab.image_graph", "smoothlab.magnify"]:
        assert name in names


def test_public_names_are_what_they_say() -> None:
    import smoothlab
    import smoothlab.attacks as attacks
    import smoothlab.bench as bench
    import smoothlab.data as data
    import smoothlab.models as models

    assert callable(attacks.cw) and callable(data.mnist) and callable(models.c4) and callable(smoothlab.magnify)
    assert bench.MODELS is models.MODELS and bench.register_model is models.register_model
    assert attacks.AttackResult.__module__ == "smoothlab.attacks._result"
    assert "sample_image" in data.__all__ and "is_adversarial" in attacks.__all__
    with pytest.raises(ModuleNotFoundError):  # no module named like the function any more
        __import__("smoothlab.attacks.cw")


_STATE = """
import os, sys, warnings
import numpy, pandas, scipy, torch  # third-party imports first: only smoothlab's effect is measured

calls = []
for mod, name in [(os, "umask"), (torch, "set_num_threads"), (torch, "set_num_interop_threads"),
                  (torch, "set_default_dtype"), (torch, "manual_seed"), (warnings, "simplefilter"),
                  (warnings, "filterwarnings")]:
    def spy(*args, _f=getattr(mod, name), _n=name, **kwargs):
        calls.append(_n)
        return _f(*args, **kwargs)
    setattr(mod, name, spy)

def state():
    mask = os.umask(0o022)
    os.umask(mask)
    return (mask, torch.get_num_threads(), torch.get_default_dtype(), list(warnings.filters),
            torch.random.initial_seed(), os.getcwd(), dict(os.environ))

before = state()
calls.clear()
import smoothlab
{imports}
during = list(calls)
after = state()
print("same" if before == after else f"changed: {{before}} -> {{after}}")
print(",".join(during))
"""


@pytest.mark.parametrize("imports", [pytest.param("", id="smoothlab"), pytest.param(
    "import smoothlab.attacks, smoothlab.bench, smoothlab.bench.storage, smoothlab.data, smoothlab.models, "
    "smoothlab.records, smoothlab.metrics, smoothlab.viz, smoothlab.graph, smoothlab.smoothing, smoothlab.filters, "
    "smoothlab.magnification, smoothlab.cli",
    id="every-subpackage")])
def test_import_changes_no_process_wide_state(imports: str) -> None:
    """No umask, torch threads / dtype / seed, warnings filters, cwd or environment change, and no
    call that sets them even for a moment (a set-and-restore of the umask races with threads)."""
    lines = _run(_STATE.format(imports=imports)).splitlines()
    assert lines[0] == "same", lines[0]
    assert lines[1] == "", f"import called {lines[1]}"


@pytest.mark.parametrize(
    "old, names",
    [
        pytest.param("smoothlab.attacks.gradient", ["fgsm", "ifgsm", "pgd2", "spgd2"], id="attacks.gradient"),
        pytest.param("smoothlab.bench.models", ["MODELS", "register_model", "build_model"], id="bench.models"),
        pytest.param("smoothlab.models.defences", ["BilateralDefence"], id="models.defences"),
        pytest.param("smoothlab.data.samples", ["sample_image", "SAMPLE_IMAGES"], id="data.samples"),
        pytest.param("smoothlab.data.idx", ["read_idx", "write_idx"], id="data.idx"),
    ],
)
def test_deprecated_module_paths_warn_and_still_work(old: str, names: list[str]) -> None:
    out = _run(
        f"""
        import importlib, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mod = importlib.import_module({old!r})
        new = importlib.import_module({old!r}.rsplit(".", 1)[0])
        if {old!r} == "smoothlab.bench.models":
            new = importlib.import_module("smoothlab.models")
        print(sum(issubclass(w.category, DeprecationWarning) and {old!r} in str(w.message) for w in caught))
        print(all(getattr(mod, n) is getattr(new, n) for n in {names!r}))
        """
    )
    assert out.split() == ["1", "True"]


def test_python_dash_m_smoothlab_is_the_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "smoothlab", "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("smoothlab "), proc.stderr
    proc = subprocess.run([sys.executable, "-m", "smoothlab", "bench", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--overwrite" in proc.stdout and "--download" in proc.stdout
