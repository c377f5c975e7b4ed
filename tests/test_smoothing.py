"""The graph (eq. 5) and the smoother (eqs. 6-9, 19) against a reference built straight from the paper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from smoothlab import Smoother, SmoothingSpec, image_graph
from smoothlab.graph import condition_number_bound
from smoothlab.smoothing import resolve_smoother

SOLVERS = ["dense", "direct", "cg"]


# ----------------------------------------------------------------------------- reference
def reference_graph(img: np.ndarray, neighbours: int, kernel: str, lam: float, colour: str) -> list[np.ndarray]:
    """Dense W per graph from eq. (5), by looping over pixel pairs (independent of smoothlab)."""
    c, h, w = img.shape
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    if neighbours == 8:
        steps += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    feats = [img] if colour == "joint" else [img[i : i + 1] for i in range(c)]
    out = []
    for f in feats:
        wmat = np.zeros((h * w, h * w))
        for i in range(h):
            for j in range(w):
                for dy, dx in steps:
                    k, l = i + dy, j + dx
                    if 0 <= k < h and 0 <= l < w:
                        dist = np.linalg.norm(f[:, i, j] - f[:, k, l])
                        val = np.exp(-lam * dist) if kernel == "laplacian" else np.exp(-lam * dist**2)
                        wmat[i * w + j, k * w + l] = val
        out.append(wmat)
    return out


def reference_smoothing(img: np.ndarray, z: np.ndarray, alpha: float, **graph) -> np.ndarray:
    """ŝ_α(z) of eq. (9) per channel from the dense matrices of eqs. (5)-(8)."""
    c, h, w = z.shape
    mats = reference_graph(img, **graph)
    out = np.empty_like(z)
    for ch in range(c):
        wmat = mats[0] if len(mats) == 1 else mats[ch]
        d = wmat.sum(1)
        dm = np.diag(1.0 / np.sqrt(d))
        lap = (np.eye(h * w) - alpha * dm @ wmat @ dm) / (1 - alpha)
        s = np.linalg.solve(lap, z[ch].ravel())
        s1 = np.linalg.solve(lap, np.ones(h * w))
        out[ch] = (s / s1).reshape(h, w)
    return out


def _make_images() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h, w = 7, 9
    flat_regions = torch.zeros(1, 1, h, w, dtype=torch.float64)
    flat_regions[..., :3, :] = 0.2
    flat_regions[..., 3:, 4:] = 0.9
    edge = torch.zeros(1, 1, h, w, dtype=torch.float64)
    edge[..., :, w // 2 :] = 1.0
    colour = torch.rand(1, 3, h, w, generator=g, dtype=torch.float64)
    colour[:, :, :, :4] = torch.tensor([0.9, 0.1, 0.4], dtype=torch.float64).view(1, 3, 1, 1)
    return {
        "random": torch.rand(2, 1, h, w, generator=g, dtype=torch.float64),
        "flat-regions": flat_regions,
        "edge": edge,
        "colour": colour,
    }


IMAGES = _make_images()


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("name", list(IMAGES))
@pytest.mark.parametrize(
    "graph",
    [
        dict(neighbours=4, kernel="laplacian", lam=10.0, colour="joint"),
        dict(neighbours=8, kernel="gaussian", lam=4.0, colour="per-channel"),
    ],
)
def test_solvers_match_reference(solver: str, name: str, graph: dict) -> None:
    x = IMAGES[name]
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    alpha = 0.95
    smoother = Smoother(x, alpha, solver, tol=1e-12, **graph)
    out = smoother(z).detach().numpy()
    for b in range(x.shape[0]):
        ref = reference_smoothing(x[b].numpy(), z[b].numpy(), alpha, **graph)
        rel = np.linalg.norm(out[b] - ref) / np.linalg.norm(ref)
        assert rel < 1e-5, (solver, name, rel)


@pytest.mark.parametrize("solver", SOLVERS)
def test_solve_is_inverse_of_laplacian(solver: str) -> None:
    x = IMAGES["colour"]
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    s = Smoother(x, 0.9, solver, tol=1e-12)
    r = s.solve(z)
    lap = s.graph.regularised_laplacian_scipy(0.9)
    for ch in range(3):
        back = lap @ r[0, ch].numpy().ravel()
        np.testing.assert_allclose(back, z[0, ch].numpy().ravel(), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize(
    "solver,backward", [("dense", "adjoint"), ("direct", "adjoint"), ("cg", "adjoint"), ("cg", "unrolled")]
)
def test_gradcheck(solver: str, backward: str) -> None:
    x = IMAGES["colour"][:, :, :5, :6].contiguous()
    s = Smoother(x, 0.9, solver, tol=1e-13, backward=backward, lam=5.0)
    z = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: s(v, check_finite=False), (z,), eps=1e-6, atol=1e-6)


def test_adjoint_backward_equals_smoothing_of_gradient() -> None:
    """Eq. (19): the backward of ŝ_α is ℒ_α^-1 (g / s_α(1)), i.e. ŝ_α applied to g scaled."""
    x = IMAGES["random"]
    s = Smoother(x, 0.95, "dense")
    z = torch.randn_like(x, requires_grad=True)
    g = torch.randn_like(x)
    (s(z) * g).sum().backward()
    expected = s.solve(g / s.ones_response)
    torch.testing.assert_close(z.grad, expected)


def test_laplacian_symmetric_positive_definite() -> None:
    for name, x in IMAGES.items():
        s = Smoother(x, 0.99, "cg", colour="per-channel", neighbours=8)
        lap = s.graph.regularised_laplacian_scipy(0.99, 0, x.shape[1] - 1).toarray()
        np.testing.assert_allclose(lap, lap.T, atol=0)
        eig = np.linalg.eigvalsh(lap)
        assert eig.min() > 0, name
        assert eig.max() / eig.min() <= condition_number_bound(0.99) * (1 + 1e-9)


@pytest.mark.parametrize("solver", SOLVERS)
def test_constant_signal_comes_back(solver: str) -> None:
    x = IMAGES["colour"]
    s = Smoother(x, 0.95, solver, tol=1e-12)
    ones = torch.ones_like(x)
    assert torch.allclose(s(ones), ones, rtol=0, atol=1e-12)
    const = torch.full_like(x, -0.37)
    assert torch.allclose(s(const), const, rtol=0, atol=1e-12)


@pytest.mark.parametrize("solver", SOLVERS)
def test_zero_signal_and_alpha_zero(solver: str) -> None:
    x = IMAGES["random"]
    s = Smoother(x, 0.95, solver)
    z = torch.zeros_like(x)
    out = s(z)
    assert torch.equal(out, z)
    ident = Smoother(x, 0.0, solver)
    v = torch.randn_like(x)
    assert torch.equal(ident(v), v)


def _edge_and_flat() -> tuple[torch.Tensor, torch.Tensor]:
    h, w = 24, 24
    edge = torch.zeros(1, 1, h, w, dtype=torch.float64)
    edge[..., w // 2 :] = 1.0
    return edge, torch.full_like(edge, 0.5)


def test_edge_preserving_smoothing() -> None:
    """Noise smoothed guided by a sharp edge becomes smooth on each side and keeps a jump across."""
    edge, flat = _edge_and_flat()
    w = edge.shape[-1]
    g = torch.Generator().manual_seed(4)
    step = (edge * 1.0).clone()
    z = step + 0.3 * torch.randn(edge.shape, generator=g, dtype=torch.float64)

    def measure(guide: torch.Tensor) -> tuple[float, float]:
        r = Smoother(guide, 0.995, "direct")(z)[0, 0]
        dcol = (r[:, 1:] - r[:, :-1]).abs().mean(0)
        jump = float(dcol[w // 2 - 1])
        within = float(torch.cat([dcol[: w // 2 - 2], dcol[w // 2 + 1 :]]).mean())
        return jump, within

    jump_edge, within_edge = measure(edge)
    jump_flat, within_flat = measure(flat)
    input_rough = float((z[0, 0, :, 1:] - z[0, 0, :, :-1]).abs().mean())
    assert within_edge < 0.1 * input_rough  # smooth on each side
    assert jump_edge > 0.8  # the unit step survives across the edge
    assert jump_flat < 0.2  # a flat guide blurs straight across it
    assert jump_edge > 5 * jump_flat


def test_truncated_cg_paper_mode() -> None:
    """50 CG iterations at α = 0.997 are not converged; the reported residual is the true one."""
    from skimage import data

    img = torch.from_numpy(data.camera()[200:264, 200:264] / 255.0).view(1, 1, 64, 64)
    z = torch.randn(img.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    paper = Smoother(img, 0.997, "cg", tol=0.0, max_iter=50)
    exact = Smoother(img, 0.997, "direct")
    approx = paper.solve(z)
    info = paper.last_cg_info
    assert info is not None and int(info.iterations.min()) == 50 and not bool(info.converged.any())
    lap = exact.graph.regularised_laplacian_scipy(0.997)
    true_res = np.linalg.norm(z.numpy().ravel() - lap @ approx.numpy().ravel()) / np.linalg.norm(z.numpy())
    assert info.relative_residual.item() == pytest.approx(true_res, rel=1e-6)
    rel_err = float((approx - exact.solve(z)).norm() / exact.solve(z).norm())
    assert 1e-3 < rel_err < 0.5  # truncated: measurably off, not garbage
    converged = Smoother(img, 0.997, "cg", tol=1e-10, max_iter=5000)
    conv = converged.solve(z)
    assert converged.last_cg_info.converged.all()
    assert float((conv - exact.solve(z)).norm() / exact.solve(z).norm()) < 1e-7


def test_cg_reports_iterations_and_stops_per_system() -> None:
    x = torch.cat([IMAGES["random"], IMAGES["random"]], 0)
    z = torch.randn_like(x)
    z[1] = 0.0
    s = Smoother(x, 0.9, "cg", tol=1e-8, check_every=1)
    out = s.solve(z)
    info = s.last_cg_info
    assert info.iterations[1].item() == 0  # zero right-hand side: nothing to do, no 0/0
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert 0 < info.iterations[0].item() < 200
    assert info.max_relative_residual <= 1e-8


def test_flat_and_single_pixel_images() -> None:
    flat = torch.full((2, 3, 5, 5), 0.3)
    for solver in SOLVERS:
        s = Smoother(flat, 0.9, solver)
        z = torch.randn_like(flat)
        out = s(z)
        assert torch.isfinite(out).all()
    one = torch.full((1, 3, 1, 1), 0.5)
    for solver in SOLVERS:
        s = Smoother(one, 0.9, solver)
        z = torch.randn_like(one)
        torch.testing.assert_close(s(z), z)


def test_isolated_pixels_no_nan() -> None:
    """A Gaussian kernel with a huge rate underflows to zero weights: isolated vertices, no NaN."""
    x = torch.zeros(1, 1, 6, 6)
    x[..., ::2, :] = 1.0
    x[..., :, ::2] = 1.0 - x[..., :, ::2]
    for solver in SOLVERS:
        s = Smoother(x, 0.9, solver, kernel="gaussian", lam=1e4)
        out = s(torch.randn_like(x))
        assert torch.isfinite(out).all()


def test_subset_and_spec() -> None:
    x = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(6))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    for solver in SOLVERS:
        s = Smoother(x, 0.9, solver)
        full = s(z)
        idx = torch.tensor([3, 1])
        torch.testing.assert_close(s[idx](z[idx]), full[idx], rtol=1e-4, atol=1e-5)
    spec = SmoothingSpec.mnist()
    built = resolve_smoother(spec, x)
    assert isinstance(built, Smoother) and built.alpha == 0.95 and built.solver == "direct"  # auto on the CPU
    assert resolve_smoother(None, x) is None
    with pytest.raises(ValueError, match="smoother was built"):
        resolve_smoother(built, x[:2])
    import pickle

    assert pickle.loads(pickle.dumps(spec)) == spec


def test_graph_weights_and_degree() -> None:
    x = IMAGES["colour"]
    g = image_graph(x, neighbours=8, kernel="gaussian", lam=3.0, colour="joint")
    ref = reference_graph(x[0].numpy(), 8, "gaussian", 3.0, "joint")[0]
    np.testing.assert_allclose(g.to_scipy().toarray(), ref, rtol=1e-12)
    np.testing.assert_allclose(g.degree[0, 0].numpy().ravel(), ref.sum(1), rtol=1e-12)
    assert np.all(np.diag(g.to_scipy().toarray()) == 0)  # no self loops
    # smoothness energy: 0 for the null vector D^1/2 1 of I - 𝒲 (r̂ constant in eq. 6), higher for noise
    flat = torch.full((1, 1, 8, 8), 0.4)
    gf = image_graph(flat)
    assert gf.smoothness(gf.degree.sqrt()).item() == pytest.approx(0.0, abs=1e-6)
    assert gf.smoothness(torch.randn(1, 1, 8, 8)).item() > 0.5
    assert gf.smoothness(torch.zeros(1, 1, 8, 8)).item() == 0.0


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(x=torch.rand(3, 4, 4)), ValueError, "x must have shape"),
        (dict(x=torch.randint(0, 2, (1, 1, 4, 4))), TypeError, "floating-point"),
        (dict(x=torch.rand(1, 1, 4, 4) + 1.0), ValueError, r"values in \[0, 1\]"),
        (dict(x=torch.full((1, 1, 4, 4), float("nan"))), ValueError, "finite"),
        (dict(alpha=1.0), ValueError, "alpha must be in"),
        (dict(alpha=-0.1), ValueError, "alpha must be in"),
        (dict(lam=0.0), ValueError, "lam must be in"),
        (dict(kernel="cauchy"), ValueError, "kernel must be one of"),
        (dict(solver="lu"), ValueError, "solver must be one of"),
        (dict(neighbours=6), ValueError, "neighbours must be one of"),
        (dict(colour="rgb"), ValueError, "colour must be one of"),
        (dict(x=torch.rand(1, 1, 80, 80), solver="dense"), ValueError, "dense_max_pixels"),
        (dict(solver="dense", backward="unrolled"), ValueError, "backward='unrolled'"),
        (dict(x="image"), TypeError, "x must be a torch.Tensor"),
    ],
)
def test_bad_input(kwargs: dict, exc: type, match: str) -> None:
    args = dict(x=torch.rand(1, 1, 4, 4), alpha=0.9)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        Smoother(args.pop("x"), **args)


def test_bad_signal() -> None:
    s = Smoother(torch.rand(2, 1, 4, 4), 0.9)
    with pytest.raises(ValueError, match="shape of the guide"):
        s(torch.rand(1, 1, 4, 4))
    with pytest.raises(TypeError, match="dtype"):
        s(torch.rand(2, 1, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="finite"):
        s(torch.full((2, 1, 4, 4), float("inf")))
    with pytest.raises(TypeError, match="torch.Tensor"):
        s(np.zeros((2, 1, 4, 4)))


def test_condition_number_grows_like_inverse_gap() -> None:
    """CG iterations to a fixed tolerance grow with α roughly like sqrt(1 / (1 - α))."""
    from skimage import data

    img = torch.from_numpy(data.camera()[100:164, 100:164] / 255.0).float().view(1, 1, 64, 64)
    z = torch.randn(img.shape, generator=torch.Generator().manual_seed(8))
    its = {}
    for a in (0.9, 0.99):
        s = Smoother(img, a, "cg", tol=1e-5, check_every=1)
        s.solve(z)
        its[a] = s.last_cg_info.max_iterations
    assert its[0.99] > 1.5 * its[0.9]
    assert its[0.99] < 5 * math.sqrt(10) * its[0.9]


def test_cg_chunking_does_not_change_results() -> None:
    x = torch.rand(5, 3, 10, 12, generator=torch.Generator().manual_seed(9))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(10))
    whole = Smoother(x, 0.99, "cg", tol=1e-6, cg_chunk_bytes=None)
    per_image = Smoother(x, 0.99, "cg", tol=1e-6, cg_chunk_bytes=1)
    assert per_image._cg_chunk(z) == 1 and whole._cg_chunk(z) == 5
    torch.testing.assert_close(per_image(z), whole(z), rtol=1e-5, atol=1e-6)
    assert per_image.last_cg_info.iterations.shape == (5, 3)
    assert torch.equal(per_image.last_cg_info.iterations, whole.last_cg_info.iterations)
