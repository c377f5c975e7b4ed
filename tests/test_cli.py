"""The ``smoothlab`` command: help, an end-to-end --quick run, and clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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
                   "--overwrite", "--quick", "--shard-size", "pgd2=1,2,3", "--table", "--model", "--transfer-to",
                   "c4-bilateral", "--no-visibility"):
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
    # the default sweep stops each image at its first successful budget: every image at the smallest
    # budget of each grid, none twice at one budget, and no more rows than the full grid's
    budgeted = records[records["budget"].notna()]
    smallest = budgeted.groupby("attack")["budget"].transform("min")
    assert (budgeted[budgeted["budget"] == smallest].groupby("attack")["image_id"].nunique() == 20).all()
    assert not records.duplicated(["attack", "budget", "image_id"]).any()
    assert 20 * (1 + 1 + 1 + 1 + 1 + 1) <= len(records) < 20 * (2 + 2 + 3 + 3 + 1 + 1)
    table = pd.read_csv(out / "table.csv", index_col=0)
    assert list(table.index) == ["fgsm", "ifgsm", "pgd2", "cw", "spgd2", "scw"]
    assert (table["n_images"] == 20).all() and (table["p_success"].between(0, 1)).all()
    # the table is the protocol's statistics of the records, value for value (CSV keeps 17 digits)
    from smoothlab.metrics import summary

    expected = summary(records)
    assert list(table.columns) == list(expected.columns)
    for col in expected.columns:
        np.testing.assert_array_equal(table[col].to_numpy(), expected[col].to_numpy(), err_msg=col)
    assert table["p_success"].gt(0).all() and table["mean_distortion"].gt(0).all()
    md = (out / "table.md").read_text()
    assert "| sC&W |" in md and "D̄" in md and "V̄" in md and "white box on c4" in md
    ok = records["success"] & records["correct"]
    assert records.loc[ok, "visibility"].notna().all() and records.loc[~records["success"], "visibility"].isna().all()
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
        (["--attacks", "fgsm", "--n-images", "3", "--images", "0,1"], "give either --n-images or --images, not both"),
        (["--attacks", "fgsm", "--n-images", "3", "--shard-size", "0"], "--shard-size"),
        (["--attacks", "fgsm", "--n-images", "5000"], "--n-images 5000 is out of range"),
        (["--attacks", "fgsm", "--download"], "--download needs --source DIRECTORY"),
        (["--attacks", "fgsm", "--source", "/nonexistent/mnist"], "Pass --download to fetch the IDX files"),
        (["--attacks", "fgsm", "--n-images", "2", "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "1"],
         "could not reach the Dask scheduler"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_bench_errors(args, message, tmp_path, capsys):
    status = main(["bench", "--quick", "--no-progress", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.startswith("smoothlab bench: error:"), err


def test_model_choices_are_the_built_in_models():
    from smoothlab.bench import MODELS
    from smoothlab.cli import _MODEL_CHOICES

    assert _MODEL_CHOICES == tuple(MODELS)


def test_dataset_and_split_choices_are_the_built_in_ones():
    from smoothlab.cli import _DATASET_CHOICES, _SPLIT_CHOICES
    from smoothlab.data import DATASETS

    assert _DATASET_CHOICES == tuple(DATASETS)
    assert set(_SPLIT_CHOICES) == {s for entry in DATASETS.values() for s in entry.splits}


def test_table_3_runs_both_targets(tmp_path, capsys):
    args = ["bench", "--table", "3", "--quick", "--attacks", "fgsm,pgd2", "--n-images", "4", "--workers", "0",
            "--no-progress", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "## transfer c4 -> c4-bilateral" in out and "## transfer c4 -> c4-adv" in out
    for target in ("c4-bilateral", "c4-adv"):
        spec = json.loads((tmp_path / target / "spec.json").read_text())["spec"]
        assert (spec["model"], spec["target_model"], spec["n_images"]) == ("c4", target, 4)
        records = pd.read_parquet(tmp_path / target / "records.parquet")
        # one budget per attack: the paper's single settings (sec. 5.2)
        assert set(zip(records["attack"], records["budget"])) == {("fgsm", 0.3), ("pgd2", 5.0)}
    # --transfer-to picks one target; --table 2 is the adversarially trained C4, white box
    assert main(args[:-1] + [str(tmp_path / "one"), "--transfer-to", "c4-adv"]) == 0
    assert json.loads((tmp_path / "one" / "spec.json").read_text())["spec"]["target_model"] == "c4-adv"
    t2 = ["bench", "--table", "2", "--quick", "--attacks", "fgsm", "--n-images", "2", "--workers", "0", "--no-progress",
          "--no-visibility", "--out", str(tmp_path / "t2")]
    assert main(t2) == 0
    spec = json.loads((tmp_path / "t2" / "spec.json").read_text())["spec"]
    assert (spec["model"], spec["target_model"], spec["visibility"]) == ("c4-adv", None, False)
    assert "## white box on c4-adv" in capsys.readouterr().out
    # --table 2 --model: Table 2's budgets against another model (the C4 trained with L2 PGD)
    assert main(t2[:-1] + [str(tmp_path / "t2-l2"), "--model", "c4-l2adv"]) == 0
    spec_l2 = json.loads((tmp_path / "t2-l2" / "spec.json").read_text())["spec"]
    assert spec_l2["model"] == "c4-l2adv" and spec_l2["attacks"] == spec["attacks"]
    assert "## white box on c4-l2adv" in capsys.readouterr().out


def test_report_only_prints_the_finished_shards_of_each_run_and_computes_nothing(tmp_path, capsys):
    from smoothlab.bench import AttackSpec, BenchSpec, run

    for sub, attack in (("c4-bilateral", "fgsm"), ("c4-adv", "pgd2")):  # Table 3's layout: one run per subfolder
        spec = BenchSpec(attacks=(AttackSpec(attack, budgets=(2.0,) if attack == "pgd2" else (0.3,)),), n_images=4,
                         batch_size=2, shard_size=2, visibility=False, target_model=sub)
        run(spec, out=tmp_path / sub, workers=0, progress=False, max_shards=1)
    shards = sorted(p.stat().st_mtime_ns for p in tmp_path.glob("*/shards/*"))
    assert main(["bench", "--report-only", "--out", str(tmp_path), "--attacks", "cw"]) == 0  # 'what' options ignored
    out = capsys.readouterr().out
    assert out.count("partial: 1 of 2 shards finished, 2 of 4 images") == 2, out
    assert "## transfer c4 -> c4-bilateral" in out and "## transfer c4 -> c4-adv" in out
    assert "| FGSM |" in out and "| PGD2 |" in out and "C&W" not in out
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.glob("*/shards/*")) == shards  # nothing computed
    for sub in ("c4-bilateral", "c4-adv"):
        assert (tmp_path / sub / "table.md").read_text().count("**Partial:**") == 1
    # one run's own folder
    assert main(["bench", "--report-only", "--out", str(tmp_path / "c4-adv")]) == 0
    assert capsys.readouterr().out.count("## transfer") == 1
    status = main(["bench", "--report-only", "--out", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert status == 2 and "empty/spec.json does not exist" in err and err.startswith("smoothlab bench: error:"), err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--table", "2", "--transfer-to", "c4-adv"], "white-box scenario"),
        (["--table", "1", "--model", "c4-adv"], "drop --model"),
        (["--table", "3", "--model", "c4-l2adv"], "drop --model"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_table_errors(args, message, tmp_path, capsys):
    status = main(["bench", "--quick", "--attacks", "fgsm", "--no-progress", "--out", str(tmp_path), *args])
    assert status == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--transfer-to", "resnet"])
    assert "invalid choice: 'resnet'" in capsys.readouterr().err


def test_out_folder_of_another_spec(tmp_path, capsys):
    base = ["bench", "--quick", "--attacks", "fgsm", "--workers", "0", "--no-progress", "--out", str(tmp_path)]
    assert main(base + ["--n-images", "2"]) == 0
    assert main(base + ["--n-images", "3"]) == 2
    err = capsys.readouterr().err
    assert "different benchmark spec" in err and "pass --overwrite" in err and "overwrite=True" not in err
    assert main(base + ["--n-images", "3", "--overwrite"]) == 0
    assert pd.read_parquet(tmp_path / "records.parquet")["image_id"].nunique() == 3


# ------------------------------------------------------------------------------ issue 12


def test_source_split_batch_size_and_images(tmp_path, capsys):
    """--source DIR --split train reads the train IDX files of DIR (here embedded test digits 0-5),
    --images picks indices of that split, --batch-size reaches the spec."""
    import torch

    from smoothlab.data import FILES, mnist, write_idx
    from smoothlab.models import c4

    x, y = mnist("test")
    idx = tmp_path / "idx"
    idx.mkdir()
    for split, sel in (("train", slice(0, 6)), ("test", slice(6, 10))):
        write_idx(idx / FILES[(split, "images")], (x[sel, 0] * 255).round().to(torch.uint8).numpy())
        write_idx(idx / FILES[(split, "labels")], y[sel].numpy().astype(np.uint8))
    out = tmp_path / "out"
    base = ["bench", "--quick", "--attacks", "fgsm", "--source", str(idx), "--workers", "0", "--no-progress",
            "--no-visibility"]
    assert main(base + ["--split", "train", "--images", "1,3,4", "--batch-size", "1", "--shard-size", "2",
                        "--out", str(out)]) == 0
    spec = json.loads((out / "spec.json").read_text())["spec"]
    assert (spec["source"], spec["split"], spec["batch_size"], spec["shard_size"]) == (str(idx), "train", 1, 2)
    assert (spec["image_ids"], spec["n_images"]) == ([1, 3, 4], None)
    per_image = pd.read_parquet(out / "records.parquet").drop_duplicates("image_id").set_index("image_id")
    assert per_image.index.tolist() == [1, 3, 4]
    assert per_image["label"].tolist() == y[[1, 3, 4]].tolist()
    with torch.no_grad():
        pred = c4(pretrained=True)(x[[1, 3, 4]]).argmax(1)
    assert per_image["pred_clean"].tolist() == pred.tolist()
    assert "2 shards (2 computed, 0 reused)" in capsys.readouterr().out
    # the test IDX files hold 4 digits
    assert main(base + ["--split", "test", "--n-images", "5", "--out", str(tmp_path / "o2")]) == 2
    assert "--n-images 5 is out of range for the mnist test split" in capsys.readouterr().err
    assert main(base + ["--split", "test", "--n-images", "4", "--batch-size", "4", "--shard-size", "4",
                        "--out", str(tmp_path / "o3")]) == 0
    rec = pd.read_parquet(tmp_path / "o3" / "records.parquet").drop_duplicates("image_id").set_index("image_id")
    assert rec.index.tolist() == [0, 1, 2, 3] and rec["label"].tolist() == y[6:10].tolist()
    assert json.loads((tmp_path / "o3" / "spec.json").read_text())["spec"]["batch_size"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "2"])
def test_ctrl_c_exits_130_keeps_finished_shards_and_the_rerun_resumes(workers, tmp_path):
    """A real ``smoothlab bench`` process gets SIGINT once its first shard file is written: to
    the process alone (in-process run), or to its whole process group as a terminal's Ctrl-C
    does (Dask workers included)."""
    import signal
    import time

    from smoothlab.bench import AttackSpec, BenchSpec, storage

    spec = BenchSpec(n_images=12, attacks=(AttackSpec("cw", {"iterations": 150, "abort_early": False}),),
                     batch_size=2, shard_size=2, device="cpu", visibility=False)  # 6 shards of ~0.3 s
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.to_json())
    out = tmp_path / "out"
    shards = out / storage.SHARD_DIR
    cmd = [sys.executable, "-m", "smoothlab.cli", "bench", "--spec", str(spec_file), "--no-progress", "--out", str(out)]
    # SIGINT as a terminal leaves it: a signal ignored in this process (an earlier test's server or browser
    # driver may ignore it) would be inherited across exec, and the run would never see the Ctrl-C
    proc = subprocess.Popen(cmd + ["--workers", workers], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not list(shards.glob("shard-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if workers == "0":
            proc.send_signal(signal.SIGINT)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "interrupted; finished shards are kept" in err
    done = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in shards.glob("shard-*.parquet")}
    assert 1 <= len(done) < 6, sorted(done)
    assert not list(shards.glob(".*tmp"))  # no half-written shard
    image_ids = np.arange(12)
    for name in done:
        k = int(name[len("shard-") : -len(".parquet")])
        records, reason = storage.read_shard(out, spec, k, image_ids[2 * k : 2 * k + 2])
        assert reason == "" and len(records) == 2, (name, reason)
    rerun = subprocess.run(cmd + ["--workers", "0"], capture_output=True, text=True, timeout=240, env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    assert f"6 shards ({6 - len(done)} computed, {len(done)} reused)" in rerun.stdout
    for name, (data, mtime) in done.items():  # the finished shards were kept as they were, not rewritten
        p = shards / name
        assert p.read_bytes() == data and p.stat().st_mtime_ns == mtime
    assert pd.read_parquet(out / "records.parquet")["image_id"].tolist() == list(range(12))


def test_shard_size_alone_says_which_batch_size_it_picks(capsys):
    """Records are bit-identical across shard sizes at one batch size (README, "Scaling out"): where
    --shard-size alone changes the batch size, the command says so."""
    from smoothlab.cli import _specs_from_args, build_parser

    def spec(*opts):
        (_, s), = _specs_from_args(build_parser().parse_args(["bench", "--quick", "--attacks", "fgsm", *opts]))
        return s, capsys.readouterr().err

    s, err = spec("--shard-size", "20")
    assert (s.batch_size, s.shard_size, err) == (10, 20, "")
    s, err = spec("--shard-size", "15")
    assert (s.batch_size, s.shard_size) == (5, 15)
    assert "note: batch size 5 (instead of 10), a divisor of --shard-size 15; give --batch-size" in err
    s, err = spec("--shard-size", "15", "--batch-size", "3")
    assert (s.batch_size, err) == (3, "")
