"""Every place where a tensor crosses devices (issue 10): the smoothers, the attacks, the defences,
the ImageNet wrapper, the benchmark worker's GPU choice and the attack explorer.

The tests run on every available device (``DEVICES``: the CPU, and CUDA where it is present) and
compare with the CPU in float64, so that the same tests prove the GPU path on a GPU machine. On a
CPU-only machine, :class:`OtherDeviceIndex` stands in for an index tensor on a GPU: it refuses to
index this device's tensors exactly as CUDA does, which reproduces the crash of sC&W's early abort
(``Smoother.__getitem__`` indexing a CPU ``torch.arange`` with a CUDA index) without a GPU.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
import torch

from smoothlab import Smoother, SmoothingSpec
from smoothlab.attacks import ATTACKS, cw, scw
from test_attacks import FAST, blob_images, tiny_net

DEVICES = [pytest.param("cpu", id="cpu")] + (
    [pytest.param("cuda", id="cuda")] if torch.cuda.is_available() else []
)
EXACT_SOLVERS = ["dense", "direct", "block"]
SOLVERS = EXACT_SOLVERS + ["cg"]


class OtherDeviceIndex(torch.Tensor):
    """A long or bool index tensor that behaves as if it lived on another device (``cuda:7``).

    Like a CUDA tensor, it cannot index (or be combined with) a tensor of this device: any torch
    operation other than reading its metadata, ``.to(device)``, ``.cpu()`` or ``.tolist()`` raises
    CUDA's ``RuntimeError``. ``.to(device)`` and ``.cpu()`` give an ordinary tensor (a copy "to
    the host").
    """

    FAKE_DEVICE = torch.device("cuda", 7)
    _METADATA = {"device", "dtype", "shape", "is_cuda", "ndim"}
    _METHODS = {"dim", "numel", "size", "__len__", "tolist", "__repr__", "__format__"}

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        owner = getattr(getattr(func, "__self__", None), "__name__", None)
        plain = [a.as_subclass(torch.Tensor) if isinstance(a, OtherDeviceIndex) else a for a in args]
        if name == "__get__" and owner in cls._METADATA:
            if owner == "device":
                return cls.FAKE_DEVICE
            if owner == "is_cuda":
                return True
            return func(*plain, **kwargs)
        if name in cls._METHODS:
            return func(*plain, **kwargs)
        if name in ("to", "cpu"):
            return func(*plain, **kwargs)  # an ordinary tensor: now on the requested device
        raise RuntimeError(
            f"indices should be either on cpu or on the same device as the indexed tensor (fake {cls.FAKE_DEVICE}; "
            f"op {name})"
        )


def other_device(t: torch.Tensor) -> OtherDeviceIndex:
    return t.as_subclass(OtherDeviceIndex)  # type: ignore[return-value]


def quiet_smoother(x: torch.Tensor, solver: str, **kw: Any) -> Smoother:
    """A smoother, without the warning of ``direct`` on a CUDA tensor when CuPy is absent."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Smoother(x, 0.9, solver, tol=1e-12, **kw)


def images(batch: int = 3, c: int = 1, h: int = 7, w: int = 9, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------- the fake device
def test_the_fake_index_refuses_this_device_like_cuda() -> None:
    idx = other_device(torch.tensor([2, 0]))
    assert idx.device == OtherDeviceIndex.FAKE_DEVICE and idx.is_cuda
    with pytest.raises(RuntimeError, match="same device"):
        torch.arange(3)[idx]  # what Smoother.__getitem__ did with a CUDA index (issue 10)
    with pytest.raises(RuntimeError, match="same device"):
        torch.rand(3, 2)[idx]
    moved = idx.to(torch.device("cpu"))
    assert type(moved) is torch.Tensor and moved.tolist() == [2, 0]
    assert torch.equal(torch.arange(3)[moved], torch.tensor([2, 0]))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", ["long", "bool"])
def test_smoother_subset_with_an_index_from_another_device(solver: str, kind: str) -> None:
    x = images(3)
    z = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    S = quiet_smoother(x, solver)
    full = S(z)
    keep = torch.tensor([2, 0]) if kind == "long" else torch.tensor([True, False, True])
    sub = S[other_device(keep)]
    rows = [2, 0] if kind == "long" else [0, 2]
    assert len(sub) == 2 and sub.shape == (2, 1, 7, 9)
    torch.testing.assert_close(sub(z[rows]), full[rows], rtol=1e-9, atol=1e-10)


# ----------------------------------------------------------------------------- smoothers
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("colour", ["joint", "per-channel"])
def test_smoother_on_device_matches_the_cpu(device: str, solver: str, colour: str) -> None:
    x = images(2, c=3, seed=2)
    z = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(3))
    g = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(4))
    ref = Smoother(x, 0.9, "dense", colour=colour)  # CPU, float64, exact
    S = quiet_smoother(x.to(device), solver, colour=colour)
    assert S.device.type == device and S.ones_response.device.type == device
    zd = z.to(device).requires_grad_(True)
    out = S(zd)
    assert out.device.type == device
    (grad,) = torch.autograd.grad(out, zd, g.to(device))  # the adjoint solve of eq. (19), on the device
    zr = z.clone().requires_grad_(True)
    out_ref = ref(zr)
    (grad_ref,) = torch.autograd.grad(out_ref, zr, g)
    torch.testing.assert_close(out.detach().cpu(), out_ref.detach(), rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(grad.cpu(), grad_ref, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("solver", SOLVERS)
def test_smoother_subsets_on_device(device: str, solver: str) -> None:
    x = images(4, seed=5).to(device)
    z = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(6)).to(device)
    S = quiet_smoother(x, solver)
    full = S(z)
    cases: list[tuple[Any, list[int]]] = [
        (torch.tensor([3, 1], device=device), [3, 1]),  # what sC&W's early abort passes: on x's device
        (torch.tensor([3, 1]), [3, 1]),  # a host index for device tensors
        (torch.tensor([True, False, False, True], device=device), [0, 3]),
        ([2, 2, 0], [2, 2, 0]),  # repeats (the stacked budgets of a benchmark)
        (slice(1, 3), [1, 2]),
        (-1, [3]),
    ]
    for index, rows in cases:
        sub = S[index]
        assert sub.shape[0] == len(rows), index
        torch.testing.assert_close(sub(z[rows]), full[rows], rtol=1e-9, atol=1e-10)
    with pytest.raises(IndexError, match="out of range"):
        S[4]
    with pytest.raises(TypeError, match="integers or bools"):
        S[torch.tensor([0.0])]


@pytest.mark.parametrize("device", DEVICES)
def test_direct_solver_says_where_it_solves(device: str) -> None:
    S = quiet_smoother(images(1).to(device), "direct")
    if device == "cpu":
        assert S.backend == "direct: SciPy SuperLU on the CPU"
    else:
        assert "CuPy" in S.backend or "with transfers" in S.backend, S.backend


# ----------------------------------------------------------------------------- attacks
def _on(device: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    model = tiny_net()
    x = blob_images(6)
    with torch.no_grad():
        y = model(x).argmax(1)
    return copy.deepcopy(model).to(device), x.to(device), y.to(device)


def _check_same_result(res: Any, ref: Any, device: str) -> None:
    for name in ("x_adv", "success", "distortion", "pred_clean", "pred_adv", "forward_passes", "backward_passes"):
        assert getattr(res, name).device.type == device, name
    assert torch.equal(res.success.cpu(), ref.success)
    assert torch.equal(res.pred_adv.cpu(), ref.pred_adv)
    torch.testing.assert_close(res.distortion.cpu(), ref.distortion, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(FAST))
def test_attacks_on_device_match_the_cpu(device: str, name: str) -> None:
    model, x, y = _on(device)
    cpu_model, xc, yc = _on("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = ATTACKS[name](model, x, y, **FAST[name])
        ref = ATTACKS[name](cpu_model, xc, yc, **FAST[name])
    _check_same_result(res, ref, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("solver", EXACT_SOLVERS)
def test_scw_early_abort_drops_images_on_device(device: str, solver: str) -> None:
    """The crash of issue 10: sC&W drops stalled images from the batch and from the smoother
    (``S[kept]`` with ``kept`` on the images' device) at each early-abort check."""
    model, x, y = _on(device)
    cpu_model, xc, yc = _on("cpu")
    kw = dict(iterations=40, search_steps=2, margin=0.1, abort_early=True, smoother=SmoothingSpec.mnist(solver=solver))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = scw(model, x, y, **kw)
        ref = scw(cpu_model, xc, yc, **kw)
    # some images were dropped early (fewer Adam iterations than the others), so the path ran
    assert int(ref.backward_passes.min()) < int(ref.backward_passes.max())
    _check_same_result(res, ref, device)
    assert torch.equal(res.backward_passes.cpu(), ref.backward_passes)
    plain = cw(cpu_model, xc, yc, iterations=40, search_steps=2, margin=0.1)
    assert bool(plain.success.any())  # the model can be fooled: the comparison is not vacuous


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("device", DEVICES)
def test_bilateral_defence_on_device(device: str) -> None:
    from smoothlab.models import BilateralDefence

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(4)).double()
    x = images(2, c=3, h=12, w=12, seed=7)
    net(x)  # materialise the lazy layer on the CPU
    ref = BilateralDefence(net).eval()
    model = copy.deepcopy(ref).to(device)
    xd = x.to(device).requires_grad_(True)
    out = model(xd)
    assert out.device.type == device
    (g,) = torch.autograd.grad(out.sum(), xd)  # white box: the gradient goes through the filter
    xr = x.clone().requires_grad_(True)
    out_ref = ref(xr)
    (g_ref,) = torch.autograd.grad(out_ref.sum(), xr)
    torch.testing.assert_close(out.detach().cpu(), out_ref.detach(), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(g.cpu(), g_ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_normalised_imagenet_wrapper_on_device(device: str) -> None:
    from smoothlab.models import Normalised

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5))
    ref = Normalised(net, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 16).eval()
    model = copy.deepcopy(ref).to(device)
    assert model.mean.device.type == device and model.std.device.type == device  # buffers travel with .to()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        out = model(x.to(device))
        expected = net((x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        with torch.autocast(device_type=device, dtype=torch.bfloat16):  # the GPU check's bf16 network option
            low = model(x.to(device))
    assert out.device.type == device and out.dtype == torch.float32
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(low.float().cpu(), expected, rtol=5e-2, atol=5e-2)


# ----------------------------------------------------------------------------- benchmark workers
def test_worker_gpu_choice() -> None:
    pytest.importorskip("distributed")
    from smoothlab.bench._dask import worker_gpu

    assert worker_gpu(3, 1) is None and worker_gpu(3, 0) is None  # nothing to choose
    assert [worker_gpu(k, 4, pin_by_name=True) for k in range(6)] == [0, 1, 2, 3, 0, 1]
    assert worker_gpu("5", 4, pin_by_name=True) == 1
    assert worker_gpu(2, 4, pin_by_name=False) == 0  # dask_cuda: the worker's GPU is its cuda:0
    # unknown cluster: dask_cuda always sets CUDA_VISIBLE_DEVICES per worker
    assert worker_gpu(2, 4, env={}) == 2
    assert worker_gpu(2, 4, env={"CUDA_VISIBLE_DEVICES": "2,3,0,1"}) == 0
    # a name that is not a number: stable across processes (not Python's salted hash)
    a = worker_gpu("tcp://10.0.0.1:4000", 4, pin_by_name=True)
    assert a == worker_gpu("tcp://10.0.0.1:4000", 4, pin_by_name=True) and 0 <= a < 4
    import zlib

    assert a == zlib.crc32(b"tcp://10.0.0.1:4000") % 4


@pytest.mark.parametrize("device", DEVICES)
def test_benchmark_shard_on_device(device: str) -> None:
    from smoothlab.bench import BenchSpec
    from smoothlab.bench.shard import load_images, run_shard

    spec = BenchSpec.quick(device=device, n_images=2, batch_size=2, shard_size=2, attack_names=["fgsm", "scw"])
    x, y = load_images(spec, [0, 1])
    assert x.device.type == "cpu" and y.device.type == "cpu"  # the shard moves them to its device
    rec = run_shard(spec, 0, [0, 1])
    ref = run_shard(spec.replace(device="cpu"), 0, [0, 1])
    assert list(rec["success"]) == list(ref["success"])
    torch.testing.assert_close(
        torch.tensor(rec["distortion"].to_numpy()), torch.tensor(ref["distortion"].to_numpy()), rtol=1e-4, atol=1e-5,
        equal_nan=True,
    )


# ----------------------------------------------------------------------------- explorer
@pytest.mark.parametrize("device", DEVICES)
def test_attack_panel_with_results_from_another_device(device: str) -> None:
    pytest.importorskip("plotly")
    from smoothlab.viz import attack_panel

    x = images(1, seed=9, h=12, w=12).float()
    x_adv = (x + 0.05).clamp(0, 1).to(device)  # computed on the device, shown next to CPU originals
    fig = attack_panel(x, x_adv)
    assert "D=" in str(fig.layout) or len(fig.data) >= 1
