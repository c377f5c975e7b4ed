"""DDN and FMN (plain and smooth) against the closed-form optimum of an affine model.

For the two-class model with logits ``(0, w·x + b)`` and true class 0 (``w·x_o + b < 0``), the
least L2 perturbation that crosses the boundary ``w·x + b = 0`` is ``-(w·x_o + b) w / ||w||²``, of
norm ``|w·x_o + b| / ||w||``. The smooth versions step along the latent gradient ``ŝ_αᵀ w``, so
their perturbation lies along ``d = ŝ_α(ŝ_αᵀ w)`` and their optimum is the least norm along it,
``|w·x_o + b| ||d|| / |w·d|``; ``ŝ_α`` is built here by hand from eq. (5)-(9) with dense NumPy
matrices, not by the smoother under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from smoothlab.attacks import ATTACKS, ddn, fmn, sddn, sfmn
from smoothlab.smoothing import SmoothingSpec

H = W = 10
ALPHA, LAM = 0.9, 10.0


def _images(n: int) -> torch.Tensor:
    """Grey images with a vertical step edge at a different column each: 0.35 left, 0.65 right."""
    x = torch.full((n, 1, H, W), 0.35)
    for i in range(n):
        x[i, :, :, 3 + i :] = 0.65
    return x


def _smoothing_matrix(img: np.ndarray) -> np.ndarray:
    """Dense ``ŝ_α = diag(s_α(1))^-1 ℒ_α^-1`` of a one-channel image, from eqs. (5)-(9)."""
    n = img.size
    Wm = np.zeros((n, n))
    for r in range(H):
        for c in range(W):
            for dr, dc in ((0, 1), (1, 0)):
                r2, c2 = r + dr, c + dc
                if r2 < H and c2 < W:
                    i, j = r * W + c, r2 * W + c2
                    Wm[i, j] = Wm[j, i] = math.exp(-LAM * abs(img[r, c] - img[r2, c2]))
    d = Wm.sum(1) ** -0.5
    L = (np.eye(n) - ALPHA * d[:, None] * Wm * d[None, :]) / (1.0 - ALPHA)
    Linv = np.linalg.inv(L)
    return Linv / (Linv @ np.ones(n))[:, None]


def _problem(n: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = _images(n)
    w = torch.randn(1, H, W, generator=g, dtype=torch.float64).float()
    # distances to the boundary (plain optimum) of 0.2 to 0.5: well inside the box
    dist = torch.linspace(0.2, 0.5, n)
    b = -(x.flatten(1) @ w.flatten()) - dist * w.norm()
    return x, torch.zeros(n, dtype=torch.long), w, b


class _PerImageAffine(torch.nn.Module):
    """Logits ``(0, w·x + b_i)`` for image ``i`` of a fixed batch: class 0 until ``w·x + b_i`` crosses 0."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = (x.flatten(1) * self.w.flatten()).sum(1) + self.b[: x.shape[0]]
        return torch.stack([torch.zeros_like(f), f], 1)


def _optimum(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, smooth: bool) -> np.ndarray:
    out = []
    wv = w.flatten().double().numpy()
    for i in range(x.shape[0]):
        f = float(x[i].flatten().double().numpy() @ wv + b[i])
        if not smooth:
            out.append(abs(f) / np.linalg.norm(wv))
            continue
        S = _smoothing_matrix(x[i, 0].double().numpy())
        d = S @ (S.T @ wv)
        out.append(abs(f) * np.linalg.norm(d) / abs(wv @ d))
    return np.array(out)


@pytest.mark.parametrize(
    "attack, smooth",
    [(ddn, False), (fmn, False), (sddn, True), (sfmn, True)],
    ids=["ddn", "fmn", "sddn", "sfmn"],
)
def test_minimal_norm_reaches_the_affine_optimum_within_one_percent(attack, smooth):
    x, y, w, b = _problem()
    model = _PerImageAffine(w, b)
    kwargs = {"smoother": SmoothingSpec(alpha=ALPHA, lam=LAM, kernel="laplacian", solver="dense")} if smooth else {}
    res = attack(model, x, y, steps=100, **kwargs)
    opt = _optimum(x, w, b, smooth)
    assert res.success.all()
    d = res.distortion.double().numpy()
    # never below the optimum (it is one), and within 1 % of it
    assert np.all(d >= opt * (1 - 1e-4)), (d, opt)
    assert np.all(d <= opt * 1.01), (d / opt)
    if smooth:
        # the smooth optimum is worse than the plain one (the direction is constrained) ...
        assert np.all(opt > _optimum(x, w, b, False) * 1.05)
        # ... and x_adv = c(x + ŝ_α(z)) with the returned latent z (eq. 18)
        S = SmoothingSpec(alpha=ALPHA, lam=LAM, kernel="laplacian", solver="dense")(x)
        assert torch.allclose((x + S(res.extra["latent"])).clamp(0, 1), res.x_adv, atol=1e-5)


def test_ddn_and_fmn_beat_cw_single_step_on_the_affine_model():
    """The point of the issue: C&W without a line search on its constant lands far from the optimum."""
    from smoothlab.attacks import cw

    x, y, w, b = _problem()
    model = _PerImageAffine(w, b)
    opt = _optimum(x, w, b, False)
    res_cw = cw(model, x, y, c=15.0, margin=0.0, iterations=100)
    res_ddn = ddn(model, x, y)
    assert np.all(res_ddn.distortion.double().numpy() <= opt * 1.01)
    assert not np.all(res_cw.distortion.double().numpy() <= opt * 1.01)


def test_targeted_fmn_and_ddn_reach_the_target():
    x, _, w, b = _problem()
    model = _PerImageAffine(w, b)
    target = torch.ones(x.shape[0], dtype=torch.long)
    for attack in (ddn, fmn):
        res = attack(model, x, torch.zeros_like(target), target=target, steps=100)
        assert (res.pred_adv == 1).all()
        assert np.all(res.distortion.double().numpy() <= _optimum(x, w, b, False) * 1.01)


def test_registered_and_recorded():
    assert {"ddn", "fmn", "sddn", "sfmn"} <= set(ATTACKS)
    x, y, w, b = _problem(2)
    res = fmn(_PerImageAffine(w, b), x, y, steps=10)
    assert res.attack == "fmn" and res.forward_passes.tolist() == [12, 12] and res.backward_passes.tolist() == [10, 10]
    assert res.params["step_final"] == pytest.approx(0.01)


def test_already_misclassified_image_keeps_distortion_zero():
    x, y, w, b = _problem(2)
    b = b.clone()
    b[1] = 10.0  # image 1 is class 1 from the start
    for attack in (ddn, fmn):
        res = attack(_PerImageAffine(w, b), x, y, steps=5)
        assert bool(res.success[1]) and float(res.distortion[1]) == 0.0


@pytest.mark.parametrize("attack", [ddn, fmn])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "steps"),
        ({"gamma": 1.0}, "gamma"),
        ({"gamma": 0.0}, "gamma"),
        ({"step": -1.0}, "step"),
        ({"smoother": "nope"}, "smoother"),
    ],
)
def test_bad_input(attack, kwargs, match):
    x, y, w, b = _problem(2)
    with pytest.raises(ValueError, match=match):
        attack(_PerImageAffine(w, b), x, y, **kwargs)


@pytest.mark.parametrize("attack", [sddn, sfmn])
def test_smooth_versions_refuse_no_smoother(attack):
    x, y, w, b = _problem(2)
    with pytest.raises(ValueError, match="always smooths"):
        attack(_PerImageAffine(w, b), x, y, smoother=None)


def test_drop_outward_equals_the_where_formulation_bit_for_bit():
    # the branch-free mask of the plain attacks' gradient against its definition (module docstring),
    # with x_a at 0, at 1, inside, and off the box by rounding (x_o + δ): the same bits wherever g is
    # not zero (a dropped component is +0.0, as the definition's), the same value (±0) where it is
    from smoothlab.attacks._minimal_norm import drop_outward

    gen = torch.Generator().manual_seed(3)
    xa = torch.rand(4, 1, 28, 28, generator=gen)
    xa[xa < 0.3] = 0.0
    xa[xa > 0.8] = 1.0
    xa.view(-1)[:5] = torch.tensor([-1e-8, 1.0 + 2**-23, 2.0**-140, 1.0 - 2**-24, -0.0])
    g = torch.randn(4, 1, 28, 28, generator=gen)
    g.view(-1)[5:200:3] = 0.0
    g.view(-1)[6:200:3] = -0.0
    g.view(-1)[:5] = torch.tensor([-1.0, 1.0, -1.0, 1.0, -1.0])
    expected = torch.where(((xa <= 0.0) & (g < 0)) | ((xa >= 1.0) & (g > 0)), 0.0, g)
    got = drop_outward(g, xa)
    assert torch.equal(got, expected)  # values (-0.0 == 0.0)
    nonzero = g != 0
    assert torch.equal(got.view(torch.int32)[nonzero], expected.view(torch.int32)[nonzero])  # bits
    assert float(got.view(-1)[2]) == -1.0 and float(got.view(-1)[3]) == 1.0  # inside the box: kept
    assert bool((got != g).any())  # it did drop something
