"""The speed work of issue 10 leaves the main job's records unchanged.

- Against a golden file: ``tests/data/bench_golden_issue10.parquet`` holds the records of a small
  Table 1 spec (:func:`golden_spec`: the six attacks with the paper's MNIST parameters and budget
  grids written out here, 4 digits in 2 batches) computed by the code *before* the speed work
  (commit 4b491ab), with the smoothers of sPGD2 and sC&W pinned to ``solver="direct"`` (the solver
  the default picked then). Every discrete column must be identical; the floats (distortion,
  visibility, SSIM) within :data:`GOLDEN_RTOL` / :data:`GOLDEN_ATOL`, because the file was written
  on one CPU and float32 reductions round differently on another (see
  :func:`test_records_match_the_code_before_the_speed_work`). Regenerate it only when an attack's
  numerics change on purpose, from a checkout of the code whose records are the reference::

      git worktree add /tmp/ref <commit>
      PYTHONPATH=/tmp/ref python tests/test_bench_speed.py --write

- C4's faster CPU layout (``C4.fast_cpu``, issue 10) changes the float32 rounding of the network, so
  the golden comparison runs with it switched off, and :func:`test_fast_cpu_layout_keeps_the_table`
  checks that with it on every success and prediction is the same, every distortion within
  :data:`DISTORTION_ATOL`, and the Table 1 summary identical to two decimals.
- Within the current code, both sides computed in the same run on the same machine, bit for bit:
  the shortcuts of ``run_shard`` (a smoother shared per batch and spec, each original's
  magnification computed once) switched on and off give the same records, for the default
  smoothing (``solver="auto"``: ``block`` on the CPU) as well.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GOLDEN = Path(__file__).resolve().parent / "data" / "bench_golden_issue10.parquet"
_SMOOTHER = {"alpha": 0.95, "kernel": "laplacian", "lam": 10.0}
# the paper's MNIST parameters and three budgets of each Table 1 grid, written out so that a later
# change of the defaults does not change what this test compares
_PARAMS = {
    "fgsm": ({}, (0.07, 0.1, 0.3)),
    "ifgsm": ({"step": 0.08, "iterations": 10}, (0.05, 0.1, 0.3)),
    "pgd2": ({"step": 3.0, "iterations": 10}, (1.5, 2.5, 5.0)),
    # lr is a pixel step since issue 19 (C&W's Adam steps 4·lr on its sigmoid variable): 0.025 is the
    # step of 0.1 on the sigmoid variable that the golden records were computed with (4 x 0.025 == 0.1
    # exactly in binary floating point)
    "cw": ({"c": 15.0, "margin": 1.0, "lr": 0.025, "iterations": 100, "search_steps": 1}, ()),
    "spgd2": ({"step": 3.0, "iterations": 10, "smoother": _SMOOTHER}, (1.5, 2.5, 5.0)),
    "scw": ({"c": 15.0, "margin": 1.0, "lr": 0.1, "iterations": 100, "search_steps": 1, "smoother": _SMOOTHER}, ()),
}
IMAGES = [0, 1, 2, 3]
# the attack's wall time differs from run to run; everything else must not
COMPARED = [
    "image_id", "attack", "budget", "label", "pred_clean", "pred_adv", "correct", "success", "distortion",
    "visibility", "ssim", "forward_passes", "backward_passes",
]
#: The measured columns: float32 computations stored as float64. Against the golden file (written on
#: another CPU) they are compared within a tolerance, everything else exactly.
MEASURED = ("distortion", "visibility", "ssim")
#: Relative tolerance against the golden file: about 8 float32 ulps (the ulp is 6e-8 to 1.2e-7 relative).
#: Measured on two 2-core x86-64 VMs with AVX-512 (the one of issue 20; an Intel Xeon, 2026-12-06):
#: 6-28 values per column differ by one or two rounding steps, 1.5e-7 relative at most.
GOLDEN_RTOL = 1e-6
#: Absolute tolerance: 8 float32 ulps at 1.0, for values near 0 (visibility and SSIM are ratios of
#: float32 sums of order 1; distortions of 2-7 are covered by the relative tolerance: 4.8e-7 absolute
#: is one ulp of a distortion between 4 and 8).
GOLDEN_ATOL = 1e-6


def golden_spec(solver: str | None = "direct"):
    """The spec of the golden records; ``solver=None`` keeps the default smoothing (``auto``)."""
    from smoothlab.bench import AttackSpec, BenchSpec

    attacks = []
    for name, (params, budgets) in _PARAMS.items():
        params = dict(params)
        if "smoother" in params and solver is not None:
            params["smoother"] = {**params["smoother"], "solver": solver}
        attacks.append(AttackSpec(name, params, budgets))
    return BenchSpec(attacks=tuple(attacks), image_ids=tuple(IMAGES), batch_size=2, shard_size=4, device="cpu",
                     sweep="full")  # the golden records hold every (image, budget) pair


#: Largest change of one record's distortion from C4's CPU layout: rounding differences of 1e-7 grow
#: over 10 sign steps of I-FGSM or 100 Adam steps of C&W (measured on 1,000 digits: 0.053 at most).
DISTORTION_ATOL = 0.1


def records(spec) -> pd.DataFrame:
    from smoothlab.bench.shard import run_shard

    return run_shard(spec, 0, IMAGES).reset_index(drop=True)


def assert_same_records(new: pd.DataFrame, ref: pd.DataFrame, what: str, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Every column of :data:`COMPARED` identical, the :data:`MEASURED` ones within ``rtol``/``atol``
    (bit for bit with the default 0; NaN where both are NaN)."""
    assert len(new) == len(ref) == len(IMAGES) * sum(max(1, len(b)) for _, b in _PARAMS.values())
    for col in COMPARED:
        a, b = new[col].to_numpy(), ref[col].to_numpy()
        if col in MEASURED and (rtol or atol):
            assert np.array_equal(np.isnan(a), np.isnan(b)), f"{what}: column {col!r} has NaN in other rows"
            close = np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
            worst = np.nanmax(np.abs(a - b)) if len(a) else 0.0
            assert close.all(), f"{what}: column {col!r} differs beyond rtol={rtol}, atol={atol} in " \
                f"{int(np.sum(~close))} rows (largest difference {worst:.3g})"
            continue
        if a.dtype.kind == "f":
            same = np.array_equal(a, b, equal_nan=True)  # bit for bit, NaN where both are NaN
        else:
            same = np.array_equal(a, b)
        assert same, f"{what}: column {col!r} differs in {int(np.sum(a != b))} rows"


@pytest.mark.slow
@pytest.mark.skipif(not GOLDEN.is_file(), reason="golden records not generated")
def test_records_match_the_code_before_the_speed_work(monkeypatch) -> None:
    """Same records as the golden file: discrete columns (success, predictions, pass counts, ...)
    identical, the measured floats within :data:`GOLDEN_RTOL` / :data:`GOLDEN_ATOL`.

    Why a tolerance: the file was computed on this project's development VM (an AMD EPYC, see
    ``benchmarks/README.md``); on two other x86-64 VMs with AVX-512 the float32 kernels sum in another
    order, and 6-28 values per measured column differed by one or two float32 rounding steps (at most 4.8e-7 absolute,
    1.5e-7 relative), every discrete column identical. Iterations can amplify a rounding
    difference inside an attack (C4's faster CPU layout moves distortions by up to 0.053,
    :data:`DISTORTION_ATOL`), so the tolerance is kept at a few ulps: a code change that alters an
    attack's numerics still fails here. Comparisons within one run stay bit for bit (the other
    tests of this file, and those of workers, resume and shard size in ``tests/test_bench.py``).
    """
    from smoothlab.models import C4

    monkeypatch.setattr(C4, "fast_cpu", False)
    assert_same_records(records(golden_spec()), pd.read_parquet(GOLDEN), f"records vs {GOLDEN.name}",
                        rtol=GOLDEN_RTOL, atol=GOLDEN_ATOL)


@pytest.mark.slow
def test_fast_cpu_layout_keeps_the_table(monkeypatch) -> None:
    from smoothlab.metrics import summary
    from smoothlab.models import C4

    spec = golden_spec(None)
    fast = records(spec)
    monkeypatch.setattr(C4, "fast_cpu", False)
    slow = records(spec)
    for col in ("image_id", "attack", "pred_clean", "pred_adv", "success", "forward_passes"):
        assert np.array_equal(fast[col].to_numpy(), slow[col].to_numpy()), col
    assert np.array_equal(fast["budget"].to_numpy(), slow["budget"].to_numpy(), equal_nan=True)
    d_fast, d_slow = fast["distortion"].to_numpy(), slow["distortion"].to_numpy()
    assert np.array_equal(np.isnan(d_fast), np.isnan(d_slow))
    assert np.nanmax(np.abs(d_fast - d_slow)) <= DISTORTION_ATOL
    assert not np.array_equal(d_fast, d_slow, equal_nan=True)  # the layout did run (else C4.fast_cpu is dead)
    t_fast, t_slow = (summary(r).drop(columns="seconds") for r in (fast, slow))
    assert t_fast.round(2).equals(t_slow.round(2)), (t_fast.round(2), t_slow.round(2))


@pytest.mark.slow
def test_run_shard_shortcuts_do_not_change_a_record(monkeypatch) -> None:
    from smoothlab.bench import shard

    spec = golden_spec(None)  # the default smoothing (block on the CPU); direct: the golden test
    fast = records(spec)
    monkeypatch.setattr(shard, "_SHORTCUTS", False)
    slow = records(spec)
    assert_same_records(fast, slow, "shortcuts on vs off")
    # the ciede2000 column (spec version 4) is not in the golden file, so not in COMPARED: checked here
    assert np.array_equal(fast["ciede2000"].to_numpy(), slow["ciede2000"].to_numpy(), equal_nan=True)
    assert fast["ciede2000"].notna().any()
    assert fast["success"].any() and fast["visibility"].notna().any()  # not a vacuous comparison


def test_visibility_cache_refuses_another_image_under_a_known_id() -> None:
    import torch

    from smoothlab.attacks import AttackResult
    from smoothlab.records import records_from_result

    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    xa = (x + 0.1).clamp(0, 1)
    res = AttackResult(
        x_adv=xa, success=torch.ones(2, dtype=torch.bool), distortion=(xa - x).flatten(1).norm(dim=1),
        pred_clean=torch.zeros(2, dtype=torch.long), pred_adv=torch.ones(2, dtype=torch.long),
        forward_passes=torch.ones(2, dtype=torch.long), backward_passes=torch.ones(2, dtype=torch.long),
        attack="fgsm", params={}, seconds=0.1,
    )
    cache: dict = {}
    plain = records_from_result(res, image_ids=[7, 8], labels=[0, 0], x=x)
    cached = records_from_result(res, image_ids=[7, 8], labels=[0, 0], x=x, visibility_cache=cache)
    again = records_from_result(res, image_ids=[7, 8], labels=[0, 0], x=x, visibility_cache=cache)  # from the cache
    assert len(cache) == 2
    for df in (cached, again):
        assert np.array_equal(df["visibility"].to_numpy(), plain["visibility"].to_numpy())
    with pytest.raises(ValueError, match="another image"):
        records_from_result(res, image_ids=[8, 7], labels=[0, 0], x=x, visibility_cache=cache)


if __name__ == "__main__":  # regenerate the golden records with the smoothlab on sys.path
    if "--write" not in sys.argv:
        sys.exit("usage: PYTHONPATH=<reference checkout> python tests/test_bench_speed.py --write")
    import smoothlab

    GOLDEN.parent.mkdir(exist_ok=True)
    df = records(golden_spec())
    df.to_parquet(GOLDEN, index=False)
    print(f"wrote {len(df)} records computed by {Path(smoothlab.__file__).parent} to {GOLDEN}")
