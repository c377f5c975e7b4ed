"""The graph (eq. 5) and the smoother (eqs. 6-9, 19) against a reference built straight from the paper."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from smoothlab import Smoother, SmoothingSpec, image_graph
from smoothlab.graph import condition_number_bound
from smoothlab.smoothing import resolve_smoother

SOLVERS = ["dense", "direct", "cg", "block"]
# every available device (the same tests prove the GPU path on a GPU machine; more in test_devices.py)
DEVICES = [pytest.param("cpu", id="cpu")] + ([pytest.param("cuda", id="cuda")] if torch.cuda.is_available() else [])


# ----------------------------------------------------------------------------- reference
def reference_graph(
    img: np.ndarray, neighbours: int, kernel: str, lam: float, colour: str, spatial_sigma: float | None = None
) -> list[np.ndarray]:
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
                        if spatial_sigma is not None:  # k_s(p_i, p_j) = exp(-||p_i - p_j||^2 / (2 sigma^2))
                            val *= np.exp(-(dy * dy + dx * dx) / (2 * spatial_sigma**2))
                        wmat[i * w + j, k * w + l] = val
        out.append(wmat)
    return out


def reference_laplacians(img: np.ndarray, alpha: float, **graph) -> list[np.ndarray]:
    """Dense ℒ_α = (I - α D^-1/2 W D^-1/2) / (1 - α) per graph (eqs. 6-8); an isolated vertex
    (degree 0) gets a zero row and column in D^-1/2 W D^-1/2."""
    out = []
    for wmat in reference_graph(img, **graph):
        d = wmat.sum(1)
        dm = np.diag(np.divide(1.0, np.sqrt(d), out=np.zeros_like(d), where=d > 0))
        out.append((np.eye(len(d)) - alpha * dm @ wmat @ dm) / (1 - alpha))
    return out


def reference_smoothing(img: np.ndarray, z: np.ndarray, alpha: float, **graph) -> np.ndarray:
    """ŝ_α(z) of eq. (9) per channel from the dense matrices of eqs. (5)-(8)."""
    c, h, w = z.shape
    laps = reference_laplacians(img, alpha, **graph)
    out = np.empty_like(z)
    for ch in range(c):
        lap = laps[0] if len(laps) == 1 else laps[ch]
        s = np.linalg.solve(lap, z[ch].ravel())
        s1 = np.linalg.solve(lap, np.ones(h * w))
        out[ch] = (s / s1).reshape(h, w)
    return out


def reference_jacobians(img: np.ndarray, channels: int, alpha: float, **graph) -> list[np.ndarray]:
    """The Jacobian of ŝ_α per channel as an explicit dense matrix, J = diag(s_α(1))^-1 ℒ_α^-1 (eq. 19)."""
    laps = reference_laplacians(img, alpha, **graph)
    out = []
    for ch in range(channels):
        inv = np.linalg.inv(laps[0] if len(laps) == 1 else laps[ch])
        out.append(np.diag(1.0 / inv.sum(1)) @ inv)  # s_α(1) = ℒ_α^-1 1: the row sums of ℒ_α^-1
    return out


def reference_cg(a: np.ndarray, b: np.ndarray, iterations: int, x0: np.ndarray) -> np.ndarray:
    """Textbook conjugate gradient (Hestenes-Stiefel), a fixed number of iterations, in NumPy."""
    x = x0.copy()
    r = b - a @ x
    p = r.copy()
    for _ in range(iterations):
        ap = a @ p
        step = (r @ r) / (p @ ap)
        x = x + step * p
        r_new = r - step * ap
        p = r_new + (r_new @ r_new) / (r @ r) * p
        r = r_new
    return x


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
    ids=lambda g: f"{g['neighbours']}-neighbours-{g['kernel']}-{g['colour']}",
)
@pytest.mark.parametrize("device", DEVICES)
def test_solvers_match_reference(solver: str, name: str, graph: dict, device: str) -> None:
    x = IMAGES[name]
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    alpha = 0.95
    with warnings.catch_warnings():  # direct on a CUDA tensor without CuPy warns that it solves on the CPU
        warnings.simplefilter("ignore", UserWarning)
        smoother = Smoother(x.to(device), alpha, solver, tol=1e-12, **graph)
    out = smoother(z.to(device)).detach().cpu().numpy()
    for b in range(x.shape[0]):
        ref = reference_smoothing(x[b].numpy(), z[b].numpy(), alpha, **graph)
        rel = np.linalg.norm(out[b] - ref) / np.linalg.norm(ref)
        assert rel < 1e-5, (solver, name, rel)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("device", DEVICES)
def test_solve_is_inverse_of_laplacian(solver: str, device: str) -> None:
    x = IMAGES["colour"]
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        s = Smoother(x.to(device), 0.9, solver, tol=1e-12)
    r = s.solve(z.to(device)).cpu()
    lap = s.graph.regularised_laplacian_scipy(0.9)
    for ch in range(3):
        back = lap @ r[0, ch].numpy().ravel()
        np.testing.assert_allclose(back, z[0, ch].numpy().ravel(), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("colour", ["joint", "per-channel"])
@pytest.mark.parametrize(
    "solver,backward",
    [("dense", "adjoint"), ("direct", "adjoint"), ("block", "adjoint"), ("cg", "adjoint"), ("cg", "unrolled")],
)
def test_gradcheck(solver: str, backward: str, colour: str) -> None:
    x = IMAGES["colour"][:, :, :5, :6].contiguous()
    s = Smoother(x, 0.9, solver, tol=1e-13, backward=backward, lam=5.0, colour=colour)
    assert s.graph.groups == (1 if colour == "joint" else 3)
    z = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: s(v, check_finite=False), (z,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("colour", ["joint", "per-channel"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_adjoint_backward_equals_transposed_jacobian(solver: str, colour: str) -> None:
    """Eq. (19): the backward of ŝ_α is Jᵀ g, with J = diag(s_α(1))^-1 ℒ_α^-1 built as a dense
    matrix by the NumPy reference (not by the backward's own solve)."""
    x = IMAGES["colour"]
    graph = dict(neighbours=4, kernel="laplacian", lam=10.0, colour=colour)
    s = Smoother(x, 0.95, solver, tol=1e-12, **graph)
    gen = torch.Generator().manual_seed(11)
    z = torch.randn(x.shape, generator=gen, dtype=x.dtype, requires_grad=True)
    g = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    (s(z) * g).sum().backward()
    jac = reference_jacobians(x[0].numpy(), 3, 0.95, **graph)
    for ch in range(3):
        expected = jac[ch].T @ g[0, ch].numpy().ravel()
        np.testing.assert_allclose(z.grad[0, ch].numpy().ravel(), expected, rtol=1e-7, atol=1e-10)
    # J is not symmetric (s_α(1) is not constant here): J g would be a different vector
    assert np.abs(jac[0] - jac[0].T).max() > 1e-3


@pytest.mark.parametrize("size", [(6, 9), (9, 6)], ids=["wide", "tall"])
def test_every_form_of_the_operator_is_the_reference_laplacian(size: tuple[int, int]) -> None:
    """The one builder of ℒ_α (eqs. 6-7) gives each solver the same matrix: dense, sparse (per
    image and graph), block tridiagonal (reassembled) and matrix-free, against the NumPy reference."""
    from smoothlab.graph import image_graph
    from smoothlab.smoothing._operator import RegularisedLaplacian

    g = torch.Generator().manual_seed(21)
    x = torch.rand(2, 3, *size, generator=g, dtype=torch.float64)
    graph = dict(neighbours=8, kernel="laplacian", lam=4.0, colour="per-channel")
    op = RegularisedLaplacian(image_graph(x, **graph), 0.9)
    h, w = size
    dense = op.dense().numpy()
    diag, low, transposed = op.blocks()
    assert transposed == (w > h)
    nb, m = diag.shape[2], diag.shape[3]
    blocks = torch.zeros(2, 3, nb * m, nb * m, dtype=torch.float64)  # in block order
    for k in range(nb):
        blocks[:, :, k * m : (k + 1) * m, k * m : (k + 1) * m] = diag[:, :, k]
        if k:
            blocks[:, :, k * m : (k + 1) * m, (k - 1) * m : k * m] = low[:, :, k]
            blocks[:, :, (k - 1) * m : k * m, k * m : (k + 1) * m] = low[:, :, k].transpose(-1, -2)
    k, p = np.divmod(np.arange(h * w), m)  # block row and position of each block-order index
    order = p * w + k if transposed else k * m + p  # its row-major pixel
    from_blocks = np.empty_like(dense)
    from_blocks[:, :, order[:, None], order[None, :]] = blocks.numpy()
    z = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    matfree = (op.shifted_matvec(z) / (1 - 0.9)).flatten(2).numpy()
    for i in range(2):
        for gi, ref in enumerate(reference_laplacians(x[i].numpy(), 0.9, **graph)):
            np.testing.assert_allclose(dense[i, gi], ref, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(op.sparse(i, gi).toarray(), ref, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(from_blocks[i, gi], ref, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(matfree[i, gi], ref @ z[i, gi].numpy().ravel(), rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(op[1:].dense().numpy(), dense[1:])


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
    flat = torch.full((2, 3, 5, 5), 0.3, dtype=torch.float64)
    z = torch.randn(flat.shape, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    ref = [reference_smoothing(flat[b].numpy(), z[b].numpy(), 0.9, neighbours=4, kernel="laplacian", lam=10.0,
                               colour="joint") for b in range(2)]
    for solver in SOLVERS:
        out = Smoother(flat, 0.9, solver, tol=1e-12)(z)
        np.testing.assert_allclose(out.numpy(), np.stack(ref), rtol=1e-9, atol=1e-10)
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
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(13))
    for solver in SOLVERS:
        s = Smoother(x, 0.9, solver, kernel="gaussian", lam=1e4)
        assert torch.equal(s.graph.degree, torch.zeros_like(s.graph.degree))  # every vertex is isolated
        # an isolated vertex has a zero row in 𝒲: ℒ_α = I / (1 - α) there, so ŝ_α is the identity
        torch.testing.assert_close(s(z), z, rtol=1e-6, atol=1e-7)
    # one isolated pixel in a flat image: ŝ_α is the identity there, the reference elsewhere
    y = torch.full((1, 1, 5, 6), 0.2, dtype=torch.float64)
    y[0, 0, 2, 3] = 0.9
    zy = torch.randn(y.shape, generator=torch.Generator().manual_seed(14), dtype=torch.float64)
    ref = reference_smoothing(y[0].numpy(), zy[0].numpy(), 0.9, neighbours=4, kernel="gaussian", lam=1e4,
                              colour="joint")
    assert ref[0, 2, 3] == zy[0, 0, 2, 3].item()
    for solver in SOLVERS:
        out = Smoother(y, 0.9, solver, kernel="gaussian", lam=1e4, tol=1e-12)(zy)
        assert out[0, 0, 2, 3].item() == pytest.approx(zy[0, 0, 2, 3].item(), rel=1e-12)
        np.testing.assert_allclose(out[0].numpy(), ref, rtol=1e-9, atol=1e-10)


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
    assert isinstance(built, Smoother) and built.alpha == 0.95 and built.solver == "block"  # auto on the CPU, small images
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
    ids=lambda v: "+".join(v) if isinstance(v, dict) else getattr(v, "__name__", v),
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
    assert per_image._solver.chunk(z) == 1 and whole._solver.chunk(z) == 5
    torch.testing.assert_close(per_image(z), whole(z), rtol=1e-5, atol=1e-6)
    assert per_image.last_cg_info.iterations.shape == (5, 3)
    assert torch.equal(per_image.last_cg_info.iterations, whole.last_cg_info.iterations)


# ----------------------------------------------------------------------------- options (issue 12)
def test_spatial_kernel_with_8_neighbours_and_its_cancellation_with_4() -> None:
    x = IMAGES["colour"]
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(15), dtype=torch.float64)
    sigma = 0.8
    graph = dict(neighbours=8, kernel="gaussian", lam=3.0, colour="joint", spatial_sigma=sigma)
    g8 = image_graph(x, **graph)
    np.testing.assert_allclose(g8.to_scipy().toarray(), reference_graph(x[0].numpy(), **graph)[0], rtol=1e-12)
    ref = reference_smoothing(x[0].numpy(), z[0].numpy(), 0.95, **graph)
    for solver in SOLVERS:
        out = Smoother(x, 0.95, solver, tol=1e-12, **graph)(z)
        np.testing.assert_allclose(out[0].numpy(), ref, rtol=1e-8, atol=1e-10)
    plain = Smoother(x, 0.95, "direct", neighbours=8, kernel="gaussian", lam=3.0)(z)
    assert float((out - plain).abs().max()) > 1e-3  # the diagonal edges really weigh less
    # 4 neighbours: k_s = exp(-1 / (2 σ²)) on every edge, a constant that D^-1/2 W D^-1/2 cancels
    g4, g4_plain = image_graph(x, spatial_sigma=sigma), image_graph(x)
    torch.testing.assert_close(g4.weights, g4_plain.weights * math.exp(-1 / (2 * sigma**2)), rtol=1e-12, atol=0)
    torch.testing.assert_close(g4.normalised, g4_plain.normalised, rtol=1e-12, atol=1e-15)
    spec = SmoothingSpec(alpha=0.95, spatial_sigma=sigma)
    torch.testing.assert_close(spec(x)(z), Smoother(x, 0.95)(z), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("x0", ["zeros", "rhs"])
def test_cg_initial_guess_against_textbook_cg(x0: str) -> None:
    """CG from x0 = 0 or x0 = b (the authors' code), k iterations, against a NumPy CG on ℒ_α (1 - α)."""
    x = IMAGES["random"][:1]
    alpha = 0.9
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(16), dtype=torch.float64)
    graph = dict(neighbours=4, kernel="laplacian", lam=10.0, colour="joint")
    a = reference_laplacians(x[0].numpy(), alpha, **graph)[0] * (1 - alpha)  # I - α 𝒲
    b = z[0, 0].numpy().ravel()
    start = b.copy() if x0 == "rhs" else np.zeros_like(b)
    for k in (1, 4):
        s = Smoother(x, alpha, "cg", tol=0.0, max_iter=k, x0=x0)
        got = s.solve(z)[0, 0].numpy().ravel()
        np.testing.assert_allclose(got, (1 - alpha) * reference_cg(a, b, k, start), rtol=1e-10, atol=1e-12)
        assert int(s.last_cg_info.iterations.min()) == k
    one_step = {g: Smoother(x, alpha, "cg", tol=0.0, max_iter=1, x0=g).solve(z) for g in ("zeros", "rhs")}
    assert float((one_step["zeros"] - one_step["rhs"]).abs().max()) > 1e-2  # x0 matters when truncated
    converged = Smoother(x, alpha, "cg", tol=1e-12, x0=x0).solve(z)[0, 0].numpy().ravel()
    np.testing.assert_allclose(converged, np.linalg.solve(a / (1 - alpha), b), rtol=1e-9, atol=1e-10)


def test_imagenet_spec_is_the_paper_setting() -> None:
    spec = SmoothingSpec.imagenet()
    assert (spec.alpha, spec.solver, spec.tol, spec.max_iter, spec.x0) == (0.997, "cg", 0.0, 50, "zeros")
    assert (spec.kernel, spec.colour, spec.neighbours) == ("laplacian", "joint", 4) and spec.lam > 0
    g = torch.Generator().manual_seed(17)
    x = 0.4 + 0.03 * torch.rand(1, 3, 20, 20, generator=g, dtype=torch.float64)  # low contrast: well connected
    z = torch.randn(x.shape, generator=g, dtype=torch.float64)
    S = spec(x)
    assert isinstance(S, Smoother) and S.solver == "cg" and S.alpha == 0.997
    got = S.solve(z)
    info = S.last_cg_info
    assert bool((info.iterations == 50).all()) and not bool(info.converged.any())  # exactly 50, truncated
    a = reference_laplacians(x[0].numpy(), 0.997, neighbours=4, kernel="laplacian", lam=spec.lam, colour="joint")[0]
    a = a * (1 - 0.997)
    for ch in range(3):
        b = z[0, ch].numpy().ravel()
        expected = (1 - 0.997) * reference_cg(a, b, 50, np.zeros_like(b))
        np.testing.assert_allclose(got[0, ch].numpy().ravel(), expected, rtol=1e-6, atol=1e-9)
        exact = np.linalg.solve(a / (1 - 0.997), b)
        assert np.linalg.norm(got[0, ch].numpy().ravel() - exact) > 1e-4 * np.linalg.norm(exact)  # not converged
    # the authors' code: Gaussian kernel, λ = 300, one graph per channel (DESIGN.md section 4)
    code = SmoothingSpec.imagenet(kernel="gaussian", lam=300.0, colour="per-channel")(x)
    assert (code.graph.kernel, code.graph.lam, code.graph.groups, code.alpha, code.max_iter) == (
        "gaussian", 300.0, 3, 0.997, 50)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(tol=-1e-3), ValueError, r"tol must be in \[0, inf\), got -0.001"),
        (dict(tol=float("nan")), ValueError, "tol must be finite, got nan"),
        (dict(tol="small"), TypeError, "tol must be a real number, got 'small'"),
        (dict(max_iter=0), ValueError, "max_iter must be an int >= 1, got 0"),
        (dict(max_iter=2.5), TypeError, "max_iter must be an int, got 2.5"),
        (dict(x0="ones"), ValueError, "x0 must be one of 'zeros', 'rhs'; got 'ones'"),
        (dict(cg_chunk_bytes=0), ValueError, "cg_chunk_bytes must be an int >= 1, got 0"),
        (dict(cg_chunk_bytes="big"), TypeError, "cg_chunk_bytes must be an int, got 'big'"),
        (dict(check_every=0), ValueError, "check_every must be an int >= 1, got 0"),
        (dict(spatial_sigma=0.0), ValueError, r"spatial_sigma must be in \(0, inf\), got 0"),
    ],
    ids=lambda v: "+".join(v) if isinstance(v, dict) else getattr(v, "__name__", v),
)
def test_bad_solver_options(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        Smoother(torch.rand(1, 1, 4, 4), 0.9, "cg", **kwargs)


def test_resolve_smoother_checks_what_a_callable_returns() -> None:
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(18))
    with pytest.raises(TypeError, match="smoother callable must return a Smoother, got int"):
        resolve_smoother(lambda v: 3, x)
    with pytest.raises(TypeError, match="smoother callable must return a Smoother, got SmoothingSpec"):
        resolve_smoother(lambda v: SmoothingSpec.mnist(), x)
    with pytest.raises(ValueError, match=r"smoother was built for images of shape \(1, 1, 6, 6\)"):
        resolve_smoother(lambda v: Smoother(v[:1], 0.9), x)  # a smoother of another batch
    with pytest.raises(TypeError, match="smoother must be None, a Smoother, a SmoothingSpec or a callable, got str"):
        resolve_smoother("mnist", x)
    built = resolve_smoother(lambda v: Smoother(v, 0.5, "dense"), x)
    assert isinstance(built, Smoother) and built.alpha == 0.5 and built.shape == (2, 1, 6, 6)


@pytest.mark.parametrize("shape", [(8, 1, 28, 28), (3, 3, 20, 33)], ids=["mnist-size", "wide-colour"])
def test_block_solver_is_exact_to_1e_5_in_single_precision(shape: tuple[int, int, int, int]) -> None:
    """The stated tolerance of the fast exact solver (issue 10): float32 guides and signals, factors
    computed in float64 and stored in float32; relative error against the float64 dense inverse."""
    g = torch.Generator().manual_seed(11)
    x64 = (torch.rand(shape[0], shape[1], 4, 4, generator=g, dtype=torch.float64) > 0.6).double()
    x64 = torch.nn.functional.interpolate(x64, size=shape[-2:], mode="nearest")  # flat regions and edges
    z64 = torch.randn(shape, generator=g, dtype=torch.float64)
    ref = Smoother(x64, 0.95, "dense")(z64)
    block = Smoother(x64.float(), 0.95, "block")
    assert block.backend.startswith("block") and block.solver == "block"
    out = block(z64.float()).double()
    assert float((out - ref).norm() / ref.norm()) < 1e-5
    zr = z64.float().requires_grad_(True)
    (grad,) = torch.autograd.grad(block(zr).square().sum(), zr)
    zd = z64.clone().requires_grad_(True)
    (grad_ref,) = torch.autograd.grad(Smoother(x64, 0.95, "dense")(zd).square().sum(), zd)
    assert float((grad.double() - grad_ref).norm() / grad_ref.norm()) < 1e-5


def test_auto_solver_on_the_cpu_and_the_block_size_limit() -> None:
    from smoothlab.smoothing import BLOCK_AUTO_MAX_SIDE, BLOCK_MAX_SIDE

    assert Smoother(torch.rand(1, 1, 28, 28), 0.9).solver == "block"  # MNIST
    assert Smoother(torch.rand(1, 1, 200, BLOCK_AUTO_MAX_SIDE), 0.9).solver == "block"  # short side decides
    assert Smoother(torch.rand(1, 1, 40, BLOCK_AUTO_MAX_SIDE + 1), 0.9).solver == "direct"
    with pytest.raises(ValueError, match="short side of 128"):
        Smoother(torch.rand(1, 1, BLOCK_MAX_SIDE + 1, BLOCK_MAX_SIDE + 1), 0.9, "block")
