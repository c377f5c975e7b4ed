"""The attack registry: one record per attack, and a user's attack added with one call.

The registration test defines an attack in a temporary module that the Dask workers cannot
import (it is loaded from a file outside ``sys.path``), registers it, runs it through
``smoothlab.bench.run`` on a real ``LocalCluster`` and finds its row in the table and its curve in
the figure.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import textwrap
from pathlib import Path

import pytest

import smoothlab.attacks as attacks
from smoothlab.attacks import ATTACK_LABELS, ATTACKS, attack_entry, register, unregister

distributed = pytest.importorskip("distributed")

_MODULE = '''
"""A user's attack: FGSM with half its budget spent on the sign of the gradient, the rest on noise."""
import torch

from smoothlab.attacks import fgsm


def half_fgsm(model, x, y, *, eps=0.3, **kwargs):
    return fgsm(model, x, y, eps=eps * 0.5, **kwargs)
'''


@pytest.fixture
def user_attack(tmp_path: Path):
    """``half_fgsm`` from a module file outside ``sys.path``, registered as ``"half-fgsm"``."""
    path = tmp_path / "my_attacks_for_smoothlab_test.py"
    path.write_text(textwrap.dedent(_MODULE))
    spec = importlib.util.spec_from_file_location("my_attacks_for_smoothlab_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    register(
        "half-fgsm", module.half_fgsm, label="Half FGSM", targets="budget",
        settings={"mnist": {}}, grids={"mnist": {"table1": (0.2, 0.4, 0.6), "quick": (0.4,)}},
    )
    try:
        yield module
    finally:
        unregister("half-fgsm")
        del sys.modules[spec.name]


def test_user_attack_runs_on_dask_workers_and_reaches_table_and_figure(user_attack) -> None:
    from smoothlab.bench import AttackSpec, BenchSpec, default_attacks, run

    spec = BenchSpec(n_images=8, batch_size=4, shard_size=4,
                     attacks=(*default_attacks(["fgsm", "half-fgsm"]),), visibility=False, sweep="full")
    by = {a.key: a for a in spec.attacks}
    assert by["half-fgsm"].budgets == (0.2, 0.4, 0.6) and by["half-fgsm"].name == "half-fgsm"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.CRITICAL) as cluster, distributed.Client(cluster) as client:
        # the workers cannot import the module: only the registration carries the function
        found = client.run(lambda: __import__("importlib").util.find_spec("my_attacks_for_smoothlab_test") is None)
        assert all(found.values())
        res = run(spec, client=client, progress=False)
    assert res.complete
    rec = res.records
    half = rec[rec.attack == "half-fgsm"]
    assert len(half) == 8 * 3 and sorted(half.budget.unique()) == [0.2, 0.4, 0.6]
    # half the budget of FGSM: the records of half-fgsm at eps equal FGSM's at eps / 2 where both exist
    full = rec[rec.attack == "fgsm"].set_index(["image_id", "budget"])
    h = half.set_index(["image_id", "budget"])
    assert (h.loc[(slice(None), 0.2), "success"].values == full.loc[(slice(None), 0.1), "success"].values).all()
    assert "Half FGSM" in res.table()
    fig = res.figure()
    assert "Half FGSM" in {trace.name for trace in fig.data}
    _ = AttackSpec  # the spec names it like a built-in


def test_registry_records_and_views() -> None:
    pgd2 = attack_entry("pgd2")
    assert pgd2.budgeted and pgd2.smooth == "spgd2" and pgd2.label == "PGD2" and pgd2.in_paper
    assert attack_entry("cw").smooth == "scw" and not attack_entry("cw").budgeted
    # a variant names its base function; ATTACKS holds functions, the labels every entry
    assert attack_entry("spgd2-authors").base == "spgd2" and "spgd2-authors" not in ATTACKS
    assert ATTACK_LABELS["spgd2-authors"] == "sPGD2 (authors' loop)"
    assert list(ATTACKS)[:4] == ["fgsm", "ifgsm", "pgd2", "cw"]


def test_register_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="built-in"):
        register("cw", attacks.cw)
    with pytest.raises(TypeError, match="fn must be callable"):
        register("mine", 3)
    with pytest.raises(ValueError, match="targets"):
        register("mine", attacks.cw, targets="minimum")
    with pytest.raises(ValueError, match="strictly increasing"):
        register("mine", attacks.fgsm, targets="budget", grids={"mnist": {"table1": (0.3, 0.1)}})
    with pytest.raises(ValueError, match="> 0"):
        register("mine", attacks.fgsm, targets="budget", grids={"mnist": {"table1": (0.0, 0.1)}})
    with pytest.raises(ValueError, match="grid name"):
        register("mine", attacks.fgsm, targets="budget", grids={"mnist": {"table9": (0.1,)}})
    with pytest.raises(ValueError, match="unknown attack 'mine'"):
        attack_entry("mine")
    register("mine", attacks.cw)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register("mine", attacks.cw)
        register("mine", attacks.cw, label="Mine", overwrite=True)
        assert ATTACK_LABELS["mine"] == "Mine"
    finally:
        unregister("mine")
    assert "mine" not in ATTACKS


def test_each_paper_value_has_one_home() -> None:
    """The paper's settings are written in the registry module only (grep, as the issue asks)."""
    root = Path(attacks.__file__).resolve().parent.parent
    homes = {}
    for value in ("0.1255", "0.0625", "3.25"):
        homes[value] = sorted(
            str(p.relative_to(root)) for p in root.rglob("*.py") if value in p.read_text(encoding="utf-8")
        )
    for value, files in homes.items():
        assert files == ["attacks/_registry.py"], (value, files)
