"""Tests of smoothlab.models: the C4 architecture, its training, the shipped weights."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from smoothlab.data import embedded_split, mnist
from smoothlab.models import (
    C4,
    WEIGHTS_DIR,
    accuracy,
    c4,
    load_c4_weights,
    predict,
    same_padding,
    train_c4,
)


@pytest.fixture(scope="module")
def test_data():
    return mnist("test")


@pytest.fixture(scope="module")
def train_data():
    return mnist("train")


@pytest.fixture(scope="module")
def manifest():
    return json.loads((WEIGHTS_DIR / "manifest.json").read_text())


def _fgsm_accuracy(model, x, y, eps):
    """Accuracy under FGSM(eps) with the true labels (written independently of the package)."""
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
    with torch.no_grad():
        return float((model((x + eps * g.sign()).clamp(0, 1)).argmax(1) == y).double().mean())


# --------------------------------------------------------------------------- architecture


def test_same_padding_matches_tensorflow_rule():
    assert same_padding(28, 8, 2) == (3, 3)
    for size in range(5, 40):
        for k in (1, 2, 3, 5, 8):
            for s in (1, 2, 3):
                before, after = same_padding(size, k, s)
                out = (size + before + after - k) // s + 1
                assert out == math.ceil(size / s)  # SAME: output is ceil(n / s)
                assert after - before in (0, 1)  # odd pixel goes after
    assert same_padding(27, 8, 2) == (3, 4)


def test_c4_layer_shapes_and_parameter_count():
    model = c4(seed=0)
    assert not model.training
    shapes = {}
    for name in ("conv1", "conv2", "conv3", "fc"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape))
    out = model(torch.rand(3, 1, 28, 28))
    assert shapes == {
        "conv1": (3, 64, 14, 14),
        "conv2": (3, 128, 5, 5),
        "conv3": (3, 128, 1, 1),
        "fc": (3, 10),
    }
    assert out.shape == (3, 10)
    # (out, in, kernel) of each conv, then the linear layer; weights + biases
    convs = [(64, 1, 8), (128, 64, 6), (128, 128, 5)]
    expected = sum(o * i * k * k + o for o, i, k in convs) + 128 * 10 + 10
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model.conv1.stride == (2, 2) and model.conv2.stride == (2, 2) and model.conv3.stride == (1, 1)


def test_c4_first_layer_is_same_padded():
    model = c4(seed=1)
    x = torch.rand(2, 1, 28, 28)
    h = {}
    model.conv1.register_forward_hook(lambda m, i, o: h.__setitem__("conv1", o))
    model(x)
    ref = F.conv2d(x, model.conv1.weight, model.conv1.bias, stride=2, padding=3)
    torch.testing.assert_close(h["conv1"], ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_c4_fast_cpu_layout_equals_the_default_layout(dtype, monkeypatch):
    # logits, input gradient (through the fold of _InputGradByFold) and every parameter's gradient
    model = C4().to(dtype)
    x = torch.rand(6, 1, 28, 28, dtype=dtype, generator=torch.Generator().manual_seed(3))
    grads = {}
    for fast in (True, False):
        monkeypatch.setattr(C4, "fast_cpu", fast)
        xv = x.clone().requires_grad_(True)
        out = model(xv)
        loss = out.logsumexp(1).sum() + out[:, 3].sum()
        grads[fast] = (out.detach(), *torch.autograd.grad(loss, [xv, *model.parameters()]))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(grads[True], grads[False]):
        assert torch.allclose(a, b, rtol=tol, atol=tol * float(b.abs().max()))
    # only x's gradient asked for: the weights get none, and x's is the same
    monkeypatch.setattr(C4, "fast_cpu", True)
    xv = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(model(xv).logsumexp(1).sum() + model(xv)[:, 3].sum(), xv)
    assert torch.allclose(gx, grads[False][1], rtol=tol, atol=tol * float(grads[False][1].abs().max()))
    assert all(p.grad is None for p in model.parameters())


def test_c4_fast_cpu_conv1_writes_channels_last(monkeypatch):
    # the 1-channel input is seen with channels-last strides, so oneDNN writes conv1's output in
    # channels-last order itself (no transposing copy before conv2)
    from smoothlab.models import _c4

    seen = {}
    apply = _c4._InputGradByFold.apply

    def spy(out, x, w, stride):
        seen["out"] = out
        return apply(out, x, w, stride)

    monkeypatch.setattr(_c4._InputGradByFold, "apply", spy)
    monkeypatch.setattr(C4, "fast_cpu", True)
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    C4()(x.requires_grad_(True))
    out = seen["out"]
    assert out.shape == (5, 64, 14, 14) and out.stride(1) == 1  # channels innermost
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_c4_fast_cpu_layout_second_order_gradients(monkeypatch):
    # a gradient penalty ||dL/dx||^2 differentiated w.r.t. every parameter and x (float64)
    model = C4().double()
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    grads = {}
    for fast in (True, False):
        monkeypatch.setattr(C4, "fast_cpu", fast)
        xv = x.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(model(xv).logsumexp(1).sum(), xv, create_graph=True)
        grads[fast] = torch.autograd.grad(gx.square().sum(), [xv, *model.parameters()])
    for a, b in zip(grads[True], grads[False]):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12 * float(b.abs().max()))


def test_c4_fast_cpu_layout_steps_aside_for_hooks_and_autocast(monkeypatch):
    model = C4()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    monkeypatch.setattr(C4, "_forward_cpu", lambda self, x: pytest.fail("the fast layout ran"))
    seen = {}
    handle = model.conv1.register_forward_hook(lambda m, i, o: seen.update(x=i[0], out=o))
    xv = x.clone().requires_grad_(True)
    model(xv)
    assert seen["x"].requires_grad and seen["out"].is_contiguous()  # the layer as it is, tied to x
    handle.remove()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16


def test_c4_rejects_bad_input_shape():
    model = c4(seed=0)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        model(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        model(torch.rand(1, 28, 28))


def test_c4_seeded_init_is_reproducible_and_leaves_global_rng():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, b = c4(seed=5), c4(seed=5)
    after = torch.rand(3)
    assert torch.equal(before, after)  # global RNG untouched by seeded init
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(c4(seed=6).conv1.weight, a.conv1.weight)


def test_c4_bad_arguments():
    with pytest.raises(ValueError, match="pretrained=True"):
        c4(adversarial=True)
    with pytest.raises(TypeError, match="pretrained"):
        c4(pretrained=1)
    with pytest.raises(ValueError, match="seed"):
        c4(pretrained=True, seed=0)


# --------------------------------------------------------------------------- shipped weights


def test_pretrained_accuracy(test_data, manifest):
    x, y = test_data
    model = c4(pretrained=True)
    assert isinstance(model, C4) and not model.training
    acc = accuracy(model, x, y)
    print(f"\nC4 clean model: accuracy {acc:.4f} on the embedded test split")
    assert acc >= 0.97
    # the manifest reports what the weights really do
    assert abs(acc - manifest["weights"]["c4.pt"]["test_accuracy"]) <= 1.5e-3


def test_adversarial_model_accuracy_and_robustness(test_data, manifest):
    x, y = test_data
    clean, adv = c4(pretrained=True), c4(pretrained=True, adversarial=True)
    acc = accuracy(adv, x, y)
    print(f"\nC4 FGSM-trained model: accuracy {acc:.4f} on the embedded test split")
    assert abs(acc - manifest["weights"]["c4_adv_fgsm.pt"]["test_accuracy"]) <= 1.5e-3
    assert acc >= 0.95
    # adversarial training must buy robustness to FGSM at its training budget
    xs, ys = x[:500], y[:500]
    rob_clean, rob_adv = _fgsm_accuracy(clean, xs, ys, 0.3), _fgsm_accuracy(adv, xs, ys, 0.3)
    print(f"accuracy under FGSM eps 0.3: clean model {rob_clean:.3f}, FGSM-trained {rob_adv:.3f}")
    assert rob_adv > rob_clean + 0.3


def test_l2_adversarial_model_accuracy_and_pgd2_robustness(test_data, manifest):
    """The C4 trained with L2 PGD ("c4-l2adv"): its clean accuracy is the manifest's, and under the
    package's PGD2 at the paper's settings (step 3, 10 iterations) with eps 2 it keeps clearly more
    of 100 digits than the plain C4 does."""
    from smoothlab.attacks import MNIST_PARAMS, pgd2
    from smoothlab.models import build_model

    x, y = test_data
    plain, robust = c4(pretrained=True), build_model("c4-l2adv")
    assert isinstance(robust, C4) and not robust.training
    acc = accuracy(robust, x, y)
    assert abs(acc - manifest["weights"]["c4_adv_pgd2.pt"]["test_accuracy"]) <= 1.5e-3
    assert acc >= 0.95
    xs, ys = x[:100], y[:100]
    rob = {}
    for name, model in (("plain", plain), ("l2adv", robust)):
        res = pgd2(model, xs, ys, eps=2.0, **MNIST_PARAMS["pgd2"])
        assert float(res.distortion.max()) <= 2.0 + 1e-4  # a real eps-2 attack
        rob[name] = float((res.pred_adv == ys).double().mean())
    print(f"\naccuracy under PGD2 eps 2 on 100 digits: plain C4 {rob['plain']:.2f}, L2-PGD-trained {rob['l2adv']:.2f}")
    assert rob["l2adv"] >= rob["plain"] + 0.3


def test_c4_adversarial_choices():
    fgsm = c4(pretrained=True, adversarial="fgsm")
    same = c4(pretrained=True, adversarial=True)
    l2 = c4(pretrained=True, adversarial="pgd2")
    assert torch.equal(fgsm.fc.weight, same.fc.weight) and not torch.equal(fgsm.fc.weight, l2.fc.weight)
    with pytest.raises(ValueError, match="adversarial"):
        c4(pretrained=True, adversarial="pgd")
    with pytest.raises(TypeError, match="adversarial"):
        c4(pretrained=True, adversarial=2)


def test_manifest_matches_embedded_split(manifest):
    import hashlib

    _, test_idx = embedded_split()
    digest = hashlib.sha256(np.asarray(test_idx, dtype="<i8").tobytes()).hexdigest()
    assert digest == manifest["data"]["test_indices_sha256"], (
        "the embedded split changed: the shipped weights were trained on other images"
    )
    for entry in manifest["weights"].values():
        assert {"sha256", "epochs", "seed", "test_accuracy"} <= set(entry)
    assert manifest["versions"]["torch"]


def test_checksum_mismatch_detected(tmp_path):
    for name in ("c4.pt", "manifest.json"):
        shutil.copy(WEIGHTS_DIR / name, tmp_path / name)
    good = load_c4_weights(tmp_path / "c4.pt")
    ref = c4(pretrained=True)
    for pa, pb in zip(good.parameters(), ref.parameters(), strict=True):
        assert torch.equal(pa, pb)
    # flip one byte in the middle of the file
    data = bytearray((tmp_path / "c4.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "c4.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_c4_weights(tmp_path / "c4.pt")
    # a manifest passed explicitly is used too
    manifest = json.loads((WEIGHTS_DIR / "manifest.json").read_text())
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_c4_weights(tmp_path / "c4.pt", manifest)


def test_load_weights_missing_file_or_entry(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_c4.py"):
        load_c4_weights(tmp_path / "c4.pt")
    shutil.copy(WEIGHTS_DIR / "c4.pt", tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_c4_weights(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt"):
        load_c4_weights(tmp_path / "other.pt", WEIGHTS_DIR / "manifest.json")


# --------------------------------------------------------------------------- training


def test_train_c4_deterministic(train_data):
    x, y = train_data
    xs, ys = x[:256], y[:256]
    a = train_c4(xs, ys, epochs=1, seed=3)
    b = train_c4(xs, ys, epochs=1, seed=3)
    c = train_c4(xs, ys, epochs=1, seed=4)
    assert not a.training
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.fc.weight, c.fc.weight)
    # training moved the weights away from the seeded initialisation
    assert not torch.equal(a.fc.weight, c4(seed=3).fc.weight)


def test_train_c4_fgsm_deterministic(train_data):
    x, y = train_data
    xs, ys = x[:128], y[:128]
    a = train_c4(xs, ys, epochs=1, batch_size=64, adversarial="fgsm", seed=0)
    b = train_c4(xs, ys, epochs=1, batch_size=64, adversarial="fgsm", seed=0)
    clean = train_c4(xs, ys, epochs=1, batch_size=64, seed=0)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.fc.weight, clean.fc.weight)  # the FGSM term changes training


def test_train_c4_pgd2_deterministic_and_robust_step(train_data):
    x, y = train_data
    xs, ys = x[:128], y[:128]
    a = train_c4(xs, ys, epochs=1, batch_size=64, adversarial="pgd2", eps=2.0, steps=2, seed=0)
    b = train_c4(xs, ys, epochs=1, batch_size=64, adversarial="pgd2", eps=2.0, steps=2, seed=0)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    fgsm = train_c4(xs, ys, epochs=1, batch_size=64, adversarial="fgsm", seed=0)
    other = train_c4(xs, ys, epochs=1, batch_size=64, adversarial="pgd2", eps=2.0, steps=2, step=0.5, seed=0)
    assert not torch.equal(a.fc.weight, fgsm.fc.weight)
    assert not torch.equal(a.fc.weight, other.fc.weight)  # the step length is used


def test_train_c4_learns(train_data, test_data):
    x, y = train_data
    model = train_c4(x[:600], y[:600], epochs=3, seed=0)
    acc = accuracy(model, *test_data)
    assert acc > 0.6  # chance is 0.1


def test_train_c4_bad_input(train_data):
    x, y = train_data
    xs, ys = x[:8], y[:8]
    with pytest.raises(ValueError, match="x"):
        train_c4(xs[:, :, :20], ys)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_c4(xs * 2, ys)
    with pytest.raises(TypeError, match="y"):
        train_c4(xs, ys.float())
    with pytest.raises(ValueError, match="y"):
        train_c4(xs, ys[:5])
    with pytest.raises(ValueError, match="y"):
        train_c4(xs, ys + 10)
    with pytest.raises(ValueError, match="adversarial"):
        train_c4(xs, ys, adversarial="pgd")
    with pytest.raises(ValueError, match="eps"):
        train_c4(xs, ys, adversarial="fgsm", eps=0.0)
    with pytest.raises(ValueError, match="eps"):
        train_c4(xs, ys, adversarial="fgsm", eps=2.0)  # an L-infinity budget above 1
    with pytest.raises(ValueError, match="eps"):
        train_c4(xs, ys, adversarial="pgd2", eps=-1.0)
    with pytest.raises(ValueError, match="steps"):
        train_c4(xs, ys, adversarial="pgd2", eps=2.0, steps=0)
    with pytest.raises(ValueError, match="step"):
        train_c4(xs, ys, adversarial="pgd2", eps=2.0, step=0.0)
    with pytest.raises(ValueError, match="epochs"):
        train_c4(xs, ys, epochs=0)
    with pytest.raises(ValueError, match="lr"):
        train_c4(xs, ys, lr=-1.0)


# --------------------------------------------------------------------------- predict / accuracy


def test_predict_and_accuracy(test_data):
    x, y = test_data
    x, y = x[:50], y[:50]
    model = c4(seed=0).train()
    with torch.no_grad():
        ref = model(x).argmax(1)
    p7 = predict(model, x, batch_size=7)
    assert model.training  # mode restored
    assert p7.dtype == torch.int64 and torch.equal(p7, ref)
    assert torch.equal(predict(model, x), ref)
    assert accuracy(model, x, y, batch_size=9) == pytest.approx(float((ref == y).double().mean()))
    with pytest.raises(ValueError, match="batch_size"):
        predict(model, x, batch_size=0)
    with pytest.raises(ValueError, match="y"):
        accuracy(model, x, y[:3])
    with pytest.raises(TypeError, match="x"):
        accuracy(model, x.numpy(), y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_c4_on_cuda(test_data):
    x, y = test_data
    model = c4(pretrained=True, device="cuda")
    acc = accuracy(model, x.cuda(), y.cuda())
    assert acc == pytest.approx(accuracy(c4(pretrained=True), x, y), abs=2e-3)
    small = train_c4(x[:128].cuda(), y[:128].cuda(), epochs=1, adversarial="fgsm")
    assert next(small.parameters()).is_cuda
