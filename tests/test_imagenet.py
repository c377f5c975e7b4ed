"""Natural images: EfficientNet-Lite0, the ImageNet loaders, and the attacks at 224x224 (issue 8)."""

from __future__ import annotations

import csv
import hashlib
import importlib
import os
import socket
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import smoothlab
from smoothlab.data import (
    IMAGENET_CLASSES,
    IMAGENET_WNIDS,
    imagenet,
    imagenet_class_name,
    imagenet_samples,
    imagenet_transform,
    load_image,
)
from smoothlab.models import BilateralDefence, EfficientNetLite0, imagenet as imagenet_model, zoo_available

skimage_data = pytest.importorskip("skimage.data", reason="the bundled photos come with scikit-image")
PIL_Image = pytest.importorskip("PIL.Image", reason="reading photos needs Pillow (smoothlab[imagenet])")
_imagenet_module = importlib.import_module("smoothlab.data._imagenet")
_imagenet_model_module = importlib.import_module("smoothlab.models._imagenet")

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968}  # espresso, cup
TIGER_CAT = "n02123159"


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return imagenet_model()  # shipped weights, offline


def photo(name: str, size: int = 224) -> torch.Tensor:
    return imagenet_transform(getattr(skimage_data, name)(), size)


@pytest.fixture(scope="module")
def photos() -> tuple[torch.Tensor, torch.Tensor]:
    """Two scikit-image photos at 224x224 with their ImageNet labels (what Lite0 predicts: tiger cat, espresso)."""
    x = torch.stack([photo("chelsea"), photo("coffee")])
    return x, torch.tensor([282, 967])


# --------------------------------------------------------------------------- the model


def test_class_names_are_the_standard_order() -> None:
    assert len(IMAGENET_WNIDS) == len(IMAGENET_CLASSES) == 1000
    assert list(IMAGENET_WNIDS) == sorted(IMAGENET_WNIDS)
    assert len(set(IMAGENET_WNIDS)) == 1000
    assert IMAGENET_WNIDS[0] == "n01440764" and IMAGENET_CLASSES[0] == "tench"
    assert IMAGENET_WNIDS[999] == "n15075141"
    assert imagenet_class_name(967) == "espresso"
    assert imagenet_class_name(282) == "tiger cat"
    with pytest.raises(ValueError, match="label must be in"):
        imagenet_class_name(1000)


def test_lite0_classifies_bundled_photos(lite0: torch.nn.Module) -> None:
    with torch.no_grad():
        cat = lite0(photo("chelsea")[None]).argmax(1).item()
        coffee = lite0(photo("coffee")[None]).argmax(1).item()
    assert cat in CAT_CLASSES, imagenet_class_name(cat)
    assert coffee in COFFEE_CLASSES, imagenet_class_name(coffee)
    assert lite0.input_size == 224


def test_lite0_normalisation_is_inside(lite0: torch.nn.Module) -> None:
    """The network proper sees (x - 0.5) / 0.5: feeding the raw blocks that input gives the same logits."""
    x = photo("coffee")[None]
    with torch.no_grad():
        logits = lite0(x)
        bare = EfficientNetLite0()
        bare.load_state_dict(lite0.state_dict())
        bare.mean, bare.std = 0.0, 1.0  # no normalisation inside
        assert torch.allclose(bare.eval()((x - 0.5) / 0.5), logits, atol=1e-5)
        assert not torch.allclose(bare(x), logits, atol=1e-2)



def _logits_and_input_gradient(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    xi = x.clone().requires_grad_(True)
    out = net(xi)
    (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(out, y, reduction="sum"), xi)
    return out.detach().double(), g.double()


def test_lite0_fused_layers_equal_the_plain_ones_up_to_rounding(lite0: torch.nn.Module, photos: tuple) -> None:
    """Batch norm folded into the convolutions (eval mode): logits and input gradients within float32
    rounding of the plain layers, judged against the same network in float64."""
    x, y = photos
    net = EfficientNetLite0().eval()
    net.load_state_dict(lite0.state_dict())
    net.fused = False
    ref_out, ref_g = _logits_and_input_gradient(net.double(), x.double(), y)
    net.float()
    errors = {}
    for fused in (False, True):
        net.fused = fused
        out, g = _logits_and_input_gradient(net, x, y)
        errors[fused] = (float((out - ref_out).abs().max()), float((g - ref_g).norm() / ref_g.norm()))
    assert errors[True][0] < 1e-4 and errors[True][1] < 5e-3, errors
    assert errors[True][0] < 20 * errors[False][0] + 1e-5, errors  # the same order as the plain layers' rounding
    net.fused = True
    with torch.no_grad():
        fused_out = net(x)
        net.fused = False
        plain_out = net(x)
        net.fused = True
        assert not torch.equal(fused_out, plain_out)  # the folded path was really taken
        hook = net._blocks[3]._bn1.register_forward_hook(lambda m, i, o: None)  # a hook must see the plain layers
        try:
            assert torch.equal(net(x), plain_out)
        finally:
            hook.remove()
        net.train()  # training mode: batch statistics, never folded (this updates the running statistics)
        train_out = net(x)
        net.fused = False
        assert torch.equal(train_out, net(x))

def test_lite0_weights_are_checksummed(tmp_path: Path, lite0: torch.nn.Module) -> None:
    from smoothlab.models._efficientnet import load_lite0_weights, lite0_weights_path

    changed = tmp_path / "lite0.pth"
    changed.write_bytes(lite0_weights_path().read_bytes() + b"\0")
    with pytest.raises(ValueError, match="SHA-256"):
        load_lite0_weights(EfficientNetLite0(), changed)


def test_checkpoint_path_loads_and_mismatch_is_refused(tmp_path: Path, lite0: torch.nn.Module) -> None:
    good = tmp_path / "mine.pth"
    state = {k: v.clone() for k, v in lite0.state_dict().items()}
    state["_fc.bias"] += 1.0  # a different checkpoint: logits shift by exactly 1
    torch.save(state, good)
    mine = imagenet_model(checkpoint=good)
    x = photo("chelsea")[None]
    with torch.no_grad():
        assert torch.allclose(mine(x), lite0(x) + 1.0, atol=1e-4)
    bad = tmp_path / "bad.pth"
    torch.save({"_fc.weight": torch.zeros(10, 1280), "_fc.bias": torch.zeros(10)}, bad)
    with pytest.raises(ValueError, match="does not match the EfficientNetLite0 architecture"):
        imagenet_model(checkpoint=bad)
    with pytest.raises(FileNotFoundError, match="not found"):
        imagenet_model(checkpoint=tmp_path / "missing.pth")


def test_unknown_model_names() -> None:
    with pytest.raises(ValueError, match="unknown model name 'alexnet'"):
        imagenet_model("alexnet")
    with pytest.raises(TypeError, match="name must be"):
        imagenet_model(3)  # type: ignore[arg-type]


@pytest.mark.skipif(zoo_available(), reason="checks the message given where timm does not import")
def test_zoo_without_timm_says_how_to_install() -> None:
    with pytest.raises(ModuleNotFoundError, match=r"smoothlab\[zoo\]"):
        imagenet_model("inception_v3.tf_adv_in1k", pretrained=False)


@pytest.mark.skipif(
    not zoo_available(),
    reason="timm does not import here: it needs a torchvision built for this torch (DESIGN.md section 7); "
    ".ci/zoo runs these tests in a virtual environment of their own",
)
@pytest.mark.parametrize(
    ("name", "size", "mean"),
    [
        pytest.param("inception_v3.tf_in1k", 299, 0.5, id="inception_v3"),
        pytest.param("inception_v3.tf_adv_in1k", 299, 0.5, id="inception_v3_adv"),
        pytest.param("resnetv2_50.a1h_in1k", 224, 0.5, id="resnetv2_50"),  # timm: Inception normalisation (0.5)
    ],
)
def test_zoo_models_random_weights(name: str, size: int, mean: float) -> None:
    """Each zoo model at its own input size (timm's configuration of the weights), one image: Inception
    V3 refuses inputs much smaller than its 299x299 ("Kernel size can't be greater than actual input size")."""
    net = imagenet_model(name, pretrained=False)
    assert net.input_size == size
    assert float(net.mean.flatten()[0]) == pytest.approx(mean)
    with torch.no_grad():
        logits = net(torch.rand(1, 3, net.input_size, net.input_size, generator=torch.Generator().manual_seed(0)))
    assert logits.shape == (1, 1000) and bool(torch.isfinite(logits).all())


def _closed_port() -> int:
    """A local TCP port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_hub_check_is_one_quick_connection(no_proxy: pytest.MonkeyPatch) -> None:
    """The check before a zoo download: a refused connection answers at once, naming the host; a
    listening one passes; HF_HUB_OFFLINE=1 passes without connecting (the hub library reads its cache)."""
    hub_unreachable = _imagenet_model_module._hub_unreachable
    port = _closed_port()
    no_proxy.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    t0 = time.perf_counter()
    why = hub_unreachable()
    assert why is not None and f"Hugging Face hub 127.0.0.1:{port} cannot be reached" in why
    assert time.perf_counter() - t0 < 2.0
    with socket.create_server(("127.0.0.1", 0)) as server:
        no_proxy.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_unreachable() is None
    no_proxy.setenv("HTTPS_PROXY", f"127.0.0.1:{port}")  # a proxy is what the downloads would connect to
    assert f"HTTPS proxy 127.0.0.1:{port} cannot be reached" in (hub_unreachable() or "")
    no_proxy.setenv("HF_HUB_OFFLINE", "1")
    assert hub_unreachable() is None


@pytest.mark.skipif(not zoo_available(), reason="timm does not import here")
def test_zoo_download_without_hub_fails_fast(no_proxy: pytest.MonkeyPatch) -> None:
    no_proxy.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match=r"cannot be reached.*pass checkpoint=PATH"):
        imagenet_model("resnetv2_50.a1h_in1k")
    assert time.perf_counter() - t0 < 10.0  # timm's own retries take ~47 s


def test_bilateral_defence_in_front_of_lite0(lite0: torch.nn.Module) -> None:
    defended = BilateralDefence(lite0)
    assert defended.input_size == 224
    x = photo("coffee")[None].requires_grad_(True)
    logits = defended(x)
    assert logits.shape == (1, 1000)
    assert logits.argmax(1).item() in COFFEE_CLASSES
    with torch.no_grad():
        assert not torch.allclose(logits, lite0(x))  # the filter is really in front
    logits[0, 967].backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


# --------------------------------------------------------------------------- the loaders


def _save(img: np.ndarray, path: Path, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = PIL_Image.fromarray(img)
    if mode is not None:
        im = im.convert(mode)
    im.save(path)


def test_flat_layout(tmp_path: Path) -> None:
    _save(skimage_data.chelsea(), tmp_path / f"{TIGER_CAT}_tiger_cat.JPEG")
    _save(skimage_data.coffee(), tmp_path / "n07920052_espresso.JPEG")
    ds = imagenet(tmp_path, size=64)
    assert ds.layout == "flat" and len(ds) == 2
    assert ds.labels.tolist() == [282, 967]  # sorted by file name
    x, y = ds[1]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and y == 967
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    xb, yb = ds.batch([1, 0])
    assert torch.equal(xb[0], x) and yb.tolist() == [967, 282]


def test_tree_layout(tmp_path: Path) -> None:
    _save(skimage_data.chelsea(), tmp_path / TIGER_CAT / "ILSVRC2012_val_00000001.JPEG")
    _save(skimage_data.chelsea()[::-1], tmp_path / TIGER_CAT / "ILSVRC2012_val_00000002.JPEG")
    _save(skimage_data.coffee(), tmp_path / "n07920052" / "ILSVRC2012_val_00000003.JPEG")
    ds = imagenet(tmp_path, size=64)
    assert ds.layout == "tree" and ds.labels.tolist() == [282, 282, 967]


def test_nips2017_layout_label_offset(tmp_path: Path) -> None:
    """images.csv counts TrueLabel from 1 (TF-slim's background class is 0)."""
    _save(skimage_data.coffee(), tmp_path / "images" / "0a1b.png")
    _save(skimage_data.chelsea(), tmp_path / "images" / "ffee.png")
    with open(tmp_path / "images.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageId", "URL", "x1", "y1", "x2", "y2", "TrueLabel", "TargetClass"])
        w.writerow(["ffee", "", 0, 0, 1, 1, 283, 1])
        w.writerow(["0a1b", "", 0, 0, 1, 1, 968, 1])
    ds = imagenet(tmp_path, size=64)
    assert ds.layout == "nips2017"
    assert [p.name for p in ds.paths] == ["0a1b.png", "ffee.png"]
    assert ds.labels.tolist() == [967, 282]
    with open(tmp_path / "images.csv", "a", newline="") as f:
        csv.writer(f).writerow(["0a1b", "", 0, 0, 1, 1, 0, 1])
    with pytest.raises(ValueError, match=r"TrueLabel .* must be in \[1, 1000\]"):
        imagenet(tmp_path)


def test_grey_and_rgba_images_are_converted(tmp_path: Path) -> None:
    _save(skimage_data.camera(), tmp_path / f"{TIGER_CAT}_grey.png")
    _save(skimage_data.chelsea(), tmp_path / "n07920052_rgba.png", mode="RGBA")
    ds = imagenet(tmp_path, size=32)
    grey, _ = ds[0]
    rgba, _ = ds[1]
    assert grey.shape == rgba.shape == (3, 32, 32)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    # the alpha channel is dropped, not blended into the colours
    assert torch.allclose(rgba, imagenet_transform(skimage_data.chelsea(), 32))


def test_resize_is_short_side_then_centre_crop() -> None:
    """A 64x128 image, dark but for bright bands on the left and right: at size 32 the short side becomes
    round(32 * 256 / 224) = 37 and the width 74 (scale 0.578); the 32-pixel centre crop starts at
    column 21 and the bands end at 24 x 0.578 = 14 and start at 104 x 0.578 = 60, so none is seen."""
    img = np.zeros((64, 128, 3), np.uint8)
    img[:, :24] = 255
    img[:, 104:] = 255
    out = imagenet_transform(img, 32)
    assert out.shape == (3, 32, 32)
    assert float(out.max()) < 0.05  # the bright sides are cropped away


def test_bad_folders_and_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="root must be a directory"):
        imagenet(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image found"):
        imagenet(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    _save(skimage_data.coffee(), mixed / "n07920052_espresso.JPEG")
    _save(skimage_data.chelsea(), mixed / TIGER_CAT / "a.JPEG")
    with pytest.raises(ValueError, match="mixes layouts"):
        imagenet(mixed)
    unlabelled = tmp_path / "unlabelled"
    _save(skimage_data.coffee(), unlabelled / "coffee.JPEG")
    with pytest.raises(ValueError, match="<wnid>_<name>"):
        imagenet(unlabelled)
    unknown = tmp_path / "unknown"
    _save(skimage_data.coffee(), unknown / "n99999999_nothing.JPEG")
    with pytest.raises(ValueError, match="not one of the 1,000 ImageNet-1k"):
        imagenet(unknown)
    with pytest.raises(ValueError, match="size must be"):
        imagenet(tmp_path / "empty", size=16)


def test_corrupt_image_fails_naming_the_file(tmp_path: Path) -> None:
    _save(skimage_data.coffee(), tmp_path / "n07920052_espresso.JPEG")
    bad = tmp_path / f"{TIGER_CAT}_broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ds = imagenet(tmp_path, size=32)
    assert ds[1][1] == 967  # the readable one (file names sort the broken one first)
    with pytest.raises(ValueError, match=f"cannot read image .*{bad.name}"):
        ds[0]
    with pytest.raises(ValueError, match=bad.name):
        load_image(bad)


def _zip_of_photos(tmp_path: Path) -> tuple[Path, str]:
    src = tmp_path / "src"
    _save(skimage_data.chelsea(), src / f"{TIGER_CAT}_tiger_cat.JPEG")
    _save(skimage_data.coffee(), src / "n07920052_espresso.JPEG")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(src.iterdir()))).hexdigest()
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("imagenet-sample-images-x/README.md", "not an image")
        for p in sorted(src.iterdir()):
            zf.write(p, f"imagenet-sample-images-x/{p.name}")
    return archive, digest


def test_samples_found_downloaded_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMOOTHLAB_DATA", raising=False)
    monkeypatch.setenv("SMOOTHLAB_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="SMOOTHLAB_DATA"):
        imagenet_samples(download=False)
    archive, digest = _zip_of_photos(tmp_path)
    monkeypatch.setattr(_imagenet_module, "samples_url", lambda: archive.as_uri())  # a real archive, read by urllib
    monkeypatch.setattr(_imagenet_module, "IMAGENET_SAMPLES_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        imagenet_samples()
    assert not (tmp_path / "cache" / "imagenet-samples").exists()  # nothing half-written is left
    monkeypatch.setattr(_imagenet_module, "IMAGENET_SAMPLES_SHA256", digest)
    folder = imagenet_samples()
    assert folder == tmp_path / "cache" / "imagenet-samples"
    assert sorted(p.name for p in folder.iterdir()) == ["n02123159_tiger_cat.JPEG", "n07920052_espresso.JPEG"]
    monkeypatch.setattr(_imagenet_module, "samples_url", lambda: (tmp_path / "gone.zip").as_uri())
    (folder / "n07920052_espresso.JPEG").unlink()
    with pytest.raises(ConnectionError, match="put the folder"):
        imagenet_samples()


def _need_sample() -> Path:
    try:
        return imagenet_samples(download=False)
    except FileNotFoundError as err:
        pytest.skip(f"the 1,000-image ImageNet sample is not here ({err}); set SMOOTHLAB_DATA")


@pytest.mark.slow
def test_lite0_top1_on_the_sample(lite0: torch.nn.Module) -> None:
    """Top-1 on every 10th image of the sample (100 photos); 0.90 was measured on every 5th."""
    ds = imagenet(_need_sample())
    assert len(ds) == 1000 and ds.layout == "flat"
    idx = list(range(0, 1000, 10))
    correct = 0
    with torch.no_grad():
        for s in range(0, len(idx), 25):
            x, y = ds.batch(idx[s : s + 25])
            correct += int((lite0(x).argmax(1) == y).sum())
    assert correct / len(idx) >= 0.85


# --------------------------------------------------------------------------- attacks at 224x224


@pytest.fixture(scope="module")
def attacked(lite0: torch.nn.Module, photos: tuple[torch.Tensor, torch.Tensor]) -> dict[str, smoothlab.attacks.AttackResult]:
    """PGD2, sPGD2, C&W and sC&W with the ImageNet presets (``paper_settings``) on two photos."""
    from smoothlab.bench.spec import IMAGENET_PARAMS

    x, y = photos
    out = {}
    for name in ("pgd2", "spgd2", "cw", "scw"):
        params = dict(IMAGENET_PARAMS[name])
        if "smoother" in params:
            params["smoother"] = smoothlab.SmoothingSpec(**params["smoother"])
        if name in ("pgd2", "spgd2"):
            params["eps"] = 2.0
        out[name] = smoothlab.attacks.ATTACKS[name](lite0, x, y, **params)
    return out


@pytest.mark.slow
def test_smooth_attacks_succeed_on_photos(attacked: dict) -> None:
    for name in ("spgd2", "scw"):
        assert bool(attacked[name].success.all()), name


@pytest.mark.slow
def test_smooth_perturbations_are_smooth_like_the_photo(photos: tuple[torch.Tensor, torch.Tensor], attacked: dict) -> None:
    """Graph-smoothness energy tr(rᵀ(I - 𝒲)r)/||r||² on the photo's own graph: the smooth attacks'
    perturbations are several times smoother than those of C&W and PGD2."""
    x, _ = photos
    graph = smoothlab.image_graph(x, kernel="laplacian", lam=20.0)
    energy = {k: graph.smoothness(r.x_adv - x) for k, r in attacked.items()}
    assert bool((energy["scw"] * 5 < energy["cw"]).all()), energy
    assert bool((energy["spgd2"] * 5 < energy["pgd2"]).all()), energy


@pytest.mark.slow
def test_smooth_perturbations_keep_jumps_across_edges(photos: tuple[torch.Tensor, torch.Tensor], attacked: dict) -> None:
    """Across the photo's strongest edges (top 1 % of neighbour colour distances) the perturbation of
    sC&W / sPGD2 changes much more than between neighbours in flat regions (bottom half): it stays
    sharp where the image is sharp. Plain C&W's noise changes about as much everywhere, or less.

    With c searched per image (issue 19) sC&W's perturbation is far smaller than with sec. 5.2's one
    c = 100, and its contrast dropped on coffee (measured: 9.3 on chelsea, 1.7 on coffee; C&W 1.2 and 0.3;
    with the literal settings sC&W was above 3 on both): the absolute bound is 1.5, the relative one stays."""
    from smoothlab.perturbations import edge_contrast

    x, _ = photos
    ratio = {k: edge_contrast(x, v.x_adv - x) for k, v in attacked.items()}
    assert bool((ratio["scw"] > 1.5).all()), ratio
    assert bool((ratio["spgd2"] > 3).all()), ratio
    assert bool((ratio["scw"] > 2 * ratio["cw"]).all()), ratio


@pytest.mark.slow
def test_sc_w_is_less_visible_than_c_w_on_photos(photos: tuple[torch.Tensor, torch.Tensor], attacked: dict) -> None:
    """At a given distortion sC&W is the less visible on every photo: its visibility per unit of D is below C&W's.

    Its mean V is below C&W's on most photos, not all: on 180 photos of the ImageNet sample sC&W is the less visible on
    87 % (README, "Natural images"). Chelsea is one of the others: Lite0 needs only D = 0.03 of C&W there (measured
    with the exact ŝ_α: V 0.0011 for C&W at D 0.029, 0.0019 for sC&W at D 0.256; coffee 0.0125 against 0.0118), so a
    mean over these two photos would test chelsea's boundary, not smoothness."""
    x, _ = photos
    both = attacked["cw"].success & attacked["scw"].success
    assert bool(both.all())
    per_d = {}
    for name in ("cw", "scw"):
        res = attacked[name]
        per_d[name] = smoothlab.visibility(res.x_adv[both], x[both]) / res.distortion[both]
    assert bool((per_d["scw"] < 0.9 * per_d["cw"]).all()), per_d


def test_smoothing_presets_for_photos() -> None:
    paper = smoothlab.SmoothingSpec.imagenet()
    assert (paper.alpha, paper.kernel, paper.lam, paper.solver, paper.max_iter, paper.tol) == (
        0.997,
        "laplacian",
        20.0,
        "cg",
        50,
        0.0,
    )
    exact = smoothlab.SmoothingSpec.imagenet(exact=True)
    assert exact.solver == "auto" and exact.tol == 1e-5
    authors = smoothlab.SmoothingSpec.imagenet_authors_code()
    assert (authors.kernel, authors.lam, authors.colour, authors.backward) == ("gaussian", 300.0, "per-channel", "unrolled")
    # the paper's 50 iterations are close to, but not exactly, the exact solve (DESIGN.md section 3)
    x = photo("coffee", 64)[None].double()
    z = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    r50 = paper(x)(z)
    rex = smoothlab.SmoothingSpec.imagenet(solver="dense")(x)(z)
    rel = float((r50 - rex).norm() / rex.norm())
    assert 1e-4 < rel < 0.1


def test_imagenet_preset_smoother_option() -> None:
    x = photo("coffee", 32)[None]
    from smoothlab.attacks._common import smoothing_option

    assert smoothing_option("imagenet") == smoothlab.SmoothingSpec.imagenet()
    assert smoothing_option("imagenet-exact") == smoothlab.SmoothingSpec.imagenet(exact=True)
    with pytest.raises(ValueError, match="smoother"):
        smoothing_option("cifar")
    assert x.shape == (1, 3, 32, 32)


# --------------------------------------------------------------------------- the benchmark


@pytest.fixture()
def photo_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    _save(skimage_data.chelsea(), folder / f"{TIGER_CAT}_tiger_cat.JPEG")
    _save(skimage_data.coffee(), folder / "n07920052_espresso.JPEG")
    _save(skimage_data.rocket(), folder / "n03773504_missile.JPEG")
    return folder


@pytest.mark.slow
def test_bench_on_photos_end_to_end(photo_folder: Path, tmp_path: Path) -> None:
    from smoothlab.bench import BenchSpec, run
    from smoothlab.metrics import summary

    spec = BenchSpec.quick(dataset="imagenet", source=str(photo_folder), n_images=3, batch_size=1, shard_size=1)
    assert spec.model == "efficientnet_lite0"
    result = run(spec, out=tmp_path / "out", workers=0, progress=False)
    records = result.records
    assert sorted(records["image_id"].unique()) == [0, 1, 2]
    assert set(records["attack"]) == {"fgsm", "ifgsm", "pgd2", "cw", "spgd2", "scw"}
    assert records.loc[records["image_id"] == 2, "label"].unique().tolist() == [967]  # sorted: cat, missile, espresso
    pd_summary = summary(records)
    assert np.allclose(result.summary["p_success"].to_numpy(float), pd_summary["p_success"].to_numpy(float))
    text = (tmp_path / "out" / "table.md").read_text()
    assert "Budget grids" in text and "PGD2: eps in {0.5, 2}" in text


@pytest.mark.slow
@pytest.mark.parametrize("sweep", ["full", "first-success"])
def test_photo_records_do_not_depend_on_the_shard_size(photo_folder: Path, sweep: str) -> None:
    """README, "Scaling out": at a given batch size the records are bit-identical whatever the shard
    size, on photos too (three photos in batches of 2: one shard of 4, or shards of 2 with a last
    batch of one photo), with either budget sweep."""
    from smoothlab.bench import AttackSpec, BenchSpec
    from smoothlab.bench.shard import plan_shards, run_shard

    attacks = (AttackSpec("fgsm", {}, (0.002, 0.008)), AttackSpec("pgd2", {"iterations": 2}, (0.5,)))
    runs = []
    for shard_size in (2, 4):
        spec = BenchSpec(dataset="imagenet", source=str(photo_folder), n_images=3, batch_size=2,
                         shard_size=shard_size, attacks=attacks, device="cpu", sweep=sweep)
        shards = plan_shards(spec, np.arange(3))
        assert len(shards) == 4 // shard_size
        records = pd.concat([run_shard(spec, k, ids) for k, ids in enumerate(shards)])
        runs.append(records.sort_values(["attack", "budget", "image_id"]).reset_index(drop=True))
    # full: 3 photos x 3 (attack, budget) pairs; first-success: every photo at each smallest budget, then fewer
    assert len(runs[0]) == 9 if sweep == "full" else 6 <= len(runs[0]) <= 9
    assert runs[0]["success"].any() and runs[0]["visibility"].notna().any()
    pd.testing.assert_frame_equal(runs[0].drop(columns="seconds"), runs[1].drop(columns="seconds"), check_exact=True)


def test_bench_spec_for_photos() -> None:
    from smoothlab.bench import BenchSpec
    from smoothlab.bench.spec import IMAGENET_BUDGETS

    spec = BenchSpec(dataset="imagenet")
    assert spec.source == "samples" and spec.model == "efficientnet_lite0"
    assert dict((a.name, a.budgets) for a in spec.attacks if a.budgets) == {k: tuple(v) for k, v in IMAGENET_BUDGETS.items()}
    scw = next(a for a in spec.attacks if a.name == "scw")
    # issue 19: c searched per image from the authors' scripts' settings (in our units), not sec. 5.2's one c = 100
    assert scw.params["c"] == 0.5 and scw.params["search_steps"] == 9 and scw.params["lr"] == 0.005
    assert scw.params["penalty"] == "l2" and scw.params["margin"] == 0.0 and scw.params["smoother"]["alpha"] == 0.997
    # MNIST defaults (and so the hash of every MNIST spec on disk) are unchanged
    assert BenchSpec().model == "c4" and BenchSpec().source == "embedded"
    assert BenchSpec().hash == BenchSpec(dataset="mnist", source="embedded", model="c4").hash
    with pytest.raises(ValueError, match="classifies mnist images"):
        BenchSpec(dataset="imagenet", model="c4")
    with pytest.raises(ValueError, match="classifies imagenet images"):
        BenchSpec(model="efficientnet_lite0")
    with pytest.raises(ValueError, match="split must be 'test' for dataset 'imagenet'"):
        BenchSpec(dataset="imagenet", split="train")
    with pytest.raises(ValueError, match="dataset must be one of"):
        BenchSpec(dataset="cifar10")
    t3 = BenchSpec.paper(3, dataset="imagenet", target="efficientnet_lite0-bilateral")
    # Table 3's single budgets (issue 19): an FGSM step of the L2 budget's norm on 224x224x3 photos
    budgets = {a.name: a.budgets for a in t3.attacks}
    assert budgets["pgd2"] == (5.0,) and budgets["fgsm"] == budgets["ifgsm"]
    assert abs(budgets["fgsm"][0] * (3 * 224 * 224) ** 0.5 - 5.0) < 0.01


@pytest.mark.slow
def test_cli_on_photos(photo_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from smoothlab.cli import main

    out = tmp_path / "cli"
    code = main(
        ["bench", "--dataset", "imagenet", "--data-dir", str(photo_folder), "--quick", "--attacks", "fgsm,pgd2",
         "--n-images", "2", "--workers", "0", "--no-progress", "--out", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "white box on efficientnet_lite0" in printed and "FGSM: eps in {0.002, 0.008}" in printed
    assert os.path.isfile(out / "records.parquet")
