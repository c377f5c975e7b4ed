"""Dask runner: determinism across paths, worker loss, resume, corrupt shards, errors.

Real Dask clusters (LocalCluster, worker processes), real attacks and the shipped C4; tiny
specs so that the whole file stays within about two minutes on two cores.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from smoothlab.bench import (  # noqa: E402
    MODELS,
    SINGLE_BUDGETS,
    AttackSpec,
    BenchSpec,
    default_attacks,
    parse_budgets,
    parse_images,
    register_dataset,
    register_model,
    report,
    run,
    unregister_dataset,
    unregister_model,
)
from smoothlab.bench import compare, storage  # noqa: E402
from smoothlab.metrics import summary  # noqa: E402
from smoothlab.records import RECORD_COLUMNS  # noqa: E402

DETERMINISTIC = [c for c in RECORD_COLUMNS if c != "seconds"]  # wall time differs between runs


def tiny_spec(**changes) -> BenchSpec:
    """12 images, two cheap attacks (FGSM at 2 budgets, PGD2 with 3 iterations at 2 budgets)."""
    fields = dict(
        n_images=12,
        attacks=(
            AttackSpec("fgsm", {}, (0.1, 0.3)),
            AttackSpec("pgd2", {"step": 1.0, "iterations": 3}, (1.0, 3.0)),
        ),
        batch_size=2,
        shard_size=4,
        device="cpu",
        sweep="full",  # every (image, budget) pair: these tests check the records of each budget
    )
    fields.update(changes)
    return BenchSpec(**fields)


def same_records(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a[DETERMINISTIC], b[DETERMINISTIC], check_exact=True)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """Records of the tiny spec, in-process, no Dask."""
    res = run(tiny_spec(), workers=0, progress=False)
    assert res.complete and res.mode == "in-process" and res.computed == [0, 1, 2]
    return res.records


@pytest.fixture(scope="module")
def client2():
    """A 2-worker LocalCluster shared by the tests of this module."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL
    ) as cluster, distributed.Client(cluster) as client:
        yield client


# --------------------------------------------------------------------------- spec


def test_spec_json_hash_and_defaults():
    spec = BenchSpec()
    assert spec.attack_keys == ("fgsm", "ifgsm", "pgd2", "cw", "spgd2", "scw")
    by = {a.key: a for a in spec.attacks}
    assert by["pgd2"].budgets == (1.0, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 4.0, 5.0, 6.0)  # the authors' Table 1 grid
    assert by["fgsm"].budgets == (0.04, 0.07, 0.09, 0.1, 0.15, 0.18, 0.2, 0.3, 0.4, 0.5) and by["cw"].budgets == ()
    assert by["cw"].params["c"] == 15.0 and by["ifgsm"].params["step"] == 0.08
    back = BenchSpec.from_json(spec.to_json())
    assert back == spec and back.hash == spec.hash and hash(back) == hash(spec)
    # stable: budgets are canonicalised (sorted floats); any change of content changes it
    a = tiny_spec(attacks=(AttackSpec("pgd2", {"iterations": 3}, (3, 1)),))
    b = tiny_spec(attacks=(AttackSpec("pgd2", {"iterations": 3}, (1.0, 3.0)),))
    assert a.hash == b.hash
    assert tiny_spec().hash != tiny_spec(seed=1).hash != tiny_spec(n_images=11).hash
    assert json.loads(spec.to_json())["spec"]["attacks"][0]["name"] == "fgsm"


@pytest.mark.parametrize(
    "make, match",
    [
        pytest.param(lambda: AttackSpec("deepfool"), "unknown attack 'deepfool'", id="AttackSpec(deepfool)"),
        pytest.param(lambda: AttackSpec("pgd2", {}, (1.0, -2.0)), "budgets", id="AttackSpec(pgd2, {}, (1.0, -2.0))"),
        pytest.param(lambda: AttackSpec("pgd2", {}, (1.0, 1.0)), "distinct", id="AttackSpec(pgd2, {}, (1.0, 1.0))"),
        pytest.param(lambda: AttackSpec("pgd2", {"eps": 3.0}, (1.0,)), "budgets=", id="AttackSpec(pgd2, {eps: 3.0}, (1.0,))"),
        pytest.param(lambda: tiny_spec(shard_size=5), "multiple of batch_size", id="spec(shard_size=5)"),
        pytest.param(lambda: tiny_spec(image_ids=(1, 2)), "either n_images or image_ids", id="spec(image_ids=(1, 2))"),
        pytest.param(lambda: tiny_spec(model="resnet"), "model", id="spec(model=resnet)"),
        pytest.param(lambda: tiny_spec(attacks=(AttackSpec("fgsm"), AttackSpec("fgsm"))), "distinct", id="spec(attacks=(AttackSpec(fgsm), AttackSpec(fgsm)))"),
        pytest.param(lambda: tiny_spec(device="tpu"), "device", id="spec(device=tpu)"),
        pytest.param(lambda: parse_budgets("pgd2:1,2"), "malformed budgets", id="parse_budgets(pgd2:1,2)"),
        pytest.param(lambda: parse_budgets("pgd2=1,x"), "number", id="parse_budgets(pgd2=1,x)"),
        pytest.param(lambda: parse_images("0:a"), "malformed images", id="parse_images(0:a)"),
        pytest.param(lambda: tiny_spec().with_budgets({"cw": (1.0,)}), "not in this spec", id="spec().with_budgets({cw: (1.0,)})"),
        pytest.param(lambda: tiny_spec().with_budgets({"pgd2": (3.0, 1.0)}), "strictly increasing", id="spec().with_budgets({pgd2: (3, 1)})"),
        pytest.param(lambda: tiny_spec().with_budgets({"pgd2": (0.0, 1.0)}), "> 0", id="spec().with_budgets({pgd2: (0, 1)})"),
    ],
)
def test_spec_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_paper_scenarios_and_spec_versions():
    t1, t2 = BenchSpec.paper(1), BenchSpec.paper(2)
    assert t1 == BenchSpec() and t1.scenario == "white box on c4"
    assert t2.model == "c4-adv" and t2.target_model is None and t2.attacks == default_attacks(table=2)
    t3 = BenchSpec.paper(3, target="c4-bilateral")
    assert (t3.model, t3.target_model, t3.evaluated_model) == ("c4", "c4-bilateral", "c4-bilateral")
    assert t3.scenario == "transfer c4 -> c4-bilateral"
    assert {a.key: a.budgets for a in t3.attacks} == {
        "fgsm": (0.3,), "ifgsm": (0.3,), "pgd2": (5.0,), "cw": (), "spgd2": (5.0,), "scw": ()
    } and SINGLE_BUDGETS["pgd2"] == (5.0,)
    assert {a.key: a.params for a in t3.attacks} == {a.key: a.params for a in t1.attacks}  # sec. 5.2 settings
    q = BenchSpec.paper(3, target="c4-adv", quick=True, attack_names=["pgd2"], n_images=4)
    assert q.n_images == 4 and q.attacks[0].budgets == (5.0,) and q.attacks[0].params["iterations"] == 5
    assert BenchSpec.from_json(t3.to_json()) == t3 and t3.hash != BenchSpec.paper(3, target="c4-adv").hash
    assert t3.hash != t3.replace(visibility=False).hash
    for make, match in [
        (lambda: BenchSpec.paper(3), "needs target"),
        (lambda: BenchSpec.paper(2, target="c4-adv"), "white-box"),
        (lambda: BenchSpec.paper(4), "table must be"),
        (lambda: tiny_spec(target_model="resnet"), "target_model"),
        (lambda: tiny_spec(visibility=1), "visibility"),
    ]:
        with pytest.raises((ValueError, TypeError), match=match):
            make()
    # a version-1 document (no target_model / visibility) still reads, as the same spec;
    # its hash is new, so shards written by version 1 are foreign
    doc = json.loads(tiny_spec().to_json())
    doc["version"] = 1
    for key in ("target_model", "visibility"):
        del doc["spec"][key]
    old = BenchSpec.from_json(json.dumps(doc))
    assert old == tiny_spec() and old.hash == tiny_spec().hash != _v1_hash(doc["spec"])
    with pytest.raises(ValueError, match="version 99"):
        BenchSpec.from_json(json.dumps({**doc, "version": 99}))


def _v1_hash(spec_dict: dict) -> str:
    """SHA-256 of a version-1 spec (how version 1 computed BenchSpec.hash)."""
    import hashlib

    text = json.dumps({"version": 1, "spec": spec_dict}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def test_parse_helpers():
    assert parse_budgets("pgd2=1,2,3; fgsm=0.1") == {"pgd2": (1.0, 2.0, 3.0), "fgsm": (0.1,)}
    assert parse_images("0:3,7") == (0, 1, 2, 7)
    spec = tiny_spec().with_budgets({"pgd2": (2, 4, 6)})
    assert [a.budgets for a in spec.attacks] == [(0.1, 0.3), (2.0, 4.0, 6.0)]


# --------------------------------------------------------------------------- determinism


def test_in_process_records_and_shard_size_invariance(reference):
    # one row per (image, attack, budget), every image of the selection
    assert len(reference) == 12 * 4
    assert sorted(reference["image_id"].unique()) == list(range(12))
    assert set(zip(reference["attack"], reference["budget"])) == {("fgsm", 0.1), ("fgsm", 0.3), ("pgd2", 1.0), ("pgd2", 3.0)}
    assert reference["correct"].mean() > 0.8  # the shipped C4 classifies these digits
    # a larger budget never hurts FGSM/PGD2 here? not guaranteed; but successes must exist
    assert reference["success"].any()
    # visibility: finite and > 0 for every success, NaN for every failure ...
    ok = reference["success"].to_numpy()
    vis = reference["visibility"].to_numpy()
    assert np.isfinite(vis[ok]).all() and (vis[ok] > 0).all() and np.isnan(vis[~ok]).all()
    # ... and equal to magnify.visibility of the adversarial image (FGSM at 0.3 on images 0-1)
    import torch

    from smoothlab.attacks import fgsm
    from smoothlab.data import mnist
    from smoothlab.magnification import visibility
    from smoothlab.models import c4

    x, y = mnist("test")
    res = fgsm(c4(pretrained=True), x[:2], y[:2], eps=0.3)
    assert res.success.all()
    row = reference[(reference["attack"] == "fgsm") & (reference["budget"] == 0.3)].set_index("image_id")
    with torch.no_grad():
        np.testing.assert_allclose(row.loc[[0, 1], "visibility"], visibility(x[:2], res.x_adv).double(), rtol=1e-5)
    assert summary(reference)["mean_visibility"].notna().all()
    for shard_size in (2, 12):
        res = run(tiny_spec(shard_size=shard_size), workers=0, progress=False)
        same_records(res.records, reference)
    # explicit indices give the same records for the same images
    res = run(tiny_spec(n_images=None, image_ids=(3, 4, 5, 6)), workers=0, progress=False)
    same_records(res.records, reference[reference["image_id"].between(3, 6)].reset_index(drop=True))


def test_dask_one_and_two_workers_bit_identical(reference, client2, tmp_path):
    res2 = run(tiny_spec(), client=client2, out=tmp_path / "two", progress=False)
    assert res2.mode == "client" and res2.n_workers == 2 and res2.complete
    same_records(res2.records, reference)
    # run() starting (and closing) its own 1-worker LocalCluster
    res1 = run(tiny_spec(shard_size=2), workers=1, progress=False)
    assert res1.mode == "local-cluster" and res1.n_workers == 1
    same_records(res1.records, reference)
    cols = [c for c in res1.summary.columns if c != "seconds"]
    pd.testing.assert_frame_equal(res1.summary[cols], res2.summary[cols], check_exact=True)
    for k in res2.operating_characteristics:
        for u, v in zip(res1.operating_characteristics[k], res2.operating_characteristics[k]):
            np.testing.assert_array_equal(u, v)
    # the model and the images were built once per worker process, whatever the number of tasks
    info = client2.run(lambda: __import__("smoothlab.bench.shard", fromlist=["x"]).cache_info())
    assert all(v["builds"] == {"data": 1, "model": 1} for v in info.values()), info


def test_worker_killed_mid_run(client2, tmp_path):
    # Shards slow enough (C&W, 400 Adam iterations without early abort) to kill a worker mid-task.
    spec = tiny_spec(
        n_images=8,
        attacks=(AttackSpec("cw", {"iterations": 400, "abort_early": False}),),
        batch_size=4,
        shard_size=4,
    )
    expected = run(spec, workers=0, progress=False).records
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(res=run(spec, client=client2, out=tmp_path, progress=False)))
    thread.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and thread.is_alive():
        busy = [w for w, tasks in client2.processing().items() if any("smoothlab-shard" in str(t) for t in tasks)]
        if busy:
            time.sleep(0.3)  # well inside the task
            pid = client2.run(os.getpid, workers=[busy[0]])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed = pid
        time.sleep(0.05)
    thread.join(timeout=120)
    assert killed is not None, "no shard was seen running on a worker"
    assert not thread.is_alive() and "res" in out
    res = out["res"]
    assert res.complete and sorted(res.computed) == [0, 1]
    same_records(res.records, expected)
    client2.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker
    assert killed not in client2.run(os.getpid).values()


# --------------------------------------------------------------------------- transferability


def _oracle_factory(x_bank, y_bank):
    """A model that predicts the label of the nearest image of ``x_bank`` (standard torch
    modules only, so that it pickles to Dask workers). Perturbations of L2 norm below half the
    distance between two bank images cannot change its prediction on a bank image."""
    import torch

    n = x_bank.shape[0]
    flat = x_bank.flatten(1)
    near = torch.nn.Linear(flat.shape[1], n)  # 2 x.b - |b|^2 = |x|^2 - |x - b|^2
    to_class = torch.nn.Linear(n, 10, bias=False)
    with torch.no_grad():
        near.weight.copy_(2 * flat)
        near.bias.copy_(-(flat**2).sum(1))
        to_class.weight.copy_(torch.nn.functional.one_hot(y_bank, 10).T.float())
    model = torch.nn.Sequential(torch.nn.Flatten(), near, torch.nn.Softmax(dim=1), to_class).eval()
    return lambda device: model.to(device)


@pytest.fixture(scope="module")
def oracle():
    """Registered model "oracle-nn": always right on the first 8 test images under PGD2 with eps <= 2."""
    import torch

    from smoothlab.data import mnist

    x, y = mnist("test")
    xb = x[:8]
    d = torch.cdist(xb.flatten(1), xb.flatten(1)) + 1e9 * torch.eye(8)
    assert float(d.min()) > 2 * 2.0  # so that an L2 perturbation <= 2 keeps the nearest neighbour
    register_model("oracle-nn", _oracle_factory(xb, y[:8]))
    yield "oracle-nn"
    unregister_model("oracle-nn")


def transfer_spec(**changes) -> BenchSpec:
    return tiny_spec(n_images=8, attacks=(AttackSpec("pgd2", {"step": 1.0, "iterations": 3}, (1.0, 2.0)),), **changes)


def test_transfer_is_evaluated_on_the_target(oracle, client2):
    white = run(transfer_spec(), workers=0, progress=False).records
    ok = white["correct"] & white["success"]
    assert ok.sum() >= 2  # the attack works on C4 (white box) ...
    res = run(transfer_spec(target_model=oracle), workers=0, progress=False)
    rec = res.records
    # ... but the records hold the oracle's predictions: always right, so never a success
    assert rec["correct"].all() and (rec["pred_clean"] == rec["label"]).all()
    assert (rec["pred_adv"] == rec["label"]).all() and not rec["success"].any()
    assert rec["distortion"].isna().all() and rec["visibility"].isna().all()
    assert res.summary.loc["pgd2", "p_success"] == 0.0 and res.summary.loc["pgd2", "n_correct"] == 8
    assert (white["pred_adv"] != white["label"]).any()
    # crafting and evaluating on the same model is the white box
    same = run(transfer_spec(target_model="c4"), workers=0, progress=False)
    same_records(same.records, white)
    # the worker plugin sends the registered factory to the Dask workers
    dask = run(transfer_spec(target_model=oracle), client=client2, progress=False)
    same_records(dask.records, rec)


def test_transfer_to_the_bilateral_defence():
    import torch

    from smoothlab.attacks import fgsm
    from smoothlab.data import mnist
    from smoothlab.models import BilateralDefence, c4

    spec = tiny_spec(n_images=4, attacks=(AttackSpec("fgsm", {}, (0.1,)),), target_model="c4-bilateral", visibility=False)
    rec = run(spec, workers=0, progress=False).records
    x, y = mnist("test")
    source = c4(pretrained=True)
    defended = BilateralDefence(c4(pretrained=True), sigma_d=0.5, sigma_r=0.2)
    assert dict(MODELS["c4-bilateral"]["bilateral"]) == {"sigma_d": 0.5, "sigma_r": 0.2}
    adv = fgsm(source, x[:4], y[:4], eps=0.1).x_adv
    with torch.no_grad():
        np.testing.assert_array_equal(rec["pred_clean"], defended(x[:4]).argmax(1).numpy())
        np.testing.assert_array_equal(rec["pred_adv"], defended(adv).argmax(1).numpy())
    np.testing.assert_array_equal(rec["success"], rec["pred_adv"] != rec["label"])
    assert rec["visibility"].isna().all()  # visibility=False


def test_register_model_errors():
    with pytest.raises(ValueError, match="built in"):
        register_model("c4", lambda device: None)
    with pytest.raises(TypeError, match="callable"):
        register_model("mine", 3)
    with pytest.raises(ValueError, match="not registered"):
        unregister_model("never-registered")
    with pytest.raises(ValueError, match="model must be one of"):
        tiny_spec(model="never-registered")


def test_re_registered_model_is_rebuilt_not_taken_from_the_cache():
    """The registry's version of a name is part of the worker cache key (no registry -> cache import)."""
    import torch

    from smoothlab.bench.shard import cached_model
    from smoothlab.models import model_version

    def factory(scale: float):
        def build(device):
            net = torch.nn.Linear(784, 10).to(device)
            net.scale = scale
            return net

        return build

    register_model("scaled", factory(1.0))
    try:
        v1 = model_version("scaled")
        spec = tiny_spec(model="scaled")
        first = cached_model(spec)
        assert cached_model(spec) is first and first.scale == 1.0  # cached
        register_model("scaled", factory(2.0), overwrite=True)
        assert model_version("scaled") == v1 + 1
        second = cached_model(spec)
        assert second is not first and second.scale == 2.0
        assert model_version("c4") == 0
    finally:
        unregister_model("scaled")
    assert model_version("scaled") == v1 + 2


# --------------------------------------------------------------------------- registered data sets


def _tiny_loader(calls: list):
    """A loader of 12 random 1x28x28 images with labels 0..9, 0, 1 (a closure: pickled by value)."""

    def load(source, split):
        import torch

        calls.append((source, split))
        g = torch.Generator().manual_seed(7 if split == "test" else 8)
        return torch.rand(12, 1, 28, 28, generator=g), torch.arange(12) % 10

    return load


def mine_spec(**changes) -> BenchSpec:
    fields = dict(dataset="mine", model="c4", attacks=(AttackSpec("fgsm", {}, (0.1, 0.3)),), batch_size=2,
                  shard_size=4, device="cpu", visibility=False, sweep="full")
    fields.update(changes)
    return BenchSpec(**fields)


def test_registered_dataset_runs_on_a_local_cluster(client2):
    """register_dataset("mine", loader) -> run(BenchSpec(dataset="mine")) on 2 worker processes: the
    entry travels with the worker plugin, every image gets its records, as in-process."""
    import torch

    from smoothlab.bench.shard import cache_info
    from smoothlab.data import dataset_entry
    from smoothlab.models import c4

    calls: list = []
    register_dataset("mine", _tiny_loader(calls), model="c4", count=lambda source, split: 12)
    try:
        spec = mine_spec()
        assert spec.source == "default" and spec.split == "test" and spec.model == "c4"
        res = run(spec, client=client2, progress=False)
        assert res.mode == "client" and res.n_workers == 2 and res.complete and res.n_shards == 3
        # the calling process counted the images without loading them: the workers loaded them
        assert calls == [] and not any("'mine'" in k for k in cache_info()["keys"])
        info = client2.run(lambda: __import__("smoothlab.bench.shard", fromlist=["x"]).cache_info())
        assert all(any("'mine'" in k for k in v["keys"]) for v in info.values()), info
        rec = res.records
        assert len(rec) == 12 * 2 and sorted(rec["image_id"].unique()) == list(range(12))
        assert rec.groupby("budget")["image_id"].apply(sorted).map(list).tolist() == [list(range(12))] * 2
        x, y = dataset_entry("mine").load("default", "test")
        np.testing.assert_array_equal(rec.sort_values(["image_id", "budget"])["label"], np.repeat(y.numpy(), 2))
        with torch.no_grad():
            pred = c4(pretrained=True)(x).argmax(1).numpy()
        np.testing.assert_array_equal(rec[rec["budget"] == 0.1].sort_values("image_id")["pred_clean"], pred)
        same_records(rec, run(spec, workers=0, progress=False).records)
        assert calls == [("default", "test"), ("default", "test")]  # here: the check above, then the in-process run
    finally:
        unregister_dataset("mine")
    with pytest.raises(ValueError, match="dataset must be one of 'mnist', 'imagenet'"):
        mine_spec()


def test_registered_dataset_errors_and_versions():
    from smoothlab.bench.shard import cached_dataset, dataset_size
    from smoothlab.data import dataset_version

    calls: list = []
    with pytest.raises(ValueError, match="built in"):
        register_dataset("mnist", _tiny_loader(calls))
    with pytest.raises(TypeError, match="loader must be callable"):
        register_dataset("mine", 3)
    with pytest.raises(ValueError, match="shard_size must be a multiple of batch_size=4"):
        register_dataset("mine", _tiny_loader(calls), batch_size=4, shard_size=6)
    with pytest.raises(ValueError, match="not registered"):
        unregister_dataset("never-registered")
    register_dataset("mine", _tiny_loader(calls), splits=("test", "val"))
    try:
        with pytest.raises(ValueError, match="has no default model"):
            BenchSpec(dataset="mine", attacks=(AttackSpec("fgsm", {}, (0.1,)),))
        with pytest.raises(ValueError, match="split must be one of 'test', 'val' for dataset 'mine', got 'train'"):
            mine_spec(split="train")
        with pytest.raises(ValueError, match="already registered"):
            register_dataset("mine", _tiny_loader(calls))
        # no count function: the split is loaded (once) to count it
        assert dataset_size(mine_spec()) == 12 and dataset_size(mine_spec(split="val")) == 12 and len(calls) == 2
        first = cached_dataset(mine_spec())
        v = dataset_version("mine")
        register_dataset("mine", lambda source, split: (np.zeros((3, 1, 28, 28), np.float32), np.zeros(3, np.int32)), overwrite=True)
        assert dataset_version("mine") == v + 1
        second = cached_dataset(mine_spec())  # the new loader's images, not the cached ones
        assert second is not first and tuple(second[0].shape) == (3, 1, 28, 28) and second[1].dtype == first[1].dtype
        register_dataset("mine", lambda source, split: (np.zeros((3, 28, 28)), np.zeros(3)), overwrite=True)
        with pytest.raises(ValueError, match=r"loader of dataset 'mine' must return float images \(N, C, H, W\)"):
            cached_dataset(mine_spec())
        register_dataset("mine", lambda source, split: [1, 2], overwrite=True)
        with pytest.raises(TypeError, match=r"must return \(x, y\) or an object with len\(\) and batch"):
            cached_dataset(mine_spec())
    finally:
        unregister_dataset("mine")


# --------------------------------------------------------------------------- resume


def test_interrupted_run_resumes_without_recomputing(reference, tmp_path):
    part = run(tiny_spec(), workers=0, out=tmp_path, progress=False, max_shards=1)
    assert not part.complete and part.computed == [0] and part.reused == []
    assert not (tmp_path / "records.parquet").exists()  # reports only for complete runs
    first = storage.shard_path(tmp_path, 0)
    stamp = first.stat().st_mtime_ns
    # a crash in the middle of the next call (after one more shard is written)
    def crash(k, df):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tiny_spec(), workers=0, out=tmp_path, progress=False, on_shard=crash)
    assert storage.shard_path(tmp_path, 1).exists() and not storage.shard_path(tmp_path, 2).exists()
    res = run(tiny_spec(), workers=0, out=tmp_path, progress=False)
    assert res.complete and res.reused == [0, 1] and res.computed == [2] and res.invalid == []
    assert first.stat().st_mtime_ns == stamp  # not rewritten
    same_records(res.records, reference)
    # nothing counted twice; reports written
    assert not res.records.duplicated(["image_id", "attack", "budget"]).any()
    for name in storage.REPORT_FILES:
        assert (tmp_path / name).is_file(), name
    # a run over a complete folder computes nothing
    again = run(tiny_spec(), workers=0, out=tmp_path, progress=False)
    assert again.computed == [] and again.reused == [0, 1, 2]
    same_records(again.records, reference)


def test_report_of_a_stopped_run_computes_nothing_and_says_it_is_partial(reference, tmp_path):
    import pyarrow.parquet as pq

    run(tiny_spec(), workers=0, out=tmp_path, progress=False, max_shards=2)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / storage.SHARD_DIR).iterdir()}
    part = report(tmp_path)
    assert (part.complete, part.mode, part.computed, part.reused, part.n_shards, part.n_images) == (
        False, "report", [], [0, 1], 3, 12)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / storage.SHARD_DIR).iterdir()} == stamps  # nothing rewritten
    first8 = reference[reference["image_id"] < 8].reset_index(drop=True)
    same_records(part.records, first8)
    pd.testing.assert_frame_equal(part.summary.drop(columns="seconds"), summary(first8).drop(columns="seconds"))
    table = (tmp_path / "table.md").read_text()
    assert "**Partial:** 2 of 3 shards finished, 8 of 12 images" in table
    assert json.loads(pq.read_schema(tmp_path / "records.parquet").metadata[b"smoothlab.shards"]) == [2, 3]
    with pytest.warns(UserWarning, match="is partial: .* covers 2 of its 3 shards"):
        compare([tmp_path])
    assert not report(tmp_path, save=False).complete
    # the same folder still resumes: one shard computed, then the report is complete and unmarked
    res = run(tiny_spec(), workers=0, out=tmp_path, progress=False)
    assert res.computed == [2] and res.reused == [0, 1]
    full = report(tmp_path)
    assert full.complete and full.partial_note().startswith("3 of 3 shards")
    same_records(full.records, reference)
    assert "Partial" not in (tmp_path / "table.md").read_text()
    assert json.loads(pq.read_schema(tmp_path / "records.parquet").metadata[b"smoothlab.shards"]) == [3, 3]


def test_report_bad_input_names_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="spec.json does not exist"):
        report(tmp_path)
    run(tiny_spec(), workers=0, out=tmp_path, progress=False, max_shards=1)
    storage.shard_path(tmp_path, 0).write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="out holds no finished shard to report"):
        report(tmp_path)
    with pytest.raises(TypeError, match="out must be the path of a benchmark output folder, got int"):
        report(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="save must be a bool, got 'yes'"):
        report(tmp_path, save="yes")  # type: ignore[arg-type]


def test_dask_run_interrupted_then_resumed(reference, client2, tmp_path):
    seen = []

    def stop_after_first(k, df):
        seen.append(k)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tiny_spec(), client=client2, out=tmp_path, progress=False, on_shard=stop_after_first)
    done = sorted(int(p.stem.split("-")[1]) for p in (tmp_path / storage.SHARD_DIR).glob("shard-*.parquet"))
    assert done == seen
    res = run(tiny_spec(), client=client2, out=tmp_path, progress=False)
    assert res.reused == done and sorted(res.computed + res.reused) == [0, 1, 2]
    same_records(res.records, reference)


def test_corrupt_and_foreign_shards_are_recomputed(reference, tmp_path):
    run(tiny_spec(), workers=0, out=tmp_path, progress=False)
    # shard 1: truncated file; shard 2: a valid Parquet file of another spec
    p1 = storage.shard_path(tmp_path, 1)
    p1.write_bytes(p1.read_bytes()[:100])
    other = tiny_spec(seed=7)
    df2 = pd.read_parquet(storage.shard_path(tmp_path, 2))
    storage.write_shard(tmp_path, other, 2, np.arange(8, 12), df2)
    # shard 0: right spec but a record missing
    df0 = pd.read_parquet(storage.shard_path(tmp_path, 0))
    storage.write_shard(tmp_path, tiny_spec(), 0, np.arange(0, 4), df0.iloc[1:])
    res = run(tiny_spec(), workers=0, out=tmp_path, progress=False)
    assert res.invalid == [0, 1, 2] and res.computed == [0, 1, 2] and res.reused == []
    same_records(res.records, reference)
    fresh = run(tiny_spec(), workers=0, out=tmp_path, progress=False)
    assert fresh.invalid == [] and fresh.reused == [0, 1, 2]


def test_out_folder_of_an_older_version_is_recomputed(tmp_path):
    spec = tiny_spec(n_images=4)
    run(spec, workers=0, out=tmp_path, progress=False)
    # turn the folder into what version 1 wrote: spec.json v1, shards tagged with the v1 hash
    doc = json.loads(spec.to_json())
    doc["version"] = 1
    for key in ("target_model", "visibility"):
        del doc["spec"][key]
    old_hash = _v1_hash(doc["spec"])
    (tmp_path / "spec.json").write_text(json.dumps({"hash": old_hash, **doc}))
    for k, ids in enumerate((np.arange(0, 4),)):
        df = pd.read_parquet(storage.shard_path(tmp_path, k)).drop(columns="visibility")
        storage.write_parquet(storage.shard_path(tmp_path, k), df, {"spec_hash": old_hash, "shard_index": k,
                                                                    "image_ids": ids.tolist()})
    res = run(spec, workers=0, out=tmp_path, progress=False)  # no FileExistsError
    assert res.invalid == [0] and res.computed == [0]
    assert res.records["visibility"].notna().any()
    assert json.loads((tmp_path / "spec.json").read_text())["hash"] == spec.hash


def test_out_folder_of_another_spec_is_refused(tmp_path):
    run(tiny_spec(n_images=4), workers=0, out=tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="different benchmark spec"):
        run(tiny_spec(n_images=8), workers=0, out=tmp_path, progress=False)
    res = run(tiny_spec(n_images=8), workers=0, out=tmp_path, progress=False, overwrite=True)
    assert res.computed == [0, 1]
    saved = json.loads((tmp_path / "spec.json").read_text())
    assert saved["hash"] == tiny_spec(n_images=8).hash
    assert BenchSpec.from_json((tmp_path / "spec.json").read_text()) == tiny_spec(n_images=8)


# --------------------------------------------------------------------------- outputs and errors


def test_saved_reports_match_the_result(tmp_path):
    res = run(tiny_spec(n_images=4), workers=0, out=tmp_path, progress=False)
    records = pd.read_parquet(tmp_path / "records.parquet")
    same_records(records, res.records)
    table = pd.read_csv(tmp_path / "table.csv", index_col=0)
    np.testing.assert_array_equal(table["p_success"].to_numpy(), summary(records)["p_success"].to_numpy())
    md = (tmp_path / "table.md").read_text()
    assert "| FGSM |" in md and "| PGD2 |" in md and "P_suc" in md
    html = (tmp_path / "operating_characteristic.html").read_text()
    assert "plotly" in html.lower() and "PGD2" in html
    fig = res.figure()
    assert [t.name for t in fig.data] == ["FGSM", "PGD2"]


def test_image_index_out_of_range():
    with pytest.raises(ValueError, match="image index 5000 is out of range"):
        run(tiny_spec(n_images=None, image_ids=(0, 5000)), workers=0, progress=False)
    with pytest.raises(ValueError, match="n_images=5000 is out of range"):
        run(tiny_spec(n_images=5000), workers=0, progress=False)


def test_unreachable_scheduler_fails_fast():
    t = time.monotonic()
    with pytest.raises(ConnectionError, match="could not reach the Dask scheduler"):
        run(tiny_spec(n_images=4), scheduler="tcp://127.0.0.1:1", connect_timeout=1.0, progress=False)
    assert time.monotonic() - t < 15


def test_run_takes_keywords_and_one_spelling_of_in_process():
    """run(spec, *, ...): the old positional call and the old in-process spellings are clear errors."""
    spec = tiny_spec()
    with pytest.raises(TypeError, match="positional"):
        run(spec, None, None, None, 0, False)  # client, out, scheduler, workers, progress
    with pytest.raises(TypeError, match="client must be a distributed.Client or None, got False; workers=0"):
        run(spec, client=False, progress=False)
    with pytest.raises(ValueError, match="scheduler must be the address .* got 'none'; workers=0"):
        run(spec, scheduler="none", progress=False)
    assert inspect.signature(run).parameters["client"].kind is inspect.Parameter.KEYWORD_ONLY


def test_bad_arguments():
    with pytest.raises(TypeError, match="BenchSpec"):
        run({"n_images": 3}, workers=0)
    with pytest.raises(ValueError, match="workers"):
        run(tiny_spec(), workers=-1)
    with pytest.raises(ValueError, match="either client or scheduler"):
        run(tiny_spec(), client=object(), scheduler="tcp://x:1")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            run(tiny_spec(device="cuda"), workers=0)


# --------------------------------------------------------------------------- issue 12: paths, sources, resume


@pytest.mark.slow
def test_run_against_a_scheduler_address(reference, client2, tmp_path):
    """run(scheduler=ADDRESS) connects its own client to a running cluster (here a real
    LocalCluster) and closes that client only: the cluster and its workers stay up."""
    address = client2.scheduler.address
    assert address.startswith("tcp://")
    res = run(tiny_spec(), scheduler=address, out=tmp_path, progress=False)
    assert res.mode == "scheduler" and res.n_workers == 2 and res.complete and res.computed == [0, 1, 2]
    same_records(res.records, reference)
    assert len(client2.nthreads()) == 2  # still there
    again = run(tiny_spec(), scheduler=address, out=tmp_path, progress=False)
    assert again.computed == [] and again.reused == [0, 1, 2]


def test_bench_result_save_writes_the_reports(reference, tmp_path):
    import pyarrow.parquet as pq

    from smoothlab.bench import BenchResult
    from smoothlab.metrics import operating_characteristics

    spec = tiny_spec()
    res = BenchResult(spec=spec, records=reference, summary=summary(reference),
                      operating_characteristics=operating_characteristics(reference), complete=True, n_shards=3)
    paths = res.save(tmp_path / "reports")
    assert set(paths) == set(storage.REPORT_FILES) and all(p.parent == tmp_path / "reports" for p in paths.values())
    assert all(p.is_file() for p in paths.values())
    same_records(pd.read_parquet(paths["records.parquet"]), reference)
    meta = pq.read_schema(paths["records.parquet"]).metadata
    assert json.loads(meta[b"smoothlab.spec_hash"]) == spec.hash
    table = pd.read_csv(paths["table.csv"], index_col=0)
    expected = summary(reference)
    assert list(table.index) == ["fgsm", "pgd2"]
    for col in ("n_images", "n_correct", "n_success", "p_success", "mean_distortion", "max_distortion"):
        np.testing.assert_array_equal(table[col].to_numpy(), expected[col].to_numpy(), err_msg=col)
    md = paths["table.md"].read_text()
    assert spec.hash[:12] in md and "white box on c4" in md and "mnist test (embedded)" in md
    p = expected.loc["pgd2"]
    assert f"| PGD2 | 12 | {int(p['n_correct'])} |" in md and f"{p['p_success']:.2f}" in md
    assert "PGD2" in paths["operating_characteristic.html"].read_text()


def _write_mnist_idx(directory, images, labels, split: str, gz: bool = False) -> None:
    """IDX files of ``split`` from float images in [0, 1] (multiples of 1/255) and labels."""
    import torch

    from smoothlab.data import FILES, write_idx

    ext = ".gz" if gz else ""
    write_idx(directory / (FILES[(split, "images")] + ext), (images[:, 0] * 255).round().to(torch.uint8).numpy())
    write_idx(directory / (FILES[(split, "labels")] + ext), labels.numpy().astype(np.uint8))


def test_idx_files_as_source_and_the_train_split(reference, tmp_path):
    """The first 12 embedded test digits written as the *train* IDX files of a directory: the run
    on (source=DIR, split="train") must give exactly the reference records; the test files
    (8 other digits, gzipped) are what split="test" reads."""
    from smoothlab.data import mnist

    x, y = mnist("test")
    _write_mnist_idx(tmp_path, x[:12], y[:12], "train")
    _write_mnist_idx(tmp_path, x[12:20].flip(0), y[12:20].flip(0), "test", gz=True)
    res = run(tiny_spec(source=str(tmp_path), split="train"), workers=0, progress=False)
    assert (res.spec.source, res.spec.split) == (str(tmp_path), "train")
    same_records(res.records, reference)
    other = tiny_spec(n_images=None, image_ids=(0, 7), source=str(tmp_path), split="test",
                      attacks=(AttackSpec("fgsm", {}, (0.1,)),))
    rec = run(other, workers=0, progress=False).records.set_index("image_id")
    assert rec.loc[[0, 7], "label"].tolist() == [int(y[19]), int(y[12])]
    with pytest.raises(ValueError, match="n_images=12 is out of range for the mnist test split"):
        run(tiny_spec(source=str(tmp_path), split="test"), workers=0, progress=False)


@pytest.mark.slow
def test_all_six_attacks_bit_identical_across_worker_counts(client2):
    """Table 1's six attacks (quick settings, 4 images): in-process with shards of 2 images, and
    on the 2-worker cluster with shards of 4, the same records bit for bit."""
    spec = BenchSpec.quick(n_images=4, batch_size=2, shard_size=2, device="cpu")
    assert spec.attack_keys == ("fgsm", "ifgsm", "pgd2", "cw", "spgd2", "scw")
    one = run(spec, workers=0, progress=False)
    two = run(spec, client=client2, progress=False)
    assert two.n_workers == 2 and one.n_shards == two.n_shards == 2
    same_records(two.records, one.records)
    whole = run(spec.replace(shard_size=4), client=client2, progress=False)
    assert whole.n_shards == 1
    same_records(whole.records, one.records)
    assert set(one.records["attack"]) == set(spec.attack_keys) and one.records["success"].any()


def test_resume_rejects_shards_of_other_images_and_altered_values(reference, tmp_path):
    import pyarrow.parquet as pq

    spec = tiny_spec()
    run(spec, workers=0, out=tmp_path, progress=False)
    path = {k: storage.shard_path(tmp_path, k) for k in range(3)}
    ids = {k: np.arange(4 * k, 4 * k + 4) for k in range(3)}
    original = {k: pd.read_parquet(path[k]) for k in range(3)}
    # shard 0: the file of shard 1 (right spec hash; shard index 1, images 4-7)
    path[0].write_bytes(path[1].read_bytes())
    # shard 1: right hash and index, but the metadata lists other images
    storage.write_shard(tmp_path, spec, 1, ids[1] + 1, original[1])
    # shard 2: one distortion altered after the fact, every tag (checksum included) copied over
    meta = {k.decode()[len("smoothlab."):]: json.loads(v) for k, v in pq.read_schema(path[2]).metadata.items()
            if k.startswith(b"smoothlab.")}
    assert meta["checksum"] == storage.records_checksum(original[2])
    altered = original[2].copy()
    row = altered.index[altered["success"]][0]
    altered.loc[row, "distortion"] *= 1.01
    storage.write_parquet(path[2], altered, meta)
    reasons = {k: storage.read_shard(tmp_path, spec, k, ids[k])[1] for k in range(3)}
    assert "other images" in reasons[0] and "other images" in reasons[1], reasons
    assert "does not match its checksum" in reasons[2], reasons
    # without its checksum, the altered file passes every other check
    storage.write_parquet(path[2], altered, {k: v for k, v in meta.items() if k != "checksum"})
    assert storage.read_shard(tmp_path, spec, 2, ids[2])[1] == "no content checksum"
    storage.write_parquet(path[2], altered, meta)
    res = run(spec, workers=0, out=tmp_path, progress=False)
    assert res.invalid == [0, 1, 2] and res.computed == [0, 1, 2] and res.reused == []
    same_records(res.records, reference)
    assert storage.read_shard(tmp_path, spec, 2, ids[2])[1] == ""


def test_out_folder_with_shards_but_no_spec_json_or_an_unreadable_one(tmp_path):
    spec = tiny_spec(n_images=4)
    bare = tmp_path / "bare"
    (bare / storage.SHARD_DIR).mkdir(parents=True)
    stray = storage.shard_path(bare, 0)
    stray.write_bytes(b"a shard of unknown origin")
    with pytest.raises(FileExistsError, match="different benchmark spec \\(shards/ without a spec.json; this spec"):
        run(spec, workers=0, out=bare, progress=False)
    assert stray.read_bytes() == b"a shard of unknown origin" and not (bare / storage.SPEC_FILE).exists()
    for i, content in enumerate([b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'{"spec": {}}']):
        folder = tmp_path / f"unreadable-{i}"
        folder.mkdir()
        (folder / storage.SPEC_FILE).write_bytes(content)
        with pytest.raises(FileExistsError, match="different benchmark spec \\(an unreadable spec.json; this spec"):
            run(spec, workers=0, out=folder, progress=False)
        assert (folder / storage.SPEC_FILE).read_bytes() == content  # left as it was
    res = run(spec, workers=0, out=bare, progress=False, overwrite=True)
    assert res.computed == [0] and res.invalid == [] and res.complete
    assert json.loads((bare / storage.SPEC_FILE).read_text())["hash"] == spec.hash


# --------------------------------------------------------------------------- the budget sweep (issue 19)


def sweep_spec(sweep: str, **changes) -> BenchSpec:
    """16 digits, three budgeted attacks on grids of 3-4 budgets, and C&W (run once)."""
    fields = dict(
        n_images=16,
        attacks=(
            AttackSpec("fgsm", {}, (0.05, 0.1, 0.2, 0.3)),
            AttackSpec("pgd2", {"step": 1.0, "iterations": 3}, (0.5, 1.0, 2.0, 3.0)),
            AttackSpec("spgd2", {"step": 1.0, "iterations": 3}, (1.0, 2.0, 4.0)),
            AttackSpec("cw", {"iterations": 10}),
        ),
        batch_size=8,
        shard_size=8,
        device="cpu",
        sweep=sweep,
    )
    fields.update(changes)
    return BenchSpec(**fields)


def test_first_success_sweep_gives_the_full_grids_table_with_fewer_passes(tmp_path):
    """The default sweep stops each image at its first successful budget: the same per-image distortion,
    budget, prediction, visibility and SSIM as every budget on every image (up to float32 rounding:
    the sub-batches have other shapes), the same table apart from the cost, and fewer passes."""
    from smoothlab.metrics import union_over_budgets

    full = run(sweep_spec("full"), workers=0, progress=False).records
    first = run(sweep_spec("first-success"), out=tmp_path / "first", workers=0, progress=False).records
    assert len(first) < len(full)
    assert storage.sweep_is_consistent(sweep_spec("first-success"), first)
    assert not storage.sweep_is_consistent(sweep_spec("first-success"), full)  # runs after a success
    uf, us = union_over_budgets(full), union_over_budgets(first)
    for col in ("attack", "image_id", "success", "budget", "pred_adv", "correct"):
        np.testing.assert_array_equal(us[col].to_numpy(), uf[col].to_numpy(), err_msg=col)
    for col in ("distortion", "visibility", "ssim"):
        np.testing.assert_allclose(us[col].to_numpy(), uf[col].to_numpy(), rtol=1e-5, atol=1e-6, err_msg=col)
    cost = ["forward_passes", "backward_passes", "seconds"]
    tf, ts = summary(full), summary(first)
    pd.testing.assert_frame_equal(ts.drop(columns=cost), tf.drop(columns=cost), rtol=1e-5)
    budgeted = ["fgsm", "pgd2", "spgd2"]
    assert (ts.loc[budgeted, "forward_passes"] < tf.loc[budgeted, "forward_passes"]).all()
    assert ts.loc["cw", "forward_passes"] == tf.loc["cw", "forward_passes"]
    # the floor is measured on every image: all run at the smallest budget
    assert ts["floor"].equals(tf["floor"])
    # a second run resumes the shards (their sweep is checked, not only their keys)
    again = run(sweep_spec("first-success"), out=tmp_path / "first", workers=0, progress=False)
    assert again.computed == [] and again.reused == [0, 1]


def test_sweep_consistency_check_catches_a_missing_or_extra_run():
    spec = sweep_spec("first-success", n_images=8, attacks=(AttackSpec("fgsm", {}, (0.02, 0.05, 0.1, 0.3)),))
    rec = run(spec, workers=0, progress=False).records
    assert storage.sweep_is_consistent(spec, rec)
    counts = rec.groupby("image_id").size()
    deep = int(counts.idxmax())
    assert counts.max() >= 2, "some digit must need more than the smallest budget"
    runs = rec[rec["image_id"] == deep].sort_values("budget")
    assert not storage.sweep_is_consistent(spec, rec.drop(index=runs.index[0]))  # a gap in the grid
    stopped_early = rec.drop(index=runs.index[-1])  # its sweep ends on a failure below the largest budget
    assert not storage.sweep_is_consistent(spec, stopped_early)
    with pytest.raises(ValueError, match="sweep must be one of 'first-success', 'full', got 'bisect'"):
        BenchSpec(sweep="bisect")


def test_a_spec_written_before_the_sweep_reads_as_the_full_grid():
    doc = json.loads(tiny_spec(sweep="first-success").to_json())
    doc["version"] = 3
    del doc["spec"]["sweep"]
    old = BenchSpec.from_json(json.dumps(doc))
    assert old.sweep == "full" and old == tiny_spec()
    assert BenchSpec().sweep == "first-success"
