"""Issue 21, part 3: keep what a benchmark made.

- ``run(..., save_adversarials=True)`` / ``smoothlab bench --save-adversarials``: the saved images
  round-trip (distortion and prediction equal the records'), a corrupted file is detected and
  recomputed, resuming with and without saving keeps the records bit-identical, and a folder
  written without saving refuses to start saving;
- ``--quantise`` (the 8-bit protocol): the saved ``uint8`` images survive a real PNG file;
- ``compare`` / ``smoothlab compare`` on two small runs: one table and one figure holding both;
- the ``ciede2000`` records column against scikit-image directly.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from smoothlab.bench import AttackSpec, BenchSpec, build_model, compare, load_adversarials, run  # noqa: E402
from smoothlab.bench import storage  # noqa: E402
from smoothlab.cli import main  # noqa: E402
from smoothlab.records import RECORD_COLUMNS  # noqa: E402

DETERMINISTIC = [c for c in RECORD_COLUMNS if c != "seconds"]  # wall time differs between runs


def small_spec(**changes) -> BenchSpec:
    """8 digits in 2 shards; FGSM and PGD2 at two budgets, a short C&W (a minimal-norm attack: its
    adversarial images lie just past the decision boundary, where rounding matters most)."""
    fields = dict(
        n_images=8,
        attacks=(
            AttackSpec("fgsm", {}, (0.1, 0.3)),
            AttackSpec("pgd2", {"step": 1.0, "iterations": 3}, (1.0, 3.0)),
            AttackSpec("cw", {"iterations": 20, "abort_early": False}),
        ),
        batch_size=4,
        shard_size=4,
        visibility=False,
        device="cpu",
    )
    fields.update(changes)
    return BenchSpec(**fields)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """Records of the small spec, in-process, nothing saved."""
    return run(small_spec(), workers=0, progress=False).records


def same_records(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a[DETERMINISTIC], b[DETERMINISTIC], check_exact=True)


def predict(x):
    with torch.no_grad():
        return build_model("c4", torch.device("cpu"))(x).argmax(1).numpy()


def least_distorted(records: pd.DataFrame, attack: str) -> pd.DataFrame:
    """Per image the attack fooled, the record of least distortion (computed here from the records)."""
    ok = records[(records["attack"] == attack) & records["success"]]
    return ok.sort_values(["image_id", "distortion"], kind="stable").drop_duplicates("image_id").set_index("image_id")


@pytest.mark.parametrize("quantise", [pytest.param(False, id="float16"), pytest.param(True, id="uint8-8bit")])
def test_saved_adversarials_round_trip(tmp_path, reference, quantise):
    spec = small_spec().quantised() if quantise else small_spec()
    res = run(spec, workers=0, out=tmp_path, progress=False, save_adversarials=True)
    if not quantise:
        same_records(res.records, reference)  # saving changes no record
    assert sorted(p.name for p in (tmp_path / storage.ADV_DIR).iterdir()) == ["shard-00000.parquet", "shard-00001.parquet"]
    for attack in spec.attack_keys:
        saved = load_adversarials(tmp_path, attack)
        best = least_distorted(res.records, attack)
        assert saved.dtype == ("uint8" if quantise else "float16")
        np.testing.assert_array_equal(saved.image_ids, best.index.to_numpy())
        np.testing.assert_array_equal(saved.distortion, best["distortion"].to_numpy())
        # the distortion of the images read back, measured here against the data set's originals
        from smoothlab.data import mnist

        x, y = mnist("test")
        xo = x[torch.as_tensor(saved.image_ids)]
        d = (saved.x_adv - xo).flatten(1).norm(dim=1).double().numpy()
        # uint8: exact up to float32 sums; float16: half a float16 spacing (2^-12 at most) per pixel
        atol = 1e-6 if quantise else np.sqrt(28 * 28) * 2.0**-12
        np.testing.assert_allclose(d, best["distortion"].to_numpy(), rtol=1e-6, atol=atol)
        np.testing.assert_array_equal(predict(saved.x_adv), best["pred_adv"].to_numpy())
        np.testing.assert_array_equal(saved.labels, y[torch.as_tensor(saved.image_ids)].numpy())
    first = int(least_distorted(res.records, "pgd2").index[0])
    one = load_adversarials(tmp_path, "pgd2", index=first)
    assert len(one) == 1 and one.x_adv.shape == (1, 1, 28, 28) and one.image_ids.tolist() == [first]


def test_quantised_adversarials_survive_a_png_file(tmp_path):
    """P_suc of the 8-bit protocol holds after a real PNG round trip (Pillow writes and reads the file)."""
    Image = pytest.importorskip("PIL.Image")

    spec = small_spec(attacks=(AttackSpec("cw", {"iterations": 20, "abort_early": False}),)).quantised()
    res = run(spec, workers=0, out=tmp_path, progress=False, save_adversarials=True)
    saved = load_adversarials(tmp_path, "cw")
    assert len(saved) == int(res.records["success"].sum()) > 0
    back = []
    for img in saved.x_adv:
        buf = io.BytesIO()
        Image.fromarray((img[0].numpy() * 255).round().astype(np.uint8), mode="L").save(buf, format="PNG")
        back.append(np.asarray(Image.open(io.BytesIO(buf.getvalue()))))
    x_png = torch.from_numpy(np.stack(back)[:, None].astype(np.float32)) / 255
    assert torch.equal(x_png, saved.x_adv)  # the stored images are exactly what a PNG holds
    pred = predict(x_png)
    np.testing.assert_array_equal(pred, saved.pred_adv)
    assert (pred != saved.labels).all()  # still adversarial after the PNG file


def _corrupt_pixels(path) -> None:
    """Change one pixel of the first image, keeping the file's metadata (its old checksum)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    df = table.to_pandas()
    blob = bytearray(df.at[0, "pixels"])
    blob[0] ^= 0x40
    df.at[0, "pixels"] = bytes(blob)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(table.schema.metadata), path)


def test_corrupted_adversarials_are_detected_and_recomputed(tmp_path, reference):
    run(small_spec(), workers=0, out=tmp_path, progress=False, save_adversarials=True)
    before = load_adversarials(tmp_path, "fgsm")
    _corrupt_pixels(storage.adversarials_path(tmp_path, 1))
    with pytest.raises(ValueError, match="altered"):
        load_adversarials(tmp_path, "fgsm")
    storage.adversarials_path(tmp_path, 0).write_bytes(b"not a parquet file")
    res = run(small_spec(), workers=0, out=tmp_path, progress=False, save_adversarials=True)
    assert res.invalid == [0, 1] and res.computed == [0, 1]
    same_records(res.records, reference)
    after = load_adversarials(tmp_path, "fgsm")
    assert torch.equal(after.x_adv, before.x_adv)
    again = run(small_spec(), workers=0, out=tmp_path, progress=False, save_adversarials=True)
    assert again.invalid == [] and again.reused == [0, 1]


def test_resume_with_and_without_saving_keeps_the_records(tmp_path, reference):
    out = tmp_path / "a"
    first = run(small_spec(), workers=0, out=out, progress=False, save_adversarials=True, max_shards=1)
    assert first.computed == [0] and not first.complete
    plain = run(small_spec(), workers=0, out=out, progress=False)  # resumed without saving
    assert plain.reused == [0] and plain.computed == [1]
    same_records(plain.records, reference)
    same_records(pd.read_parquet(out / "records.parquet"), reference)
    with pytest.raises(ValueError, match="no saved adversarial|missing"):
        load_adversarials(out, "pgd2")  # shard 1 was computed without saving
    saving = run(small_spec(), workers=0, out=out, progress=False, save_adversarials=True)
    assert saving.reused == [0] and saving.computed == [1]  # recomputed for its images
    same_records(saving.records, reference)
    assert len(load_adversarials(out, "pgd2")) == len(least_distorted(reference, "pgd2"))


def test_saving_into_a_folder_written_without_it_is_refused(tmp_path):
    run(small_spec(n_images=4), workers=0, out=tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="written without save_adversarials"):
        run(small_spec(n_images=4), workers=0, out=tmp_path, progress=False, save_adversarials=True)
    assert not (tmp_path / storage.ADV_DIR).exists()
    status = main(["bench", "--spec", str(tmp_path / "spec.json"), "--workers", "0", "--no-progress",
                   "--out", str(tmp_path), "--save-adversarials"])
    assert status == 2
    with pytest.raises(ValueError, match="needs out="):
        run(small_spec(n_images=4), workers=0, progress=False, save_adversarials=True)
    res = run(small_spec(n_images=4), workers=0, out=tmp_path, progress=False, save_adversarials=True, overwrite=True)
    assert res.computed == [0] and len(load_adversarials(tmp_path, "fgsm")) > 0


def test_dask_workers_save_the_same_images(tmp_path):
    pytest.importorskip("distributed")
    spec = small_spec(attacks=(AttackSpec("pgd2", {"step": 1.0, "iterations": 3}, (1.0, 3.0)),))
    run(spec, workers=0, out=tmp_path / "here", progress=False, save_adversarials=True)
    run(spec, workers=1, out=tmp_path / "dask", progress=False, save_adversarials=True)
    for k in (0, 1):
        a, b = (pd.read_parquet(storage.adversarials_path(tmp_path / d, k)) for d in ("here", "dask"))
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_load_adversarials_bad_input(tmp_path):
    spec = small_spec(n_images=4, attacks=(AttackSpec("fgsm", {}, (0.05,)),))
    res = run(spec, workers=0, out=tmp_path, progress=False, save_adversarials=True)
    with pytest.raises(ValueError, match="one of the run's attacks"):
        load_adversarials(tmp_path, "pgd2")
    with pytest.raises(ValueError, match="not an image of the run"):
        load_adversarials(tmp_path, "fgsm", index=99)
    failed = res.records.loc[~res.records["success"], "image_id"]
    assert len(failed)  # FGSM at 0.05 fails on some digits
    with pytest.raises(ValueError, match="did not fool image"):
        load_adversarials(tmp_path, "fgsm", index=int(failed.iloc[0]))
    with pytest.raises(FileNotFoundError, match="spec.json"):
        load_adversarials(tmp_path / "nothing", "fgsm")


# --------------------------------------------------------------------------- the 8-bit protocol


def test_quantise_flag_runs_the_8bit_protocol(tmp_path, capsys):
    out = tmp_path / "q"
    status = main(["bench", "--attacks", "fgsm,pgd2", "--budgets", "fgsm=0.1,0.3;pgd2=1,3", "--n-images", "4",
                   "--batch-size", "4", "--shard-size", "4", "--workers", "0", "--no-visibility", "--device", "cpu",
                   "--quantise", "--save-adversarials", "--no-progress", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    spec = BenchSpec.from_json((out / "spec.json").read_text())
    assert spec.is_quantised and all(a.params["quantise"] is True for a in spec.attacks)
    saved = load_adversarials(out, "pgd2")
    assert saved.dtype == "uint8"
    assert torch.equal((saved.x_adv * 255).round() / 255, saved.x_adv)  # on the 8-bit grid


# --------------------------------------------------------------------------- compare


def test_compare_two_runs_writes_a_table_and_a_figure(tmp_path, capsys):
    spec = small_spec(n_images=4, attacks=(AttackSpec("fgsm", {}, (0.1, 0.3)), AttackSpec("pgd2", {"iterations": 3}, (1.0, 3.0))))
    run(spec, workers=0, out=tmp_path / "plain", progress=False)
    run(spec.replace(model="c4-adv"), workers=0, out=tmp_path / "robust", progress=False)
    status = main(["compare", str(tmp_path / "plain"), str(tmp_path / "robust"), "--out", str(tmp_path / "cmp")])
    assert status == 0, capsys.readouterr().err
    table = pd.read_csv(tmp_path / "cmp" / "table.csv", index_col=[0, 1])
    assert list(table.index) == [("c4", "fgsm"), ("c4", "pgd2"), ("c4-adv", "fgsm"), ("c4-adv", "pgd2")]
    for label, folder in (("c4", "plain"), ("c4-adv", "robust")):
        own = pd.read_csv(tmp_path / folder / "table.csv", index_col=0)
        np.testing.assert_array_equal(table.loc[label, "p_success"].to_numpy(), own["p_success"].to_numpy())
        np.testing.assert_array_equal(table.loc[label, "mean_distortion"].to_numpy(), own["mean_distortion"].to_numpy())
    md = (tmp_path / "cmp" / "table.md").read_text()
    assert "| c4 | mnist test | FGSM |" in md and "| c4-adv | mnist test | PGD2 |" in md
    tex = (tmp_path / "cmp" / "table.tex").read_text()
    assert tex.startswith("\\begin{tabular}") and "c4-adv & PGD2 &" in tex and "\\Delta E_{00}" in tex
    fig = compare([tmp_path / "plain", tmp_path / "robust"]).figure()
    assert [t.name for t in fig.data] == ["c4 — FGSM", "c4 — PGD2", "c4-adv — FGSM", "c4-adv — PGD2"]
    assert fig.data[0].line.dash != fig.data[2].line.dash and fig.data[0].line.color == fig.data[2].line.color
    html = (tmp_path / "cmp" / "operating_characteristic.html").read_text()
    assert "c4-adv — PGD2" in html or "c4-adv \\u2014 PGD2" in html  # as written, or JSON-escaped


def test_compare_labels_datasets_and_reads_old_records(tmp_path):
    from smoothlab.data import register_dataset, unregister_dataset

    def digits(source, split):
        from smoothlab.data import mnist

        x, y = mnist("test")
        return x[100:108], y[100:108]

    register_dataset("digits-b", digits, model="c4", splits=("test",), batch_size=4, shard_size=4)
    try:
        attacks = (AttackSpec("fgsm", {}, (0.3,)),)
        run(small_spec(n_images=4, attacks=attacks), workers=0, out=tmp_path / "a", progress=False)
        run(BenchSpec(dataset="digits-b", attacks=attacks, n_images=4, visibility=False, device="cpu"),
            workers=0, out=tmp_path / "b", progress=False)
        # records of a run made before the ciede2000 column
        rec = pd.read_parquet(tmp_path / "b" / "records.parquet").drop(columns="ciede2000")
        rec.to_parquet(tmp_path / "b" / "records.parquet", index=False)
        both = compare([tmp_path / "a", tmp_path / "b"], out=tmp_path / "cmp")
    finally:
        unregister_dataset("digits-b")
    assert [r.label for r in both.runs] == ["mnist test", "digits-b test"] and both.mixed_datasets
    assert list(both.table["dataset"]) == ["mnist test", "digits-b test"]  # one row each: not merged
    assert np.isnan(both.table.loc[("digits-b test", "fgsm"), "mean_ciede2000"])
    assert "different data sets" in (tmp_path / "cmp" / "table.md").read_text()
    with pytest.raises(ValueError, match="distinct"):
        compare([tmp_path / "a", tmp_path / "b"], labels=["x", "x"])
    with pytest.raises(ValueError, match="once"):
        compare([tmp_path / "a", tmp_path / "a"])


# --------------------------------------------------------------------------- CIEDE2000


def test_ciede2000_against_scikit_image():
    skcolor = pytest.importorskip("skimage.color")
    from smoothlab.similarity import ciede2000

    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 3, 9, 11, generator=g)
    y = (x + 0.15 * torch.randn(3, 3, 9, 11, generator=g)).clamp(0, 1)
    y[0, :, :3] = x[0, :, :3]  # some equal pixels
    y[1] = y[1].mean(0, keepdim=True)  # colour against grey: hue differences of every kind
    ref = [skcolor.deltaE_ciede2000(skcolor.rgb2lab(x[i].permute(1, 2, 0).double().numpy()),
                                    skcolor.rgb2lab(y[i].permute(1, 2, 0).double().numpy())).mean() for i in range(3)]
    np.testing.assert_allclose(ciede2000(x, y).numpy(), ref, rtol=1e-10, atol=1e-10)
    xg, yg = x[:, :1], y[:, :1]  # grey digits: grey read as RGB
    ref = [skcolor.deltaE_ciede2000(skcolor.rgb2lab(skcolor.gray2rgb(xg[i, 0].double().numpy())),
                                    skcolor.rgb2lab(skcolor.gray2rgb(yg[i, 0].double().numpy()))).mean() for i in range(3)]
    np.testing.assert_allclose(ciede2000(xg, yg).numpy(), ref, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="channels"):
        ciede2000(torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4))


def test_ciede2000_records_column():
    pytest.importorskip("skimage.color")
    from skimage.color import deltaE_ciede2000, gray2rgb, rgb2lab

    from smoothlab.attacks import AttackResult
    from smoothlab.metrics import summary
    from smoothlab.records import records_from_result, validate_records

    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    xa = (x + 0.1).clamp(0, 1)
    success = torch.tensor([True, False, True])
    res = AttackResult(
        x_adv=xa, success=success, distortion=(xa - x).flatten(1).norm(dim=1),
        pred_clean=torch.zeros(3, dtype=torch.long), pred_adv=torch.tensor([1, 0, 1]),
        forward_passes=torch.ones(3, dtype=torch.long), backward_passes=torch.ones(3, dtype=torch.long),
        attack="fgsm", params={}, seconds=0.1,
    )
    rec = records_from_result(res, image_ids=[0, 1, 2], labels=[0, 0, 0], x=x, visibility=False)
    ref = [deltaE_ciede2000(rgb2lab(gray2rgb(x[i, 0].double().numpy())), rgb2lab(gray2rgb(xa[i, 0].double().numpy()))).mean()
           for i in (0, 2)]
    np.testing.assert_allclose(rec["ciede2000"].to_numpy()[[0, 2]], ref, rtol=1e-9)
    assert np.isnan(rec.at[1, "ciede2000"])  # a failure has none
    assert summary(rec).at["fgsm", "mean_ciede2000"] == pytest.approx(np.mean(ref))
    assert validate_records(rec.drop(columns="ciede2000"))["ciede2000"].isna().all()  # older records: NaN
    bad = rec.copy()
    bad.at[0, "ciede2000"] = -1.0
    with pytest.raises(ValueError, match="ciede2000"):
        validate_records(bad)
