"""``benchmarks/gpu_check.py`` (issue 10) runs its whole logic on the CPU with tiny sizes (``--dry-run``),
so that the prepared GPU check cannot rot before a GPU machine runs it."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_check_dry_run_covers_the_five_items(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("skimage")
    monkeypatch.delenv("OUT", raising=False)
    monkeypatch.delenv("SMOOTHLAB_DATA", raising=False)  # the MNIST fallback of item 5, and scikit-image photos
    gpu_check = load_script()
    out = tmp_path / "report" / "gpu_check.md"
    assert gpu_check.main(["--dry-run", "--device", "cpu", "--out", str(out)]) == 0
    text = out.read_text()
    for title in (
        "1. Device-parametrised tests",
        "2. CG iteration",
        "3. Smoothing solvers",
        "4. sC&W / C&W at 224x224",
        "5. The main job",
    ):
        assert f"## {title}" in text, title
    assert "FAILED" not in text and "stopped at the time limit" not in text, text
    assert re.search(r"exit code 0: \*\*1 passed", text), text  # pytest ran and its summary line came back
    # every solver ran at both sizes and the exact ones agree with the first (dense)
    for solver in ("dense", "block", "direct", "cg"):
        assert len(re.findall(rf"\| {solver} \| [0-9.]+ \| [0-9.]+ \|", text)) == 2, solver
    diffs = [float(d) for d in re.findall(r"(?:block|direct): [^|]*rel\. diff to the first ([0-9.e+-]+)", text)]
    assert len(diffs) == 4 and max(diffs) < 1e-4, diffs
    assert text.count("network float32") == 2 and text.count("network bf16 autocast") == 2
    assert re.search(r"\| (FGSM|fgsm) \|", text), "the bench's table is in the report"
    assert (tmp_path / "report" / "bench" / "table.md").is_file()  # the bench wrote beside the report


def test_gpu_check_refuses_cuda_without_a_gpu(capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    gpu_check = load_script()
    assert gpu_check.main(["--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_fused_cg_iteration_is_the_library_iteration() -> None:
    """The iteration gpu_check.py compiles is CG on the same operator (eager here)."""
    import torch

    from smoothlab import Smoother
    from smoothlab.smoothing import conjugate_gradient

    gpu_check = load_script()
    x = gpu_check._graph_images((2, 3, 10, 12), torch.device("cpu")).double()
    S = Smoother(x, 0.9, "cg", tol=0.0, max_iter=7)
    z = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    step = gpu_check.fused_cg_iteration(0.9)
    wh, wv = S.graph.normalised[:, :, 0], S.graph.normalised[:, :, 1]
    state = (torch.zeros_like(z), z.clone(), z.clone(), (z * z).sum(dim=(2, 3), keepdim=True))
    for _ in range(7):
        state = step(*state, wh, wv)
    ref, _ = conjugate_gradient(lambda v, out=None: S.graph.matvec(v, shift=1.0, scale=-0.9, out=out), z, tol=0.0, max_iter=7)
    torch.testing.assert_close(state[0], ref, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- benchmarks/_timing.py (issue 20)


def load_timing():
    spec = importlib.util.spec_from_file_location("_timing", SCRIPT.parent / "_timing.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_timing_helpers_run_what_they_time() -> None:
    """One warm-up for ``timeit``, none for ``timed`` (its last result back), alternating rounds."""
    timing = load_timing()
    calls: list[str] = []

    def run(tag: str):
        return lambda: calls.append(tag) or len(calls)

    assert timing.timeit(run("a"), "cpu", 3) >= 0.0 and calls == ["a"] * 4
    calls.clear()
    out, seconds = timing.timed(run("b"), None, 2)
    assert out == 2 and seconds >= 0.0 and calls == ["b", "b"]
    calls.clear()
    medians, outputs = timing.timed_rounds({"x": run("x"), "y": run("y")}, 2)
    assert calls == ["x", "y", "x", "y"] and outputs == {"x": 3, "y": 4} and set(medians) == {"x", "y"}
    assert timing.copy_bandwidth("cpu", 1, mib=1) > 0
    for fn in (timing.timeit, timing.timed):
        with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
            fn(run("c"), "cpu", 0)


def test_benchmarks_share_one_timing_helper() -> None:
    """No benchmark defines its own sync/timeit/timed: they import them from ``_timing``."""
    import ast

    own = {"sync", "timeit", "timed", "timed_rounds", "_time", "copy_bandwidth"}
    users = set()
    for path in sorted(SCRIPT.parent.glob("*.py")):
        if path.name == "_timing.py":
            continue
        tree = ast.parse(path.read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)} & own
        assert not defined, f"{path.name} defines its own {sorted(defined)}: import them from _timing"
        if any(isinstance(n, ast.ImportFrom) and n.module == "_timing" for n in ast.walk(tree)):
            users.add(path.name)
    assert {"gpu_check.py", "bench_attacks.py", "bench_bilateral.py", "bench_cw.py", "bench_smoothing.py",
            "bench_visibility.py"} <= users


def test_gpu_check_starts_as_a_script_from_the_repository_root() -> None:
    """As the GPU machine runs it: ``python benchmarks/gpu_check.py`` in a fresh interpreter."""
    import subprocess

    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--help"], cwd=SCRIPT.parent.parent,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--dry-run" in proc.stdout
