#!/usr/bin/env python
"""Mutation check (issue 12): every one-line bug below must make its test file fail.

For each mutant the script copies the package (``smoothlab/``), ``tests/``, ``conftest.py`` and
``pyproject.toml`` into a temporary directory, applies one one-line change to the copy, runs
the matching test file there with ``PYTHONPATH`` pointing at the copy, and reports whether the
tests caught it (some test failed) with the counts of failed and passed tests.

- A mutant is located by a search string over every ``.py`` file of the package (files get
  renamed; the string does not care where it lives). It must occur exactly once in the whole
  package, or the script stops with an error: a mutant that silently applies nowhere, or
  somewhere unintended, would prove nothing.
- The copy is what the tests import, although the package is installed in editable mode: the
  copy comes first on ``sys.path`` (``PYTHONPATH`` and pytest's rootdir ``conftest.py``), and the
  copied ``conftest.py`` gets a check that stops the run if ``smoothlab`` resolves elsewhere.
- First every test file used is run on the unmutated copy: it must pass, otherwise a failure
  under a mutant would prove nothing either.
- Some mutants send a solver into a very long loop (CG on an operator that is no longer
  positive definite runs to its iteration cap in every call). Each test then fails with a
  ``TimeoutError`` after ``--test-timeout`` seconds; such time-outs are counted apart, and a
  mutant counts as caught only when some test failed on an assertion, not by time-outs alone.

Usage::

    python scripts/mutate.py                  # all mutants (several minutes)
    python scripts/mutate.py --list           # the mutants, without running anything
    python scripts/mutate.py --only eq9-normalisation-dropped margin-ignored
    python scripts/mutate.py --markdown table.md

Exit status 0 when every mutant was caught, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "smoothlab"


@dataclass(frozen=True)
class Mutant:
    """A one-line bug: replace ``find`` (unique in the package) by ``replace``; ``tests`` must catch it."""

    name: str
    what: str
    find: str
    replace: str
    tests: str


MUTANTS: tuple[Mutant, ...] = (
    # ---- the four of issue 12
    Mutant("mag-sigma-x-unguided", "eq. 22: the filter of sigma_x guided by (x - b(x))^2 instead of x",
           "bilateral_mean(resid.square(), sigma_d, sigma_r, guide=x,",
           "bilateral_mean(resid.square(), sigma_d, sigma_r, guide=None,", "tests/test_magnify.py"),
    Mutant("margin-ignored", "eq. 3: the margin loss ignores m",
           "return (margin - logit_difference(logits, labels, targeted)).clamp_min(0.0)",
           "return (0.0 - logit_difference(logits, labels, targeted)).clamp_min(0.0)", "tests/test_attacks.py"),
    Mutant("oc-duplicate-zero-corner", "eq. 21: P(D) gets a second corner at D = 0 when a success has D = 0",
           "if values[0] > 0:", "if values[0] >= 0:", "tests/test_metrics.py"),
    Mutant("mag-beta-swapped", "eq. 22: beta and 1 - beta swapped",
           "resid / (beta * local_std + (1.0 - beta) * global_std)",
           "resid / ((1.0 - beta) * local_std + beta * global_std)", "tests/test_magnify.py"),
    # ---- the graph, eq. 5
    Mutant("eq5-laplacian-kernel-squared", "eq. 5: the Laplacian kernel on the squared distance",
           'arg = lam * (sq.sqrt() if kernel == "laplacian" else sq)',
           'arg = lam * (sq if kernel == "laplacian" else sq)', "tests/test_smoothing.py"),
    Mutant("eq5-spatial-kernel-variance", "eq. 5: spatial kernel exp(-‖p_i - p_j‖² / σ²), the factor 2 dropped",
           "(2.0 * spatial_sigma**2)", "(spatial_sigma**2)", "tests/test_smoothing.py"),
    # ---- degrees, normalisation and L_alpha, eqs. 6-8
    Mutant("eq6-degree-one-sided", "D = diag(W 1) counts each edge at one end only",
           "degree[..., qy, qx] += weights[:, :, k, py, px]", "degree[..., qy, qx] += 0.0 * weights[:, :, k, py, px]",
           "tests/test_smoothing.py"),
    Mutant("eq7-normalisation-no-sqrt", "W_n = D^-1 W D^-1 instead of D^-1/2 W D^-1/2",
           "normalised[:, :, k, py, px] = (ratio_p * ratio_q).sqrt()",
           "normalised[:, :, k, py, px] = ratio_p * ratio_q", "tests/test_smoothing.py"),
    Mutant("eq8-cg-scale-dropped", "CG returns (I - alpha W_n)^-1 z, not L_alpha^-1 z = (1 - alpha) (...)^-1 z",
           "return u * (1.0 - self.alpha)", "return u", "tests/test_smoothing.py"),
    Mutant("eq8-dense-diagonal", "dense L_alpha with 1.001 on the diagonal",
           "lap.diagonal(dim1=-2, dim2=-1).fill_(1.0)", "lap.diagonal(dim1=-2, dim2=-1).fill_(1.001)",
           "tests/test_smoothing.py"),
    Mutant("cg-x0-ignored", "CG starts from 0 even with x0='rhs'",
           'x = b.clone() if x0 == "rhs" else torch.zeros_like(b)',
           'x = torch.zeros_like(b) if x0 == "rhs" else torch.zeros_like(b)', "tests/test_smoothing.py"),
    # ---- eq. 9 and its gradient, eq. 19
    Mutant("eq9-normalisation-dropped", "forward returns s_alpha(z), not s_alpha(z) / s_alpha(1)",
           "return smoother._solve(z) / smoother.ones_response", "return smoother._solve(z)", "tests/test_smoothing.py"),
    Mutant("eq19-adjoint-not-transposed", "backward computes J g = L^-1 g / s(1) instead of J^T g = L^-1 (g / s(1))",
           "return s._solve(grad / s.ones_response), None", "return s._solve(grad) / s.ones_response, None",
           "tests/test_smoothing.py"),
    # ---- the protocol, eq. 20
    Mutant("eq20-psuc-over-all-images", "P_suc = N_suc / N' (misclassified images counted)",
           '"p_success": d.size / n if n else math.nan', '"p_success": d.size / n_all if n else math.nan',
           "tests/test_metrics.py"),
    Mutant("eq20-dbar-over-all-correct", "D-bar averaged over N, not over the N_suc successes",
           "return float(np.sum(d) / d.size) if d.size else math.nan",
           "return float(np.sum(d) / len(kept)) if d.size else math.nan", "tests/test_metrics.py"),
    # ---- the smooth attacks
    Mutant("eq12-gradient-not-smoothed", "sPGD2 normalises the raw gradient (eq. 12 without s_alpha)",
           "g = _smooth(S, g)  # eq. (12)", "g = g  # eq. (12)", "tests/test_attacks.py"),
    Mutant("cw-success-without-margin", "C&W keeps iterates that are adversarial by less than m",
           "logit_difference(logits, act.lab, cfg.targeted) >= cfg.margin",
           "logit_difference(logits, act.lab, cfg.targeted) >= 0.0",
           "tests/test_attacks.py"),
    # ---- resume
    Mutant("shard-checksum-ignored", "an altered shard file is reused (content checksum not compared)",
           'if meta["checksum"] != records_checksum(raw):', "if False:", "tests/test_bench.py"),
)

_CHECK = '''

# --- added by scripts/mutate.py: the tests must import the copy, not the installed package
import os as _os
import pathlib as _pathlib
import signal as _signal

import pytest as _pytest
import smoothlab as _smoothlab

if _pathlib.Path(_smoothlab.__file__).resolve().parent != _pathlib.Path(__file__).resolve().parent / "smoothlab":
    raise RuntimeError(f"mutation run imports {_smoothlab.__file__}, not the mutated copy")

_LIMIT = int(_os.environ.get("SMOOTHLAB_MUTATE_TEST_TIMEOUT", "0"))


@_pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """A test that a mutant sends into a very long loop (CG on an operator that is no longer
    positive definite, say) fails with a TimeoutError after _LIMIT seconds instead of hanging."""
    if not _LIMIT:
        yield
        return

    def _alarm(signum, frame):
        raise TimeoutError(f"{TIMEOUT_TAG} {item.nodeid} ran longer than {_LIMIT} s")

    old = _signal.signal(_signal.SIGALRM, _alarm)
    _signal.alarm(_LIMIT)
    try:
        yield
    finally:
        _signal.alarm(0)
        _signal.signal(_signal.SIGALRM, old)
'''
TIMEOUT_TAG = "mutation-run-timeout:"


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    shutil.copytree(ROOT / PACKAGE, dest / PACKAGE, ignore=ignore)
    shutil.copytree(ROOT / "tests", dest / "tests", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    conftest = (ROOT / "conftest.py").read_text() if (ROOT / "conftest.py").exists() else ""
    (dest / "conftest.py").write_text(conftest + _CHECK.replace("{TIMEOUT_TAG}", TIMEOUT_TAG))


def locate(package: Path, find: str) -> Path:
    """The one file of ``package`` that holds ``find``, exactly once; anything else is an error."""
    hits = []
    for path in sorted(package.rglob("*.py")):
        n = path.read_text().count(find)
        if n:
            hits.append((path, n))
    total = sum(n for _, n in hits)
    if total != 1:
        where = ", ".join(f"{p.relative_to(package.parent)} ({n}x)" for p, n in hits) or "nowhere"
        raise SystemExit(f"mutate.py: the pattern {find!r} must occur exactly once in {PACKAGE}/, found {total}: {where}")
    return hits[0][0]


@dataclass
class Outcome:
    status: str  # "caught", "NOT CAUGHT" or "error"
    failed: int
    passed: int
    total: int
    seconds: float
    detail: str = ""
    timeouts: int = 0  # failures that are the per-test time limit


def run_tests(workdir: Path, test_file: str, timeout: float, test_timeout: int) -> Outcome:
    """Run one test file in ``workdir`` (the copy); count the results from its JUnit XML."""
    xml = workdir / "junit.xml"
    xml.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(workdir), "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
           "SMOOTHLAB_MUTATE_TEST_TIMEOUT": str(test_timeout)}
    cmd = [sys.executable, "-m", "pytest", test_file, "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
           "-o", "addopts=", f"--junitxml={xml}", "--rootdir", str(workdir)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Outcome("error", 0, 0, 0, time.perf_counter() - t0, f"timed out after {timeout:.0f} s")
    seconds = time.perf_counter() - t0
    if not xml.exists():
        return Outcome("error", 0, 0, 0, seconds, (proc.stdout + proc.stderr)[-2000:])
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total = int(suite.get("tests", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    passed = total - failed - skipped
    timeouts = sum(TIMEOUT_TAG in (f.get("message") or "") + (f.text or "")
                   for f in suite.iter() if f.tag in ("failure", "error"))
    tail = (proc.stdout + proc.stderr)[-2000:]
    if proc.returncode == 0:
        return Outcome("NOT CAUGHT", failed, passed, total, seconds, tail, timeouts)
    if proc.returncode == 1 and failed > timeouts:
        return Outcome("caught", failed, passed, total, seconds, tail, timeouts)
    return Outcome("error", failed, passed, total, seconds, f"pytest exit status {proc.returncode}\n{tail}", timeouts)


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {cores} cores, Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutants only")
    parser.add_argument("--list", action="store_true", help="list the mutants and where they apply, then exit")
    parser.add_argument("--markdown", type=Path, help="also write the result table (Markdown) to this file")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per test-file run (default 1800)")
    parser.add_argument("--test-timeout", type=int, default=90,
                        help="seconds per test before it fails as a time-out (default 90; the slowest test of "
                             "the files used takes under 40 s on a loaded 2-core machine); 0: no limit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    args = parser.parse_args(argv)

    mutants = list(MUTANTS)
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTANTS})
        if unknown:
            parser.error(f"unknown mutant(s) {unknown}; see --list")
        mutants = [m for m in MUTANTS if m.name in args.only]
    for m in mutants:  # every pattern must be unique in the package as it is now
        path = locate(ROOT / PACKAGE, m.find)
        if args.list:
            print(f"{m.name:32s} {path.relative_to(ROOT)}  ->  {m.tests}\n{'':32s} {m.what}")
    if args.list:
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="smoothlab-mutate-"))
    started = datetime.datetime.now()
    try:
        _copy_tree(tmp)
        baseline: dict[str, Outcome] = {}
        for test_file in dict.fromkeys(m.tests for m in mutants):
            out = run_tests(tmp, test_file, args.timeout, args.test_timeout)
            print(f"baseline {test_file}: {out.passed} passed, {out.failed} failed of {out.total} ({out.seconds:.0f} s)",
                  flush=True)
            if out.status != "NOT CAUGHT" or out.total == 0:
                print(out.detail, file=sys.stderr)
                raise SystemExit(f"mutate.py: {test_file} does not pass on the unmutated copy; fix that first")
            baseline[test_file] = out
        results: list[tuple[Mutant, Path, Outcome]] = []
        for m in mutants:
            path = locate(tmp / PACKAGE, m.find)
            original = path.read_text()
            path.write_text(original.replace(m.find, m.replace))
            try:
                out = run_tests(tmp, m.tests, args.timeout, args.test_timeout)
            finally:
                path.write_text(original)
            results.append((m, path.relative_to(tmp), out))
            print(f"{m.name:32s} {out.status:10s} {out.failed:3d} failed ({out.timeouts} timed out), {out.passed:3d} "
                  f"passed of {out.total:3d} ({out.seconds:.0f} s)", flush=True)
            if out.status == "error":
                print(out.detail, file=sys.stderr)
    finally:
        if args.keep:
            print(f"copy kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    lines = [
        f"{started:%Y-%m-%d}, {machine()}; `python scripts/mutate.py` "
        f"({(datetime.datetime.now() - started).total_seconds() / 60:.1f} min).",
        "",
        "| mutant | one-line change | file | tests | caught | failed / tests |",
        "|:---|:---|:---|:---|:---|---:|",
    ]
    for m, path, out in results:
        late = f" ({out.timeouts} timed out)" if out.timeouts else ""
        lines.append(f"| `{m.name}` | {m.what.replace('|', chr(92) + '|')} | `{path}` | `{m.tests}` | "
                     f"{'yes' if out.status == 'caught' else out.status} | {out.failed}{late} / {out.total} |")
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if args.markdown:
        args.markdown.write_text(table)
    missed = [m.name for m, _, out in results if out.status != "caught"]
    if missed:
        print(f"not caught or errors: {missed}", file=sys.stderr)
        return 1
    print(f"all {len(results)} mutants caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
