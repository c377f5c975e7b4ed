"""The public functions the notebooks call instead of holding logic themselves (issue 11).

Each is checked against a reference that is not the code under test: a closed-form gradient of an
affine model, ``torch.nn.functional.cosine_similarity``, the C&W objective recomputed from the
traced parts, hand-counted records, the paper's printed tables.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from smoothlab.attacks import cw, loss_gradient, pgd2, scw
from smoothlab.bench import AttackSpec, BenchSpec, paper_scenarios, run, run_all
from smoothlab.metrics import paired_comparison, side_by_side, summary, visibility_summary, worst_cases
from smoothlab.paper import GAPS, PAPER_COLUMNS, PAPER_TABLES, compare_with_paper, paper_table
from smoothlab.perturbations import cosine_similarity


class Affine(torch.nn.Module):
    """logits = W flatten(x) + b: every gradient is known in closed form."""

    def __init__(self, d: int, k: int = 3, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(torch.randn(k, d, generator=g, dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.randn(k, generator=g, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.W.T + self.b


def _inputs(b: int = 4, side: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = 0.25 + 0.5 * torch.rand(b, 1, side, side, generator=g, dtype=torch.float64)
    y = torch.arange(b) % 3
    return x, y


# ------------------------------------------------------------------ loss_gradient


def test_loss_gradient_cross_entropy_is_the_closed_form() -> None:
    x, y = _inputs()
    model = Affine(x[0].numel())
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
    expected = ((p - F.one_hot(y, 3).double()) @ model.W.detach()).view_as(x)  # dCE/dx = W^T (softmax - onehot)
    assert torch.allclose(loss_gradient(model, x, y), expected, atol=1e-12)
    assert model.W.grad is None  # the model's parameters get no gradient


def test_loss_gradient_margin_is_the_closed_form() -> None:
    x, y = _inputs()
    model = Affine(x[0].numel())
    with torch.no_grad():
        logits = model(x)
        other = logits.scatter(1, y[:, None], -math.inf).argmax(1)
    # -ℓ = -(y_t - max_{i≠t} y_i) where positive: gradient W_j* - W_t
    expected = (model.W.detach()[other] - model.W.detach()[y]).view_as(x)
    positive = (logits.gather(1, y[:, None]).squeeze(1) > logits.gather(1, other[:, None]).squeeze(1))
    got = loss_gradient(model, x, y, loss="margin")
    assert positive.any()
    assert torch.allclose(got[positive], expected[positive], atol=1e-12)
    assert torch.all(got[~positive] == 0)


def test_loss_gradient_is_the_direction_of_a_first_pgd2_step() -> None:
    x, y = _inputs()
    model = Affine(x[0].numel())
    g = loss_gradient(model, x, y)
    eps = 0.05  # small: no pixel leaves [0, 1]
    res = pgd2(model, x, y, eps=eps, step=eps, iterations=1)
    step = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    moved = res.x_adv - x
    done = res.success  # a successful image is returned as found; a failed one as x_o
    expected = (x + eps * step).clamp(0, 1) - x
    assert torch.allclose(moved[done], expected[done], atol=1e-9) or not bool(done.any())
    cos = F.cosine_similarity(moved.flatten(1)[done], g.flatten(1)[done], dim=1)
    assert torch.all(cos > 0.999)


def test_loss_gradient_rejects_an_unknown_loss() -> None:
    x, y = _inputs()
    with pytest.raises(ValueError, match="loss"):
        loss_gradient(Affine(x[0].numel()), x, y, loss="hinge")


# ------------------------------------------------------------------ cosine_similarity


def test_cosine_similarity_matches_torch_and_handles_zero() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, 4, 4, generator=g), torch.randn(5, 3, 4, 4, generator=g)
    assert torch.allclose(cosine_similarity(a, b), F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1), atol=1e-6)
    assert torch.allclose(cosine_similarity(a, 2 * a), torch.ones(5))
    a[1] = 0
    assert cosine_similarity(a, b)[1] == 0
    with pytest.raises(ValueError, match="shape"):
        cosine_similarity(a, b[:2])
    with pytest.raises(TypeError):
        cosine_similarity(a.numpy(), b)


# ------------------------------------------------------------------ cw(trace=True)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    from smoothlab.data import mnist
    from smoothlab.models import c4

    x, y = mnist("test")
    return c4(pretrained=True), x[:3], y[:3]


def test_cw_trace_parts_add_up_and_change_nothing(digits) -> None:
    model, x, y = digits
    plain = cw(model, x, y, iterations=30, search_steps=2, abort_early=False)
    res = cw(model, x, y, iterations=30, search_steps=2, abort_early=False, trace=True)
    assert torch.equal(plain.x_adv, res.x_adv) and torch.equal(plain.distortion, res.distortion)
    t = res.extra["trace"]
    assert set(t) == {"objective", "loss", "distortion", "c", "success"}
    assert all(v.shape == (2, 30, 3) for v in t.values())
    # eq. (4): objective = ℓ + ||r||² / c, with r = σ(w) - x_o = x_a - x_o for C&W
    assert torch.allclose(t["objective"], t["loss"] + t["distortion"] ** 2 / t["c"], rtol=1e-4, atol=1e-5)
    assert torch.all(t["loss"] >= 0) and not torch.isnan(t["distortion"]).any()
    # success by the margin m = 1 means ℓ = 0 at that iterate (ℓ = [gap + m]_+ is 0 iff gap <= -m)
    assert torch.all(t["loss"][t["success"]] == 0)
    # x_adv is the least-distorted successful iterate
    for i in range(3):
        d = t["distortion"][..., i][t["success"][..., i]]
        if res.success[i] and res.distortion[i] > 0:
            assert math.isclose(float(d.min()), float(res.distortion[i]), rel_tol=1e-4)


def test_cw_trace_marks_aborted_iterations_and_checks_its_type(digits) -> None:
    model, x, y = digits
    res = scw(model, x, y, iterations=40, trace=True)  # early abort on
    t = res.extra["trace"]["distortion"]
    stopped = torch.isnan(t[0, -1])
    assert bool(stopped.any()), "the default early abort stops some image before the last iteration"
    with pytest.raises(TypeError, match="trace"):
        cw(model, x, y, iterations=2, trace="yes")


def test_trace_figure_shows_the_traced_values(digits) -> None:
    pytest.importorskip("plotly")
    from smoothlab.viz import trace_figure

    model, x, y = digits
    t = cw(model, x, y, iterations=10, abort_early=False, trace=True).extra["trace"]
    fig = trace_figure(t, image=2)
    assert np.allclose(fig.data[0].y, t["loss"][0, :, 2].numpy())
    assert np.allclose(fig.data[1].y, t["distortion"][0, :, 2].numpy())
    with pytest.raises(ValueError, match="image"):
        trace_figure(t, image=3)


# ------------------------------------------------------------------ metrics for the notebooks


def _records(rows: list[tuple]) -> pd.DataFrame:
    """rows of (image_id, attack, budget, success, distortion, visibility)."""
    ids, attacks, budgets, success, dist, vis = zip(*rows)
    return pd.DataFrame({
        "image_id": ids, "attack": attacks, "budget": budgets, "label": 1, "pred_clean": 1,
        "pred_adv": [2 if s else 1 for s in success], "correct": True, "success": success,
        "distortion": [d if s else np.nan for s, d in zip(success, dist)],
        "visibility": [v if s else np.nan for s, v in zip(success, vis)],
        "forward_passes": 1, "backward_passes": 1, "seconds": 0.0,
    })


NAN = float("nan")
HAND = _records([
    # pgd2 at two budgets: image 0 succeeds at both (least D 1.0), image 1 at 4 only, image 2 never
    (0, "pgd2", 2.0, True, 1.0, 0.4), (0, "pgd2", 4.0, True, 3.0, 0.9),
    (1, "pgd2", 2.0, False, NAN, NAN), (1, "pgd2", 4.0, True, 4.0, 0.8),
    (2, "pgd2", 2.0, False, NAN, NAN), (2, "pgd2", 4.0, False, NAN, NAN),
    (0, "scw", NAN, True, 2.0, 0.2), (1, "scw", NAN, True, 1.0, 0.9), (2, "scw", NAN, True, 5.0, 1.0),
])


def test_visibility_summary_by_hand() -> None:
    t = visibility_summary(HAND)
    # pgd2: successes image 0 (D 1.0, V 0.4) and image 1 (D 4.0, V 0.8)
    assert t.loc["pgd2", "p_success"] == pytest.approx(2 / 3)
    assert t.loc["pgd2", "mean_visibility"] == pytest.approx(0.6)
    assert t.loc["pgd2", "median_visibility"] == pytest.approx(0.6)
    assert t.loc["pgd2", "mean_visibility_per_distortion"] == pytest.approx((0.4 / 1 + 0.8 / 4) / 2)
    assert t.loc["scw", "median_visibility"] == pytest.approx(0.9)
    assert t.loc["scw", "mean_visibility_per_distortion"] == pytest.approx((0.1 + 0.9 + 0.2) / 3)


def test_paired_comparison_and_worst_cases_by_hand() -> None:
    # images where both succeed: 0 (scw V .2 < pgd2 .4) and 1 (scw .9 > pgd2 .8)
    assert paired_comparison(HAND, "scw", "pgd2") == (0.5, 2)
    assert paired_comparison(HAND, "pgd2", "scw", "distortion") == (0.5, 2)  # 1.0 < 2.0; 4.0 > 1.0
    assert worst_cases(HAND).to_dict() == {"pgd2": 1, "scw": 2}
    with pytest.raises(ValueError, match="attack"):
        paired_comparison(HAND, "cw", "scw")
    with pytest.raises(ValueError, match="column"):
        paired_comparison(HAND, "scw", "pgd2", "seconds")


def test_side_by_side_keeps_each_summary() -> None:
    a, b = summary(HAND), summary(HAND[HAND["attack"] == "scw"])
    t = side_by_side({"A": a, "B": b})
    assert list(t.index) == ["PGD2", "sC&W"]
    assert t[("A", "P_suc")].tolist() == pytest.approx([2 / 3, 1.0])
    assert math.isnan(t.loc["PGD2", ("B", "P_suc")]) and t.loc["sC&W", ("B", "D̄")] == pytest.approx(8 / 3)
    with pytest.raises(ValueError, match="columns"):
        side_by_side({"A": a}, columns=("p_success", "nonsense"))


# ------------------------------------------------------------------ the paper's tables


def test_paper_tables_hold_the_printed_values() -> None:
    # a few cells read off the paper, one per table and column
    assert PAPER_TABLES[(1, "MNIST C4")]["spgd2"] == (0.97, 3.36)
    assert PAPER_TABLES[(1, "ImageNet InceptionV3")]["cw"] == (0.99, 4.91)
    assert PAPER_TABLES[(1, "ImageNet ResNetV2")]["scw"] == (0.98, 5.99)
    assert PAPER_TABLES[(2, "MNIST C4")]["fgsm"] == (0.15, 4.53)
    assert PAPER_TABLES[(2, "ImageNet InceptionV3")]["ifgsm"] == (0.97, 29.94)
    assert PAPER_TABLES[(3, "InceptionV3 bilateral filter")]["scw"] == (0.68, 2.91)
    assert PAPER_TABLES[(3, "InceptionV3 adv. training")]["pgd2"] == (0.12, 10.26)
    assert PAPER_COLUMNS[1] == ("MNIST C4", "ImageNet InceptionV3", "ImageNet ResNetV2")
    assert list(paper_table(2, "MNIST C4").index) == ["fgsm", "ifgsm", "pgd2", "cw", "spgd2", "scw"]
    with pytest.raises(ValueError, match="column"):
        paper_table(3, "MNIST C4")
    with pytest.raises(ValueError, match="table"):
        paper_table(4, "MNIST C4")


def test_compare_with_paper_marks_and_explains_gaps() -> None:
    ours = pd.DataFrame(
        {"p_success": [0.89, 1.0, 0.5], "mean_distortion": [5.0, 2.69 * 1.5, 1.0]}, index=["fgsm", "ifgsm", "ddn"]
    )
    t = compare_with_paper(ours, 1, "MNIST C4")
    assert list(t.index) == ["FGSM", "I-FGSM"]  # ddn is not in the paper
    assert t.loc["FGSM", "gap"] == "" and t.loc["FGSM", "why"] == ""
    assert t.loc["I-FGSM", "gap"] == "D̄" and t.loc["I-FGSM", "why"] == GAPS[(1, "MNIST C4", "ifgsm")]
    assert t.loc["I-FGSM", "D̄ / paper"] == pytest.approx(1.5)
    far = compare_with_paper(pd.DataFrame({"p_success": [0.5], "mean_distortion": [9.0]}, index=["pgd2"]),
                             3, "InceptionV3 adv. training")
    assert far.loc["PGD2", "gap"] == "P_suc, D̄" and far.loc["PGD2", "why"] == "unexplained"
    with pytest.raises(ValueError, match="none of the paper's attacks"):
        compare_with_paper(ours.loc[["ddn"]], 1, "MNIST C4")


# ------------------------------------------------------------------ scenarios


def test_paper_scenarios_are_the_paper_specs() -> None:
    specs = paper_scenarios((3, 1), quick=True, n_images=4)
    assert list(specs) == ["table1", "table3-c4-bilateral", "table3-c4-adv"]
    assert specs["table1"] == BenchSpec.paper(1, quick=True, n_images=4)
    assert specs["table3-c4-bilateral"] == BenchSpec.paper(3, target="c4-bilateral", quick=True, n_images=4)
    with pytest.raises(ValueError, match="tables"):
        paper_scenarios((4,))


def test_run_all_equals_separate_runs(tmp_path) -> None:
    tiny = dict(n_images=3, batch_size=3, shard_size=3, visibility=False)
    specs = {
        "a": BenchSpec(attacks=(AttackSpec("fgsm", budgets=(0.1, 0.3)),), **tiny),
        "b": BenchSpec(attacks=(AttackSpec("pgd2", {"iterations": 2}, budgets=(2.0,)),), **tiny),
    }
    results = run_all(specs, out=tmp_path, workers=0, progress=False)
    assert list(results) == ["a", "b"]
    for name, spec in specs.items():
        alone = run(spec, workers=0, progress=False)
        pd.testing.assert_frame_equal(results[name].summary.drop(columns="seconds"), alone.summary.drop(columns="seconds"))
        assert (tmp_path / name / "spec.json").exists()
    with pytest.raises(TypeError, match="BenchSpec"):
        run_all({"a": "fgsm"}, workers=0)
    with pytest.raises(ValueError, match="folder"):
        run_all({"../x": specs["a"]}, workers=0)


# ------------------------------------------------------------------ settings_provenance


def test_settings_provenance_reads_the_settings_in_force() -> None:
    from smoothlab.attacks import PAPER_ATTACKS, paper_settings, settings_provenance

    for dataset in ("mnist", "imagenet"):
        table = settings_provenance(dataset)
        assert list(dict.fromkeys(table.index.get_level_values(0))) == list(PAPER_ATTACKS)
        for attack in PAPER_ATTACKS:
            for key, value in paper_settings(attack, dataset).items():
                if key == "smoother":
                    assert table.loc[(attack, "smoother.alpha"), "value"] == value.alpha
                    assert table.loc[(attack, "smoother.lam"), "value"] == value.lam
                else:
                    assert table.loc[(attack, key), "value"] == value, (dataset, attack, key)
        # the options that shape the algorithms are reported for the attacks that have them
        for attack, option in [("pgd2", "projection"), ("spgd2", "smooth"), ("fgsm", "loss"), ("scw", "penalty")]:
            assert (attack, option) in table.index


# The paper's values, read off sec. 5.2 (and sec. 5 for the loss), independently of the module's table.
PAPER_SAYS = {
    ("mnist", "fgsm", "eps"): 0.3, ("mnist", "ifgsm", "step"): 0.08, ("mnist", "pgd2", "eps"): 5.0,
    ("mnist", "cw", "c"): 15.0, ("mnist", "cw", "margin"): 1.0, ("mnist", "scw", "smoother.alpha"): 0.95,
    ("imagenet", "fgsm", "eps"): 0.1255, ("imagenet", "cw", "c"): 100.0, ("imagenet", "cw", "margin"): 0.0,
    ("imagenet", "scw", "smoother.alpha"): 0.997, ("imagenet", "spgd2", "smoother.solver"): "cg",
    ("mnist", "pgd2", "loss"): "margin",
}


def test_settings_provenance_says_paper_exactly_where_the_value_is_the_papers() -> None:
    from smoothlab.attacks import settings_provenance

    for (dataset, attack, setting), paper in PAPER_SAYS.items():
        row = settings_provenance(dataset).loc[(attack, setting)]
        assert row["paper"] == paper, (dataset, attack, setting)
        assert (row["source"] == "paper") == (row["value"] == paper), (dataset, attack, setting, row["value"])
    mnist = settings_provenance("mnist")
    # the paper gives no iteration count and no kernel bandwidth: never "paper"
    assert mnist.loc[("cw", "iterations"), "source"] != "paper"
    assert mnist.loc[("scw", "smoother.lam"), "source"] != "paper"
    with pytest.raises(ValueError, match="dataset"):
        settings_provenance("cifar")
    with pytest.raises(ValueError, match="attack"):
        settings_provenance("mnist", ("ddn",))


def test_imagenet_gaps_name_the_measurement_and_read_the_smoothing_from_the_preset() -> None:
    """Every ImageNet row of Table 1 and of Table 3's bilateral column has a cause; the smoothing cause of the
    smooth attacks says what the sC&W preset really does (exact here), and only they carry it."""
    from smoothlab.attacks import IMAGENET_PARAMS

    for key in [(1, "ImageNet InceptionV3", a) for a in PAPER_TABLES[(1, "ImageNet InceptionV3")]] + [
        (3, "InceptionV3 bilateral filter", a) for a in PAPER_TABLES[(3, "InceptionV3 bilateral filter")]
    ]:
        why = GAPS[key]
        assert "8-bit PNGs" in why, key
        assert ("the smoothing:" in why) == (key[2] in ("spgd2", "scw")), key
    sm = IMAGENET_PARAMS["scw"]["smoother"]
    exact = sm["solver"] != "cg" or sm["tol"] > 0
    assert ("solves ŝ_α exactly" in GAPS[(1, "ImageNet InceptionV3", "scw")]) == exact
    assert f"λ = {sm['lam']:g}" in GAPS[(1, "ImageNet InceptionV3", "scw")]
    assert "one per attack" in GAPS[(3, "InceptionV3 bilateral filter", "fgsm")]
