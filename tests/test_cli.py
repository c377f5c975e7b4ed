"""The ``smoothlab`` command: help, an end-to-end --quick run, and clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from smoothlab.cli import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smoothlab.cli", *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def test_help():
    top = run_cli("--help")
    assert top.returncode == 0 and "bench" in top.stdout and "usage: smoothlab" in top.stdout
    bench = run_cli("bench", "--help")
    assert bench.returncode == 0
    for option in ("--attacks", "--budgets", "--n-images", "--workers", "--scheduler", "--device", "--out",
                   "--overwrite", "--quick", "--shard-size", "pgd2=1,2,3"):
        assert option in bench.stdout, option
    exe = shutil.which("smoothlab", path=str(Path(sys.executable).parent))
    if exe is not None:  # the installed entry point
        ep = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60, env=ENV)
        assert ep.returncode == 0 and ep.stdout.startswith("smoothlab ")
    assert main([]) == 2  # no command: help, non-zero status


def test_bench_quick_end_to_end(tmp_path):
    out = tmp_path / "res"
    proc = run_cli("bench", "--quick", "--workers", "0", "--no-progress", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    files = {p.name for p in out.iterdir()}
    assert {"table.md", "table.csv", "operating_characteristic.html", "records.parquet", "spec.json", "shards"} <= files
    records = pd.read_parquet(out / "records.parquet")
    # six attacks, 20 images; quick budgets: 2 for FGSM/I-FGSM, 3 for PGD2/sPGD2, 1 for C&W/sC&W
    assert sorted(records["attack"].unique()) == sorted(["fgsm", "ifgsm", "pgd2", "cw", "spgd2", "scw"])
    assert records["image_id"].nunique() == 20
    assert len(records) == 20 * (2 + 2 + 3 + 3 + 1 + 1)
    table = pd.read_csv(out / "table.csv", index_col=0)
    assert list(table.index) == ["fgsm", "ifgsm", "pgd2", "cw", "spgd2", "scw"]
    assert (table["n_images"] == 20).all() and (table["p_success"].between(0, 1)).all()
    md = (out / "table.md").read_text()
    assert "| sC&W |" in md and "D̄" in md
    assert "| sC&W |" in proc.stdout  # the table is printed too
    html = (out / "operating_characteristic.html").read_text()
    assert "sPGD2" in html and "distortion D" in html
    spec = json.loads((out / "spec.json").read_text())
    assert spec["spec"]["n_images"] == 20
    # the same spec again (read from spec.json): resumes, nothing recomputed
    again = run_cli("bench", "--spec", str(out / "spec.json"), "--workers", "0", "--no-progress", "--out", str(out))
    assert again.returncode == 0 and "0 computed, 2 reused" in again.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--attacks", "fgsm,deepfool"], "unknown attack(s) ['deepfool']"),
        (["--attacks", "fgsm", "--budgets", "fgsm:0.1"], "malformed budgets"),
        (["--attacks", "fgsm", "--budgets", "pgd2=1,2"], "not in this spec"),
        (["--attacks", "cw", "--budgets", "cw=1"], "takes no budgets"),
        (["--attacks", "fgsm", "--images", "0,99999"], "image index 99999 is out of range"),
        (["--attacks", "fgsm", "--n-images", "3", "--shard-size", "0"], "shard_size"),
        (["--attacks", "fgsm", "--n-images", "2", "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "1"],
         "could not reach the Dask scheduler"),
    ],
)
def test_bench_errors(args, message, tmp_path, capsys):
    status = main(["bench", "--quick", "--no-progress", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.startswith("smoothlab bench: error:"), err


def test_out_folder_of_another_spec(tmp_path, capsys):
    base = ["bench", "--quick", "--attacks", "fgsm", "--workers", "0", "--no-progress", "--out", str(tmp_path)]
    assert main(base + ["--n-images", "2"]) == 0
    assert main(base + ["--n-images", "3"]) == 2
    assert "different benchmark spec" in capsys.readouterr().err
    assert main(base + ["--n-images", "3", "--overwrite"]) == 0
    assert pd.read_parquet(tmp_path / "records.parquet")["image_id"].nunique() == 3
