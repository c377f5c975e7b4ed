"""Issue 9, fidelity to the paper and beyond: the authors' grids and sPGD2 loop, where the gradient is
taken and which loss, SSIM in the records, 8-bit adversarial examples."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from smoothlab.attacks import AttackResult, ddn, fgsm, ifgsm, pgd2, quantise, spgd2
from smoothlab.bench import (
    EXTRA_ATTACKS,
    TABLE1_BUDGETS,
    TABLE2_BUDGETS,
    BenchSpec,
    default_attacks,
)
from smoothlab.bench.spec import SPEC_VERSION
from smoothlab.metrics import summary
from smoothlab.records import records_from_result, validate_records
from smoothlab.similarity import ssim
from smoothlab.smoothing import SmoothingSpec


# ----------------------------------------------------------------------------- small models
class Linear(torch.nn.Module):
    """Logits ``W x + b`` of a flattened image (``k`` classes)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w.T + self.b


class TinyCNN(torch.nn.Module):
    """A fixed random ReLU network on 1x12x12 images (non-linear, cheap, deterministic)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.c = torch.nn.Conv2d(1, 6, 3)
        self.f = torch.nn.Linear(6 * 10 * 10, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(F.relu(self.c(x)).flatten(1))


def _images(n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.rand(n, 1, 12, 12, generator=g)
    for i in range(n):  # a bright square at a different place each, ~0 around it (like MNIST)
        r, c = i % 4, (i // 4) % 4
        x[i, :, r : r + 6, c + 2 : c + 8] = 0.9
    x[x < 0.05] = 0.0  # pixels at the box
    return x


def _labels(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


# ----------------------------------------------------------------------------- 1. the grids
def test_table1_preset_has_the_authors_table1_grids():
    # DESIGN.md section 4, written out here rather than imported
    expected = {
        "fgsm": (0.04, 0.07, 0.09, 0.1, 0.15, 0.18, 0.2, 0.3, 0.4, 0.5),
        "ifgsm": (0.03, 0.05, 0.0625, 0.07, 0.09, 0.1, 0.15, 0.18, 0.2, 0.3, 0.4, 0.5),
        "pgd2": (1, 1.5, 1.75, 2, 2.25, 2.5, 3, 4, 5, 6),
        "spgd2": (1, 1.5, 1.75, 2, 2.5, 3, 3.25, 4, 5, 6),
    }
    for spec in (BenchSpec(), BenchSpec.paper(1)):
        got = {a.name: a.budgets for a in spec.attacks if a.budgets}
        assert got == {k: tuple(float(v) for v in vs) for k, vs in expected.items()}
    assert TABLE1_BUDGETS == {k: tuple(float(v) for v in vs) for k, vs in expected.items()}
    assert "I-FGSM: eps in {0.03, 0.05, 0.0625, 0.07" in BenchSpec().grids()


def test_table2_preset_keeps_the_table2_grids():
    got = {a.name: a.budgets for a in BenchSpec.paper(2).attacks if a.budgets}
    assert got["fgsm"] == got["ifgsm"] == (0.1, 0.2, 0.3, 0.4, 0.5)
    assert got["pgd2"] == got["spgd2"] == (1.0, 2.0, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0)
    assert got == TABLE2_BUDGETS
    assert BenchSpec.paper(2).hash != BenchSpec.paper(2).replace(attacks=default_attacks(table=1)).hash
    with pytest.raises(ValueError, match="table"):
        default_attacks(table=3)


def test_spec_version_bumped_for_the_ssim_column():
    assert SPEC_VERSION >= 3
    assert '"version": %d' % SPEC_VERSION in BenchSpec().to_json()


def test_extra_attack_presets():
    specs = {a.key: a for a in default_attacks(["spgd2", "spgd2-authors", "ddn", "sfmn"])}
    authors = specs["spgd2-authors"]
    assert authors.name == "spgd2" and authors.budgets == specs["spgd2"].budgets
    assert {k: authors.params[k] for k in ("smooth", "grad_at", "projection")} == {
        "smooth": "perturbation", "grad_at": "unclipped", "projection": "sphere"
    }
    assert specs["ddn"].budgets == () and specs["sfmn"].params["smoother"]["alpha"] == 0.95
    assert set(EXTRA_ATTACKS) == {"spgd2-authors", "ddn", "fmn", "sddn", "sfmn", "cw-literal", "scw-literal"}
    with pytest.raises(ValueError, match="unknown attack"):
        default_attacks(["spgd2-paper"])
    # quick and single-budget versions keep the label
    quick = BenchSpec.paper(1, quick=True, attack_names=["spgd2-authors"]).attacks[0]
    assert quick.key == "spgd2-authors" and quick.params["iterations"] == 5
    single = BenchSpec.paper(3, target="c4-adv", attack_names=["spgd2-authors", "ddn"]).attacks
    assert [(a.key, a.budgets) for a in single] == [("spgd2-authors", (5.0,)), ("ddn", ())]


# ----------------------------------------------------------------------------- 2. the authors' loop
def _authors_loop(model, x, y, eps, step, iterations, S):
    """The authors' sPGD2 loop as DESIGN.md section 4 describes it, written independently."""
    eta = torch.zeros_like(x)
    for _ in range(iterations):
        xg = (x + eta).requires_grad_(True)  # gradient at the unclipped x + eta
        (g,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
        fgm = (x + eta + step * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(0, 1)  # clipped FGM step
        with torch.no_grad():
            eta = S(fgm - x)  # the whole accumulated perturbation is smoothed ...
            eta = eta * (eps / eta.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)  # ... and put on the sphere
    return (x + eta).clamp(0, 1)


def test_authors_loop_option_matches_an_independent_copy_of_their_loop():
    model = TinyCNN().eval()
    x = _images(8)
    y = _labels(model, x)
    spec = SmoothingSpec(alpha=0.9, lam=10.0)
    eps = torch.linspace(0.3, 2.0, 8)
    res = spgd2(model, x, y, eps=eps, step=1.0, iterations=6, smoother=spec,
                smooth="perturbation", grad_at="unclipped", projection="sphere")
    ref = _authors_loop(model, x, y, eps, 1.0, 6, spec(x))
    ref_adv = _labels(model, ref) != y
    assert 0 < int(ref_adv.sum()) < 8  # some succeed, some fail: the comparison means something
    assert torch.equal(res.success, ref_adv)
    assert torch.allclose(res.x_adv[ref_adv], ref[ref_adv], atol=1e-5)
    assert res.params["grad_at"] == "unclipped" and res.params["smooth"] == "perturbation"
    # and eq. (12), the default, is a different attack
    eq12 = spgd2(model, x, y, eps=eps, step=1.0, iterations=6, smoother=spec, projection="sphere")
    both = eq12.success & res.success
    assert not torch.allclose(eq12.x_adv[both], res.x_adv[both], atol=1e-3)


def _cleverhans_l2(model, x, y, eps, step, iterations, sphere):
    """cleverhans' L2 BIM (and the authors' loop without smoothing), written independently."""
    eta = torch.zeros_like(x)
    for _ in range(iterations):
        xg = (x + eta).requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
        eta = ((x + eta + step * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(0, 1) - x).detach()
        n = eta.flatten(1).norm(dim=1)
        scale = eps / n if sphere else torch.clamp(eps / n, max=1.0)
        eta = eta * scale.view(-1, 1, 1, 1)
    return (x + eta).clamp(0, 1)


@pytest.mark.parametrize("projection", ["ball", "sphere"])
def test_grad_at_unclipped_is_cleverhans_iteration(projection):
    model = TinyCNN().eval()
    x = _images(6)
    y = _labels(model, x)
    eps = torch.linspace(0.5, 2.0, 6)
    a = pgd2(model, x, y, eps=eps, step=1.0, iterations=5, projection=projection)
    b = pgd2(model, x, y, eps=eps, step=1.0, iterations=5, projection=projection, grad_at="unclipped")
    ref = _cleverhans_l2(model, x, y, eps, 1.0, 5, projection == "sphere")
    ok = _labels(model, ref) != y
    assert torch.equal(b.success, ok) and torch.allclose(b.x_adv[ok], ref[ok], atol=1e-5)
    both = a.success & b.success
    assert bool(both.any()) and not torch.allclose(a.x_adv[both], b.x_adv[both], atol=1e-4)
    assert float(b.x_adv.min()) >= 0 and float(b.x_adv.max()) <= 1  # the returned image is clipped


# ----------------------------------------------------------------------------- 3. the loss
def test_fgsm_loss_option_follows_each_loss_gradient():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 16, generator=g)
    model = Linear(w, torch.zeros(3))
    x = 0.3 + 0.4 * torch.rand(4, 1, 4, 4, generator=g)
    y = _labels(model, x)
    eps = 0.05  # small: no clipping
    logits = (x.flatten(1) @ w.T).double()
    # cross-entropy: g = sum_i (p_i - [i = y]) w_i
    p = torch.softmax(logits, 1)
    onehot = F.one_hot(y, 3).double()
    g_ce = (p - onehot) @ w.double()
    # margin (3), m = 0: -d(y_t - max_{i≠t} y_i)/dx = w_j - w_t with j the best other class
    j = logits.scatter(1, y[:, None], -np.inf).argmax(1)
    g_m = w[j] - w[y]
    for loss, grad in (("cross-entropy", g_ce), ("margin", g_m)):
        res = fgsm(model, x, y, eps=eps, loss=loss)
        cand = x + eps * grad.sign().float().view_as(x)
        assert torch.allclose(res.x_adv[res.success], cand[res.success], atol=1e-6)
    assert fgsm(model, x, y, eps=eps, loss="margin").params["loss"] == "margin"


def test_margin_loss_stops_moving_once_adversarial():
    """The margin loss (3) vanishes past the boundary: PGD2 stops there, cross-entropy goes on."""
    w = torch.zeros(2, 16)
    w[1] = 1.0
    model = Linear(w, torch.tensor([0.0, -8.0]))  # class 1 once the pixel sum exceeds 8
    x = torch.full((1, 1, 4, 4), 0.45)  # sum 7.2: class 0
    y = torch.zeros(1, dtype=torch.long)
    ce = pgd2(model, x, y, eps=torch.tensor([2.0]), step=0.5, iterations=10)
    mg = pgd2(model, x, y, eps=torch.tensor([2.0]), step=0.5, iterations=10, loss="margin")
    assert bool(ce.success) and bool(mg.success)
    # one step of L2 length 0.5 along w adds 0.125 per pixel, sum 7.2 -> 9.2: past the boundary, it stops
    assert float(mg.distortion) == pytest.approx(0.5)
    assert float(ce.distortion) == pytest.approx(2.0, rel=1e-5)  # on to the budget


@pytest.mark.parametrize(
    "attack, kwargs, match",
    [
        (fgsm, {"loss": "hinge"}, "loss"),
        (ifgsm, {"loss": "ce"}, "loss"),
        (pgd2, {"loss": "margin-3"}, "loss"),
        (pgd2, {"grad_at": "iterate"}, "grad_at"),
        (pgd2, {"smooth": "authors"}, "smooth"),
    ],
)
def test_unknown_option_names_are_refused(attack, kwargs, match):
    model = TinyCNN().eval()
    x = _images(2)
    with pytest.raises(ValueError, match=match):
        attack(model, x, _labels(model, x), **kwargs)


# ----------------------------------------------------------------------------- 6. SSIM
@pytest.mark.parametrize("shape", [(2, 1, 7, 7), (3, 3, 20, 17), (1, 1, 28, 28)])
def test_ssim_matches_scikit_image(shape):
    skm = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.rand(shape, generator=g)
    y = (x + 0.2 * torch.randn(shape, generator=g)).clamp(0, 1)
    ours = ssim(x, y).numpy()
    ref = [skm.structural_similarity(x[i].double().numpy(), y[i].double().numpy(), data_range=1.0, channel_axis=0)
           for i in range(shape[0])]
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    assert ssim(x, x).tolist() == pytest.approx([1.0] * shape[0])


def test_ssim_bad_input():
    x = torch.rand(1, 1, 6, 10)
    with pytest.raises(ValueError, match="window"):
        ssim(x, x)
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ssim(x, x * 2)
    with pytest.raises(ValueError, match="odd"):
        ssim(x, x, window=4)


def test_ssim_in_records_and_summary():
    model = TinyCNN().eval()
    x = _images(6)
    y = _labels(model, x)
    res = pgd2(model, x, y, eps=torch.linspace(0.1, 3.0, 6), step=1.0, iterations=5)
    assert 0 < int(res.success.sum()) < 6
    rec = records_from_result(res, image_ids=np.arange(6), labels=y, x=x, visibility=False)
    s = res.success.numpy()
    np.testing.assert_allclose(rec["ssim"].to_numpy()[s], ssim(x[res.success], res.x_adv[res.success]).numpy())
    assert rec["ssim"].isna().to_numpy()[~s].all() and rec["visibility"].isna().all()
    table = summary(rec)
    assert table.loc["pgd2", "mean_ssim"] == pytest.approx(float(rec.loc[s, "ssim"].mean()))
    # out of range is refused; a missing column (older records) is filled with NaN
    bad = rec.copy()
    bad.loc[np.flatnonzero(s)[0], "ssim"] = 1.5
    with pytest.raises(ValueError, match="ssim"):
        validate_records(bad)
    assert validate_records(rec.drop(columns="ssim"))["ssim"].isna().all()


def test_ssim_nan_for_images_smaller_than_the_window():
    model = Linear(torch.stack([torch.zeros(16), torch.ones(16)]), torch.tensor([0.0, -4.0]))
    x = torch.full((2, 1, 4, 4), 0.2)
    y = torch.zeros(2, dtype=torch.long)
    res = pgd2(model, x, y, eps=3.0)
    rec = records_from_result(res, image_ids=np.arange(2), labels=y, x=x)
    assert res.success.all() and rec["ssim"].isna().all()


# ----------------------------------------------------------------------------- 7. 8-bit
def _png_round_trip(x: torch.Tensor) -> torch.Tensor:
    from PIL import Image

    out = []
    for img in x:
        buf = io.BytesIO()
        Image.fromarray((img[0].numpy() * 255).round().astype(np.uint8)).save(buf, format="PNG")
        buf.seek(0)
        out.append(torch.from_numpy(np.asarray(Image.open(buf), dtype=np.float32) / 255)[None])
    return torch.stack(out)


def test_quantised_adversarials_survive_a_png_round_trip():
    pytest.importorskip("PIL")
    model = TinyCNN().eval()
    x = (_images(8) * 255).round() / 255  # 8-bit originals, as PNG photos and MNIST digits are
    y = _labels(model, x)
    plain = ddn(model, x, y, steps=60)
    q = ddn(model, x, y, steps=60, quantise=True)
    assert plain.success.all() and q.success.all()
    assert torch.equal(q.x_adv * 255, (q.x_adv * 255).round())  # on the 8-bit grid
    loaded = _png_round_trip(q.x_adv)
    assert torch.equal(loaded, q.x_adv)
    assert (_labels(model, loaded) != y).all()  # still adversarial after save and load
    assert torch.equal(q.pred_adv, _labels(model, q.x_adv))
    assert q.params["quantise"] is True and q.extra["quantise_scale"].shape == (8,)
    assert bool((q.forward_passes > plain.forward_passes).all())  # the checks are counted
    # minimal-norm iterates stop just past the boundary: plain rounding undoes some of them
    lost = _labels(model, _png_round_trip(plain.x_adv)) == y
    assert bool(lost.any())


def test_quantise_refines_where_rounding_undid_the_attack():
    w = torch.zeros(2, 4)
    w[1] = 1.0
    x = torch.full((1, 1, 2, 2), 128 / 255)
    b = torch.tensor([0.0, -(4 * 128 + 0.8) / 255])  # adversarial once each pixel rose by 0.2/255
    model = Linear(w, b)
    y = torch.zeros(1, dtype=torch.long)
    x_adv = x + 0.3 / 255  # adversarial; nearest rounding brings it back to x
    res = AttackResult(
        x_adv=x_adv, success=torch.tensor([True]), distortion=(x_adv - x).flatten(1).norm(dim=1),
        pred_clean=torch.tensor([0]), pred_adv=torch.tensor([1]), forward_passes=torch.tensor([3]),
        backward_passes=torch.tensor([1]), attack="hand", params={}, seconds=0.0,
    )
    q = quantise(model, x, y, res)
    assert bool(q.success) and torch.allclose(q.x_adv * 255, torch.full_like(x, 129.0))  # rounded away from x
    assert float(q.extra["quantise_scale"]) == 1.0
    # two pixels pulling against each other (weights 1 and 2, moves +1.5 and -0.6 levels, margin
    # 0.3 level for 0.25 needed): both roundings give 0; stretched by 1.5, +3 and -1 levels do
    w2 = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    x2 = torch.full((1, 1, 1, 2), 128 / 255)
    model2 = Linear(w2, torch.tensor([0.0, -(3 * 128 + 0.25) / 255]))
    res2 = AttackResult(**{**res.__dict__, "x_adv": x2 + torch.tensor([1.5, -0.6]).view(1, 1, 1, 2) / 255})
    assert bool(model2(res2.x_adv).argmax(1) == 1)
    q2 = quantise(model2, x2, y, res2)
    assert bool(q2.success) and float(q2.extra["quantise_scale"]) == 1.5
    assert torch.allclose(q2.x_adv * 255, torch.tensor([131.0, 127.0]).view(1, 1, 1, 2))
    # moves of +1.5 and -1.2 levels (margin 0.1 for 0.05 needed): no stretch helps, the attack fails
    model3 = Linear(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), torch.tensor([0.0, -(2 * 128 + 0.05) / 255]))
    res3 = AttackResult(**{**res.__dict__, "x_adv": x2 + torch.tensor([1.2, -1.1]).view(1, 1, 1, 2) / 255})
    assert bool(model3(res3.x_adv).argmax(1) == 1)
    q3 = quantise(model3, x2, y, res3)
    assert not bool(q3.success) and torch.equal(q3.x_adv, x2) and float(q3.distortion) == 0.0
    assert bool(q3.extra["quantise_scale"].isnan().all()) and int(q3.forward_passes) == 3 + 1 + 6


def test_quantise_bad_input():
    model = TinyCNN().eval()
    x = _images(2)
    y = _labels(model, x)
    with pytest.raises(TypeError, match="quantise"):
        fgsm(model, x, y, quantise="yes")
    res = fgsm(model, x, y)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        quantise(model, x * 2, y, res)
    bad = AttackResult(**{**res.__dict__, "x_adv": res.x_adv - 0.5})
    with pytest.raises(ValueError, match=r"x_adv.*\[0, 1\]"):
        quantise(model, x, y, bad)


def test_bench_runs_the_new_attacks_with_ssim(tmp_path):
    import smoothlab.bench as bench

    spec = BenchSpec.paper(1, quick=True, attack_names=["spgd2-authors", "ddn", "sfmn"],
                           n_images=4, batch_size=4, shard_size=4, visibility=False)
    result = bench.run(spec, workers=0, progress=False, out=tmp_path)
    table = result.summary if isinstance(result.summary, pd.DataFrame) else summary(result.records)
    assert set(table.index) == {"spgd2-authors", "ddn", "sfmn"}
    assert table["mean_ssim"].between(0, 1).all()
    assert "sPGD2 (authors' loop)" in result.table()


# ----------------------------------------------------------------------------- 4. truncated CG
def test_truncated_cg_has_no_derivative_at_zero_but_the_adjoint_does():
    """Why sC&W with the paper's truncated CG needs the adjoint backward: from its start z_0 = 0,
    autodiff through the CG iterations gives a zero gradient (no iteration moves at a zero
    right-hand side), so the attack never leaves z = 0; the adjoint gives the operator's transpose."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 16, 16, generator=g)
    v = torch.randn(x.shape, generator=g)
    grads = {}
    for backward in ("unrolled", "adjoint"):
        S = SmoothingSpec.imagenet(backward=backward)(x)
        for start in ("zero", "small"):
            z0 = torch.zeros_like(x) if start == "zero" else 1e-3 * torch.randn(x.shape, generator=g)
            z = z0.requires_grad_(True)
            (grads[backward, start],) = torch.autograd.grad(S(z), z, v)
    assert float(grads["unrolled", "zero"].abs().max()) == 0.0
    exact = SmoothingSpec.imagenet(exact=True)(x)
    z = torch.zeros_like(x, requires_grad=True)
    (g_exact,) = torch.autograd.grad(exact(z), z, v)
    rel = {k: float((grads[k] - g_exact).norm() / g_exact.norm()) for k in grads}
    # the adjoint does not depend on z and is close to the exact gradient; the true derivative of
    # the truncated forward exists away from 0, a little further from it
    assert torch.equal(grads["adjoint", "zero"], grads["adjoint", "small"]) and rel["adjoint", "zero"] < 0.05, rel
    assert rel["unrolled", "small"] < 0.15, rel
