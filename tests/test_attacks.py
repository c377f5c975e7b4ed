"""Attacks (sections 2.1, 4): analytic oracles on affine models, batch consistency, smoothness,
the pitfalls other libraries got wrong, and bad input."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import smoothlab.attacks
from smoothlab.attacks import ATTACKS, AttackResult, cw, fgsm, ifgsm, margin_loss, pgd2, scw, spgd2
from smoothlab.smoothing import Smoother, SmoothingSpec

DT = torch.float64


# ----------------------------------------------------------------------------- models and data
class Affine2(torch.nn.Module):
    """Two classes with logits ``(0, aᵀx + b)``: the decision boundary is a hyperplane."""

    def __init__(self, a: torch.Tensor, b: float) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(a.flatten().clone())
        self.b = torch.nn.Parameter(torch.tensor(float(b), dtype=a.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.a + self.b
        return torch.stack([torch.zeros_like(s), s], 1)


def affine_problem(dist: list[float], seed: int = 0) -> tuple[Affine2, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images of class 0 at L2 distance ``dist`` from the boundary, far inside ``[0, 1]``.

    Returns the model, the images, the labels and the distances (the optimum of eq. 1: the
    box constraint does not bind since every pixel stays in ``[0.1, 0.9]`` along the way).
    """
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(64, generator=g, dtype=DT)
    d = torch.tensor(dist, dtype=DT)
    x = 0.4 + 0.2 * torch.rand(len(dist), 64, generator=g, dtype=DT)
    # move each image along a so that aᵀx = -d ||a|| (b = 0)
    x = x + ((-d * a.norm() - x @ a) / (a @ a))[:, None] * a
    u = a / a.norm()
    for t in (0.0, 1.1):  # the optimal perturbation (and a bit beyond) stays inside the box
        xs = x + t * d[:, None] * u
        assert float(xs.min()) > 0.05 and float(xs.max()) < 0.95
    return Affine2(a, 0.0), x.view(-1, 1, 8, 8), torch.zeros(len(dist), dtype=torch.long), d


def tiny_net(seed: int = 0, k: int = 3, h: int = 12) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * h * h, k),
    ).to(DT)


def blob_images(batch: int, seed: int = 0, h: int = 12) -> torch.Tensor:
    """Digit-like images: a bright rectangle on a flat dark background, inside ``[0.15, 0.87]``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((batch, 1, h, h), 0.15, dtype=DT)
    for i in range(batch):
        r0, c0 = torch.randint(1, h // 2, (2,), generator=g).tolist()
        hh, ww = torch.randint(3, h // 2, (2,), generator=g).tolist()
        x[i, 0, r0 : r0 + hh, c0 : c0 + ww] = 0.85
    return x + 0.02 * torch.rand(x.shape, generator=g, dtype=DT)


@pytest.fixture(scope="module")
def net_data() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    model = tiny_net()
    x = blob_images(6)
    with torch.no_grad():
        y = model(x).argmax(1)
    assert len(set(y.tolist())) > 1
    return model, x, y


# the six public attacks with light settings for speed; the smooth ones get a smoother. The
# tiny net's logits differ by ~0.05: C&W's margin (a success is adversarial by m) is scaled to it.
FAST: dict[str, dict[str, Any]] = {
    "fgsm": {"eps": 0.1},
    "ifgsm": {"eps": 0.1, "step": 0.03, "iterations": 5},
    "pgd2": {"eps": 1.0, "step": 0.5, "iterations": 5},
    "cw": {"iterations": 30, "search_steps": 2, "margin": 0.1},
    "spgd2": {"eps": 1.0, "step": 0.5, "iterations": 5, "smoother": SmoothingSpec.mnist()},
    "scw": {"iterations": 30, "search_steps": 2, "margin": 0.1, "smoother": SmoothingSpec.mnist()},
    "ddn": {"steps": 20},
    "fmn": {"steps": 20},
    "sddn": {"steps": 20, "smoother": SmoothingSpec.mnist()},
    "sfmn": {"steps": 20, "smoother": SmoothingSpec.mnist()},
}


# ----------------------------------------------------------------------------- API and result
def test_registry_names() -> None:
    assert set(ATTACKS) == {"fgsm", "ifgsm", "pgd2", "cw", "spgd2", "scw", "ddn", "fmn", "sddn", "sfmn"}
    assert ATTACKS["pgd2"] is pgd2 and ATTACKS["scw"] is scw


@pytest.mark.parametrize("name", sorted(FAST))
def test_result_is_consistent(name: str, net_data) -> None:
    model, x, y = net_data
    res = ATTACKS[name](model, x, y, **FAST[name])
    b = x.shape[0]
    assert isinstance(res, AttackResult) and res.attack == name and len(res) == b
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    for t, dtype in [
        (res.success, torch.bool),
        (res.distortion, x.dtype),
        (res.pred_clean, torch.long),
        (res.pred_adv, torch.long),
        (res.forward_passes, torch.long),
        (res.backward_passes, torch.long),
    ]:
        assert t.shape == (b,) and t.dtype == dtype
    with torch.no_grad():
        assert torch.equal(res.pred_adv, model(res.x_adv).argmax(1))
        assert torch.equal(res.pred_clean, model(x).argmax(1))
    assert torch.equal(res.success, res.pred_adv != y)
    assert torch.allclose(res.distortion, (res.x_adv - x).flatten(1).norm(dim=1))
    assert torch.equal(res.x_adv[~res.success], x[~res.success])
    assert bool(res.success.any())
    assert bool((res.forward_passes >= 2).all()) and bool((res.backward_passes >= 1).all())
    json.dumps(res.params)  # plain Python values
    assert res.seconds > 0


def test_default_smoothers_of_named_entry_points(net_data) -> None:
    model, x, y = net_data
    r = spgd2(model, x, y, eps=1.0, iterations=2)
    assert r.attack == "spgd2" and r.params["smoother"]["alpha"] == 0.95 and r.params["smoother"]["lam"] == 10.0
    r = scw(model, x, y, iterations=5)
    assert r.attack == "scw" and r.params["smoother"]["kernel"] == "laplacian"
    assert pgd2(model, x, y, eps=1.0, iterations=2).params["smoother"] is None
    assert fgsm(model, x, y, smoother=SmoothingSpec.mnist()).attack == "sfgsm"


# ----------------------------------------------------------------------------- analytic oracles
# A pixel step of 0.025 (C&W's Adam steps 0.1 on its sigmoid variable): the precision the closed-form checks
# below were written for; the default lr = 0.1 is a 4x coarser pixel step since issue 19's step parity.
FINE_LR = 0.025


def test_cw_finds_the_minimal_l2_perturbation_of_an_affine_model() -> None:
    model, x, y, d = affine_problem([0.5, 0.8, 0.3, 1.0])
    res = cw(model, x, y, margin=0.0, search_steps=5, iterations=300, lr=FINE_LR)
    assert bool(res.success.all())
    ratio = res.distortion / d
    assert bool((ratio >= 1 - 1e-9).all()), ratio  # nothing beats the distance to the hyperplane
    assert bool((ratio <= 1.05).all()), ratio


def test_pgd2_succeeds_exactly_beyond_the_distance_to_the_boundary() -> None:
    model, x, y, d = affine_problem([0.5, 0.8, 0.3, 1.0])
    below = pgd2(model, x, y, eps=0.97 * d)
    above = pgd2(model, x, y, eps=1.03 * d)
    assert not bool(below.success.any())
    assert bool(above.success.all())
    assert torch.allclose(above.distortion, 1.03 * d)
    # the same budgets stacked in one batch, as a (B,) tensor
    stacked = pgd2(model, torch.cat([x, x]), torch.cat([y, y]), eps=torch.cat([0.97 * d, 1.03 * d]))
    assert torch.equal(stacked.success, torch.cat([below.success, above.success]))
    assert stacked.params["eps"] == pytest.approx(torch.cat([0.97 * d, 1.03 * d]).tolist())


@pytest.mark.parametrize("attack", [fgsm, ifgsm])
def test_linf_attacks_succeed_exactly_beyond_the_linf_distance(attack) -> None:
    model, x, y, d = affine_problem([0.5, 0.8, 0.3, 1.0])
    a = model.a.detach()
    dinf = d * a.norm() / a.abs().sum()  # L∞ distance to the hyperplane
    assert not bool(attack(model, x, y, eps=0.95 * dinf).success.any())  # eps too small: fails
    above = attack(model, x, y, eps=1.05 * dinf)
    assert bool(above.success.all())
    assert float((above.x_adv - x).abs().amax()) <= float(1.05 * dinf.max()) + 1e-12


def test_budgets_are_respected(net_data) -> None:
    model, x, y = net_data
    r = ifgsm(model, x, y, eps=0.05, step=0.04, iterations=4)
    assert float((r.x_adv - x).abs().amax()) <= 0.05 + 1e-12
    eps = torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0, 1.2], dtype=DT)
    cand = pgd2(model, x, y, eps=eps, step=0.3, iterations=6)
    assert bool((cand.distortion <= eps + 1e-9).all())
    # sphere: the authors' rescaling puts every perturbation on the eps-sphere (no clipping here)
    model2, x2, y2, d2 = affine_problem([0.5, 0.8, 0.3, 1.0])
    sph = pgd2(model2, x2, y2, eps=1.1 * d2, step=0.1, iterations=3, projection="sphere")
    assert torch.allclose(sph.distortion, 1.1 * d2)


def test_targeted_attacks_reach_the_target(net_data) -> None:
    model, x, y = net_data
    target = (y + 1) % 3
    for name in ["fgsm", "ifgsm", "pgd2", "cw", "scw"]:
        kw = dict(FAST[name])
        if name in ("ifgsm", "pgd2"):
            kw.update(eps=kw["eps"] * 4, iterations=10)
        if name == "fgsm":
            kw.update(eps=0.4)
        r = ATTACKS[name](model, x, y, target=target, **kw)
        assert bool(r.success.any()), name
        assert torch.equal(r.success, r.pred_adv == target)
        assert r.params["targeted"] is True


# ----------------------------------------------------------------------------- batch consistency
@pytest.mark.parametrize("name", sorted(FAST))
def test_batch_gives_the_same_per_image_results_as_single_images(name: str, net_data) -> None:
    model, x, y = net_data
    kw = dict(FAST[name])
    if name in ("cw", "scw"):
        kw.update(abort_early=True, iterations=40, c=1.0)  # images abort at different checks
    batch = ATTACKS[name](model, x, y, **kw)
    for i in range(x.shape[0]):
        one = ATTACKS[name](model, x[i : i + 1], y[i : i + 1], **kw)
        assert torch.allclose(one.x_adv[0], batch.x_adv[i], atol=1e-5, rtol=0)
        assert bool(one.success[0] == batch.success[i])
        assert int(one.forward_passes[0]) == int(batch.forward_passes[i])
    if name in ("cw", "scw"):
        assert len(set(batch.forward_passes.tolist())) > 1  # per-image early abort happened


# ----------------------------------------------------------------------------- smoothness
def _smoothness(S: Smoother, res: AttackResult, x: torch.Tensor) -> torch.Tensor:
    ok = res.success
    return S[ok].graph.smoothness((res.x_adv - x)[ok])


def test_smooth_attacks_give_perturbations_smooth_like_the_image(net_data) -> None:
    model, x, y = net_data
    S = Smoother(x, alpha=0.95)
    # a weak penalty (λ = 1/c small) and a margin several times the tiny net's logit gaps: the
    # least-distorted success comes after many steps, when sC&W's latent z has accumulated its
    # smooth gradients (early iterates of both attacks look alike)
    rough_cw = _smoothness(S, cw(model, x, y, c=1000.0, margin=0.3), x)
    smooth_cw = _smoothness(S, cw(model, x, y, c=1000.0, margin=0.3, smoother=S), x)
    rough_pgd = _smoothness(S, pgd2(model, x, y, eps=2.0), x)
    smooth_pgd = _smoothness(S, pgd2(model, x, y, eps=2.0, smoother=S), x)
    smooth_pgd_r = _smoothness(S, pgd2(model, x, y, eps=2.0, smoother=S, smooth="perturbation"), x)
    for rough, smooth in [(rough_cw, smooth_cw), (rough_pgd, smooth_pgd), (rough_pgd, smooth_pgd_r)]:
        assert rough.numel() >= 4 and smooth.numel() >= 4
        assert float(smooth.mean()) < 0.3 * float(rough.mean())


def test_scw_perturbation_lies_in_the_range_of_the_smoother(net_data) -> None:
    model, x, y = net_data
    S = Smoother(x, alpha=0.95)
    res = cw(model, x, y, smoother=S, search_steps=2, margin=0.1)
    z = res.extra["latent"]
    ok = res.success
    assert bool(ok.any())
    # x_adv = c(x_o + ŝ_α(z)) for the returned latent
    assert torch.allclose(res.x_adv, (x + S(z)).clamp(0, 1), atol=1e-10)
    assert torch.equal(z[~ok], torch.zeros_like(z[~ok]))
    # the stored latent is the one that r determines: z = ℒ_α (r ⊙ s_α(1)) (eq. 9 inverted;
    # no pixel is clipped in this problem)
    assert torch.equal((x + S(z)).clamp(0, 1), x + S(z))
    r = res.x_adv - x
    alpha = S.alpha
    z_from_r = S.graph.matvec(r * S.ones_response, shift=1.0, scale=-alpha) / (1 - alpha)
    assert torch.allclose(z_from_r[ok], z[ok], atol=1e-8)
    assert torch.allclose(S(z_from_r), r, atol=1e-10)


# ----------------------------------------------------------------------------- C&W specifics
class Recorder(torch.nn.Module):
    """Wraps a model and records every input it sees and the logits it returns."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.inputs.append(x.detach().clone())
        self.outputs.append(out.detach().clone())
        return out


def test_cw_keeps_the_least_distorted_success_of_all_iterates() -> None:
    model, x, y, d = affine_problem([0.5])
    rec = Recorder(model)
    # a large constant and a large step: the iterates overshoot and oscillate around the boundary
    res = cw(rec, x, y, c=50.0, margin=0.0, lr=0.2, iterations=60, abort_early=False)
    iterates = list(zip(rec.inputs[1:-1], rec.outputs[1:-1]))  # drop the input check and final prediction
    assert len(iterates) == 60
    dists = [float((xi - x).norm()) for xi, out in iterates if int(out.argmax(1)) != 0]
    assert len(dists) > 5
    assert float(res.distortion[0]) == pytest.approx(min(dists), abs=1e-12)
    assert max(dists) > 1.2 * min(dists)  # the last successful iterate is not the best one
    last_success = dists[-1]
    assert last_success > min(dists)


def test_cw_line_search_raises_the_constant_until_success() -> None:
    model, x, y, d = affine_problem([0.5, 0.8])
    weak = cw(model, x, y, c=0.01, iterations=50, margin=0.0, lr=FINE_LR)
    assert not bool(weak.success.any())
    assert bool(weak.extra["c"].isnan().all())
    res = cw(model, x, y, c=0.01, iterations=50, margin=0.0, search_steps=5, lr=FINE_LR)
    assert bool(res.success.all())
    # c goes 0.01 -> 0.1 -> 1 while failing, then bisects
    assert bool((res.extra["c"] > 0.02).all())
    assert res.forward_passes.max() > weak.forward_passes.max()


def test_cw_early_abort_stops_work_per_image(net_data) -> None:
    model, x, y = net_data
    full = cw(model, x, y, c=1.0, margin=0.0, iterations=100, abort_early=False)
    early = cw(model, x, y, c=1.0, margin=0.0, iterations=100, abort_early=True)
    assert bool((full.forward_passes == 102).all()) and bool((full.backward_passes == 100).all())
    assert int(early.forward_passes.sum()) < int(full.forward_passes.sum())
    assert bool((early.forward_passes == early.backward_passes + 2).all())
    assert bool(early.success.any())


@pytest.mark.parametrize("name", ["cw", "scw"])
def test_cw_keeps_an_image_that_is_adversarial_from_the_start(name: str, net_data) -> None:
    model, x, y = net_data
    wrong = y.clone()
    wrong[0] = (y[0] + 1) % 3  # the model already "misclassifies" image 0
    res = ATTACKS[name](model, x, wrong, iterations=20)
    assert bool(res.success[0]) and float(res.distortion[0]) == 0.0 and torch.equal(res.x_adv[0], x[0])
    assert bool(res.extra["c"][0].isnan())


def test_cw_non_squared_penalty_on_the_affine_model() -> None:
    """``penalty="l2"``: minimise ||r|| / c + [m - s(x + r)]_+ (the authors' sC&W code)."""
    model, x, y, d = affine_problem([0.5, 0.8, 0.3, 1.0])
    res = cw(model, x, y, penalty="l2", margin=0.0, search_steps=5, iterations=300, lr=FINE_LR)
    assert res.params["penalty"] == "l2" and bool(res.success.all())
    ratio = res.distortion / d
    assert bool((ratio >= 1 - 1e-9).all()) and bool((ratio <= 1.05).all()), ratio
    # Along the normal u = a / |a|: J(t) = t / c + |a| [d - t]_+ reaches the boundary t = d iff
    # c |a| > 1, whatever d; the squared penalty t² / c stops at t* = c |a| / 2 < d for far images.
    norm_a = float(model.a.detach().norm())
    c = 1.2 / norm_a  # t* = 0.6: below the distances 0.8 and 1.0
    kw = dict(c=c, margin=0.0, iterations=300, lr=0.02, abort_early=False)
    l2 = cw(model, x, y, penalty="l2", **kw)
    sq = cw(model, x, y, penalty="squared", **kw)
    assert l2.success.tolist() == [True, True, True, True]
    assert sq.success.tolist() == [True, False, True, False]
    assert bool((l2.distortion / d <= 1.1).all())


# ----------------------------------------------------------------------------- pitfalls
class DeadOrAlive(torch.nn.Module):
    """Logits ``(0, relu(aᵀx + b))``: zero gradient wherever ``aᵀx + b < 0``."""

    def __init__(self, a: torch.Tensor, b: float) -> None:
        super().__init__()
        self.inner = Affine2(a, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return torch.stack([out[:, 0] + 0.1, torch.relu(out[:, 1])], 1)


@pytest.mark.parametrize("name", sorted(FAST))
def test_zero_gradient_leaves_the_image_unchanged(name: str) -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(64, generator=g, dtype=DT)
    x = 0.3 + 0.4 * torch.rand(2, 1, 8, 8, generator=g, dtype=DT)
    s = x.flatten(1) @ a
    model = DeadOrAlive(a, -float(s.mean()))  # the image with the lower score is dead
    dead = int(s.argmin())
    # the dead image is predicted 0 with a zero input gradient; label it 1 so that it counts as
    # (trivially) adversarial and its final iterate is returned: it must be x itself, not NaN
    y = torch.zeros(2, dtype=torch.long)
    y[dead] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-finite adversarial images" warning either
        res = ATTACKS[name](model, x, y, **FAST[name])
    assert bool(torch.isfinite(res.x_adv).all()) and bool(torch.isfinite(res.distortion).all())
    assert bool(res.success[dead])
    assert torch.allclose(res.x_adv[dead], x[dead], atol=1e-12, rtol=0)
    assert float(res.distortion[dead]) < 1e-10


@pytest.mark.parametrize("name", ["ifgsm", "pgd2", "cw", "scw"])
def test_pixels_at_zero_and_one_can_move(name: str) -> None:
    # a binary image; the only useful direction raises pixels at 0 and lowers pixels at 1
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(1, 1, 8, 8, generator=g) > 0.5).to(DT)
    a = torch.rand(64, generator=g, dtype=DT) * (1 - 2 * x.flatten())
    model = Affine2(a, -(float(x.flatten() @ a) + 1.0 * float(a.norm())))  # L2 distance 1
    y = torch.zeros(1, dtype=torch.long)
    kw: dict[str, Any] = {
        "ifgsm": {"eps": 0.5},
        "pgd2": {"eps": 1.5},
        "cw": {"margin": 0.0, "iterations": 100},
        "scw": {"margin": 0.0, "iterations": 100},
    }[name]
    res = ATTACKS[name](model, x, y, **kw)
    assert bool(torch.isfinite(res.x_adv).all())
    assert bool(res.success.all()), name
    r = res.x_adv - x
    assert float(r[x == 0].max()) > 0.05 and float(r[x == 1].min()) < -0.05


class NaNGradient(torch.nn.Module):
    """Finite logits, NaN input gradients (``d sqrt(u)/du`` at ``u = 0``): a broken model."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + torch.sqrt(x - x).flatten(1).sum(1, keepdim=True)


@pytest.mark.parametrize("name", ["fgsm", "ifgsm", "pgd2"])
def test_nan_gradients_are_reported_not_returned(name: str, net_data) -> None:
    _, x, y = net_data
    with pytest.warns(RuntimeWarning, match="non-finite"):
        res = ATTACKS[name](NaNGradient(), x, y, **FAST[name])
    assert bool(torch.isfinite(res.x_adv).all()) and not bool(res.success.any())
    assert torch.equal(res.x_adv, x)


def test_cw_never_returns_nan_iterates(net_data) -> None:
    _, x, y = net_data
    res = cw(NaNGradient(), x, y, iterations=50)
    assert bool(torch.isfinite(res.x_adv).all()) and bool(torch.isfinite(res.distortion).all())
    assert int(res.forward_passes.max()) < 52  # NaN losses are aborted at the first check


def test_probabilities_instead_of_logits_warn(net_data) -> None:
    model, x, y = net_data
    probs = torch.nn.Sequential(model, torch.nn.Softmax(dim=1))
    with pytest.warns(UserWarning, match="probabilities"):
        fgsm(probs, x, y)
    with pytest.warns(UserWarning, match="probabilities"):
        cw(probs, x, y, iterations=2)


class ModeSpy(torch.nn.Module):
    """Dropout + batch norm; records the mode seen at each forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_net()
        self.bn = torch.nn.BatchNorm1d(3).to(DT)
        self.drop = torch.nn.Dropout(0.5)
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.training or self.bn.training or self.drop.training)
        return self.bn(self.drop(self.net(x)))


@pytest.mark.parametrize("name", sorted(FAST))
def test_training_mode_model_is_attacked_in_eval_mode_and_restored(name: str, net_data) -> None:
    _, x, y = net_data
    spy = ModeSpy()
    spy.train()
    spy.drop.eval()  # a mixed state must come back exactly
    stats = spy.bn.running_mean.clone()
    res = ATTACKS[name](spy, x, y, **FAST[name])
    assert spy.seen and not any(spy.seen)
    assert spy.training and spy.bn.training and not spy.drop.training
    assert torch.equal(spy.bn.running_mean, stats)  # batch norm statistics untouched
    spy.eval()
    again = ATTACKS[name](spy, x, y, **FAST[name])
    assert torch.equal(res.x_adv, again.x_adv)


# a bad option caught after the input checks, inside the attack's body (attack_run is entered)
BAD_OPTION = {"fgsm": {"loss": "hinge"}, "ifgsm": {"iterations": 0}, "pgd2": {"projection": "cube"}, "cw": {"lr": 0.0},
              "ddn": {"steps": 0}, "fmn": {"gamma": 1.5}}


@pytest.mark.parametrize("name", sorted(BAD_OPTION))
def test_mode_is_restored_when_the_attack_raises_after_its_start_up(name: str, net_data) -> None:
    _, x, y = net_data
    spy = ModeSpy()
    spy.train()
    spy.drop.eval()
    with pytest.raises(ValueError):
        ATTACKS[name](spy, x, y, **BAD_OPTION[name])
    assert spy.seen and not any(spy.seen)  # the input check ran, in eval mode
    assert spy.training and spy.bn.training and not spy.drop.training


@pytest.mark.parametrize("name", ["fgsm", "pgd2", "spgd2", "cw", "ddn", "fmn"])
def test_the_warning_about_probabilities_points_at_the_attack(name: str, net_data) -> None:
    model, x, y = net_data
    probs = torch.nn.Sequential(model, torch.nn.Softmax(1))
    kw = {k: v for k, v in FAST[name].items() if k != "smoother"}
    with pytest.warns(UserWarning, match="look like probabilities") as caught:
        ATTACKS[name](probs, x, y, **kw)
    module = {"fgsm": "_distortion", "pgd2": "_distortion", "spgd2": "_distortion", "cw": "_cw"}.get(name, f"_{name}")
    files = [w.filename for w in caught if "look like probabilities" in str(w.message)]
    assert files == [str(Path(smoothlab.attacks.__file__).with_name(f"{module}.py"))]


@pytest.mark.parametrize("name", sorted(FAST))
def test_model_parameter_gradients_are_untouched(name: str, net_data) -> None:
    model, x, y = net_data
    model.zero_grad(set_to_none=True)
    ATTACKS[name](model, x, y, **FAST[name])
    assert all(p.grad is None for p in model.parameters())
    marker = [torch.full_like(p, 7.0) for p in model.parameters()]
    for p, m in zip(model.parameters(), marker):
        p.grad = m.clone()
    ATTACKS[name](model, x, y, **FAST[name])
    assert all(torch.equal(p.grad, m) for p, m in zip(model.parameters(), marker))
    model.zero_grad(set_to_none=True)


def test_attacks_work_under_no_grad(net_data) -> None:
    model, x, y = net_data
    with torch.no_grad():
        a = pgd2(model, x, y, eps=1.0, iterations=3)
        b = cw(model, x, y, iterations=10)
    assert torch.equal(a.x_adv, pgd2(model, x, y, eps=1.0, iterations=3).x_adv)
    assert torch.equal(b.x_adv, cw(model, x, y, iterations=10).x_adv)


def test_float32_inputs(net_data) -> None:
    """The same attack in float32 gives the float64 run's successes and distortions."""
    model, x, y = net_data
    m32 = tiny_net().float()
    x32 = x.float()
    with torch.no_grad():
        y32 = m32(x32).argmax(1)
    assert torch.equal(y32, y)
    for name in sorted(FAST):
        r = ATTACKS[name](m32, x32, y32, **FAST[name])
        r64 = ATTACKS[name](model, x, y, **FAST[name])
        assert r.x_adv.dtype == torch.float32 and bool(torch.isfinite(r.x_adv).all())
        assert torch.equal(r.success, r64.success), name
        torch.testing.assert_close(r.distortion.double(), r64.distortion, rtol=1e-3, atol=1e-4, msg=name)


# ----------------------------------------------------------------------------- bad input
class BadShape(torch.nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.net = tiny_net()

    def forward(self, x: torch.Tensor) -> Any:
        out = self.net(x)
        if self.kind == "vector":
            return out[:, 0]
        if self.kind == "one-class":
            return out[:, :1]
        if self.kind == "3d":
            return out[:, :, None]
        if self.kind == "batch":
            return torch.cat([out, out[:1]])
        if self.kind == "tuple":
            return out, out
        if self.kind == "nan":
            return out * math.nan
        if self.kind == "int":
            return out.long()
        raise AssertionError


@pytest.mark.parametrize(
    "kind, error",
    [
        ("vector", ValueError),
        ("one-class", ValueError),
        ("3d", ValueError),
        ("batch", ValueError),
        ("tuple", TypeError),
        ("nan", ValueError),
        ("int", TypeError),
    ],
)
@pytest.mark.parametrize("name", ["fgsm", "pgd2", "cw"])
def test_bad_model_output_is_refused(kind: str, error: type, name: str, net_data) -> None:
    _, x, y = net_data
    with pytest.raises(error, match="model"):
        ATTACKS[name](BadShape(kind), x, y)


def test_model_on_another_device_is_refused(net_data) -> None:
    _, x, y = net_data
    model = tiny_net().to("meta")
    with pytest.raises(ValueError, match="model has its parameters on meta"):
        pgd2(model, x, y)


def _bad_inputs(x: torch.Tensor, y: torch.Tensor) -> list[tuple[str, dict[str, Any], type, str]]:
    nan_x = x.clone()
    nan_x[0, 0, 0, 0] = math.nan
    return [
        ("all", {"x": x * 2}, ValueError, r"x must have values in \[0, 1\]"),
        ("all", {"x": x - 0.5}, ValueError, "x must have values"),
        ("all", {"x": nan_x}, ValueError, "x must be finite"),
        ("all", {"x": x[:, 0]}, ValueError, r"x must have shape \(B, C, H, W\)"),
        ("all", {"x": x[:0], "y": y[:0]}, ValueError, "empty batch"),
        ("all", {"x": x.numpy()}, TypeError, "x must be a torch.Tensor"),
        ("all", {"x": (x * 255).to(torch.uint8)}, TypeError, "floating-point"),
        ("all", {"y": y[:-1]}, ValueError, "y must have shape"),
        ("all", {"y": y + 3}, ValueError, r"y must hold labels in \[0, 3\)"),
        ("all", {"y": -y - 1}, ValueError, "y must hold labels"),
        ("all", {"y": y.double()}, TypeError, "y must have an integer dtype"),
        ("all", {"target": y}, ValueError, "target must differ"),
        ("all", {"target": (y + 1)[:-1]}, ValueError, "target must have shape"),
        ("all", {"target": y + 5}, ValueError, "target must hold labels"),
        ("all", {"model": "not a model"}, TypeError, "model must be callable"),
        ("all", {"smoother": 3}, TypeError, "smoother"),
        ("fgsm", {"eps": -0.1}, ValueError, "eps must be in"),
        ("fgsm", {"eps": torch.tensor([0.1, 0.2])}, ValueError, r"eps must be a number or a tensor of shape \(6,\)"),
        ("fgsm", {"eps": torch.full((6,), -1.0, dtype=DT)}, ValueError, "eps must be >= 0"),
        ("fgsm", {"eps": math.nan}, ValueError, "eps must be finite"),
        ("fgsm", {"eps": "big"}, TypeError, "eps must be a real number"),
        ("ifgsm", {"step": -0.01}, ValueError, "step must be in"),
        ("ifgsm", {"iterations": 0}, ValueError, "iterations must be an int >= 1"),
        ("ifgsm", {"iterations": 2.5}, TypeError, "iterations must be an int"),
        ("pgd2", {"eps": -1.0}, ValueError, "eps must be in"),
        ("pgd2", {"iterations": -3}, ValueError, "iterations"),
        ("pgd2", {"projection": "cube"}, ValueError, "projection must be one of"),
        ("pgd2", {"smooth": "both"}, ValueError, "smooth must be one of"),
        ("cw", {"c": 0.0}, ValueError, "c must be in"),
        ("cw", {"c": -15.0}, ValueError, "c must be in"),
        ("cw", {"margin": -1.0}, ValueError, "margin must be in"),
        ("cw", {"lr": 0.0}, ValueError, "lr must be in"),
        ("cw", {"iterations": 0}, ValueError, "iterations"),
        ("cw", {"search_steps": 0}, ValueError, "search_steps"),
        ("cw", {"penalty": "l1"}, ValueError, "penalty must be one of"),
        ("cw", {"abort_early": "yes"}, TypeError, "abort_early"),
    ]


def _bad_input_id(case: tuple[str, dict[str, Any], type, str]) -> str:
    """``fgsm-eps-eps must be in``: the attack(s), the arguments changed and the expected message."""
    which, change, _, match = case
    return f"{which}-{'+'.join(change)}-{match.replace(chr(92), '')}"


# readable test ids, from the cases built on stand-in data (the test rebuilds them on its fixture)
_BAD_INPUT_IDS = [_bad_input_id(c) for c in _bad_inputs(torch.zeros(6, 1, 4, 4, dtype=DT), torch.zeros(6, dtype=torch.long))]


@pytest.mark.parametrize("case", range(36), ids=_BAD_INPUT_IDS)
def test_bad_input_is_refused(case: int, net_data) -> None:
    model, x, y = net_data
    cases = _bad_inputs(x, y)
    assert len(cases) == 36
    which, change, error, match = cases[case]
    names = ["fgsm", "ifgsm", "pgd2", "cw"] if which == "all" else [which]
    for name in names:
        args: dict[str, Any] = {"model": model, "x": x, "y": y}
        kwargs: dict[str, Any] = {}
        for k, v in change.items():
            (args if k in args else kwargs)[k] = v
        with pytest.raises(error, match=match):
            ATTACKS[name](args["model"], args["x"], args["y"], **kwargs)


# ----------------------------------------------------------------------------- margin and targets (issue 12)
def test_margin_loss_hand_computed() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0], [5.0, 1.0, 4.5], [0.0, 0.0, 0.0], [1.0, 3.0, 2.0]], dtype=DT)
    labels = torch.tensor([1, 0, 2, 0])
    # untargeted, eq. (3): [y_t - max_{i≠t} y_i + m]_+ with t the true label
    torch.testing.assert_close(margin_loss(logits, labels, 0.7, False), torch.tensor([1.7, 1.2, 0.7, 0.0], dtype=DT))
    torch.testing.assert_close(margin_loss(logits, labels, 0.0, False), torch.tensor([1.0, 0.5, 0.0, 0.0], dtype=DT))
    # the hinge: image 3 is misclassified by 2 > m, so its loss is 0 (1 - 3 + 0.7 < 0)
    assert float(margin_loss(logits[3:], labels[3:], 1.9, False)) == 0.0
    assert float(margin_loss(logits[3:], labels[3:], 2.5, False)) == pytest.approx(0.5)
    # targeted towards u: [max_{i≠u} y_i - y_u + m]_+
    target = torch.tensor([1, 2, 0, 2])
    torch.testing.assert_close(margin_loss(logits, target, 0.7, True), torch.tensor([0.0, 1.2, 0.7, 1.7], dtype=DT))
    # the gradient pushes the own logit down and the runner-up up, only inside the hinge
    v = logits.clone().requires_grad_(True)
    margin_loss(v, labels, 0.7, False).sum().backward()
    expected = torch.tensor([[0, 1, -1], [1, 0, -1], [-1, 0, 1], [0, 0, 0]], dtype=DT)
    expected[2] = v.grad[2]  # a three-way tie: which other logit is the max is torch's choice
    assert float(v.grad[2, 2]) == 1.0 and float(v.grad[2].sum()) == 0.0
    torch.testing.assert_close(v.grad, expected)


@pytest.mark.parametrize("margin", [0.5, 2.0])
def test_cw_ends_with_a_logit_gap_of_at_least_the_margin(margin: float) -> None:
    """An untargeted attack makes y_t less than another logit by at least m (sec. 2.1): on the
    affine model the least such perturbation has norm d + m / |a| (along a)."""
    model, x, y, d = affine_problem([0.5, 0.8, 0.3, 1.0])
    res = cw(model, x, y, margin=margin, search_steps=5, iterations=300, lr=FINE_LR)
    assert bool(res.success.all())
    with torch.no_grad():
        logits = model(res.x_adv)
    gap = logits[:, 1] - logits[:, 0]
    assert bool((gap >= margin).all()), gap
    bound = d + margin / model.a.detach().norm()
    ratio = res.distortion / bound
    assert bool((ratio >= 1 - 1e-9).all()) and bool((ratio <= 1.05).all()), ratio
    assert float(res.x_adv.min()) > 0 and float(res.x_adv.max()) < 1  # the box did not bind


class Affine3(torch.nn.Module):
    """Three classes with logits ``(0, a_1ᵀx, a_2ᵀx)``, ``a_1 ⟂ a_2``: two boundaries at right angles."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(a.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.a.T
        return torch.cat([torch.zeros_like(s[:, :1]), s], 1)


def targeted_problem(d1: list[float], d2: list[float], seed: int = 0):
    """Images of class 0 at L2 distance ``d1`` from class 1 and ``d2 > d1`` from class 2 (target).

    Moving along ``a_2`` leaves the class-1 logit unchanged, so the least perturbation that
    makes the model predict 2 has norm ``d2`` (margin 0), and no L∞ perturbation below
    ``d2 |a_2| / |a_2|_1`` does it.
    """
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(2, 64, generator=g, dtype=DT)
    a = a - a.mean(1, keepdim=True)
    a[1] -= (a[1] @ a[0]) / (a[0] @ a[0]) * a[0]  # a_2 ⟂ a_1
    u = a / a.norm(dim=1, keepdim=True)
    x = 0.4 + 0.2 * torch.rand(len(d1), 64, generator=g, dtype=DT)
    for k, dist in enumerate((d1, d2)):
        dk = torch.tensor(dist, dtype=DT)
        x = x + ((-dk * a[k].norm() - x @ a[k]) / a[k].norm())[:, None] * u[k]
    d2t = torch.tensor(d2, dtype=DT)
    for t in (0.0, 1.2):
        xs = x + t * d2t[:, None] * u[1]
        assert float(xs.min()) > 0.05 and float(xs.max()) < 0.95
    y = torch.zeros(len(d1), dtype=torch.long)
    return Affine3(a), x.view(-1, 1, 8, 8), y, torch.full_like(y, 2), d2t


@pytest.mark.parametrize("name", ["fgsm", "ifgsm", "pgd2", "cw"])
def test_targeted_attacks_on_an_affine_oracle(name: str) -> None:
    model, x, y, target, d2 = targeted_problem([0.3, 0.4], [0.8, 1.0])
    a2 = model.a.detach()[1]
    with torch.no_grad():
        assert torch.equal(model(x).argmax(1), y)
    if name == "cw":
        res = cw(model, x, y, target=target, margin=0.0, search_steps=5, iterations=300)
        ratio = res.distortion / d2
        assert bool((ratio >= 1 - 1e-9).all()) and bool((ratio <= 1.05).all()), ratio
        above = res
    else:
        dist = d2 if name == "pgd2" else d2 * a2.norm() / a2.abs().sum()  # L2 or L∞ distance to class 2
        below = ATTACKS[name](model, x, y, target=target, eps=0.95 * dist)
        assert not bool(below.success.any())  # out of reach: nothing within eps predicts 2
        above = ATTACKS[name](model, x, y, target=target, eps=(1.05 if name == "pgd2" else 1.2) * dist)
        # an untargeted attack with the same budget lands in the nearer class 1: not the target
        untargeted = ATTACKS[name](model, x, y, eps=(1.05 if name == "pgd2" else 1.2) * dist)
        assert bool(untargeted.success.all()) and bool((untargeted.pred_adv == 1).all())
    assert bool(above.success.all()) and bool((above.pred_adv == 2).all()), name
    assert above.params["targeted"] is True


def test_cw_targeted_margin() -> None:
    model, x, y, target, d2 = targeted_problem([0.3, 0.4], [0.8, 1.0])
    res = cw(model, x, y, target=target, margin=1.0, search_steps=5, iterations=300)
    with torch.no_grad():
        logits = model(res.x_adv)
    gap = logits[:, 2] - logits[:, :2].amax(1)
    assert bool(res.success.all()) and bool((gap >= 1.0).all()), gap
    ratio = res.distortion / (d2 + 1.0 / model.a.detach()[1].norm())
    assert bool((ratio >= 1 - 1e-9).all()) and bool((ratio <= 1.05).all()), ratio


def test_spgd2_step_is_the_normalised_smoothed_gradient() -> None:
    """Eq. (12): one sPGD2 iteration adds step · ŝ_α(g) / ||ŝ_α(g)||; on the affine model g ∝ a."""
    model, x, y, d = affine_problem([0.05, 0.08])
    S = Smoother(x, alpha=0.95)
    a = model.a.detach().view(1, 1, 8, 8).expand_as(x).contiguous()
    sa = S(a)
    step = 0.5
    r = step * sa / sa.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert bool(((r.flatten(1) @ model.a.detach()) > d * model.a.detach().norm()).all())  # crosses: succeeds
    assert float((x + r).min()) > 0 and float((x + r).max()) < 1  # no clipping
    res = spgd2(model, x, y, smoother=S, eps=5.0, step=step, iterations=1)
    assert bool(res.success.all())
    torch.testing.assert_close(res.x_adv, x + r, rtol=0, atol=1e-10)
    plain = step * a / a.flatten(1).norm(dim=1).view(-1, 1, 1, 1)  # PGD2's step: not what eq. 12 gives
    assert float((r - plain).norm()) > 0.1 * step


@pytest.mark.parametrize("attack, plain", [(scw, "cw"), (spgd2, "pgd2")])
def test_smooth_attacks_refuse_no_smoother(attack: Any, plain: str) -> None:
    """``smoother=None`` is no smoothing: that is the plain attack, named in the error (no silent 'mnist')."""
    model, x, y, _ = affine_problem([0.05, 0.08])
    with pytest.raises(ValueError, match=rf"always smooths: .* got None; for no smoothing call {plain}\(\)"):
        attack(model, x, y, smoother=None)
